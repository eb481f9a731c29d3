//! `cargo xtask migration lint`: every rule on a flagged and a clean example
//! (tests/tests/fixtures/lint, one migration each, named `<rule>.flagged` or `<rule>.clean`),
//! ignore comments, exit codes, JSON, and the pending migrations of a real database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tests::{Run, root};

/// The linter's binary (what `cargo xtask migration lint` runs), outside any project.
fn isolated(args: &[&str]) -> std::process::Command {
    tests::isolated_bin(tests::dblint_bin(), args)
}

/// squawk's rule names the issue lists: each must have a flagged and a clean fixture.
const RULES: &[&str] = &[
    "adding-field-with-default",
    "adding-foreign-key-constraint",
    "adding-not-nullable-field",
    "adding-required-field",
    "changing-column-type",
    "constraint-missing-not-valid",
    "disallowed-unique-constraint",
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "ban-concurrent-index-creation-in-transaction",
    "renaming-column",
    "renaming-table",
    "ban-drop-column",
    "ban-drop-table",
    "ban-drop-database",
    "require-lock-timeout",
    "prefer-robust-stmts",
    "prefer-bigint-over-int",
    "prefer-identity",
    "prefer-timestamp-tz",
    "prefer-text-field",
    "ban-char-field",
    "identifier-too-long",
    "transaction-nesting",
];

fn corpus() -> PathBuf {
    root().join("tests/tests/fixtures/lint")
}

fn lint(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--migration-dir", dir.to_str().unwrap(), "migration", "lint"];
    all.extend_from_slice(args);
    isolated(&all).output().unwrap().into()
}

/// Rules found per migration, from `--json`.
fn findings(run: &Run) -> BTreeMap<String, Vec<(String, u64)>> {
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    json["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let rules = m["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (f["rule"].as_str().unwrap().to_string(), f["line"].as_u64().unwrap()))
                .collect();
            (m["migration"].as_str().unwrap().to_string(), rules)
        })
        .collect()
}

