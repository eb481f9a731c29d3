//! What backups a folder holds: name, size, age, encrypted or not, and how far each checks out.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::bucket::Remote;
use super::dump::{BackupName, PREFIX};
use super::dumpfile;
use super::restore::SAFETY_PREFIX;
use super::sealed::{self, Identities};

/// One file named as a backup of ours (`railgun_backup_...` or a restore's safety backup).
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// A restore's safety backup (`railgun_pre_restore_...`) rather than a backup.
    pub safety: bool,
    pub bytes: u64,
    /// The UTC time in its name (none when those digits are no date and time).
    pub started: Option<chrono::NaiveDateTime>,
    /// Seconds since `started`, by this machine's clock.
    pub age_seconds: Option<i64>,
    pub encrypted: bool,
    pub check: Check,
}

/// How far a backup was checked, and how that went.
#[derive(Debug)]
pub enum Check {
    /// Plain: its last gzip members' CRCs and lengths and pg_dump's completion marker (a backup
    /// cut short or never finished fails this; a byte changed in its middle does not).
    Complete,
    /// Encrypted, without the key: its age header reads (the rest needs the key).
    Header,
    /// Read whole (`--verify`): every gzip member, pg_dump's header, statements and marker,
    /// decrypted (every age chunk authenticated) when encrypted, as `db verify` does.
    Whole,
    /// An object in a bucket under a backup's name: `db backup --to` completes an upload only
    /// after the whole backup checked out (its content was not read now).
    Stored,
    /// The check failed: why.
    Failed(String),
}

impl Check {
    pub fn ok(&self) -> bool {
        !matches!(self, Check::Failed(_))
    }
    /// A word for it: complete, header, whole, failed.
    pub fn word(&self) -> &'static str {
        match self {
            Check::Complete => "complete",
            Check::Header => "header",
            Check::Whole => "whole",
            Check::Stored => "stored",
            Check::Failed(_) => "failed",
        }
    }
}

/// The backups in `dir`, newest first (by the time in their names). With `keys`, each is
/// read whole (and decrypted with the identities `keys` gives, asked for once, when one is
/// encrypted); without, the cheap checks only.
pub fn list(dir: &Path, keys: Option<&dyn Fn() -> Result<Identities>>) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut identities: Option<Result<Identities>> = None;
    let now = chrono::Utc::now().naive_utc();
    for entry in std::fs::read_dir(dir)
        .with_context(|| hint!("list {}", dir.display(); "name the folder of backups: cargo xtask db backups DIR"))?
    {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let (parsed, safety) = match BackupName::parse(PREFIX, &name) {
            Some(parsed) => (parsed, false),
            None => match BackupName::parse(SAFETY_PREFIX, &name) {
                Some(parsed) => (parsed, true),
                None => continue,
            },
        };
        let path = entry.path();
        let meta = entry.metadata().with_context(|| format!("read {}", path.display()))?;
        let started = parsed.as_ref().ok().map(|n| n.started);
        let age_seconds = started.map(|s| (now - s).num_seconds());
        let encrypted = meta.is_file() && is_sealed(&path);
        let check = if !meta.is_file() {
            Check::Failed("not a regular file".into())
        } else {
            let checked = match keys {
                None => {
                    dumpfile::check_complete(&path).map(|()| if encrypted { Check::Header } else { Check::Complete })
                }
                Some(keys) => dumpfile::open_any(&path, || {
                    let got = identities.get_or_insert_with(keys);
                    match got {
                        Ok(got) => Ok(got.clone()),
                        Err(e) => Err(anyhow::anyhow!("{e:#}")),
                    }
                })
                .map(|_| Check::Whole),
            };
            checked.unwrap_or_else(|e| Check::Failed(format!("{e:#}")))
        };
        entries.push(Entry { name, path, safety, bytes: meta.len(), started, age_seconds, encrypted, check });
    }
    entries.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.name.cmp(&a.name)));
    Ok(entries)
}

/// The backups under a bucket's prefix, newest first; `path` is the object's `s3://` URL. With
/// `keys`, each is downloaded and checked whole as it streams (decrypted when encrypted, by
/// its `.age` name), nothing written to disk.
pub fn list_remote(remote: &Remote, keys: Option<&dyn Fn() -> Result<Identities>>) -> Result<Vec<Entry>> {
    let now = chrono::Utc::now().naive_utc();
    let mut identities: Option<Result<Identities>> = None;
    let mut entries = Vec::new();
    for (name, bytes) in remote.list()? {
        let (parsed, safety) = match BackupName::parse(PREFIX, &name) {
            Some(parsed) => (parsed, false),
            None => match BackupName::parse(SAFETY_PREFIX, &name) {
                Some(parsed) => (parsed, true),
                None => continue,
            },
        };
        let started = parsed.as_ref().ok().map(|n| n.started);
        let encrypted = name.ends_with(sealed::SUFFIX);
        let shown = format!("{}{name}", remote.shown);
        let check = match keys {
            None => Check::Stored,
            Some(keys) => {
                let checked = remote.get(&name).and_then(|object| {
                    if !encrypted {
                        return dumpfile::verify_stream(object);
                    }
                    let got = identities.get_or_insert_with(keys);
                    let keys = got.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    dumpfile::verify_stream(keys.open(std::io::BufReader::new(object), Path::new(&shown))?)
                });
                checked.map_or_else(|e| Check::Failed(format!("{e:#}")), |_| Check::Whole)
            }
        };
        let age_seconds = started.map(|s| (now - s).num_seconds());
        entries.push(Entry { name, path: PathBuf::from(shown), safety, bytes, started, age_seconds, encrypted, check });
    }
    entries.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.name.cmp(&a.name)));
    Ok(entries)
}

fn is_sealed(path: &Path) -> bool {
    std::fs::File::open(path).ok().is_some_and(|f| sealed::is_sealed(&f).unwrap_or(false))
}

/// A duration as its two largest units: `3d 4h`, `5h 12m`, `40s`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
