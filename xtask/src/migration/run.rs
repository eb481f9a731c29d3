//! `cargo xtask migration run`: apply pending migrations, then regenerate schema.rs.

use anyhow::Result;
use dbkit::migration::dry_run::{self, Report};
use dbkit::migration::{MigrationFiles, Options, settings, source};
use url::Url;

use crate::context::Context;

/// Apply pending migrations (each in its own transaction, under a lock), then regenerate schema.rs
///
/// Two runners at once are safe: the second waits for the first, then applies what is left.
/// A migration whose metadata.toml says `run_in_transaction = false` runs outside a transaction
/// (for `CREATE INDEX CONCURRENTLY` and the like).
///
/// Refused, naming them and the fix: an applied migration whose up.sql changed since it was
/// applied (see `migration accept`), and a pending migration older than the newest applied one
/// (unless --allow-out-of-order).
///
/// Timeouts for production runs, in railgun.toml beside diesel.toml (diesel_cli refuses keys of
/// its own file it does not know):
///   [migrations]
///   lock_timeout = "5s"          # Postgres's lock_timeout for each migration
///   statement_timeout = "10min"  # and its statement_timeout
///   lock_retries = 3             # a migration that hit lock_timeout is tried again (default 3)
///   retry_backoff = "1s"         # first wait between tries, doubled each time (default 1s)
///   allow_out_of_order = false
/// A migration's metadata.toml may set lock_timeout and statement_timeout for itself (and must
/// then say run_in_transaction, which diesel otherwise reads as false).
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Run {
    /// Apply pending migrations older than the newest applied one (merged from another branch)
    #[arg(long)]
    allow_out_of_order: bool,
    /// Apply the pending migrations and throw them away: print schema.rs's diff (stdout) and
    /// each statement's time (stderr), write nothing. Rolled back, or on a scratch copy of the
    /// database when one runs outside a transaction. It takes the real locks: lock_timeout is
    /// 2s unless railgun.toml or metadata.toml says otherwise
    #[arg(long)]
    dry_run: bool,
}

impl Run {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let mut options = settings::load(cx)?.options();
        options.allow_out_of_order |= self.allow_out_of_order;
        let migrations = source::load(&cx.migration_dir()?)?;
        if self.dry_run {
            return dry_run(cx, &url, &migrations, &options);
        }
        let ran = dbkit::migration::run_with(&url, &migrations, &options)?;
        match ran {
            0 => eprintln!("no pending migrations"),
            1 => eprintln!("applied 1 migration"),
            n => eprintln!("applied {n} migrations"),
        }
        dbkit::migration::phantom::regenerate_schema(cx, &url)
    }
}

fn dry_run(cx: &Context, url: &Url, migrations: &[MigrationFiles], options: &Options) -> Result<()> {
    let Some(report) = dry_run::dry_run(cx, url, migrations, options)? else {
        eprintln!("dry run: no pending migrations");
        return Ok(());
    };
    print_report(&report);
    Ok(())
}

fn print_report(report: &Report) {
    for ran in &report.migrations {
        let total: std::time::Duration = ran.statements.iter().map(|s| s.elapsed).sum();
        eprintln!("Would run migration {} ({:.1} ms)", ran.name, total.as_secs_f64() * 1000.0);
        for statement in &ran.statements {
            let mut text = statement.text.clone();
            if text.chars().count() > 72 {
                text = text.chars().take(71).collect::<String>() + "…";
            }
            eprintln!(
                "  {:>9.1} ms  {}:{}  {text}",
                statement.elapsed.as_secs_f64() * 1000.0,
                ran.file,
                statement.line
            );
        }
    }
    let diff = dry_run::diff(
        &report.schema_before,
        &report.schema_after,
        "schema.rs (now)",
        "schema.rs (after the pending migrations)",
        3,
    );
    if diff.is_empty() {
        eprintln!("schema.rs would not change");
    } else {
        print!("{diff}");
    }
    match &report.scratch {
        Some(name) => eprintln!("dry run: nothing was written (it ran on the scratch copy {name}, now dropped)"),
        None => eprintln!("dry run: nothing was written (rolled back)"),
    }
}
