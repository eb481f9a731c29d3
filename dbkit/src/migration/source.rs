//! The migrations folder, read the way diesel_migrations reads it: one folder per migration,
//! `YYYY-MM-DD-HHMMSS_name/{up.sql,down.sql,metadata.toml}`, the version being the part before
//! the first `_` without its dashes.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::error::escaped;

/// One migration folder.
#[derive(Debug, Clone)]
pub struct MigrationFiles {
    /// The folder's name, e.g. `2026-11-26-000100_create_users`, control characters escaped
    /// (`\x1b`): it is shown in every message about the migration, and a name from disk must
    /// not drive the terminal. `dir` is the folder itself.
    pub name: String,
    /// What `__diesel_schema_migrations.version` records, e.g. `20261126000100`.
    pub version: String,
    pub dir: PathBuf,
    /// From `metadata.toml`, as diesel reads it.
    pub run_in_transaction: bool,
    /// `lock_timeout` / `statement_timeout` from `metadata.toml` (keys diesel ignores).
    pub limits: Limits,
    /// The versions this migration replaced, when `migration squash` made it (`squashes` in its
    /// `metadata.toml`, a key diesel ignores): a database that applied them all takes it as
    /// applied (see [`super::squash`]).
    pub squashes: Vec<String>,
    /// The SQL, when it does not come from `dir`: built into the program, or recorded in the
    /// database when the migration was applied (a phantom: the checkout lacks its folder).
    pub held: Option<Held>,
}

/// A migration's SQL held in memory.
#[derive(Debug, Clone)]
pub struct Held {
    pub up: Cow<'static, str>,
    pub down: Option<Cow<'static, str>>,
}

/// Postgres's `lock_timeout` and `statement_timeout` for a migration, as Postgres spells them
/// (`"5s"`, `"250ms"`, `"2min"`); `None` leaves the server's setting alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub lock_timeout: Option<String>,
    pub statement_timeout: Option<String>,
}

impl Limits {
    /// These limits, each one this does not set taken from `defaults`.
    pub fn or(&self, defaults: &Limits) -> Limits {
        Limits {
            lock_timeout: self.lock_timeout.clone().or_else(|| defaults.lock_timeout.clone()),
            statement_timeout: self.statement_timeout.clone().or_else(|| defaults.statement_timeout.clone()),
        }
    }
}

/// A migration built into a program (see `db/build.rs`): its folder's name and files.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    pub name: &'static str,
    pub up: &'static str,
    pub down: Option<&'static str>,
    pub metadata: Option<&'static str>,
}

impl MigrationFiles {
    pub fn down(&self) -> PathBuf {
        self.dir.join("down.sql")
    }

    /// Whether there is a down.sql to revert with.
    pub fn has_down(&self) -> bool {
        match &self.held {
            Some(held) => held.down.is_some(),
            None => self.down().is_file(),
        }
    }

    /// The text of `up.sql` or `down.sql`.
    pub fn sql(&self, file: &str) -> Result<String> {
        if let Some(held) = &self.held {
            let text = if file == "up.sql" { Some(&held.up) } else { held.down.as_ref() };
            return text.map(|t| t.to_string()).with_context(|| format!("migration {} has no {file}", self.name));
        }
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("read {}", shown(&path)))
    }
}

/// Migrations built into a program, oldest first. `dir` is where they came from (for messages).
pub fn embedded(dir: &Path, migrations: &[Embedded]) -> Result<Vec<MigrationFiles>> {
    let mut loaded = Vec::new();
    for m in migrations {
        let metadata_file = dir.join(m.name).join("metadata.toml");
        loaded.push(MigrationFiles {
            name: escaped(m.name).into_owned(),
            version: version_of(m.name),
            dir: dir.join(m.name),
            run_in_transaction: m.metadata.is_none_or(metadata_run_in_transaction),
            limits: m.metadata.map_or(Ok(Limits::default()), |text| metadata_limits(text, &metadata_file))?,
            squashes: m.metadata.map(metadata_squashes).unwrap_or_default(),
            held: Some(Held { up: Cow::Borrowed(m.up), down: m.down.map(Cow::Borrowed) }),
        });
    }
    loaded.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(loaded)
}

/// A migration whose files were read from elsewhere (a git commit): `dir` is where the folder
/// is in that tree, for messages; `metadata` is its metadata.toml, read as [`load`] reads it.
pub fn held(dir: PathBuf, up: String, down: Option<String>, metadata: Option<&str>) -> Result<MigrationFiles> {
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(MigrationFiles {
        name: escaped(&folder).into_owned(),
        version: version_of(&folder),
        run_in_transaction: metadata.is_none_or(metadata_run_in_transaction),
        limits: metadata.map_or(Ok(Limits::default()), |text| metadata_limits(text, &dir.join("metadata.toml")))?,
        squashes: metadata.map(metadata_squashes).unwrap_or_default(),
        held: Some(Held { up: Cow::Owned(up), down: down.map(Cow::Owned) }),
        dir,
    })
}

