//! diesel.toml, read the way diesel_cli reads it: `--config-file`, else `DIESEL_CONFIG_FILE`,
//! else `diesel.toml` in the project root; paths inside it are relative to its folder.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::context::Context;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DieselConfig {
    #[serde(default)]
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

/// `[print_schema]`, as diesel_cli knows it. Fields are raw here; `schema` interprets them.
#[derive(Debug, Default, Deserialize)]
pub struct PrintSchema {
    pub file: Option<PathBuf>,
    pub with_docs: Option<toml::Value>,
    #[serde(default)]
    pub filter: Option<toml::Table>,
    pub column_sorting: Option<String>,
    pub schema: Option<String>,
    pub patch_file: Option<PathBuf>,
    pub import_types: Option<Vec<String>>,
    pub generate_missing_sql_type_definitions: Option<bool>,
    pub except_custom_type_definitions: Option<Vec<String>>,
    pub custom_type_derives: Option<Vec<String>>,
    #[serde(flatten)]
    pub rest: toml::Table,
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
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("read the diesel config {}\n  hint: pass an existing file to --config-file", path.display())
        })?;
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
