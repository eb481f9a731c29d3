//! `db drill` (a backup restored into a throwaway database and checked against the manifest it
//! carries), driven through the real binary against real Postgres and a real S3 server.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use diesel::connection::SimpleConnection;
use tests::{Folder, Run, S3, S3_SECRET, with_s3};

const DATA: &str = r#"
CREATE TABLE things (
    id bigserial PRIMARY KEY, name text NOT NULL, body bytea, meta jsonb, at timestamptz DEFAULT now(),
    price numeric(12, 2), ratio double precision, cash money, span interval
);
CREATE INDEX things_name ON things (name);
INSERT INTO things (name, body, meta, price, ratio, cash, span)
SELECT 'thing ' || g || E'\ttab\nnewline \\ ünïcode', decode(md5(g::text), 'hex'), jsonb_build_object('g', g),
       g * 1.25, g / 3.0, g * 1.5, make_interval(secs => g / 7.0)
FROM generate_series(1, 3000) g;
INSERT INTO things (name) VALUES ('nulls');
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."t" (t text, "T" int);
INSERT INTO "Odd Schema"."t" VALUES ('same name as its alias', 1), (NULL, NULL);
CREATE TABLE empty (id int);
CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY, run_on timestamp NOT NULL DEFAULT now());
INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101000000'), ('20240202000000');
"#;

fn exec(folder: &Folder, sql: &str) {
    folder.db.conn().unwrap().batch_execute(sql).unwrap();
}