/// diesel's version of a migration folder name.
pub fn version_of(name: &str) -> String {
    name.split('_').next().unwrap_or_default().replace('-', "")
}

/// Every migration in `dir`, oldest first.
pub fn load(dir: &Path) -> Result<Vec<MigrationFiles>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        hint!("read the migrations folder {}", shown(dir); "create the first migration with `cargo xtask migration create NAME`, or point --migration-dir (or diesel.toml's [migrations_directory]) at the right folder")
    })?;
    let mut migrations = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("read {}", shown(dir)))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !is_folder(&path, entry.file_type()?)? {
            continue;
        }
        if !path.join("up.sql").is_file() {
            bail!(
                hint!("{} is not a migration: it has no up.sql", shown(&path); "every folder in the migrations folder must be `YYYY-MM-DD-HHMMSS_name` with an up.sql (and a down.sql)")
            );
        }
        let metadata_file = path.join("metadata.toml");
        let metadata = std::fs::read_to_string(&metadata_file).ok();
        let limits = match &metadata {
            Some(text) => metadata_limits(text, &metadata_file)?,
            None => Limits::default(),
        };
        migrations.push(MigrationFiles {
            version: version_of(&name),
            run_in_transaction: run_in_transaction(&metadata_file),
            limits,
            squashes: metadata.as_deref().map(metadata_squashes).unwrap_or_default(),
            name: escaped(&name).into_owned(),
            dir: path,
            held: None,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    if let Some(pair) = migrations.windows(2).find(|pair| pair[0].version == pair[1].version) {
        bail!(
            hint!("two migrations share the version {}: {} and {}", pair[0].version, pair[0].name, pair[1].name; "rename one so its timestamp differs; the version is the part before the first `_`")
        );
    }
    Ok(migrations)
}

/// Whether an entry of the migrations folder is a folder: a symbolic link is followed (a
/// migration shared between repositories, or kept elsewhere, is a migration here too), and one
/// that leads nowhere is refused by name, never skipped.
fn is_folder(path: &Path, file_type: std::fs::FileType) -> Result<bool> {
    if !file_type.is_symlink() {
        return Ok(file_type.is_dir());
    }
    match std::fs::metadata(path) {
        Ok(target) => Ok(target.is_dir()),
        Err(e) => bail!(
            hint!("{} is a symbolic link that cannot be followed: {e}", shown(path); "point it at a migration folder (one with an up.sql), or remove it")
        ),
    }
}

/// diesel_migrations' reading of `metadata.toml`: no file (or one that does not parse) means a
/// transaction; a file that parses but omits the key means none.
fn run_in_transaction(path: &Path) -> bool {
    std::fs::read_to_string(path).map_or(true, |text| metadata_run_in_transaction(&text))
}

fn metadata_run_in_transaction(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        run_in_transaction: bool,
    }
    toml::from_str::<Metadata>(text).map_or(true, |m| m.run_in_transaction)
}

/// `squashes = ["VERSION", ...]` in `metadata.toml`: what `migration squash` replaced.
fn metadata_squashes(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        squashes: Vec<String>,
    }
    toml::from_str::<Metadata>(text).map(|m| m.squashes).unwrap_or_default()
}

/// Our keys in `metadata.toml`. diesel reads a file without `run_in_transaction` as `false`, so
/// a file written only for a timeout would silently take the migration out of its transaction:
/// such a file is refused until it says which it wants.
fn metadata_limits(text: &str, file: &Path) -> Result<Limits> {
    // diesel runs a file that does not parse in a transaction; it has no limits of ours either.
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return Ok(Limits::default()) };
    let setting = |key: &str| -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(value)) => Ok(Some(value.clone())),
            Some(other) => bail!(
                hint!("{}: {key} is a {}, not a duration", shown(file), other.type_str(); "write it as Postgres does, in quotes: {key} = \"5s\" (or \"500ms\", \"2min\")")
            ),
        }
    };
    let limits = Limits { lock_timeout: setting("lock_timeout")?, statement_timeout: setting("statement_timeout")? };
    if limits != Limits::default() && !table.contains_key("run_in_transaction") {
        bail!(
            hint!("{} sets a timeout but not run_in_transaction, which diesel then reads as false (no transaction)", shown(file); "add `run_in_transaction = true` (or `= false` if it must run outside a transaction) to {}", shown(file))
        );
    }
    Ok(limits)
}

/// A path as the user would type it: relative to the current folder when under it, control
/// characters escaped (see [`escaped`]).
pub fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let path =
        cwd.and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf)).unwrap_or_else(|| path.to_path_buf());
    escaped(&path.display().to_string()).into_owned()
}
