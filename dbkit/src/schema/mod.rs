//! schema.rs from the live database, byte-identical to what `diesel print-schema` prints for
//! the same database and settings: introspection, rendering, diesel.toml's settings, and the
//! writing and checking of the file. Beside it, for review: the schema as SQL ([`dump`]) and as
//! a diagram ([`diagram`]).

pub mod diagram;
pub mod dump;
pub mod introspect;
pub mod names;
pub mod print;
pub mod render;
pub mod settings;
pub mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use url::Url;

use crate::context::Context;
use crate::diesel_config::{DieselConfig, section};
use settings::Settings;

/// Rewrites the schema files from the database at `url`, as diesel_cli does after migrating:
/// each print_schema key that names a file, with diesel.toml's settings alone; and the schema
/// dump when railgun.toml configures one. Every file is printed before any is written, so a
/// failing key leaves them all as they were.
pub fn regenerate(cx: &Context, url: &Url) -> Result<()> {
    regenerate_on(cx, url, None)
}

/// [`regenerate`], printing on `conn` when the caller has one open to `url` already.
pub fn regenerate_on(cx: &Context, url: &Url, conn: Option<&mut diesel::PgConnection>) -> Result<()> {
    let files: Vec<SchemaFile> = settings::keys(&DieselConfig::load(cx)?)?
        .into_iter()
        .filter_map(|(key, settings)| Some(SchemaFile { key, path: settings.file.clone()?, settings }))
        .collect();
    let texts = match (files.is_empty(), conn) {
        (true, _) => Vec::new(),
        (false, Some(conn)) => print_files(cx, conn, &files)?,
        (false, None) => print_files(cx, &mut crate::connect::establish(url)?, &files)?,
    };
    let dump = match dump::configured(cx)? {
        Some(path) => {
            Some((dump::dump(cx, url).with_context(|| format!("dump the schema into {}", path.display()))?, path))
        }
        None => None,
    };
    for (file, text) in files.iter().zip(texts) {
        write_if_changed(&file.path, &text)?;
    }
    if let Some((text, path)) = dump {
        write_if_changed(&path, &text)?;
    }
    Ok(())
}

/// One schema file: the print_schema key it belongs to, where it is, what prints it.
pub struct SchemaFile {
    pub key: String,
    pub path: PathBuf,
    pub settings: Settings,
}

/// The schema files of `keys`, in key order: each key's `file`. When diesel.toml has a single
/// key (`several` false), a missing `file` means the project's `db/src/schema.rs`; among
/// several, a key without a file has none (diesel_cli writes none for it either) and is named
/// in the error when `refuse_fileless`, else left out.
pub fn schema_files(
    cx: &Context,
    keys: BTreeMap<String, Settings>,
    several: bool,
    refuse_fileless: bool,
) -> Result<Vec<SchemaFile>> {
    let mut files = Vec::new();
    for (key, settings) in keys {
        let path = match (&settings.file, several) {
            (Some(file), _) => file.clone(),
            (None, false) => cx.root.join("db/src/schema.rs"),
            (None, true) if refuse_fileless => bail!(
                hint!("{} names no file to write or check", section(&key); "add `file = \"...\"` to it in diesel.toml, or print it with --stdout")
            ),
            (None, true) => continue,
        };
        files.push(SchemaFile { key, path, settings });
    }
    if files.is_empty() {
        bail!(
            hint!("none of diesel.toml's print_schema sections names a file"; "add `file = \"...\"` to the ones to write, or print them with --stdout")
        );
    }
    Ok(files)
}

/// Every schema file diesel.toml configures, with its settings alone (doctor, migration generate).
pub fn configured_files(cx: &Context, config: &DieselConfig) -> Result<Vec<SchemaFile>> {
    let keys = settings::keys(config)?;
    let several = keys.len() > 1;
    schema_files(cx, keys, several, false)
}

/// What the database at `conn` gives for each file, in the files' order.
pub fn print_files(cx: &Context, conn: &mut diesel::PgConnection, files: &[SchemaFile]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|file| {
            print::output_schema(conn, &file.settings, &rustfmt_dir(cx))
                .with_context(|| format!("print {}", section(&file.key)))
        })
        .collect()
}

/// Where rustfmt runs: the user's directory, as for diesel_cli, so both find the same rustfmt.toml.
pub fn rustfmt_dir(cx: &Context) -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| cx.root.clone())
}

pub fn write_if_changed(file: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(file).is_ok_and(|old| old == text) {
        eprintln!("{} is up to date", file.display());
        return Ok(());
    }
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(file, text).with_context(|| format!("write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    Ok(())
}

pub fn check(file: &Path, text: &str) -> Result<()> {
    let old = match std::fs::read_to_string(file) {
        Ok(old) => old,
        Err(e) => bail!(
            hint!("{} cannot be read ({e}): the schema file is missing", file.display(); "run `cargo xtask schema generate` and commit the file")
        ),
    };
    if old == text {
        return Ok(());
    }
    let (line, was, now) = first_difference(&old, text);
    bail!(
        hint!("{} is stale: it differs from the database's schema from line {line}\n  file:     {was}\n  database: {now}", file.display(); "run `cargo xtask schema generate` (after `cargo xtask migration run`) and commit the file")
    )
}

/// [`check`] for each file with the text the database gives it: the error names every stale
/// file, the first one's difference in full.
pub fn check_all(files: &[SchemaFile], texts: &[String]) -> Result<()> {
    let mut stale: Vec<(&Path, anyhow::Error)> = files
        .iter()
        .zip(texts)
        .filter_map(|(file, text)| check(&file.path, text).err().map(|e| (file.path.as_path(), e)))
        .collect();
    if stale.len() < 2 {
        return stale.pop().map_or(Ok(()), |(_, error)| Err(error));
    }
    let names: Vec<String> = stale.iter().map(|(path, _)| path.display().to_string()).collect();
    let (_, first) = stale.remove(0);
    Err(first.context(format!("{} of {} schema files are stale: {}", names.len(), files.len(), names.join(", "))))
}

/// When the database lacks migrations, that (not schema.rs) is the likely drift.
pub fn pending_hint(cx: &Context, conn: &mut diesel::PgConnection) -> Option<crate::error::Hinted> {
    let dir = DieselConfig::load(cx).ok()?.migration_dir(cx);
    let pending = crate::migration::pending_in(conn, &dir).ok()?.len();
    (pending > 0).then(|| {
        hint!("the database has {pending} pending migration(s): the schema file may be right and the database behind"; "run `cargo xtask migration run` first (it rewrites the schema file too)")
    })
}

/// The first line (1-based) where the texts differ, and that line in each.
fn first_difference<'a>(old: &'a str, new: &'a str) -> (usize, &'a str, &'a str) {
    let (mut a, mut b) = (old.split_inclusive('\n'), new.split_inclusive('\n'));
    let mut n = 1;
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                let show = |l: Option<&'a str>| l.map_or("<end of file>", |l| l.trim_end_matches('\n'));
                return (n, show(x), show(y));
            }
        }
    }
}