#[test]
fn every_rule_flags_its_example_and_passes_the_safe_rewrite() {
    let run = lint(&corpus(), &["--all", "--json"]);
    assert_eq!(run.code, Some(1), "findings exit 1:\n{}", run.stderr);
    assert!(run.stderr.contains("hint: rewrite them as each finding's `fix` says"), "{}", run.stderr);
    let found = findings(&run);
    let mut covered: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (migration, rules) in &found {
        let case = migration.split_once('_').unwrap().1;
        let (rule, kind) = case.rsplit_once('.').unwrap();
        let has = rules.iter().any(|(r, _)| r == rule);
        match kind {
            "flagged" => assert!(has, "{migration} is not flagged {rule}: {rules:?}"),
            "clean" => assert!(!has, "{migration} (the safe rewrite) is flagged {rule}"),
            other => panic!("fixture {migration}: {other} is neither flagged nor clean"),
        }
        // Each finding points at the statement, below the fixture's comment line.
        assert!(rules.iter().all(|(_, line)| *line >= 2), "{migration}: {rules:?}");
        covered
            .entry(RULES.iter().find(|r| **r == rule).unwrap_or_else(|| panic!("unknown rule {rule}")))
            .or_default()
            .insert(if kind == "flagged" { "flagged" } else { "clean" });
    }
    for rule in RULES {
        assert_eq!(covered.get(rule).map(|k| k.len()), Some(2), "{rule} needs a flagged and a clean example");
    }
    // The text output: file:line: rule: what, then why and the fix.
    let text = lint(&corpus(), &["2024-01-01-000115_require-concurrent-index-creation.flagged"]);
    assert_eq!(text.code, Some(1));
    assert!(
        text.stdout.starts_with("tests/tests/fixtures/lint/2024-01-01-000115_require-concurrent-index-creation.flagged/up.sql:2: require-concurrent-index-creation: CREATE INDEX users_email_idx ON users without CONCURRENTLY\n  why: ")
            || text.stdout.contains("/2024-01-01-000115_require-concurrent-index-creation.flagged/up.sql:2: require-concurrent-index-creation: CREATE INDEX users_email_idx ON users without CONCURRENTLY\n  why: "),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("  fix: CREATE INDEX CONCURRENTLY"), "{}", text.stdout);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("railgun-lint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn migration(dir: &Path, name: &str, up: &str, metadata: Option<&str>) {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("up.sql"), up).unwrap();
    std::fs::write(path.join("down.sql"), "SELECT 1;\n").unwrap();
    if let Some(metadata) = metadata {
        std::fs::write(path.join("metadata.toml"), metadata).unwrap();
    }
}

#[test]
fn an_ignore_comment_with_a_reason_silences_one_statement() {
    let dir = scratch("ignore");
    migration(
        &dir,
        "2024-01-01-000001_indexes",
        "SET lock_timeout = '2s';\n\
         -- lint-ignore require-concurrent-index-creation: countries has 250 rows, forever\n\
         CREATE INDEX countries_name_idx ON countries (name);\n\
         CREATE INDEX users_name_idx ON users (name);\n",
        None,
    );
    let run = lint(&dir, &["--all", "--json"]);
    let found = findings(&run);
    assert_eq!(
        found["2024-01-01-000001_indexes"],
        [("require-concurrent-index-creation".to_string(), 4)],
        "only the second"
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["ignored"], 1);
    assert_eq!(json["migrations"][0]["ignored"][0]["reason"], "countries has 250 rows, forever");
    let text = lint(&dir, &["--all"]);
    assert!(
        text.stderr.contains("up.sql:3: require-concurrent-index-creation ignored: countries has 250 rows, forever"),
        "{}",
        text.stderr
    );

    // No reason, or a rule that does not exist: the comment is a finding itself and silences nothing.
    migration(
        &dir,
        "2024-01-01-000001_indexes",
        "SET lock_timeout = '2s';\n-- lint-ignore require-concurrent-index-creation\nCREATE INDEX a_idx ON countries (name);\n-- lint-ignore require-concurrent-indexes: typo\nCREATE INDEX b_idx ON countries (code);\n",
        None,
    );
    let found = findings(&lint(&dir, &["--all", "--json"]));
    let rules: Vec<&str> = found["2024-01-01-000001_indexes"].iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules.iter().filter(|r| **r == "require-concurrent-index-creation").count(), 2, "{rules:?}");
    assert_eq!(rules.iter().filter(|r| **r == "lint-ignore").count(), 2, "{rules:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_clean_migration_exits_0_and_bad_input_is_refused() {
    let dir = scratch("clean");
    // The lock timeout comes from railgun.toml (beside the diesel.toml in use: none here, so the folder we run in).
    migration(
        &dir,
        "2024-01-01-000001_add_note",
        "ALTER TABLE users ADD COLUMN note text;\nCREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now());\nCREATE INDEX notes_at_idx ON notes (at);\n",
        None,
    );
    std::fs::write(dir.join("diesel.toml"), "").unwrap();
    std::fs::write(dir.join("railgun.toml"), "[migrations]\nlock_timeout = \"3s\"\n").unwrap();
    let config = dir.join("diesel.toml");
    let run: Run = isolated(&[
        "--config-file",
        config.to_str().unwrap(),
        "--migration-dir",
        dir.to_str().unwrap(),
        "migration",
        "lint",
        "--all",
    ])
    .output()
    .unwrap()
    .into();
    run.assert_ok();
    assert!(run.stderr.contains("0 finding(s) in 3 statement(s) of 1 migration(s)"), "{}", run.stderr);
    // Without the setting, the ALTER TABLE wants a lock timeout.
    std::fs::remove_file(dir.join("railgun.toml")).unwrap();
    let found = findings(&lint(&dir, &["--all", "--json"]));
    assert_eq!(found["2024-01-01-000001_add_note"], [("require-lock-timeout".to_string(), 1)]);

    lint(&dir, &["20990101000000"]).assert_fails_with("no migration has the version or name 20990101000000");
    migration(&dir, "2024-01-01-000002_broken", "ALTER TABLE users ADD COLUMN;\n", None);
    lint(&dir, &["20240101000002"]).assert_fails_with("does not parse as Postgres SQL");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_arguments_it_lints_the_pending_migrations_of_the_database() {
    let db = db::testing::TestDb::empty().unwrap();
    let dir = scratch("pending");
    // A diesel.toml of its own: the run must not regenerate the repository's schema.rs.
    std::fs::write(dir.join("diesel.toml"), "").unwrap();
    let config = dir.join("diesel.toml");
    let xtask = |args: &[&str]| -> Run {
        let mut all = vec!["--database-url", db.direct_url().as_str(), "--migration-dir", dir.to_str().unwrap()];
        all.extend(["--config-file", config.to_str().unwrap()]);
        all.extend_from_slice(args);
        isolated(&all).output().unwrap().into()
    };
    migration(
        &dir,
        "2024-01-01-000001_create_users",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
        None,
    );
    let applied = dbkit::migration::source::load(&dir).unwrap();
    dbkit::migration::run(db.direct_url(), &applied).unwrap();
    migration(&dir, "2024-01-01-000002_index_email", "CREATE INDEX users_email_idx ON users (email);\n", None);
    let run = xtask(&["migration", "lint", "--json"]);
    let found = findings(&run);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["2024-01-01-000002_index_email"], "only the pending one");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `measure_reports_...` lints, one change each after a base migration: (name, up.sql,
/// metadata.toml).
const MEASURE_CASES: [(&str, &str, Option<&str>); 7] = [
    ("2024-01-01-000002_volatile_default", "ALTER TABLE users ADD COLUMN token float8 DEFAULT random();\n", None),
    (
        "2024-01-01-000003_stable_default",
        "ALTER TABLE users ADD COLUMN expires_at timestamptz DEFAULT now() + interval '1 day';\n",
        None,
    ),
    ("2024-01-01-000004_set_not_null", "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n", None),
    ("2024-01-01-000005_index", "CREATE INDEX posts_title_idx ON posts (title);\n", None),
    (
        "2024-01-01-000006_index_concurrently",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS posts_user_id_idx ON posts (user_id);\n",
        Some("run_in_transaction = false\n"),
    ),
    (
        "2024-01-01-000007_foreign_key",
        "ALTER TABLE posts ADD CONSTRAINT posts_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n",
        None,
    ),
    (
        "2024-01-01-000008_foreign_key_not_valid",
        "ALTER TABLE posts ADD CONSTRAINT posts_editor_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
        None,
    ),
];

/// `--measure --json`'s statements, by migration name without its version.
struct Measured<'a> {
    rows: BTreeMap<String, &'a serde_json::Value>,
}

impl Measured<'_> {
    fn of(json: &serde_json::Value) -> Measured<'_> {
        let rows = json["measured"]["statements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row["migration"].as_str().unwrap().split_once('_').unwrap().1.to_string(), row))
            .collect();
        Measured { rows }
    }

    /// The locks the statement took: (table, mode).
    fn locks(&self, case: &str) -> Vec<(String, String)> {
        self.rows[case]["locks"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    /// The tables it rewrote.
    fn rewrote(&self, case: &str) -> Vec<&str> {
        self.rows[case]["rewrote"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
    }

    /// What the measure said of `rule`'s finding: "confirmed", "contradicted", or "none" when
    /// the rule did not flag it.
    fn verdict(&self, case: &str, rule: &str) -> String {
        let verdicts = self.rows[case]["verdicts"].as_array().unwrap();
        verdicts
            .iter()
            .find(|v| v["rule"] == rule)
            .map_or("none".into(), |v| v["verdict"].as_str().unwrap().to_string())
    }
}

/// How many databases of the test server are called `name`.
fn databases_named(name: &str) -> i64 {
    let mut conn = diesel::Connection::establish(db::testing::server_url().unwrap().as_str())
        .map(|c: diesel::PgConnection| c)
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: N = diesel::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name),
        &mut conn,
    )
    .unwrap();
    left.n
}

#[test]
fn measure_reports_the_locks_and_rewrites_each_statement_really_caused() {
    let dir = scratch("measure");
    std::fs::write(dir.join("diesel.toml"), "").unwrap();
    migration(
        &dir,
        "2024-01-01-000001_base",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text);\nCREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint, title text);\n",
        None,
    );
    for (name, up, metadata) in MEASURE_CASES {
        migration(&dir, name, up, metadata);
    }
    let versions: Vec<String> =
        MEASURE_CASES.iter().map(|(name, _, _)| name.split('_').next().unwrap().replace('-', "")).collect();
    let config = dir.join("diesel.toml");
    let mut args = vec![
        "--config-file",
        config.to_str().unwrap(),
        "--migration-dir",
        dir.to_str().unwrap(),
        "migration",
        "lint",
        "--measure",
        "--json",
    ];
    args.extend(versions.iter().map(String::as_str));
    let run: Run =
        isolated(&args).env("TEST_DATABASE_URL", db::testing::server_url().unwrap().as_str()).output().unwrap().into();
    assert_eq!(run.code, Some(1), "{}", run.all());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    let measured = Measured::of(&json);
    let pair = |table: &str, mode: &str| (table.to_string(), mode.to_string());

    assert_eq!(measured.locks("volatile_default"), [pair("users", "AccessExclusiveLock")]);
    assert_eq!(measured.rewrote("volatile_default"), ["users"], "a volatile default rewrites the table");
    assert_eq!(measured.verdict("volatile_default", "adding-field-with-default"), "confirmed");
    // The parser cannot know now() + interval is not volatile: flagged, and the measure says otherwise.
    assert!(measured.rewrote("stable_default").is_empty());
    assert_eq!(measured.verdict("stable_default", "adding-field-with-default"), "contradicted");

    assert_eq!(measured.locks("set_not_null"), [pair("users", "AccessExclusiveLock")]);
    assert!(measured.rewrote("set_not_null").is_empty(), "SET NOT NULL scans but does not rewrite");
    assert_eq!(measured.verdict("set_not_null", "adding-not-nullable-field"), "confirmed");

    assert_eq!(measured.locks("index"), [pair("posts", "ShareLock")], "CREATE INDEX blocks writes");
    assert_eq!(measured.verdict("index", "require-concurrent-index-creation"), "confirmed");
    assert_eq!(
        measured.locks("index_concurrently"),
        [pair("posts", "ShareUpdateExclusiveLock")],
        "CONCURRENTLY lets writes go on"
    );
    assert_eq!(measured.rows["index_concurrently"]["verdicts"].as_array().unwrap().len(), 0, "and is not flagged");

    assert_eq!(
        measured.locks("foreign_key"),
        [pair("posts", "ShareRowExclusiveLock"), pair("users", "ShareRowExclusiveLock")]
    );
    assert_eq!(measured.verdict("foreign_key", "adding-foreign-key-constraint"), "confirmed");
    // NOT VALID takes the same locks (briefly, without the validating scan), and is not flagged.
    assert_eq!(
        measured.locks("foreign_key_not_valid"),
        [pair("posts", "ShareRowExclusiveLock"), pair("users", "ShareRowExclusiveLock")]
    );
    assert_eq!(measured.verdict("foreign_key_not_valid", "adding-foreign-key-constraint"), "none");

    // The clone is gone.
    let clone = json["measured"]["clone"].as_str().unwrap().to_string();
    assert_eq!(databases_named(&clone), 0, "{clone} was left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}
