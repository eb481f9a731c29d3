//! schema.rs from the live database, byte-identical to what `diesel print-schema` prints for
//! the same database and settings: introspection, rendering, diesel.toml's settings, and the
//! writing and checking of the file.

pub mod introspect;
pub mod names;
pub mod print;
pub mod render;
pub mod settings;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use url::Url;

use crate::context::Context;
use crate::diesel_config::DieselConfig;
use settings::Settings;

/// Rewrites the schema file from the database at `url`, as diesel_cli does after migrating:
/// only when diesel.toml names one (print_schema.file), with diesel.toml's settings alone.
pub fn regenerate(cx: &Context, url: &Url) -> Result<()> {
    let config = DieselConfig::load(cx)?;
    let settings = Settings::from_config(&config)?;
    let Some(file) = settings.file.clone() else { return Ok(()) };
    let mut conn = crate::connect::establish(url)?;
    let text = print::output_schema(&mut conn, &settings, &rustfmt_dir(cx))?;
    write_if_changed(&file, &text)
}

/// What the schema file should hold, from the database at `url` with diesel.toml's settings,
/// and where it is: `None` when diesel.toml names no file.
pub fn expected(cx: &Context, url: &Url) -> Result<Option<(PathBuf, String)>> {
    let config = DieselConfig::load(cx)?;
    let settings = Settings::from_config(&config)?;
    let Some(file) = settings.file.clone() else { return Ok(None) };
    let mut conn = crate::connect::establish(url)?;
    Ok(Some((file, print::output_schema(&mut conn, &settings, &rustfmt_dir(cx))?)))
}

/// print_schema.file, else the project's `db/src/schema.rs`.
pub fn schema_file(cx: &Context, settings: &Settings) -> PathBuf {
    settings.file.clone().unwrap_or_else(|| cx.root.join("db/src/schema.rs"))
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

/// When the database lacks migrations, that (not schema.rs) is the likely drift.
pub fn pending_hint(cx: &Context, conn: &mut diesel::PgConnection) -> Option<crate::error::Hinted> {
    let dir = DieselConfig::load(cx).ok()?.migration_dir(cx);
    let applied: Vec<String> =
        crate::migration::runner::applied(conn).ok()?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let pending =
        crate::migration::source::load(&dir).ok()?.into_iter().filter(|m| !applied.contains(&m.version)).count();
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
