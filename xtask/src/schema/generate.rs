//! `cargo xtask schema generate`: the schema file from the live database, byte-identical to
//! what `diesel print-schema` prints for the same database and settings.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::print::output_schema;
use super::settings::{PrintFlags, Settings};
use crate::config::DieselConfig;
use crate::context::Context;

/// Write the schema file (diesel.toml's print_schema.file) from the live database, as diesel print-schema would
///
/// Reads [print_schema] from diesel.toml; the flags (diesel print-schema's) override it.
///
/// Examples:
///   cargo xtask schema generate
///   cargo xtask schema generate --check
///   cargo xtask schema generate --stdout --with-docs --only-tables users
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Generate {
    /// Print the schema on stdout instead of writing the file
    #[arg(long, conflicts_with = "check")]
    stdout: bool,
    /// Write nothing; fail if the file differs from what the database gives (for CI)
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    flags: PrintFlags,
}

impl Generate {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let config = DieselConfig::load(cx)?;
        let settings = Settings::resolve(cx, &config, &self.flags)?;
        let mut conn = db::connect::establish(&url)?;
        let text = output_schema(&mut conn, &settings, &rustfmt_dir(cx))?;
        if self.stdout {
            print!("{text}");
            return Ok(());
        }
        let file = schema_file(cx, &settings);
        if self.check {
            return check(&file, &text).map_err(|e| match pending_hint(cx, &mut conn) {
                Some(hint) => e.context(hint),
                None => e,
            });
        }
        write_if_changed(&file, &text)
    }
}

/// print_schema.file, else the project's `db/src/schema.rs`.
fn schema_file(cx: &Context, settings: &Settings) -> PathBuf {
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

fn check(file: &Path, text: &str) -> Result<()> {
    let old = match std::fs::read_to_string(file) {
        Ok(old) => old,
        Err(e) => bail!(
            "{} cannot be read ({e}): the schema file is missing\n  hint: run `cargo xtask schema generate` and commit the file",
            file.display()
        ),
    };
    if old == text {
        eprintln!("{} is up to date", file.display());
        return Ok(());
    }
    let (line, was, now) = first_difference(&old, text);
    bail!(
        "{} is stale: it differs from the database's schema from line {line}\n  file:     {was}\n  database: {now}\n  hint: run `cargo xtask schema generate` (after `cargo xtask migration run`) and commit the file",
        file.display()
    )
}

/// When the database lacks migrations, that (not schema.rs) is the likely drift.
fn pending_hint(cx: &Context, conn: &mut diesel::PgConnection) -> Option<String> {
    let dir = DieselConfig::load(cx).ok()?.migration_dir(cx);
    let applied: Vec<String> =
        crate::migration::runner::applied(conn).ok()?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let pending =
        crate::migration::source::load(&dir).ok()?.into_iter().filter(|m| !applied.contains(&m.version)).count();
    (pending > 0).then(|| {
        format!(
            "the database has {pending} pending migration(s): the schema file may be right and the database behind\n  hint: run `cargo xtask migration run` first (it rewrites the schema file too)"
        )
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
