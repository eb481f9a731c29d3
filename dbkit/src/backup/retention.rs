//! Which backups to keep: the last N, and grandfather-father-son (the newest backup of each of
//! the last N days, ISO weeks and months that have one), by the UTC time in the backup's name.
//! A backup kept by any rule is kept; the newest is always kept. Only files named as our
//! backups are ever counted or removed ([`BackupName`]), and only complete ones count.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::Datelike;

use super::dump::{BackupName, CLOCK_SKEW, PREFIX};
use super::dumpfile;

/// How many backups to keep, by rule; a rule not given keeps none by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N (`--keep N`).
    pub last: u32,
    /// The newest backup of each of the last N days (UTC) with a backup.
    pub daily: u32,
    /// ... of each of the last N ISO weeks.
    pub weekly: u32,
    /// ... of each of the last N months.
    pub monthly: u32,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Which of `names` (newest first) to keep, and by which rules, as `names` are ordered.
    /// The first (the newest) is always kept.
    pub fn keep(&self, names: &[BackupName]) -> Vec<Vec<&'static str>> {
        type Bucket = fn(&BackupName) -> (i32, u32);
        let rules: [(&'static str, u32, Bucket); 3] = [
            ("daily", self.daily, |n| (n.started.year(), n.started.ordinal())),
            ("weekly", self.weekly, |n| {
                let week = n.started.iso_week();
                (week.year(), week.week())
            }),
            ("monthly", self.monthly, |n| (n.started.year(), n.started.month())),
        ];
        let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
        let mut seen: Vec<HashSet<(i32, u32)>> = vec![HashSet::new(); rules.len()];
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut reasons = Vec::new();
                if i == 0 {
                    reasons.push("newest");
                }
                if i < self.last as usize {
                    reasons.push("last");
                }
                for (r, (rule, _, bucket)) in rules.iter().enumerate() {
                    // The first (newest) backup of each period.
                    if left[r] > 0 && seen[r].insert(bucket(name)) {
                        left[r] -= 1;
                        reasons.push(*rule);
                    }
                }
                reasons
            })
            .collect()
    }
}

/// A backup file of ours in a folder, counted by retention: complete, dated no later than
/// [`CLOCK_SKEW`] ahead.
#[derive(Debug)]
pub struct Counted {
    pub name: BackupName,
    pub path: PathBuf,
}

/// The backups in `dir` that retention counts, newest first; files with a backup's name that do
/// not count (no real time, from the future, not a regular file, incomplete) are said on stderr
/// and left alone.
pub fn counted(dir: &Path) -> Result<Vec<Counted>> {
    let now = chrono::Utc::now().naive_utc();
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let Some(parsed) = entry.file_name().to_str().and_then(|name| BackupName::parse(PREFIX, name)) else {
            continue;
        };
        let path = entry.path();
        let checked = parsed
            .and_then(|name| {
                if name.started > now + CLOCK_SKEW {
                    return Err(format!("its time {} UTC is in the future", name.started));
                }
                Ok(name)
            })
            .and_then(|name| match entry.file_type() {
                Ok(kind) if kind.is_file() => Ok(name),
                _ => Err("not a regular file".to_string()),
            })
            .and_then(|name| dumpfile::check_complete(&path).map(|()| name).map_err(|e| format!("{e:#}")));
        match checked {
            Ok(name) => backups.push(Counted { name, path }),
            Err(why) => eprintln!("left alone, not counted as a backup: {} ({why})", path.display()),
        }
    }
    backups.sort_by_key(|b| std::cmp::Reverse(b.name));
    Ok(backups)
}

/// Applies `policy` to the backups in `dir`: removes those no rule keeps (with `dry_run`, only
/// says which would go). `written`, the backup just made, is kept whatever its time. Returns
/// the files removed (or that would be).
pub fn prune(dir: &Path, policy: &Policy, written: Option<&Path>, dry_run: bool) -> Result<Vec<PathBuf>> {
    if policy.is_empty() {
        bail!(
            hint!("no retention rule given"; "say what to keep: --keep N, --keep-daily N, --keep-weekly N, --keep-monthly N")
        );
    }
    let mut backups = counted(dir)?;
    // The backup just written comes first: kept, and counted by every rule.
    if let Some(written) = written
        && let Some(at) = backups.iter().position(|b| b.path == written)
    {
        let newest = backups.remove(at);
        backups.insert(0, newest);
    }
    let names: Vec<BackupName> = backups.iter().map(|b| b.name).collect();
    let keep = policy.keep(&names);
    let mut removed = Vec::new();
    for (backup, reasons) in backups.iter().zip(keep) {
        if !reasons.is_empty() {
            if dry_run {
                eprintln!("keep {} ({})", backup.path.display(), reasons.join(", "));
            }
            continue;
        }
        if dry_run {
            eprintln!("would remove {}", backup.path.display());
        } else {
            std::fs::remove_file(&backup.path)
                .with_context(|| format!("remove old backup {}", backup.path.display()))?;
            eprintln!("removed old backup {}", backup.path.display());
        }
        removed.push(backup.path.clone());
    }
    Ok(removed)
}

