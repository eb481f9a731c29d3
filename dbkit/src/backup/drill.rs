//! Restore drills: the newest backup restored into a throwaway database on the live database's
//! server, through the same verifier, scanner and least-rights loader as `db restore`, and
//! checked against the manifest written from the backup's own snapshot ([`super::manifest`]):
//! the set of tables, each one's row count and content checksum, the applied migrations. The
//! live database is never written to.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use url::Url;

use super::bucket::{self, Remote};
use super::dump::{BackupName, PREFIX, mib};
use super::dumpfile;
use super::inventory;
use super::load::{self, Load, LoadOptions};
use super::manifest::{self, Manifest};
use super::restore;
use super::sealed::Identities;
use super::session::Session;
use crate::context::Context;
use crate::error::escaped;
use crate::scratch::Scratch;

/// What the drill found: one row per table of the manifest or the restore, and the migrations.
#[derive(Debug)]
pub struct Report {
    /// The backup drilled, as shown.
    pub backup: String,
    pub tables: Vec<TableCheck>,
    pub expected_migrations: Option<Vec<String>>,
    pub found_migrations: Option<Vec<String>>,
}

/// One table: (rows, checksum) in the manifest and in the restored database.
#[derive(Debug)]
pub struct TableCheck {
    pub table: String,
    pub expected: Option<(i64, String)>,
    pub found: Option<(i64, String)>,
}

impl TableCheck {
    pub fn verdict(&self) -> &'static str {
        match (&self.expected, &self.found) {
            (Some(e), Some(f)) if e == f => "ok",
            (Some(e), Some(f)) if e.0 != f.0 => "ROWS DIFFER",
            (Some(_), Some(_)) => "CONTENT DIFFERS",
            (Some(_), None) => "MISSING",
            (None, _) => "NOT IN MANIFEST",
        }
    }

    pub fn ok(&self) -> bool {
        self.verdict() == "ok"
    }
}

impl Report {
    /// True when every table and the migrations match the manifest.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(TableCheck::ok) && self.expected_migrations == self.found_migrations
    }

    /// The tables (and `migrations`) that differ, for the error.
    pub fn differences(&self) -> Vec<String> {
        let mut differences: Vec<String> =
            self.tables.iter().filter(|t| !t.ok()).map(|t| format!("{} ({})", t.table, t.verdict())).collect();
        if self.expected_migrations != self.found_migrations {
            differences.push("migrations".into());
        }
        differences
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.tables.iter().map(|t| t.table.chars().count()).max().unwrap_or(5).max(5);
        let rows = |side: &Option<(i64, String)>| side.as_ref().map_or("-".to_string(), |(rows, _)| rows.to_string());
        writeln!(f, "drill of {}", self.backup)?;
        writeln!(f, "{:<width$}  {:>12}  {:>12}  RESULT", "TABLE", "MANIFEST", "RESTORED")?;
        for t in &self.tables {
            writeln!(f, "{:<width$}  {:>12}  {:>12}  {}", t.table, rows(&t.expected), rows(&t.found), t.verdict())?;
        }
        let count = |m: &Option<Vec<String>>| m.as_ref().map_or("none".to_string(), |m| m.len().to_string());
        let verdict = if self.expected_migrations == self.found_migrations { "ok" } else { "DIFFER" };
        writeln!(
            f,
            "{:<width$}  {:>12}  {:>12}  {verdict}",
            "migrations",
            count(&self.expected_migrations),
            count(&self.found_migrations)
        )
    }
}

/// Drills the backup `source` names (a file, a folder's newest backup, `s3://BUCKET/PREFIX`'s
/// newest object or `s3://BUCKET/PREFIX/NAME`) into a throwaway database on `url`'s server,
/// `railgun_drill_<pid>_<microseconds>`, dropped whatever happens (a killed drill's, by the next).
pub fn drill(cx: &Context, url: &Url, source: &str, options: &LoadOptions) -> Result<Report> {
    if bucket::is_remote(source) {
        let (remote, name) = newest_remote(cx, source)?;
        let shown = format!("{}{}", remote.shown, escaped(&name));
        let copy = restore::download(&remote, &name)?;
        return drill_file(cx, url, &copy.path(), &shown, options);
    }
    let path = cx.user_path(Path::new(source));
    let path = if path.is_dir() { newest_local(&path)? } else { path };
    drill_file(cx, url, &path, &escaped(&path.display().to_string()), options)
}

