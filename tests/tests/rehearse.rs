//! `cargo xtask migration rehearse`, through the real binary: a source of a million orders, two
//! pending migrations rehearsed on its masked copy, measured, the source untouched.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use tests::{Run, text, xtask_bin};

/// Users with emails; a million orders referencing them; the first migration applied, as its
/// bookkeeping says.
const SOURCE: &str = r#"
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, country text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, total_cents int NOT NULL);
INSERT INTO users (email, country) SELECT 'person' || g || '@mail.test', 'NL' FROM generate_series(1, 100000) g;
INSERT INTO orders (user_id, total_cents) SELECT 1 + g % 100000, g % 10007 FROM generate_series(1, 1000000) g;
ANALYZE;
CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY NOT NULL, run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO __diesel_schema_migrations (version) VALUES ('20260101000001');
"#;

const MIGRATIONS: &[(&str, &str, &str)] = &[
    ("2026-01-01-000001_create", "CREATE TABLE users ();", "DROP TABLE users;"),
    (
        "2026-01-02-000000_add_score",
        "ALTER TABLE orders ADD COLUMN score double precision DEFAULT random();",
        "ALTER TABLE orders DROP COLUMN score;",
    ),
    (
        "2026-01-03-000000_index_totals",
        "CREATE INDEX orders_total_idx ON orders (total_cents);",
        "DROP INDEX orders_total_idx;",
    ),
    (
        "2026-01-04-000000_index_users_concurrently",
        "CREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);",
        "DROP INDEX CONCURRENTLY orders_user_idx;",
    ),
];

/// A folder of the test's own: diesel.toml, railgun.toml, the migrations; removed when it passes.
struct Dir(PathBuf);

impl Dir {
    fn new(settings: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("railgun-rehearse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, up, down) in MIGRATIONS {
            let folder = dir.join("migrations").join(name);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("up.sql"), up).unwrap();
            std::fs::write(folder.join("down.sql"), down).unwrap();
            if up.contains("CONCURRENTLY") {
                std::fs::write(folder.join("metadata.toml"), "run_in_transaction = false\n").unwrap();
            }
        }
        std::fs::write(dir.join("diesel.toml"), "").unwrap();
        std::fs::write(dir.join("railgun.toml"), settings).unwrap();
        Dir(dir)
    }

    /// `migration rehearse --from SOURCE ARGS`, the throwaway database on the source's server.
    fn rehearse(&self, source: &TestDb, args: &[&str]) -> Run {
        let (config, migrations) = (self.0.join("diesel.toml"), self.0.join("migrations"));
        Command::new(xtask_bin())
            .args(["--config-file", config.to_str().unwrap(), "--migration-dir", migrations.to_str().unwrap()])
            .args(["--database-url", source.direct_url().as_str(), "migration", "rehearse"])
            .args(args)
            .current_dir(&self.0)
            .env("RAILGUN_ENV_FILE", self.0.join(".env"))
            .env("RAILGUN_COPY_FROM", source.direct_url().as_str())
            .env_remove("RAILGUN_MASK_KEY")
            .env_remove("DATABASE_URL")
            .env_remove("DIESEL_CONFIG_FILE")
            .stdin(Stdio::null())
            .output()
            .expect("run xtask")
            .into()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What a rehearsal must leave as it was: the source's bookkeeping, columns and indexes; and
/// what it must leave behind: no throwaway database, no role made for one.
fn untouched(source: &TestDb) -> String {
    text(
        source,
        "SELECT format('%s | %s | %s | %s databases, %s roles',
            (SELECT string_agg(version, ',' ORDER BY version) FROM __diesel_schema_migrations),
            (SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'orders'),
            (SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders'),
            (SELECT count(*) FROM pg_database WHERE datname LIKE 'railgun\\_rehearse\\_%'),
            (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'railgun\\_owner\\_railgun\\_rehearse%')) AS text",
    )
}

/// These tests count the server's rehearsal databases: one rehearsal at a time in this process
/// (nextest runs them one at a time too: the `rehearsals` test group).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_rehearsal_measures_each_pending_statement_on_a_masked_copy_and_leaves_the_source_alone() {
    let _one_at_a_time = one_at_a_time();
    let dir = Dir::new(
        "[mask]\n\"users.email\" = \"email\"\n\"users.country\" = \"keep\"\n\n[rehearse]\nmax_exclusive = \"10min\"\n",
    );
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute(SOURCE).unwrap();
    let before = untouched(&source);
    assert_eq!(before, "20260101000001 | id,user_id,total_cents | orders_pkey | 0 databases, 0 roles");

    let whole = the_whole_source_is_measured_under_the_threshold(&dir, &source, &before);
    a_sample_is_scaled_to_the_source_and_its_threshold_exceeded(&dir, &source, &before, whole);
    nothing_pending_copies_nothing(&dir, &source);
}