/// Applies `policy` to the backups under a bucket's prefix, as [`prune`] does to a folder.
/// An object gets a backup's name only once its upload completed after the whole backup checked
/// out, so every object with our name and a time at most a day ahead counts (another with such
/// a name, or from the future, is left alone and said). `written` is kept whatever its time.
pub fn prune_remote(
    remote: &super::bucket::Remote,
    policy: &Policy,
    written: Option<&str>,
    dry_run: bool,
) -> Result<Vec<String>> {
    if policy.is_empty() {
        bail!(
            hint!("no retention rule given"; "say what to keep: --keep N, --keep-daily N, --keep-weekly N, --keep-monthly N")
        );
    }
    let now = chrono::Utc::now().naive_utc();
    let mut backups: Vec<(BackupName, String)> = Vec::new();
    for (name, size) in remote.list()? {
        let Some(parsed) = BackupName::parse(PREFIX, &name) else { continue };
        match parsed {
            Ok(parsed) if parsed.started <= now + CLOCK_SKEW && size > 0 => backups.push((parsed, name)),
            _ => eprintln!("left alone, not counted as a backup: {}{name}", remote.shown),
        }
    }
    backups.sort_by_key(|(name, _)| std::cmp::Reverse(*name));
    if let Some(written) = written
        && let Some(at) = backups.iter().position(|(_, name)| name == written)
    {
        let newest = backups.remove(at);
        backups.insert(0, newest);
    }
    let names: Vec<BackupName> = backups.iter().map(|(name, _)| *name).collect();
    let mut removed = Vec::new();
    for ((_, name), reasons) in backups.iter().zip(policy.keep(&names)) {
        let shown = format!("{}{name}", remote.shown);
        if !reasons.is_empty() {
            if dry_run {
                eprintln!("keep {shown} ({})", reasons.join(", "));
            }
            continue;
        }
        if dry_run {
            eprintln!("would remove {shown}");
        } else {
            remote.delete(name)?;
            eprintln!("removed old backup {shown}");
        }
        removed.push(shown);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stamp: &str) -> BackupName {
        BackupName::parse(PREFIX, &format!("{PREFIX}{stamp}.sql.gz")).unwrap().unwrap()
    }

    fn kept(policy: Policy, stamps: &[&str]) -> Vec<String> {
        let mut names: Vec<BackupName> = stamps.iter().map(|s| at(s)).collect();
        names.sort_by_key(|n| std::cmp::Reverse(*n));
        let keep = policy.keep(&names);
        names
            .iter()
            .zip(keep)
            .filter(|(_, r)| !r.is_empty())
            .map(|(n, _)| n.render(PREFIX)[15..30].to_string())
            .collect()
    }

    #[test]
    fn grandfather_father_son() {
        // Two a day from 2025-01-01 (a Wednesday) to 2025-03-10.
        let mut stamps = Vec::new();
        let mut day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        while day <= chrono::NaiveDate::from_ymd_opt(2025, 3, 10).unwrap() {
            stamps.push(format!("{}_030000", day.format("%Y%m%d")));
            stamps.push(format!("{}_150000", day.format("%Y%m%d")));
            day = day.succ_opt().unwrap();
        }
        let stamps: Vec<&str> = stamps.iter().map(String::as_str).collect();
        let policy = Policy { daily: 3, weekly: 2, monthly: 3, ..Policy::default() };
        assert_eq!(
            kept(policy, &stamps),
            [
                "20250310_150000", // newest, daily, weekly (the week of Mon 03-10), monthly (March)
                "20250309_150000", // daily; weekly (the week ending Sun 03-09)
                "20250308_150000", // daily
                "20250228_150000", // monthly (February)
                "20250131_150000", // monthly (January)
            ]
        );
        assert_eq!(kept(Policy { last: 3, ..Policy::default() }, &stamps).len(), 3);
        // Rules overlap, they do not add up: daily 2 and last 2 keep the same two.
        assert_eq!(
            kept(Policy { last: 2, daily: 1, ..Policy::default() }, &stamps),
            ["20250310_150000", "20250310_030000"]
        );
        // The newest is kept even by a policy that would keep nothing else.
        assert_eq!(kept(Policy { monthly: 1, ..Policy::default() }, &stamps[..1]), ["20250101_030000"]);
    }
}
