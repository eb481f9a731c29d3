//! Conflicts before merge: the migrations this branch adds against those another branch (REF)
//! added since their merge base, read from git. Duplicate versions or names, a branch migration
//! that sorts before REF's newest (refused as out of order once merged), and both sides touching
//! the same table or column ([`touched`]), confirmed by applying both in a throwaway database
//! ([`confirm`]). [`rebase`] gives the branch's migrations versions after REF's.

pub mod confirm;
pub mod rebase;
pub mod repo;
pub mod touched;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use url::Url;

use crate::migration::source::{self, MigrationFiles, shown};
pub use confirm::Applied;
pub use repo::Repo;
use touched::{Object, Reading, Touch};

/// Both sides of a merge, read from git and the work tree.
pub struct Sides {
    pub repo: Repo,
    /// REF as given (or the default branch), for messages.
    pub label: String,
    pub base: String,
    pub target: String,
    /// The merge base's migrations (names and blobs: read only when applied).
    pub base_trees: BTreeMap<String, repo::Tree>,
    /// Every migration folder REF has (its newest decides where the branch's must go).
    pub target_trees: BTreeMap<String, repo::Tree>,
    /// REF's migrations the merge base lacks, oldest first.
    pub theirs: Vec<MigrationFiles>,
    /// The work tree's migrations the merge base lacks, oldest first (REF's own left out when the
    /// branch has them too, identical).
    pub ours: Vec<MigrationFiles>,
    /// Which of `ours` git has not committed.
    pub uncommitted: Vec<String>,
}

impl Sides {
    /// Reads both sides: `against` (else the default branch) and the work tree of the
    /// repository that holds `dir`.
    pub fn read(dir: &Path, against: Option<&str>) -> Result<Sides> {
        let repo = Repo::open(dir)?;
        let label = match against {
            Some(reference) => reference.to_string(),
            None => repo.default_target()?,
        };
        let target = repo.commit(&label)?;
        let base = repo.merge_base(&target, &label)?;
        let base_trees = repo.migrations_at(&base)?;
        let target_trees = repo.migrations_at(&target)?;
        let new_there: Vec<(&String, &repo::Tree)> =
            target_trees.iter().filter(|(name, _)| !base_trees.contains_key(*name)).collect();
        let theirs = repo.materialize(&new_there)?;
        let on_disk = source::load(&repo.dir)?;
        // A migration both sides have, the same (a cherry-pick, REF merged in), is no one's new one.
        let identical: Vec<String> = theirs
            .iter()
            .filter(|t| on_disk.iter().any(|m| folder(m) == folder(t) && m.sql("up.sql").ok() == t.sql("up.sql").ok()))
            .map(folder)
            .collect();
        let theirs: Vec<MigrationFiles> = theirs.into_iter().filter(|t| !identical.contains(&folder(t))).collect();
        let ours: Vec<MigrationFiles> = on_disk
            .into_iter()
            .filter(|m| !base_trees.contains_key(&folder(m)) && !identical.contains(&folder(m)))
            .collect();
        let ours_names: Vec<String> = ours.iter().map(folder).collect();
        let uncommitted = repo.uncommitted()?.into_iter().filter(|name| ours_names.contains(name)).collect();
        Ok(Sides { repo, label, base, target, base_trees, target_trees, theirs, ours, uncommitted })
    }

    /// REF's newest version (of all its migrations), with its folder's name.
    pub fn newest_there(&self) -> Option<(String, &String)> {
        self.target_trees.keys().map(|name| (source::version_of(name), name)).max()
    }

    /// The merge base's migrations, read from git.
    pub fn base_migrations(&self) -> Result<Vec<MigrationFiles>> {
        self.repo.materialize(&self.base_trees.iter().collect::<Vec<_>>())
    }
}

/// A migration's folder name, as git and the disk spell it.
pub fn folder(m: &MigrationFiles) -> String {
    m.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Where a conflict is, on one side.
#[derive(Debug, Clone)]
pub struct Place {
    pub file: String,
    pub line: usize,
    /// What the statement there does (`drops column users.email`), or why the file is named.
    pub what: String,
}

/// What kind of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DuplicateVersion,
    DuplicateName,
    /// One of the branch's sorts before REF's newest.
    OutOfOrder,
    /// Both sides' statements touch one object.
    Overlap,
    /// One of the branch's fails after REF's migrations, and applies without them.
    FoundByApplying,
    /// One of the branch's fails on the merge base's schema, without REF's.
    FailsAlone,
}

/// One conflict, named on both sides.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub kind: Kind,
    pub what: String,
    pub ours: Place,
    pub theirs: Option<Place>,
    /// What applying said of it, when it ran.
    pub confirmed: Option<String>,
}

/// What `migration check` found.
pub struct Report {
    pub label: String,
    pub base: String,
    pub ours: Vec<String>,
    pub theirs: Vec<String>,
    pub uncommitted: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// Statements not read, on either side: `file:line (WORDS)`.
    pub unread: Vec<String>,
    /// What each file's statements touch, this branch's files first: `file`, the reading.
    pub readings: Vec<(String, Reading)>,
    /// What applying did, when it ran; why not, when it was skipped.
    pub applied: Option<String>,
}

