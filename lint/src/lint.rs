//! `cargo xtask migration lint`: statements that lock or rewrite tables, or break the code still
//! running, found on Postgres's own parse tree by squawk's rules.

use anyhow::{Result, bail};
use dbkit::lint::measure::{self, Measured};
use dbkit::lint::{self, Linted, RULES, Settings};
use dbkit::migration::{MigrationFiles, Plan, settings, source};

use dbkit::context::Context;

/// Check migrations for statements that lock or rewrite tables or break running code
///
/// Each statement is parsed by Postgres's own parser (libpg_query) and checked against squawk's
/// rules, by squawk's names: adding-field-with-default, adding-foreign-key-constraint,
/// adding-not-nullable-field, adding-required-field, changing-column-type,
/// constraint-missing-not-valid, disallowed-unique-constraint, require-concurrent-index-creation,
/// require-concurrent-index-deletion, ban-concurrent-index-creation-in-transaction,
/// renaming-column, renaming-table, ban-drop-column, ban-drop-table, ban-drop-database,
/// require-lock-timeout, prefer-robust-stmts, prefer-bigint-over-int, prefer-identity,
/// prefer-timestamp-tz, prefer-text-field, ban-char-field, identifier-too-long,
/// transaction-nesting. It knows the runner: each migration runs in a transaction unless its
/// metadata.toml says run_in_transaction = false, and railgun.toml may set lock_timeout.
///
/// Each finding: file:line, rule, what, why, and the safe rewrite. Silence one statement with a
/// comment right before it that says why it is safe:
///   -- lint-ignore require-concurrent-index-creation: the table has a dozen rows
/// Exits 1 on findings (for CI).
///
/// --measure runs each statement in a throwaway clone (the test harness's template, migrated up
/// to the migrations measured, on its server: TEST_DATABASE_URL, else the local DATABASE_URL,
/// else a throwaway container) and reports, from a second connection, the lock it took on each
/// relation and whether it rewrote a table (its relfilenode changed); each static finding is
/// then confirmed or contradicted. The clone's tables are empty: locks and rewrites are those
/// of the real run, durations are not.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Lint {
    /// Migrations to lint, by version or folder name (default: the pending ones)
    #[arg(value_name = "VERSION")]
    migrations: Vec<String>,
    /// Lint every migration on disk
    #[arg(long, conflicts_with = "migrations")]
    all: bool,
    /// Print the findings as JSON on stdout
    #[arg(long)]
    json: bool,
    /// The Postgres major version the migrations will run on (default: the database's, else 15)
    #[arg(long, value_name = "MAJOR")]
    postgres: Option<u32>,
    /// Also run them in a throwaway clone and report the locks and rewrites each statement caused
    #[arg(long)]
    measure: bool,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        let migrations = source::load(&cx.migration_dir()?)?;
        let (targets, server_major) = self.targets(cx, &migrations)?;
        let config = settings::load(cx)?;
        let settings = Settings {
            postgres_major: self.postgres.or(server_major).unwrap_or(Settings::default().postgres_major),
            lock_timeout_configured: config.migrations.lock_timeout.is_some(),
        };
        let linted: Vec<Linted> = targets.iter().map(|m| lint::lint(m, &settings)).collect::<Result<_>>()?;
        let measured = match (self.measure, targets.first()) {
            (true, Some(first)) => {
                let base: Vec<MigrationFiles> = migrations
                    .iter()
                    .filter(|m| m.version < first.version && !targets.iter().any(|t| t.version == m.version))
                    .cloned()
                    .collect();
                Some(measure::measure(&base, &targets, &linted)?)
            }
            _ => None,
        };
        report(&linted, measured.as_ref(), self.json)
    }

    /// The migrations asked for, and the server's major version when we connected to find them.
    fn targets(&self, cx: &Context, migrations: &[MigrationFiles]) -> Result<(Vec<MigrationFiles>, Option<u32>)> {
        if self.all {
            return Ok((migrations.to_vec(), None));
        }
        if !self.migrations.is_empty() {
            let mut chosen = Vec::new();
            for wanted in &self.migrations {
                let Some(found) = migrations.iter().find(|m| &m.version == wanted || &m.name == wanted) else {
                    bail!(
                        hint!("no migration has the version or name {wanted}"; "`cargo xtask migration show` lists them; or lint them all with --all")
                    );
                };
                chosen.push(found.clone());
            }
            return Ok((chosen, None));
        }
        let url = cx.database_url()?;
        let mut conn = dbkit::connect::establish(&url)?;
        let plan = Plan::read(&mut conn, migrations)?;
        Ok((plan.pending, server_major(&mut conn)))
    }
}

