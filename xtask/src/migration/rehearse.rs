//! `cargo xtask migration rehearse`: the pending migrations on a masked copy of a source, measured.

use std::time::Duration;

use anyhow::Result;
use dbkit::migration::rehearse::{self, Options, Report};

use crate::context::{Context, Exit};
use crate::database::backup::DumpArgs;

/// Rehearse the pending migrations on a masked copy of a database (production), measured
///
/// 1. In one read-only transaction on --from (checked: `SHOW transaction_read_only` is on):
///    the migrations it has applied (so, which are pending), its tables' sizes from its
///    statistics (pg_stat_user_tables.n_live_tup, else pg_class.reltuples), and a masked copy
///    of its rows, as `db copy --mask` makes one (railgun.toml's [mask] rules; personal-looking
///    columns without a rule refuse it before any row moves; --sample for a subset), into a
///    throwaway database on the local server DATABASE_URL names, always dropped. No migration
///    ever runs on --from.
/// 2. Each pending migration, as `migration run` would run it (in a transaction unless its
///    metadata.toml says no), one statement at a time: its wall time, the locks it took on each
///    table (read from pg_locks on a second connection) and the tables it rewrote (a new
///    relfilenode), and its time scaled to the source by the rows of the largest table it
///    touched (linear: an index build's sort comes out a little low).
///
/// One line per statement on stdout (--json: the whole report):
///   2026-..._score/up.sql:1: ALTER TABLE orders ADD COLUMN score float8 DEFAULT random():
///   ACCESS EXCLUSIVE on orders, rewrote orders, 0.41 s here
///   (est. 41 s at the source's 39.8 M rows of orders; 398.0 k here)
///
/// Exit 1 when a table would stay under ACCESS EXCLUSIVE (which blocks even reads) longer than
/// the threshold at the source: from the statement that takes it until its migration commits.
/// The threshold: --threshold, else railgun.toml's
///   [rehearse]
///   max_exclusive = "5s"
/// else 5 s.
///
/// Example:
///   RAILGUN_COPY_FROM="$PRODUCTION_URL" cargo xtask migration rehearse --sample 10
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Rehearse {
    /// The database to rehearse against, only read (or RAILGUN_COPY_FROM, which keeps the password out of `ps`)
    #[arg(long, value_name = "URL", env = "RAILGUN_COPY_FROM", hide_env_values = true)]
    from: String,
    /// Copy about PERCENT % of each table a foreign key leaves or reaches (a sample, or the rows
    /// of its parent's), plus every row those reference (as `db copy --sample`); times are
    /// scaled to the source's full sizes
    #[arg(long, value_name = "PERCENT", value_parser = crate::database::copy::percent)]
    sample: Option<f64>,
    /// The longest a table may stay under ACCESS EXCLUSIVE at the source (500ms, 5s, 2min);
    /// overrides railgun.toml's [rehearse] max_exclusive (default 5s)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    threshold: Option<Duration>,
    /// Copy columns that look personal and have no rule as they are (named on stderr)
    #[arg(long)]
    unmasked: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    dump: DumpArgs,
}

impl Rehearse {
    pub fn run(self, cx: &Context) -> Result<()> {
        let options = Options {
            from: self.from,
            sample: self.sample,
            threshold: self.threshold,
            unmasked: self.unmasked,
            dump: self.dump.options(),
        };
        let report = rehearse::rehearse(cx, &options)?;
        match self.json {
            true => println!("{}", serde_json::to_string_pretty(&report)?),
            false => print(&report),
        }
        if report.exceeded.is_empty() {
            return Ok(());
        }
        for exceeded in &report.exceeded {
            eprintln!("error: {exceeded}, beyond {}", rehearse::seconds(report.max_exclusive_seconds));
        }
        eprintln!(
            "hint: split the migration (each ACCESS EXCLUSIVE statement alone, in a migration of its own), or rewrite the statement (ADD COLUMN without a volatile default, then backfill in batches; CREATE INDEX CONCURRENTLY); `cargo xtask migration lint` names the safe rewrites"
        );
        Err(Exit(1).into())
    }
}

fn print(report: &Report) {
    for statement in &report.statements {
        println!("{statement}");
    }
    eprintln!(
        "rehearsed {} migration(s), {} statement(s) in {:.1}s (the copy: {:.1}s); the throwaway database is dropped",
        report.pending.len(),
        report.statements.len(),
        report.seconds,
        report.copy_seconds
    );
}

fn duration(text: &str) -> Result<Duration, String> {
    dbkit::duration::parse(text).map_err(|e| dbkit::error::describe(&e))
}