/// Row count and md5 of the rows of every table of `folder`'s database, in a fixed order.
fn sums(folder: &Folder) -> String {
    tests::text(
        &folder.db,
        "SELECT string_agg(format('%s %s', c.oid::regclass, (xpath('/row/c/text()',
                  query_to_xml(format('SELECT count(*) || md5(coalesce(string_agg(t::text, '','' ORDER BY t::text COLLATE \"C\"), '''')) AS c FROM %s t', c.oid::regclass), false, true, '')))[1]::text),
                E'\n' ORDER BY c.oid::regclass::text) AS text
         FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
           AND c.relnamespace::regnamespace::text !~ '^pg_'",
    )
}

/// The throwaway database `run` names, if it still exists on the test server (other tests'
/// drills run beside).
fn left_behind(folder: &Folder, run: &Run) -> String {
    let Some(at) = run.stderr.find("throwaway database railgun_drill_") else { return String::new() };
    let name: String = run.stderr[at + "throwaway database ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    tests::text(
        &folder.db,
        &format!("SELECT coalesce(string_agg(datname, ','), '') AS text FROM pg_database WHERE datname = '{name}'"),
    )
}

/// Backs up `folder`'s database into its `backups/`; the file.
fn backup(folder: &Folder) -> PathBuf {
    let run = folder.xtask(&["db", "backup"]);
    run.assert_ok();
    PathBuf::from(run.stdout.lines().last().unwrap())
}

fn sql_of(path: &Path) -> String {
    let mut sql = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut sql).unwrap();
    sql
}

/// `sql` gzipped into `dir/name`.
fn write_backup(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(sql.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    path
}

/// The SQL's last line (the manifest) and what comes before it.
fn split_manifest(sql: &str) -> (&str, &str) {
    let body = sql.strip_suffix('\n').unwrap();
    let at = body.rfind('\n').unwrap() + 1;
    let (before, line) = body.split_at(at);
    assert!(line.starts_with("-- railgun manifest: {"), "{line}");
    (before, line)
}

fn drill(folder: &Folder, source: &Path) -> Run {
    folder.xtask(&["db", "drill", source.to_str().unwrap()])
}

#[test]
fn a_drill_passes_on_a_good_backup_and_names_each_table_that_differs() {
    let source = Folder::new("drill-good", None);
    exec(&source, DATA);
    let before = sums(&source);
    let file = backup(&source);
    let sql = sql_of(&file);
    let (body, line) = split_manifest(&sql);
    assert!(line.contains(r#""schema":"Odd Schema","name":"t""#), "{line}");
    assert!(line.contains(r#""migrations":["20240101000000","20240202000000"]"#), "{line}");
    assert!(body.contains("-- PostgreSQL database dump complete"));

    // The file, and the folder (its newest backup): every table ok, the live database untouched.
    for target in [file.as_path(), file.parent().unwrap()] {
        let run = drill(&source, target);
        run.assert_ok();
        for table in ["public.things", "Odd Schema.t", "public.empty", "public.__diesel_schema_migrations"] {
            let row = run.stdout.lines().find(|l| l.starts_with(table)).unwrap_or_else(|| panic!("{}", run.stdout));
            assert!(row.ends_with(" ok"), "{row}");
        }
        assert!(run.stdout.contains("public.things") && run.stdout.contains("3001"), "{}", run.stdout);
        assert!(run.stdout.lines().any(|l| l.starts_with("migrations") && l.ends_with(" ok")), "{}", run.stdout);
        assert!(run.stderr.contains("throwaway database railgun_drill_"), "{}", run.stderr);
        assert_eq!(left_behind(&source, &run), "", "the throwaway database was dropped");
    }
    assert_eq!(sums(&source), before, "the live database is untouched");

    // A manifest that disagrees: a count, a checksum, a migration. Exit 1, naming the table.
    let dir = file.parent().unwrap();
    let count = line.replacen(r#""name":"things","rows":3001"#, r#""name":"things","rows":3002"#, 1);
    assert_ne!(count, line);
    let wrong = write_backup(dir, "railgun_backup_20200101_000000.sql.gz", &format!("{body}{count}\n"));
    let run = drill(&source, &wrong);
    run.assert_fails_with("public.things (ROWS DIFFER)");
    assert_eq!(left_behind(&source, &run), "", "dropped after a difference too");
    assert!(run.stdout.lines().any(|l| l.starts_with("public.things") && l.contains("3002")), "{}", run.stdout);
    let at =
        line.find(r#""name":"empty","rows":0,"checksum":""#).unwrap() + r#""name":"empty","rows":0,"checksum":""#.len();
    let checksum = format!("{}7{}", &line[..at], &line[at + 1..]);
    let wrong = write_backup(dir, "railgun_backup_20200101_000001.sql.gz", &format!("{body}{checksum}\n"));
    drill(&source, &wrong).assert_fails_with("public.empty (CONTENT DIFFERS)");
    let migration = line.replace("20240202000000", "20240303000000");
    let wrong = write_backup(dir, "railgun_backup_20200101_000002.sql.gz", &format!("{body}{migration}\n"));
    drill(&source, &wrong).assert_fails_with("migrations");
    // A manifest naming a table with SQL in its name: compared as a name, never run.
    let crafted = line.replacen(r#""name":"empty""#, r#""name":"x\"; DROP TABLE things; --""#, 1);
    let wrong = write_backup(dir, "railgun_backup_20200101_000003.sql.gz", &format!("{body}{crafted}\n"));
    let run = drill(&source, &wrong);
    run.assert_fails_with("NOT IN MANIFEST");
    assert!(run.stdout.contains("MISSING"), "{}", run.stdout);

    // No manifest (a backup made before manifests, or by pg_dump | gzip): it verifies and
    // restores as before, and the drill says so, exit 1.
    let old = write_backup(dir, "railgun_backup_20200101_000004.sql.gz", body);
    source.xtask(&["db", "verify", old.to_str().unwrap()]).assert_ok();
    let run = drill(&source, &old);
    run.assert_fails_with("has no manifest");
    assert!(run.stderr.contains("take a new backup"), "{}", run.stderr);
    let target = Folder::new("drill-old", None);
    target.xtask(&["db", "restore", old.to_str().unwrap(), "--yes", "--no-safety-backup"]).assert_ok();
    assert_eq!(sums(&target), before);
    assert_eq!(sums(&source), before, "no drill touched the live database");
}

#[test]
fn a_crafted_manifest_line_is_refused_and_never_runs() {
    let source = Folder::new("drill-crafted", None);
    exec(&source, DATA);
    let file = backup(&source);
    let sql = sql_of(&file);
    let (body, line) = split_manifest(&sql);
    let dir = file.parent().unwrap();
    let target = Folder::new("drill-crafted-target", None);
    exec(&target, "CREATE TABLE keep (id int); INSERT INTO keep VALUES (7);");
    let cases = [
        ("bad JSON", format!("{body}-- railgun manifest: {{\"version\": 1, \"tables\": [\n"), "malformed"),
        (
            "unknown field",
            format!(
                "{body}-- railgun manifest: {{\"version\":1,\"tables\":[],\"migrations\":null,\"sql\":\"DROP TABLE keep\"}}\n"
            ),
            "malformed",
        ),
        (
            "a huge count",
            format!("{body}{}\n", line.replacen("\"rows\":3001", "\"rows\":99999999999999999999999", 1)),
            "malformed",
        ),
        ("SQL after it", format!("{body}{line}\nDROP TABLE keep;\n"), "after pg_dump's closing"),
        ("two manifests", format!("{body}{line}\n{line}\n"), "after pg_dump's completion marker"),
        (
            "a line too long",
            format!("{body}-- railgun manifest: {}\n", "x".repeat(600 << 10)),
            "longer than a manifest may be",
        ),
    ];
    for (n, (what, text, says)) in cases.iter().enumerate() {
        let path = write_backup(dir, &format!("railgun_backup_20210101_00000{n}.sql.gz"), text);
        let verify = source.xtask(&["db", "verify", path.to_str().unwrap()]);
        verify.assert_fails_with(says);
        let restore = target.xtask(&["db", "restore", path.to_str().unwrap(), "--yes", "--no-safety-backup"]);
        assert!(!restore.ok(), "{what}: restored\n{}", restore.all());
        drill(&source, &path).assert_fails_with(says);
        assert_eq!(tests::text(&target.db, "SELECT string_agg(id::text, ',') AS text FROM keep"), "7", "{what}");
    }
}

#[test]
fn a_drill_of_the_newest_encrypted_object_in_a_bucket_passes() {
    let s3 = S3::start();
    s3.create_bucket("backups");
    let source = Folder::new("drill-s3", None);
    let identity = age::x25519::Identity::generate();
    let key = source.dir.join("backup.key");
    std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    std::fs::write(
        source.dir.join("railgun.toml"),
        format!(
            "[backup]\nencrypt = true\nrecipients = [\"{}\"]\nto = \"s3://backups/weekly\"\n",
            identity.to_public()
        ),
    )
    .unwrap();
    exec(&source, DATA);
    let before = sums(&source);
    let mut cmd = source.command(&["db", "backup"]);
    with_s3(&mut cmd, &s3);
    let made: Run = cmd.output().unwrap().into();
    made.assert_ok();
    assert!(made.stdout.trim_end().ends_with(".sql.gz.age"), "{}", made.stdout);
    exec(&source, "INSERT INTO things (name) VALUES ('after the backup')");

    // By default, where `db backup` writes: railgun.toml's [backup] to.
    let mut cmd = source.command(&["db", "drill"]);
    with_s3(&mut cmd, &s3);
    cmd.env("RAILGUN_BACKUP_IDENTITY", &key);
    let run: Run = cmd.output().unwrap().into();
    run.assert_ok();
    assert!(run.stderr.contains("decrypted"), "{}", run.stderr);
    assert!(run.stdout.contains("s3://backups/weekly/railgun_backup_"), "{}", run.stdout);
    let row = run.stdout.lines().find(|l| l.starts_with("public.things")).unwrap();
    assert!(row.contains("3001") && row.ends_with(" ok"), "{row}");
    let all = run.all();
    assert!(!all.contains(S3_SECRET) && !all.contains("AGE-SECRET-KEY"), "{all}");
    assert_ne!(sums(&source), before, "the live database kept its new row");
    assert_eq!(left_behind(&source, &run), "");

    // One table back from the bucket, decrypted.
    let object = made.stdout.lines().last().unwrap();
    let mut cmd = source.command(&["db", "restore", object, "--table", "public.things", "--as", "things_s3", "--yes"]);
    with_s3(&mut cmd, &s3);
    cmd.env("RAILGUN_BACKUP_IDENTITY", &key);
    let table: Run = cmd.output().unwrap().into();
    table.assert_ok();
    assert_eq!(tests::text(&source.db, "SELECT count(*)::text AS text FROM things_s3"), "3001");

    // Without the key: refused before any database is made.
    let mut cmd = source.command(&["db", "drill", "s3://backups/weekly"]);
    with_s3(&mut cmd, &s3);
    let refused: Run = cmd.output().unwrap().into();
    refused.assert_fails_with("RAILGUN_BACKUP_IDENTITY");
}

#[test]
fn a_killed_drills_database_is_dropped_by_the_next_drill() {
    let source = Folder::new("drill-killed", None);
    exec(&source, DATA);
    let file = backup(&source);
    // A process that has ended: its pid runs nothing now.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let left = format!("railgun_drill_{pid}_1");
    exec(&source, &format!("CREATE DATABASE {left}"));
    let run = drill(&source, &file);
    run.assert_ok();
    assert!(run.stderr.contains(&format!("dropped {left}")), "{}", run.stderr);
    assert_eq!(left_behind(&source, &run), "");
    let gone = format!("SELECT count(*)::text AS text FROM pg_database WHERE datname = '{left}'");
    assert_eq!(tests::text(&source.db, &gone), "0");
}

const FAMILY: &str = r#"
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE kid (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, p int REFERENCES parent (id), self int REFERENCES kid (id),
    note text CHECK (length(note) < 100)
);
CREATE INDEX kid_note_idx ON kid (note);
CREATE UNIQUE INDEX uq_kid ON kid (p, note);
COMMENT ON TABLE kid IS 'kids';
CREATE TABLE grandkid (k int REFERENCES kid (id));
INSERT INTO parent SELECT g FROM generate_series(1, 10) g;
INSERT INTO kid (p, note) SELECT g % 10 + 1, 'kid ' || g FROM generate_series(1, 200) g;
UPDATE kid SET self = id - 1 WHERE id > 1;
INSERT INTO grandkid SELECT id FROM kid WHERE id % 7 = 0;
"#;

/// The rows of `table`, in order, as one text.
fn rows(folder: &Folder, table: &str) -> String {
    tests::text(
        &folder.db,
        &format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') AS text FROM {table} t"
        ),
    )
}

#[test]
fn one_table_comes_back_beside_the_live_one_and_nothing_else_changes() {
    let source = Folder::new("table-back", None);
    exec(&source, DATA);
    exec(&source, FAMILY);
    let (kid_then, things_then) = (rows(&source, "kid"), rows(&source, "things"));
    let file = backup(&source);
    // The live database moves on after the backup.
    exec(
        &source,
        "DELETE FROM grandkid; UPDATE kid SET self = NULL; DELETE FROM kid WHERE id > 100; INSERT INTO kid (p, note) VALUES (1, 'after');",
    );
    exec(&source, "INSERT INTO things (name) VALUES ('after the backup')");
    let sequence = "SELECT last_value::text AS text FROM things_id_seq";
    let (before, things_seq) = (sums(&source), tests::text(&source.db, sequence));
    let path = file.to_str().unwrap();

    let run = source.xtask(&["db", "restore", path, "--table", "public.kid", "--as", "kid_back", "--yes"]);
    run.assert_ok();
    for said in [
        "kid_p_fkey",
        "grandkid_k_fkey",
        "no safety backup: nothing existing is replaced",
        "200 rows, as the backup's manifest says",
    ] {
        assert!(run.stderr.contains(said), "{said}:\n{}", run.stderr);
    }
    assert_eq!(rows(&source, "kid_back"), kid_then, "the restored rows are the backup's");
    let after = sums(&source);
    let others: Vec<&str> = after.lines().filter(|l| !l.starts_with("kid_back ")).collect();
    assert_eq!(others.join("\n"), before, "the live table and every other table are unchanged");
    let fks = "SELECT string_agg(conname || '->' || confrelid::regclass, ',' ORDER BY conname) AS text FROM pg_constraint WHERE conrelid = 'kid_back'::regclass AND contype = 'f'";
    assert_eq!(tests::text(&source.db, fks), "kid_back_self_fkey->kid_back", "only its foreign key to itself");
    let names = "SELECT string_agg(relname, ',' ORDER BY relname) AS text FROM pg_class WHERE relname LIKE 'kid_back%'";
    assert_eq!(
        tests::text(&source.db, names),
        "kid_back,kid_back_id_seq,kid_back_note_idx,kid_back_pkey,kid_back_uq_kid"
    );
    let id = tests::text(&source.db, "INSERT INTO kid_back (p, note) VALUES (1, 'new') RETURNING id::text AS text");
    assert_eq!(id, "201", "the identity's sequence carries on from the backup's value");

    // A serial column: its sequence comes back renamed, set; the live one is untouched.
    let run = source.xtask(&["db", "restore", path, "--table", "public.things", "--as", "things_back", "--yes"]);
    run.assert_ok();
    assert_eq!(rows(&source, "things_back"), things_then);
    let id = tests::text(&source.db, "INSERT INTO things_back (name) VALUES ('new') RETURNING id::text AS text");
    assert_eq!(id, "3002");
    assert_eq!(tests::text(&source.db, sequence), things_seq, "the live table's sequence is untouched");
    let quoted = source.xtask(&["db", "restore", path, "--table", "\"Odd Schema\".t", "--as", "t_back", "--yes"]);
    quoted.assert_ok();
    assert_eq!(rows(&source, "\"Odd Schema\".t_back"), rows(&source, "\"Odd Schema\".t"));

    // Under its own name: refused while it exists, restored once it is gone.
    let refused = source.xtask(&["db", "restore", path, "--table", "public.kid", "--yes"]);
    refused.assert_fails_with("public.kid already exists");
    assert!(refused.stderr.contains("--as kid_restored"), "{}", refused.stderr);
    exec(&source, "DROP TABLE grandkid");
    source.xtask(&["db", "restore", path, "--table", "public.grandkid", "--yes"]).assert_ok();
    let fks =
        "SELECT count(*)::text AS text FROM pg_constraint WHERE conrelid = 'grandkid'::regclass AND contype = 'f'";
    assert_eq!(tests::text(&source.db, fks), "0", "its foreign key to kid was left out");
    source
        .xtask(&["db", "restore", path, "--table", "public.nothing", "--as", "x", "--yes"])
        .assert_fails_with("has no table public.nothing");
    // Without a terminal and without --yes, it asks, so it refuses.
    source.xtask(&["db", "restore", path, "--table", "public.kid", "--as", "kid_asked"]).assert_fails_with("--yes");
}

#[test]
fn a_killed_table_restore_leaves_nothing() {
    let source = Folder::new("table-killed", None);
    exec(
        &source,
        "CREATE TABLE big (id bigserial PRIMARY KEY, body text); INSERT INTO big (body) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 300000) g;",
    );
    let file = backup(&source);
    let before = sums(&source);
    let mut child = source
        .command(&["db", "restore", file.to_str().unwrap(), "--table", "public.big", "--as", "big_back", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let loading = "SELECT count(*)::text AS text FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' AND datname = current_database()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tests::text(&source.db, loading) == "0" {
        assert!(child.try_wait().unwrap().is_none(), "the restore ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "the restore never started loading");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the restore ended before it could be killed");
    child.kill().unwrap(); // SIGKILL, as `kill -9`
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tests::text(&source.db, loading) != "0" {
        assert!(std::time::Instant::now() < deadline, "the killed restore's session stayed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = "SELECT count(*)::text AS text FROM pg_class WHERE relname LIKE 'big_back%'";
    assert_eq!(tests::text(&source.db, left), "0", "nothing of the table stayed");
    assert_eq!(sums(&source), before);
}

#[test]
fn an_interrupted_drill_drops_its_database() {
    let source = Folder::new("drill-interrupted", None);
    exec(
        &source,
        "CREATE TABLE big (id bigserial PRIMARY KEY, body text); INSERT INTO big (body) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;",
    );
    let file = backup(&source);
    let mut child = source
        .command(&["db", "drill", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let loading = format!(
        "SELECT count(*)::text AS text FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' AND datname LIKE 'railgun\\_drill\\_{pid}\\_%'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tests::text(&source.db, &loading) == "0" {
        assert!(child.try_wait().unwrap().is_none(), "the drill ended before it could be interrupted");
        assert!(std::time::Instant::now() < deadline, "the drill never started loading");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: dropping the throwaway database"), "{stderr}");
    let left =
        format!("SELECT count(*)::text AS text FROM pg_database WHERE datname LIKE 'railgun\\_drill\\_{pid}\\_%'");
    assert_eq!(tests::text(&source.db, &left), "0", "{stderr}");
}