fn server_major(conn: &mut diesel::PgConnection) -> Option<u32> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        v: i32,
    }
    let version: Version =
        diesel::sql_query("SELECT current_setting('server_version_num')::int AS v").get_result(conn).ok()?;
    u32::try_from(version.v / 10000).ok()
}

fn report(linted: &[Linted], measured: Option<&(String, Vec<Measured>)>, json: bool) -> Result<()> {
    let findings: usize = linted.iter().map(|l| l.findings.len()).sum();
    let ignored: usize = linted.iter().map(|l| l.ignored.len()).sum();
    let statements: usize = linted.iter().map(|l| l.statements.len()).sum();
    if json {
        let mut out = serde_json::json!({ "migrations": linted, "findings": findings, "ignored": ignored, "statements": statements });
        if let Some((clone, rows)) = measured {
            out["measured"] = serde_json::json!({ "clone": clone, "statements": rows });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for finding in linted.iter().flat_map(|l| &l.findings) {
            println!("{}:{}: {}: {}", finding.file, finding.line, finding.rule, finding.message);
            println!("  why: {}", finding.why);
            println!("  fix: {}", finding.fix);
        }
        for l in linted {
            for i in &l.ignored {
                eprintln!("{}:{}: {} ignored: {}", l.file, i.line, i.rule, i.reason);
            }
        }
        if let Some((clone, rows)) = measured {
            print_measured(clone, rows);
        }
    }
    eprintln!(
        "{findings} finding(s) in {statements} statement(s) of {} migration(s){}",
        linted.len(),
        if ignored > 0 { format!(", {ignored} ignored") } else { String::new() }
    );
    if findings > 0 {
        bail!(hint!("migration lint: {findings} finding(s) (of {} rules)", RULES.len();
            "rewrite them as each finding's `fix` says, or, when one is safe here, say why just before it: -- lint-ignore RULE: REASON"));
    }
    Ok(())
}

/// The measured table: one row per statement, its locks and rewrites, and each finding's verdict.
fn print_measured(clone: &str, rows: &[Measured]) {
    println!("\nmeasured in the throwaway clone {clone} (dropped):");
    println!(
        "{:<44} {:<48} {:<44} {:<8} static findings",
        "statement", "sql", "locks (read from a second connection)", "rewrite"
    );
    for row in rows {
        let mut sql = row.statement.clone();
        if sql.chars().count() > 48 {
            sql = sql.chars().take(47).collect::<String>() + "…";
        }
        let locks = if row.unobserved {
            "(released before they could be read)".to_string()
        } else {
            row.locks
                .iter()
                .map(|(rel, mode)| format!("{rel} {}", mode.trim_end_matches("Lock")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rewrite = if row.rewrote.is_empty() { "no".to_string() } else { row.rewrote.join(",") };
        let verdicts = row
            .verdicts
            .iter()
            .map(|v| format!("{} {} ({})", v.rule, v.verdict, v.detail))
            .collect::<Vec<_>>()
            .join("; ");
        let at = format!("{}:{}", row.migration, row.line);
        println!("{at:<44} {sql:<48} {locks:<44} {rewrite:<8} {}", if verdicts.is_empty() { "-" } else { &verdicts });
    }
}