/// The newest backup in `dir` (by the time in its name; safety backups aside), whether it
/// checks out or not: the drill is there to find out.
fn newest_local(dir: &Path) -> Result<PathBuf> {
    let entries = inventory::list(dir, None)?;
    let newest = entries.into_iter().find(|e| !e.safety).with_context(
        || hint!("no backup in {}", dir.display(); "take one first: cargo xtask db backup {}", dir.display()),
    )?;
    Ok(newest.path)
}

/// The bucket and the object to drill: the one `target` names, else the newest under its prefix.
fn newest_remote(cx: &Context, target: &str) -> Result<(Remote, String)> {
    if let Some((prefix, name)) = target.rsplit_once('/')
        && BackupName::parse(PREFIX, name).is_some()
        && prefix.len() > "s3://".len()
    {
        return Ok((Remote::open(cx, prefix)?, name.to_string()));
    }
    let remote = Remote::open(cx, target)?;
    let entries = inventory::list_remote(&remote, None)?;
    let newest = entries.into_iter().find(|e| !e.safety).with_context(
        || hint!("no backup under {}", remote.shown; "take one first: cargo xtask db backup --to {target}"),
    )?;
    Ok((remote, newest.name))
}

/// Checks the backup at `path` whole, restores it into a throwaway database and compares.
fn drill_file(cx: &Context, url: &Url, path: &Path, shown: &str, options: &LoadOptions) -> Result<Report> {
    let (file, summary) = dumpfile::open_any(path, || Identities::from_setting(cx))
        .with_context(|| format!("{shown} is not a usable backup"))?;
    let Some(expected) = summary.manifest else {
        bail!(
            hint!("{shown} has no manifest: there is nothing to check a restore of it against"; "take a new backup (cargo xtask db backup): every backup made by this version carries a manifest, then drill that one")
        );
    };
    let decrypted = if file.is_sealed() { ", decrypted" } else { "" };
    eprintln!(
        "{shown} is whole{decrypted}: {} of SQL, a manifest of {} tables",
        mib(summary.sql),
        expected.tables.len()
    );
    load::check_extensions(url, &summary.extensions, &options.allowed_extensions)?;
    for name in crate::scratch::drop_abandoned(url, "drill").unwrap_or_default() {
        eprintln!("dropped {name}, the throwaway database of a drill that was killed");
    }
    let scratch = Scratch::empty(url, "drill")?;
    scratch.drop_on_signal()?;
    eprintln!("restoring into the throwaway database {} (dropped at the end)", scratch.name);
    let found = restore_and_take(&scratch.url, file, options);
    // The restore's owner role goes with the database (see `scratch`).
    scratch.drop_now()?;
    let found = found?;
    Ok(compare(shown, &expected, &found))
}

/// Loads the verified backup into `scratch` as `db restore` would, and takes its manifest.
fn restore_and_take(scratch: &Url, file: dumpfile::Verified, options: &LoadOptions) -> Result<Manifest> {
    let key = crate::secret::random_hex(16)?;
    Load::start(scratch, &key, options)?.feed(file.sql()?, super::progress::Total::default())?;
    let mut session = Session::connect(scratch).context("connect to the throwaway database")?;
    manifest::take(&mut session, &[]).context("sum the restored tables")
}

/// The manifest's tables beside the restored ones, in name order.
fn compare(shown: &str, expected: &Manifest, found: &Manifest) -> Report {
    let expected_migrations = expected.migrations.clone();
    let key = |t: &manifest::TableSum| ((t.schema.clone(), t.name.clone()), (t.shown(), (t.rows, t.checksum.clone())));
    let expected: std::collections::BTreeMap<_, _> = expected.tables.iter().map(key).collect();
    let found_tables: std::collections::BTreeMap<_, _> = found.tables.iter().map(key).collect();
    let mut names: Vec<_> = expected.keys().chain(found_tables.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let tables = names
        .iter()
        .map(|name| {
            let (e, f) = (expected.get(name), found_tables.get(name));
            let table = e.or(f).map(|(shown, _)| shown.clone()).unwrap_or_default();
            TableCheck { table, expected: e.map(|(_, sum)| sum.clone()), found: f.map(|(_, sum)| sum.clone()) }
        })
        .collect();
    Report { backup: shown.to_string(), tables, expected_migrations, found_migrations: found.migrations.clone() }
}
