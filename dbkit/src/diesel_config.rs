//! diesel.toml, read the way diesel_cli reads it: `--config-file`, else `DIESEL_CONFIG_FILE`,
//! else `diesel.toml` in the project root; paths inside it are relative to its folder.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::context::Context;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DieselConfig {
    #[serde(default, deserialize_with = "print_schema_table")]
    pub print_schema: PrintSchema,
    #[serde(default)]
    pub migrations_directory: Option<MigrationsDirectory>,
    /// The folder the file is in: its relative paths start there.
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsDirectory {
    pub dir: PathBuf,
}

/// `[print_schema]`, every key diesel_cli 2.3 knows. `schema::settings` interprets them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrintSchema {
    pub file: Option<PathBuf>,
    pub with_docs: Option<WithDocs>,
    pub allow_tables_to_appear_in_same_query_config: Option<String>,
    pub filter: Option<Filter>,
    pub column_sorting: Option<String>,
    pub schema: Option<String>,
    pub patch_file: Option<PathBuf>,
    pub import_types: Option<Vec<String>>,
    pub generate_missing_sql_type_definitions: Option<bool>,
    pub except_custom_type_definitions: Option<Vec<String>>,
    pub custom_type_derives: Option<Vec<String>>,
    /// Accepted as diesel_cli accepts it; it only means something for SQLite.
    #[allow(dead_code)]
    pub sqlite_integer_primary_key_is_bigint: Option<bool>,
    pub pg_domains_as_custom_types: Option<Vec<String>>,
}

/// `with_docs = true | false | "only-database-comments" | ...`
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum WithDocs {
    Flag(bool),
    Mode(String),
}

/// `[print_schema.filter]`: regexes matched against table names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub only_tables: Option<Vec<String>>,
    pub except_tables: Option<Vec<String>>,
}

/// diesel_cli also takes `[print_schema.NAME]` tables (one schema file each); this project has one.
fn print_schema_table<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<PrintSchema, D::Error> {
    use serde::de::Error;
    let table = toml::Table::deserialize(deserializer)?;
    if let Some(name) = table.iter().find(|(k, v)| v.is_table() && *k != "filter").map(|(k, _)| k) {
        return Err(D::Error::custom(format!(
            "[print_schema.{name}]: named print_schema sections (several schema files) are not supported; use a single [print_schema]"
        )));
    }
    PrintSchema::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)
}

impl DieselConfig {
    /// Reads the config file; a missing default file is an empty config, a missing named one an error.
    pub fn load(cx: &Context) -> Result<DieselConfig> {
        let (path, named) = match (&cx.global.config_file, std::env::var_os("DIESEL_CONFIG_FILE")) {
            (Some(path), _) => (cx.user_path(path), true),
            (None, Some(path)) => (cx.user_path(Path::new(&path)), true),
            (None, None) => (cx.root.join("diesel.toml"), false),
        };
        if !named && !path.exists() {
            return Ok(DieselConfig { base: cx.root.clone(), ..Default::default() });
        }
        let text = std::fs::read_to_string(&path).with_context(
            || hint!("read the diesel config {}", path.display(); "pass an existing file to --config-file"),
        )?;
        let mut config: DieselConfig = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_else(|| cx.root.clone());
        Ok(config)
    }

    /// `--migration-dir`, else the config's `[migrations_directory] dir`, else `db/migrations`.
    pub fn migration_dir(&self, cx: &Context) -> PathBuf {
        match (&cx.global.migration_dir, &self.migrations_directory) {
            (Some(dir), _) => cx.user_path(dir),
            (None, Some(m)) => self.base.join(&m.dir),
            (None, None) => cx.root.join("db/migrations"),
        }
    }
}
