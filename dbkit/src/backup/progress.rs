//! What a long backup, restore, copy or download is doing, on stderr: on a terminal a bar
//! (indicatif: bytes, rate, tables done, ETA when the total is known); otherwise (CI logs) one
//! plain line per stage and at most one every few seconds in between, never one per row:
//!
//! ```text
//! backup: dumping the schema (40 tables, ~500.0 MiB of SQL estimated from their size on disk)
//! backup: dumping the data
//! backup: 12 of 40 tables, 120.3 MiB of ~500.0 MiB of SQL, 30.2 MiB/s, about 13 s left
//! backup: done, 40 tables, 480.1 MiB of SQL in 16.0 s
//! ```

use std::io::{IsTerminal, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use url::Url;

use super::dump::mib;
use super::statement::{Event, Kind};

/// Between two stages, a plain line at most this often.
const EVERY: Duration = Duration::from_secs(5);

/// What is being done: the lines' prefix and the words of its stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Backup,
    Restore,
    Copy,
    Download,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Backup => "backup",
            Task::Restore => "restore",
            Task::Copy => "copy",
            Task::Download => "download",
        }
    }

    /// The stages of a dump going by: its schema, its rows, what comes after them.
    fn stages(self) -> [&'static str; 3] {
        match self {
            Task::Backup => ["dumping the schema", "dumping the data", "dumping indexes and constraints"],
            Task::Restore | Task::Copy => {
                ["creating the schema", "loading the data", "building indexes and constraints"]
            }
            Task::Download => ["downloading", "downloading", "downloading"],
        }
    }

    /// What the bytes counted are.
    fn unit(self) -> &'static str {
        match self {
            Task::Backup | Task::Restore => " of SQL",
            Task::Copy => " of rows",
            Task::Download => "",
        }
    }
}

/// What the whole task comes to, when it is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Total {
    /// Bytes (of SQL, of rows, of the object).
    pub bytes: Option<u64>,
    /// `bytes` is an estimate (a backup's, from the tables' size on disk).
    pub estimated: bool,
    pub tables: Option<u64>,
}

