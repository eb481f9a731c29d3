//! diesel.toml, read the way diesel_cli reads it: `--config-file`, else `DIESEL_CONFIG_FILE`,
//! else `diesel.toml` in the project root; paths inside it are relative to its folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::context::Context;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DieselConfig {
    #[serde(default)]
    pub print_schema: PrintSchemas,
    #[serde(default)]
    pub migrations_directory: Option<MigrationsDirectory>,
    /// The folder the file is in: its relative paths start there.
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsDirectory {
    pub dir: PathBuf,
}

/// One print_schema section, every setting diesel_cli 2.3 knows. `schema::settings` interprets them.
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

/// A section's `filter` (`[print_schema.filter]`): regexes matched against table names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub only_tables: Option<Vec<String>>,
    pub except_tables: Option<Vec<String>>,
}

/// The key of the unnamed `[print_schema]`, as diesel_cli names it (`--schema-key default`).
pub const DEFAULT_KEY: &str = "default";

/// `[print_schema]` (the key `default`) and every `[print_schema.NAME]`, by name: the order
/// diesel_cli prints and writes them in. The default key is always there, empty when unset.
#[derive(Clone, Debug)]
pub struct PrintSchemas(pub BTreeMap<String, PrintSchema>);

impl Default for PrintSchemas {
    fn default() -> PrintSchemas {
        PrintSchemas(BTreeMap::from([(DEFAULT_KEY.to_string(), PrintSchema::default())]))
    }
}

/// As diesel_cli 2.3 reads it: a table-valued entry other than `filter` is a named key, every
/// other entry belongs to the unnamed one. Where diesel_cli silently lets `[print_schema.default]`
/// win over settings in `[print_schema]`, this refuses.
impl<'de> Deserialize<'de> for PrintSchemas {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PrintSchemas, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(deserializer)?;
        let (named, unnamed): (toml::Table, toml::Table) =
            table.into_iter().partition(|(key, value)| value.is_table() && key != "filter");
        let mut keys = BTreeMap::new();
        for (name, value) in named {
            let print_schema =
                PrintSchema::deserialize(value).map_err(|e| D::Error::custom(format!("{}: {e}", section(&name))))?;
            keys.insert(name, print_schema);
        }
        if keys.contains_key(DEFAULT_KEY) && !unnamed.is_empty() {
            return Err(D::Error::custom(
                "[print_schema] and [print_schema.default] are the same key (diesel_cli would ignore the first): keep one",
            ));
        }
        if !keys.contains_key(DEFAULT_KEY) {
            keys.insert(
                DEFAULT_KEY.to_string(),
                PrintSchema::deserialize(toml::Value::Table(unnamed)).map_err(D::Error::custom)?,
            );
        }
        Ok(PrintSchemas(keys))
    }
}

/// How diesel.toml spells a key's section: `[print_schema]` for the default one.
pub fn section(key: &str) -> String {
    if key == DEFAULT_KEY { "[print_schema]".to_string() } else { format!("[print_schema.{key}]") }
}

impl DieselConfig {
    /// Reads the config file; a missing default file is an empty config, a missing named one an error.
    /// The file is read (and checked) once per context: a command that needs it several times
    /// (`migration run`: the folder, the settings, the schema files) reads it once.
    pub fn load(cx: &Context) -> Result<DieselConfig> {
        if let Some(config) = cx.diesel_config.get() {
            return Ok(config.clone());
        }
        let config = DieselConfig::read(cx)?;
        Ok(cx.diesel_config.get_or_init(|| config).clone())
    }

    fn read(cx: &Context) -> Result<DieselConfig> {
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
        config.refuse_shared_files().with_context(|| format!("check {}", path.display()))?;
        Ok(config)
    }

    /// Two keys writing one file would overwrite each other after every migration.
    fn refuse_shared_files(&self) -> Result<()> {
        let mut seen: Vec<(PathBuf, &str)> = Vec::new();
        for (key, print_schema) in &self.print_schema.0 {
            let Some(file) = &print_schema.file else { continue };
            let file = self.base.join(file);
            if let Some((_, other)) = seen.iter().find(|(f, _)| *f == file) {
                bail!(
                    hint!("{} and {} both write {}", section(other), section(key), file.display(); "give each print_schema section a file of its own")
                );
            }
            seen.push((file, key));
        }
        Ok(())
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