/// The whole source, under the threshold of railgun.toml: measured, exit 0. Returns how long
/// the rehearsal took.
fn the_whole_source_is_measured_under_the_threshold(dir: &Dir, source: &TestDb, before: &str) -> std::time::Duration {
    let clock = std::time::Instant::now();
    let run = dir.rehearse(source, &["--json"]);
    run.assert_ok();
    let whole = clock.elapsed();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["pending"],
        serde_json::json!([
            "2026-01-02-000000_add_score",
            "2026-01-03-000000_index_totals",
            "2026-01-04-000000_index_users_concurrently"
        ])
    );
    assert_eq!(report["copied"]["orders"], 1_000_000);
    let statements = report["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{}", run.stdout);
    let (add, index, concurrently) = (&statements[0], &statements[1], &statements[2]);
    assert_eq!(add["locks"]["orders"], "ACCESS EXCLUSIVE", "{add}");
    assert_eq!(add["rewrote"], serde_json::json!(["orders"]), "{add}");
    assert_eq!(index["locks"]["orders"], "SHARE", "{index}");
    assert_eq!(index["rewrote"], serde_json::json!([]), "{index}");
    // Outside a transaction: its lock read while it waits for a snapshot held open for that.
    assert_eq!(concurrently["locks"]["orders"], "SHARE UPDATE EXCLUSIVE", "{concurrently}");
    assert_eq!(concurrently["in_transaction"], false, "{concurrently}");
    for s in statements {
        assert!(s["seconds"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(s["estimate"]["table"], "orders", "{s}");
        assert!((s["estimate"]["rows_at_source"].as_f64().unwrap() - 1e6).abs() < 1e4, "{s}");
    }
    assert_eq!(report["exceeded"], serde_json::json!([]));
    assert_eq!(report["max_exclusive_seconds"], 600.0);
    assert_eq!(untouched(source), before, "the source changed");
    let figures: Vec<String> =
        statements.iter().map(|s| format!("{}: {:.2} s", s["statement"], s["seconds"].as_f64().unwrap())).collect();
    eprintln!(
        "whole source: {:.1} s in all, the copy {:.1} s; {}",
        report["seconds"].as_f64().unwrap(),
        report["copy_seconds"].as_f64().unwrap(),
        figures.join("; ")
    );
    whole
}

/// A 10 % sample, a threshold it exceeds: the time scaled to the source's million rows, exit 1.
fn a_sample_is_scaled_to_the_source_and_its_threshold_exceeded(
    dir: &Dir,
    source: &TestDb,
    before: &str,
    whole: std::time::Duration,
) {
    let clock = std::time::Instant::now();
    let run = dir.rehearse(source, &["--sample", "10", "--threshold", "1ms"]);
    let sampled = clock.elapsed();
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with("2026-01-02-000000_add_score/up.sql:1: ALTER TABLE orders ADD COLUMN score double precision DEFAULT random(): ")
            && lines[0].contains(": ACCESS EXCLUSIVE on orders, rewrote orders, "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(" here (est. ") && lines[0].contains(" at the source's 1.0 M rows of orders; "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("2026-01-03-000000_index_totals/up.sql:1: CREATE INDEX orders_total_idx ON orders (total_cents): SHARE on orders, "),
        "{}",
        lines[1]
    );
    assert!(
        run.stderr.contains("error: orders would be under ACCESS EXCLUSIVE for est. ")
            && run
                .stderr
                .contains("from 2026-01-02-000000_add_score/up.sql:1 until its migration commits, beyond 0.00 s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("a masked subset"), "{}", run.stderr);
    assert_eq!(untouched(source), before, "the source changed");
    eprintln!("rehearsal of the whole source: {whole:.1?}; of a 10 % sample: {sampled:.1?}\n{}", run.stdout);
}

/// Nothing pending: nothing copied.
fn nothing_pending_copies_nothing(dir: &Dir, source: &TestDb) {
    let applied = "INSERT INTO __diesel_schema_migrations (version) VALUES ('20260102000000'), ('20260103000000'), ('20260104000000')";
    source.conn().unwrap().batch_execute(applied).unwrap();
    let run = dir.rehearse(source, &[]);
    run.assert_ok();
    assert!(run.stderr.contains("has applied every migration: nothing to rehearse"), "{}", run.stderr);
    assert!(!run.stderr.contains("copying"), "{}", run.stderr);
}

#[test]
fn a_rehearsal_refuses_an_unruled_personal_column_before_copying() {
    let _one_at_a_time = one_at_a_time();
    let dir = Dir::new("");
    let source = TestDb::empty().unwrap();
    source
        .conn()
        .unwrap()
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, email text); CREATE TABLE orders (id serial PRIMARY KEY, total_cents int);
             INSERT INTO users (email) VALUES ('a@b.test');",
        )
        .unwrap();
    let run = dir.rehearse(&source, &[]);
    run.assert_fails_with("\"users.email\" = \"email\"");
    assert!(!run.stderr.contains("copying"), "{}", run.stderr);
    assert_eq!(
        text(&source, "SELECT count(*)::text AS text FROM pg_database WHERE datname LIKE 'railgun\\_rehearse\\_%'"),
        "0"
    );
}
