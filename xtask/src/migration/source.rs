//! The migrations folder, read the way diesel_migrations reads it: one folder per migration,
//! `YYYY-MM-DD-HHMMSS_name/{up.sql,down.sql,metadata.toml}`, the version being the part before
//! the first `_` without its dashes.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::context::Context;

/// One migration folder.
#[derive(Debug, Clone)]
pub struct MigrationFiles {
    /// The folder's name, e.g. `2026-11-26-000100_create_users`.
    pub name: String,
    /// What `__diesel_schema_migrations.version` records, e.g. `20261126000100`.
    pub version: String,
    pub dir: PathBuf,
    /// From `metadata.toml`, as diesel reads it.
    pub run_in_transaction: bool,
}

impl MigrationFiles {
    pub fn down(&self) -> PathBuf {
        self.dir.join("down.sql")
    }
}

/// diesel's version of a migration folder name.
pub fn version_of(name: &str) -> String {
    name.split('_').next().unwrap_or_default().replace('-', "")
}

/// Every migration in `dir`, oldest first.
pub fn load(dir: &Path) -> Result<Vec<MigrationFiles>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "read the migrations folder {}\n  hint: create the first migration with `cargo xtask migration create NAME`, or point --migration-dir (or diesel.toml's [migrations_directory]) at the right folder",
            dir.display()
        )
    })?;
    let mut migrations = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        let path = entry.path();
        if !path.join("up.sql").is_file() {
            bail!(
                "{} is not a migration: it has no up.sql\n  hint: every folder in the migrations folder must be `YYYY-MM-DD-HHMMSS_name` with an up.sql (and a down.sql)",
                path.display()
            );
        }
        migrations.push(MigrationFiles {
            version: version_of(&name),
            run_in_transaction: run_in_transaction(&path.join("metadata.toml")),
            name,
            dir: path,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    if let Some(pair) = migrations.windows(2).find(|pair| pair[0].version == pair[1].version) {
        bail!(
            "two migrations share the version {}: {} and {}\n  hint: rename one so its timestamp differs; the version is the part before the first `_`",
            pair[0].version,
            pair[0].name,
            pair[1].name
        );
    }
    Ok(migrations)
}

/// diesel_migrations' reading of `metadata.toml`: no file (or one that does not parse) means a
/// transaction; a file that parses but omits the key means none.
fn run_in_transaction(path: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        run_in_transaction: bool,
    }
    let Ok(text) = std::fs::read_to_string(path) else { return true };
    toml::from_str::<Metadata>(&text).map_or(true, |m| m.run_in_transaction)
}

/// The migrations folder of this invocation (flags, then diesel.toml, then `db/migrations`).
pub fn migration_dir(cx: &Context) -> Result<PathBuf> {
    Ok(crate::config::DieselConfig::load(cx)?.migration_dir(cx))
}

/// A path as the user would type it: relative to the current folder when under it.
pub fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    cwd.and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