/// How to check.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub against: Option<String>,
    /// Apply both sides in a throwaway database even when no statements overlap.
    pub apply: bool,
}

/// Compares the branch's new migrations with REF's; `server` is the server of the throwaway
/// databases (an error, when none is configured: the confirmation is skipped, and says why).
pub fn check(dir: &Path, server: Result<Url>, options: &Options) -> Result<Report> {
    let sides = Sides::read(dir, options.against.as_deref())?;
    let mut report = Report {
        label: sides.label.clone(),
        base: sides.base.clone(),
        ours: sides.ours.iter().map(|m| m.name.clone()).collect(),
        theirs: sides.theirs.iter().map(|m| m.name.clone()).collect(),
        uncommitted: sides.uncommitted.clone(),
        conflicts: Vec::new(),
        unread: Vec::new(),
        readings: Vec::new(),
        applied: None,
    };
    if sides.ours.is_empty() {
        return Ok(report);
    }
    report.conflicts.extend(duplicates(&sides));
    report.conflicts.extend(out_of_order(&sides));
    let ours_read = read_side(&sides.ours, &mut report.unread)?;
    let theirs_read = read_side(&sides.theirs, &mut report.unread)?;
    report.readings = ours_read.iter().chain(&theirs_read).cloned().collect();
    let overlaps = overlaps(&ours_read, &theirs_read);
    let overlapped = !overlaps.is_empty();
    report.conflicts.extend(overlaps);
    if overlapped || options.apply {
        let url = match server {
            Ok(url) => url,
            Err(error) => {
                let why = crate::error::describe(&error);
                report.applied = Some(format!("not confirmed by applying: no database server to apply on: {why}"));
                return Ok(report);
            }
        };
        let applied = confirm::apply(&url, &sides.base_migrations()?, &sides.theirs, &sides.ours)?;
        annotate(&mut report, &sides, applied);
    }
    Ok(report)
}

/// A migration's up.sql, as messages show it.
fn up(m: &MigrationFiles) -> String {
    shown(&m.dir.join("up.sql"))
}

/// A migration named as a whole: its up.sql's first line.
fn folder_place(m: &MigrationFiles, what: String) -> Place {
    Place { file: up(m), line: 1, what }
}

/// Versions and names both sides gave a migration.
fn duplicates(sides: &Sides) -> Vec<Conflict> {
    let mut found = Vec::new();
    for ours in &sides.ours {
        for theirs in &sides.theirs {
            if ours.version == theirs.version {
                found.push(Conflict {
                    kind: Kind::DuplicateVersion,
                    what: format!("duplicate version {}", ours.version),
                    ours: folder_place(ours, ours.name.clone()),
                    theirs: Some(folder_place(theirs, theirs.name.clone())),
                    confirmed: None,
                });
            } else if name_part(&ours.name) == name_part(&theirs.name) {
                found.push(Conflict {
                    kind: Kind::DuplicateName,
                    what: format!("duplicate name {}", name_part(&ours.name)),
                    ours: folder_place(ours, ours.name.clone()),
                    theirs: Some(folder_place(theirs, theirs.name.clone())),
                    confirmed: None,
                });
            }
        }
    }
    found
}

/// The branch's migrations that sort before REF's newest of all: one of the merge base's counts
/// too (a branch migration dated before it is refused as out of order by any database that is up
/// to date with REF).
fn out_of_order(sides: &Sides) -> Vec<Conflict> {
    let Some((newest_version, newest_folder)) = sides.newest_there() else { return Vec::new() };
    let label = &sides.label;
    let newest = crate::error::escaped(newest_folder);
    sides
        .ours
        .iter()
        .filter(|m| m.version < newest_version)
        .map(|ours| Conflict {
            kind: Kind::OutOfOrder,
            what: format!(
                "out of order: {} sorts before {label}'s newest, {newest}: once merged, a database that applied {label}'s would refuse it as out of order",
                ours.name
            ),
            ours: folder_place(ours, format!("version {}", ours.version)),
            theirs: Some(Place {
                file: shown(&sides.repo.dir.join(newest_folder).join("up.sql")),
                line: 1,
                what: format!("version {newest_version}"),
            }),
            confirmed: None,
        })
        .collect()
}

/// What each of one side's migrations touches, by file; the statements not read go to `unread`.
fn read_side(migrations: &[MigrationFiles], unread: &mut Vec<String>) -> Result<Vec<(String, Reading)>> {
    let mut out = Vec::new();
    for m in migrations {
        let reading = touched::read(&m.sql("up.sql")?);
        unread.extend(reading.unread.iter().map(|(line, words)| format!("{}:{line} ({words})", up(m))));
        out.push((up(m), reading));
    }
    Ok(out)
}

