//! diesel_cli's global flags, for the binaries built on this library (`cargo xtask`, and the
//! linter it runs): the same names, help and fallbacks in each.

use std::path::PathBuf;

use crate::context::{Context, Overrides};

/// Flags every command takes, with diesel_cli's names and fallbacks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Global {
    /// The database to work on [default: $DATABASE_URL, else DATABASE_URL in .env]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where the migrations are [default: diesel.toml's migrations_directory, else db/migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migration_dir: Option<PathBuf>,
    /// diesel.toml to read [default: $DIESEL_CONFIG_FILE, else diesel.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

impl Global {
    /// The context of every command: the checkout at `root`, with these flags.
    pub fn context(self, root: PathBuf) -> anyhow::Result<Context> {
        let Global { database_url, migration_dir, config_file } = self;
        Context::new(root, Overrides { database_url, migration_dir, config_file })
    }
}

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
pub struct LintArgs {
    /// Migrations to lint, by version or folder name (default: the pending ones)
    #[arg(value_name = "VERSION")]
    pub migrations: Vec<String>,
    /// Lint every migration on disk
    #[arg(long, conflicts_with = "migrations")]
    pub all: bool,
    /// Print the findings as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// The Postgres major version the migrations will run on (default: the database's, else 15)
    #[arg(long, value_name = "MAJOR")]
    pub postgres: Option<u32>,
    /// Also run them in a throwaway clone and report the locks and rewrites each statement caused
    #[arg(long)]
    pub measure: bool,
}

impl LintArgs {
    /// The flags as the linter's binary takes them, to hand over what was parsed here.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = self.migrations.clone();
        for (set, flag) in [(self.all, "--all"), (self.json, "--json"), (self.measure, "--measure")] {
            if set {
                args.push(flag.to_string());
            }
        }
        if let Some(major) = self.postgres {
            args.extend(["--postgres".to_string(), major.to_string()]);
        }
        args
    }
}
