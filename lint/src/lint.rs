//! `cargo xtask migration lint`: statements that lock or rewrite tables, or break the code still
//! running, found on Postgres's own parse tree by squawk's rules.

use anyhow::{Result, bail};
use dbkit::lint::measure::{self, Measured};
use dbkit::lint::{self, Linted, RULES, Settings};
use dbkit::migration::{MigrationFiles, Plan, settings, source};

use dbkit::cli::LintArgs;
use dbkit::context::Context;

/// `migration lint`: its flags are dbkit's [`LintArgs`], so `cargo xtask migration lint --help`
/// is answered without building this binary.
#[derive(clap::Args)]
pub struct Lint {
    #[command(flatten)]
    args: LintArgs,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        let migrations = source::load(&cx.migration_dir()?)?;
        let (targets, server_major) = self.targets(cx, &migrations)?;
        let config = settings::load(cx)?;
        let settings = Settings {
            postgres_major: self.args.postgres.or(server_major).unwrap_or(Settings::default().postgres_major),
            lock_timeout_configured: config.migrations.lock_timeout.is_some(),
        };
        let linted: Vec<Linted> = targets.iter().map(|m| lint::lint(m, &settings)).collect::<Result<_>>()?;
        let measured = match (self.args.measure, targets.first()) {
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
        report(&linted, measured.as_ref(), self.args.json)
    }

    /// The migrations asked for, and the server's major version when we connected to find them.
    fn targets(&self, cx: &Context, migrations: &[MigrationFiles]) -> Result<(Vec<MigrationFiles>, Option<u32>)> {
        if self.args.all {
            return Ok((migrations.to_vec(), None));
        }
        if !self.args.migrations.is_empty() {
            let mut chosen = Vec::new();
            for wanted in &self.args.migrations {
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