/// Objects both sides' statements touch: one conflict per object and pair of files, at the
/// first statement on each side.
fn overlaps(ours_read: &[(String, Reading)], theirs_read: &[(String, Reading)]) -> Vec<Conflict> {
    let mut found = Vec::new();
    for (ours_file, ours) in ours_read {
        for (theirs_file, theirs) in theirs_read {
            let mut seen: Vec<Object> = Vec::new();
            for a in &ours.touches {
                for b in &theirs.touches {
                    let Some(object) = touched::clash(a, b) else { continue };
                    if seen.contains(&object) {
                        continue;
                    }
                    seen.push(object.clone());
                    found.push(Conflict {
                        kind: Kind::Overlap,
                        what: format!("both sides touch {object}"),
                        ours: place(ours_file, a),
                        theirs: Some(place(theirs_file, b)),
                        confirmed: None,
                    });
                }
            }
        }
    }
    found
}

fn place(file: &str, touch: &Touch) -> Place {
    Place { file: file.to_string(), line: touch.line, what: touch.to_string() }
}

/// A migration's name without its version.
fn name_part(name: &str) -> &str {
    name.split_once('_').map_or(name, |(_, rest)| rest)
}

/// Adds what applying said to the report: a failure of the branch's is a conflict (or its own
/// error), named with its file and Postgres's words.
fn annotate(report: &mut Report, sides: &Sides, applied: Applied) {
    let label = &sides.label;
    let overlaps = |report: &mut Report, note: &str| {
        for conflict in report.conflicts.iter_mut().filter(|c| c.kind == Kind::Overlap) {
            conflict.confirmed = Some(note.to_string());
        }
    };
    match applied {
        Applied::Clean => {
            report.applied = Some(format!(
                "applied the merge base's {} migration(s), then {label}'s {}, then this branch's {} in a throwaway database: no error",
                sides.base_trees.len(),
                sides.theirs.len(),
                sides.ours.len()
            ));
            overlaps(
                report,
                "not confirmed by applying: both apply, in this order, without an error; they still change the same object: review them together",
            );
        }
        Applied::Skipped(why) => {
            report.applied = Some(format!("not confirmed by applying: no server answered ({why})"));
        }
        Applied::BaseFails { migration, error } => {
            report.applied = Some(format!(
                "not confirmed by applying: the merge base's migration {migration} fails on this server: {error}"
            ));
        }
        Applied::TheirsFail { migration, error } => {
            report.applied = Some(format!(
                "not confirmed by applying: {label}'s own migration {migration} fails on the merge base's schema (not this branch's doing): {error}"
            ));
        }
        Applied::OursFail { migration, error, alone } => {
            let ours = sides.ours.iter().find(|m| m.name == migration);
            let file = ours.map(|m| shown(&m.dir.join("up.sql"))).unwrap_or_else(|| migration.clone());
            let line = error_line(&error, &file).unwrap_or(1);
            if alone {
                report.applied =
                    Some(format!("applying: this branch's {migration} fails on the merge base too, without {label}'s"));
                report.conflicts.push(Conflict {
                    kind: Kind::FailsAlone,
                    what: format!("{migration} fails on its own (not a conflict with {label}): {error}"),
                    ours: Place { file, line, what: "fails on the merge base's schema".into() },
                    theirs: None,
                    confirmed: None,
                });
                return;
            }
            report.applied = Some(format!(
                "applying: this branch's {migration} fails after {label}'s migrations, and applies without them:\n  {error}"
            ));
            let words = error.lines().next().unwrap_or_default();
            let note = format!("confirmed by applying: {migration} fails after {label}'s: {words}");
            let mut matched = false;
            for conflict in report.conflicts.iter_mut().filter(|c| c.kind == Kind::Overlap) {
                if conflict.ours.file == file {
                    conflict.confirmed = Some(note.clone());
                    matched = true;
                }
            }
            if !matched {
                report.conflicts.push(Conflict {
                    kind: Kind::FoundByApplying,
                    what: format!(
                        "found by applying: {migration} fails after {label}'s migrations, and applies without them"
                    ),
                    ours: Place { file, line, what: error },
                    theirs: sides.theirs.last().map(|m| Place {
                        file: shown(&m.dir.join("up.sql")),
                        line: 1,
                        what: format!("{label}'s migrations, applied before it ({})", sides.theirs.len()),
                    }),
                    confirmed: None,
                });
            }
        }
    }
}

/// The line of `file:LINE` in the runner's message (its error carries the line in its words
/// only; a message without it gives the file's first line).
fn error_line(error: &str, file: &str) -> Option<usize> {
    let at = error.find(&format!("{file}:"))? + file.len() + 1;
    error[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl Report {
    /// The report as the user reads it: each conflict, both sides with file:line, the object.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for conflict in &self.conflicts {
            let _ = writeln!(out, "conflict: {}", conflict.what);
            let _ =
                writeln!(out, "  this branch: {}:{}: {}", conflict.ours.file, conflict.ours.line, conflict.ours.what);
            if let Some(theirs) = &conflict.theirs {
                let _ = writeln!(out, "  {}: {}:{}: {}", self.label, theirs.file, theirs.line, theirs.what);
            }
            if let Some(confirmed) = &conflict.confirmed {
                let _ = writeln!(out, "  {confirmed}");
            }
        }
        out
    }
}