impl Total {
    /// A backup's estimate, asked of the database at `url` before its dump: the tables pg_dump
    /// copies (ordinary tables outside `excluded`, anchored regexes, and extensions) and their
    /// size on disk, which the SQL comes near (pgbench's: 1.3x the SQL). No total when the
    /// server does not say at once: a table's size waits for its lock, and the backup must not
    /// wait on a progress line (pg_dump says who holds the lock).
    pub fn of_database(url: &Url, excluded: &[String]) -> Total {
        let asked = (|| -> Result<Estimate> {
            let mut conn = crate::connect::establish(url)?;
            conn.batch_execute("SET lock_timeout = '200ms'; SET statement_timeout = '5s'")?;
            diesel::sql_query(
                "SELECT count(*) AS tables, coalesce(sum(pg_table_size(c.oid)), 0)::bigint AS bytes
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname !~ '^pg_' AND NOT (n.nspname ~ ANY ($1))
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')",
            )
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(excluded)
            .get_result(&mut conn)
            .context("estimate the backup's size")
        })();
        match asked {
            Ok(e) => Total { bytes: Some(e.bytes as u64), estimated: true, tables: Some(e.tables as u64) },
            Err(_) => Total::default(),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Estimate {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    tables: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    bytes: i64,
}

/// The progress of one task; clones show the same one. Shared by the threads of a backup (the
/// reader counts SQL, the writer compressed bytes, the check the tables, the upload its parts).
#[derive(Clone)]
pub struct Progress(Arc<Inner>);

struct Inner {
    task: Task,
    total: Total,
    show: Show,
    started: Instant,
    bytes: AtomicU64,
    tables: AtomicU64,
    /// Compressed bytes written (to a file or an upload).
    written: AtomicU64,
    uploaded: AtomicU64,
    /// Which of [`Task::stages`] was announced (0: none yet).
    stage: AtomicU64,
    finished: AtomicBool,
    last_line: Mutex<Instant>,
    /// The bar's stage, said after its figures.
    doing: Mutex<String>,
}

enum Show {
    Bar(ProgressBar),
    Lines,
    Hidden,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; the first stage is announced.
    pub fn new(task: Task, total: Total) -> Progress {
        let show = if std::io::stderr().is_terminal() { Show::Bar(bar(task, total)) } else { Show::Lines };
        let progress = Progress::with(task, total, show);
        progress.stage_of_dump(1);
        progress
    }

    /// A backup's of the database at `url`, out of its estimated size (see [`Total::of_database`]).
    pub fn backup(url: &Url, dump: &super::dump::DumpOptions) -> Progress {
        Progress::new(Task::Backup, Total::of_database(url, &super::copy::excluded_schemas(dump)))
    }

    /// Counts without showing anything (a part of a task that shows its own).
    pub fn hidden() -> Progress {
        Progress::with(Task::Restore, Total::default(), Show::Hidden)
    }

    fn with(task: Task, total: Total, show: Show) -> Progress {
        Progress(Arc::new(Inner {
            task,
            total,
            show,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            tables: AtomicU64::new(0),
            written: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            stage: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            last_line: Mutex::new(Instant::now()),
            doing: Mutex::new(String::new()),
        }))
    }

    /// Says what is being done now: a line of its own off a terminal, the bar's words on one.
    pub fn stage(&self, what: &str) {
        match &self.0.show {
            Show::Bar(_) => {
                *self.0.doing.lock().unwrap_or_else(|e| e.into_inner()) = what.to_string();
                self.refresh();
            }
            Show::Lines => {
                eprintln!("{}: {what}", self.0.task.name());
                *self.0.last_line.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            Show::Hidden => {}
        }
    }

    /// Announces stage `n` (1 to 3) of [`Task::stages`] once, when not announced yet.
    fn stage_of_dump(&self, n: u64) {
        if self.0.stage.fetch_max(n, Ordering::Relaxed) >= n {
            return;
        }
        let what = self.0.task.stages()[n as usize - 1];
        match (n, self.0.total) {
            (1, Total { tables: Some(tables), bytes: Some(bytes), estimated: true }) => self.stage(&format!(
                "{what} ({tables} tables, ~{}{} estimated from their size on disk)",
                mib(bytes),
                self.0.task.unit()
            )),
            (1, Total { tables: Some(tables), .. }) => self.stage(&format!("{what} ({tables} tables)")),
            _ => self.stage(what),
        }
    }

    /// `n` bytes more were done.
    pub fn add(&self, n: u64) {
        let done = self.0.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.moved(done);
    }

    /// `done` bytes are done in all.
    pub fn set(&self, done: u64) {
        self.0.bytes.store(done, Ordering::Relaxed);
        self.moved(done);
    }

    /// Compressed bytes written so far.
    pub fn written(&self, total: u64) {
        self.0.written.store(total, Ordering::Relaxed);
    }

    /// `n` more bytes are in the bucket.
    pub fn uploaded(&self, n: u64) {
        self.0.uploaded.fetch_add(n, Ordering::Relaxed);
        self.refresh();
    }

    /// One more table's rows are done.
    pub fn table_done(&self) {
        self.0.tables.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    /// Follows a dump's pieces as they go by: its stages and the tables whose rows ended.
    pub fn saw(&self, event: &Event<'_>) {
        match event {
            Event::Statement(s) if s.kind == Kind::Copy => self.stage_of_dump(2),
            Event::Statement(_) => {
                let (done, total) = (self.0.tables.load(Ordering::Relaxed), self.0.total.tables);
                if done > 0 && total.is_some_and(|t| done >= t) {
                    self.stage_of_dump(3);
                }
            }
            Event::CopyEnd => self.table_done(),
            Event::CopyData(_) => {}
        }
    }

    /// `inner`, its bytes counted as they are read.
    pub fn reader<R: Read>(&self, inner: R) -> impl Read + use<R> {
        Counted { inner, progress: self.clone() }
    }

    fn moved(&self, done: u64) {
        match &self.0.show {
            Show::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(self.details());
            }
            Show::Lines => self.line_now_and_then(),
            Show::Hidden => {}
        }
    }

    fn refresh(&self) {
        match &self.0.show {
            Show::Bar(bar) => bar.set_message(self.details()),
            Show::Lines => self.line_now_and_then(),
            Show::Hidden => {}
        }
    }

    fn line_now_and_then(&self) {
        let Ok(mut last) = self.0.last_line.try_lock() else { return };
        if last.elapsed() < EVERY {
            return;
        }
        *last = Instant::now();
        eprintln!("{}: {}", self.0.task.name(), self.line());
    }

    /// `12 of 40 tables, 120.3 MiB of ~500.0 MiB of SQL, 30.2 MiB/s, about 13 s left`.
    fn line(&self) -> String {
        let inner = &self.0;
        let done = inner.bytes.load(Ordering::Relaxed);
        let secs = inner.started.elapsed().as_secs_f64().max(0.001);
        let mut parts = Vec::new();
        if let Some(tables) = self.tables_done() {
            parts.push(tables);
        }
        let of = match inner.total.bytes {
            Some(total) if total >= done => {
                format!(" of {}{}", if inner.total.estimated { "~" } else { "" }, mib(total))
            }
            _ => String::new(),
        };
        parts.push(format!("{}{of}{}", mib(done), inner.task.unit()));
        parts.push(format!("{}/s", mib((done as f64 / secs) as u64)));
        parts.extend(self.sent());
        if let Some(total) = inner.total.bytes.filter(|&t| t > done && done > 0) {
            parts.push(format!("about {:.0} s left", (total - done) as f64 * secs / done as f64));
        }
        parts.join(", ")
    }

    /// `12 of 40 tables`, `12 tables`, or nothing before the first.
    fn tables_done(&self) -> Option<String> {
        let done = self.0.tables.load(Ordering::Relaxed);
        match self.0.total.tables {
            Some(total) if total >= done => Some(format!("{done} of {total} tables")),
            _ if done > 0 => Some(format!("{done} tables")),
            _ => None,
        }
    }

    /// What went out: compressed, uploaded.
    fn sent(&self) -> Vec<String> {
        let (written, uploaded) = (self.0.written.load(Ordering::Relaxed), self.0.uploaded.load(Ordering::Relaxed));
        let mut parts = Vec::new();
        if written > 0 {
            parts.push(format!("{} compressed", mib(written)));
        }
        if uploaded > 0 {
            parts.push(format!("{} uploaded", mib(uploaded)));
        }
        parts
    }

    /// The bar's words after its figures (cut at the terminal's width): the stage, tables and
    /// what went out.
    fn details(&self) -> String {
        let doing = self.0.doing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let done = self.0.tables.load(Ordering::Relaxed);
        let tables = match self.0.total.tables {
            Some(total) if total >= done => Some(format!("{done}/{total} tables")),
            _ => self.tables_done(),
        };
        let figures = tables.into_iter().chain(self.sent()).collect::<Vec<_>>().join(", ");
        format!("{doing}: {figures}")
    }

    /// Ends the task: the bar goes, off a terminal a last line says what was done.
    pub fn done(&self) {
        if self.0.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        match &self.0.show {
            Show::Bar(bar) => bar.finish_and_clear(),
            Show::Lines => {
                let tables = match self.0.tables.load(Ordering::Relaxed) {
                    0 => String::new(),
                    1 => "1 table, ".into(),
                    n => format!("{n} tables, "),
                };
                eprintln!(
                    "{}: done, {tables}{}{} in {:.1} s",
                    self.0.task.name(),
                    mib(self.0.bytes.load(Ordering::Relaxed)),
                    self.0.task.unit(),
                    self.0.started.elapsed().as_secs_f64()
                );
            }
            Show::Hidden => {}
        }
    }
}

impl Drop for Inner {
    /// A task that failed takes its bar away before the error is shown.
    fn drop(&mut self) {
        if let Show::Bar(bar) = &self.show {
            bar.finish_and_clear();
        }
    }
}

/// The terminal's bar, the figures first so that they fit 80 columns: `backup [=====>     ]
/// 120.30 MiB/~500.00 MiB 30.20 MiB/s ETA 13s dumping the data: 12/40 tables, 30.1 MiB
/// compressed`; a spinner and the time so far when the total is not known.
fn bar(task: Task, total: Total) -> ProgressBar {
    let about = if total.estimated { "~" } else { "" };
    let template = match total.bytes {
        Some(_) => {
            format!(
                "{{prefix}} [{{bar:16}}] {{bytes}}/{about}{{total_bytes}} {{bytes_per_sec}} ETA {{eta}} {{wide_msg}}"
            )
        }
        None => "{prefix} {spinner} {bytes} {bytes_per_sec} {elapsed} {wide_msg}".to_string(),
    };
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(total.bytes, ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.set_prefix(task.name());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(total: Total) -> Progress {
        Progress::with(Task::Backup, total, Show::Hidden)
    }

    #[test]
    fn lines_say_tables_bytes_and_what_is_left() {
        let p = lines(Total { bytes: Some(400 << 20), estimated: true, tables: Some(40) });
        p.set(100 << 20);
        for _ in 0..12 {
            p.table_done();
        }
        p.written(30 << 20);
        let line = p.line();
        assert!(line.starts_with("12 of 40 tables, 100.0 MiB of ~400.0 MiB of SQL, "), "{line}");
        assert!(line.contains("30.0 MiB compressed") && line.ends_with(" s left"), "{line}");
    }

    #[test]
    fn past_an_estimate_the_total_is_not_shown() {
        let p = lines(Total { bytes: Some(10), estimated: true, tables: Some(1) });
        p.set(20);
        p.table_done();
        p.table_done();
        let line = p.line();
        assert!(line.starts_with("2 tables, 0.0 MiB of SQL"), "{line}");
        assert!(!line.contains("left"), "{line}");
    }
}
