//! A backup from someone else, tried as an attacker would: what pg_dump never writes is refused
//! by `db verify` and `db restore` with its line; what a rule cannot see (a function an index
//! or a default calls) runs with the restore owner's rights only; and real schemas' shapes
//! (partitions, views across schemas, enums, domains, triggers, non-standard strings) restore
//! into an empty database and over an existing one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use tests::{Run, isolated, text};
use url::Url;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("railgun-rights-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn xtask(dir: &Path, url: &Url, args: &[&str]) -> Run {
    isolated(&[&["--database-url", url.as_str()], args].concat()).current_dir(dir).output().unwrap().into()
}

/// Every table's rows (as text, in order), every view's definition, every type: what a restore must keep.
fn content(db: &TestDb) -> String {
    text(
        db,
        r#"SELECT coalesce(string_agg(t, E'\n' ORDER BY t), '') AS text FROM (
             SELECT format('%s.%s: %s', n.nspname, c.relname,
                           (xpath('/row/c/text()', query_to_xml(format('SELECT string_agg(x::text, %L ORDER BY x::text) AS c FROM %I.%I x', '|', n.nspname, c.relname), false, false, '')))[1]::text) AS t
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
             UNION ALL
             SELECT format('view %s.%s: %s', n.nspname, c.relname, pg_get_viewdef(c.oid))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
             UNION ALL
             SELECT format('type %s.%s %s', n.nspname, t.typname, t.typtype)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.typtype IN ('e', 'd') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           ) s"#,
    )
}

/// A file shaped as pg_dump writes one, holding `body`.
fn crafted(dir: &Path, name: &str, body: &str) -> String {
    let sql = format!(
        "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
         SET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n{body}\n\n\
         --\n-- PostgreSQL database dump complete\n--\n\n"
    );
    let path = dir.join(name);
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    gzip.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    assert!(gzip.wait().unwrap().success());
    path.to_str().unwrap().to_string()
}

/// A database made by `sql`, and its backup (`db backup`) in `dir`.
fn backed_up(dir: &Dir, sql: &str) -> (TestDb, String) {
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute(sql).unwrap();
    let out = xtask(&dir.0, source.direct_url(), &["db", "backup", "out"]);
    let file = out.assert_ok().stdout.lines().last().unwrap().trim().to_string();
    (source, file)
}

/// A target with data of its own, and its content: what a refused or failed restore must leave.
fn a_target() -> (TestDb, String) {
    let target = TestDb::empty().unwrap();
    target.conn().unwrap().batch_execute("CREATE TABLE keep (id int); INSERT INTO keep VALUES (1);").unwrap();
    let before = content(&target);
    (target, before)
}

fn restore(dir: &Path, url: &Url, file: &str) -> Run {
    xtask(dir, url, &["db", "restore", file, "--yes", "--no-safety-backup"])
}

fn roles_named(db: &TestDb, pattern: &str) -> String {
    text(db, &format!("SELECT rolname::text AS text FROM pg_roles WHERE rolname LIKE '{pattern}' ORDER BY 1"))
}

#[test]
fn what_pg_dump_never_writes_is_refused_by_verify_and_restore_with_its_line() {
    let dir = Dir::new("refused");
    let (target, before) = a_target();
    for (n, (body, needle)) in [
        ("DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id > /tmp/railgun-pwned'''; END $$;", "`DO`"),
        ("CREATE ROLE railgun_pwned SUPERUSER LOGIN PASSWORD 'x';", "`CREATE ROLE`"),
        ("ALTER ROLE railgun PASSWORD 'locked-out';", "`ALTER ROLE`"),
        ("GRANT pg_execute_server_program TO PUBLIC;", "of a role"),
        ("ALTER DATABASE postgres SET default_transaction_read_only = on;", "`ALTER DATABASE`"),
        ("SELECT pg_catalog.pg_read_file('/etc/passwd');", "calls a function"),
        ("SET client_encoding = 'SJIS';", "UTF8"),
        ("SET \"standard_conforming_strings\" = off;\nSELECT 'x';", "`SET \"standard_conforming_strings\"`"),
        ("SELECT '\\' ; COMMIT ; CREATE TABLE x (); -- ';", "SELECT"),
        ("SET SESSION AUTHORIZATION railgun;", "`SET session`"),
        ("CALL public.p();", "`CALL`"),
    ]
    .into_iter()
    .enumerate()
    {
        let file = crafted(&dir.0, &format!("crafted-{n}.sql.gz"), body);
        let verify = xtask(&dir.0, target.direct_url(), &["db", "verify", &file]);
        verify.assert_fails_with(needle);
        assert!(verify.stderr.contains("line 10"), "{body}: {}", verify.stderr);
        restore(&dir.0, target.direct_url(), &file).assert_fails_with(needle);
        assert_eq!(content(&target), before, "{body}");
    }
    assert_eq!(roles_named(&target, "railgun_pwned%"), "");
}

#[test]
fn code_a_rule_cannot_see_runs_with_the_restore_owners_rights_only() {
    let dir = Dir::new("rights");
    let (target, before) = a_target();
    // Each passes the statement check: the harm is inside a function body, run by a trigger
    // while the data loads (an index expression or a default would run it the same way).
    for (n, harm) in [
        "EXECUTE 'CREATE ROLE railgun_pwned SUPERUSER'",
        "EXECUTE 'ALTER ROLE railgun PASSWORD ''locked-out'''",
        "PERFORM pg_catalog.pg_read_file('/etc/passwd')",
        "EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id'''",
        "EXECUTE 'RESET ROLE'; EXECUTE 'CREATE ROLE railgun_pwned SUPERUSER'",
        "PERFORM set_config('role', 'railgun', false); EXECUTE 'CREATE ROLE railgun_pwned SUPERUSER'",
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            "CREATE FUNCTION public.harm() RETURNS trigger LANGUAGE plpgsql AS $_$ BEGIN {harm}; RETURN NEW; END $_$;\n\
             CREATE TABLE public.t (id integer);\n\
             CREATE TRIGGER t_harm BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.harm();\n\
             COPY public.t (id) FROM stdin;\n1\n2\n\\.\n"
        );
        let file = crafted(&dir.0, &format!("rights-{n}.sql.gz"), &body);
        xtask(&dir.0, target.direct_url(), &["db", "verify", &file]).assert_ok();
        let run = restore(&dir.0, target.direct_url(), &file);
        run.assert_fails_with("rolled back: the database is as it was");
        assert!(
            run.stderr.contains("permission denied") || run.stderr.contains("must be") || run.stderr.contains("cannot"),
            "{harm}: {}",
            run.stderr
        );
        assert_eq!(content(&target), before, "{harm}");
        assert_eq!(roles_named(&target, "railgun_pwned%"), "", "{harm}");
    }
    // A SECURITY DEFINER function comes out owned by the restore owner, never a superuser, and is named.
    let body = "CREATE FUNCTION public.definer() RETURNS text LANGUAGE sql SECURITY DEFINER AS $_$ SELECT current_user::text $_$;\n\
                CREATE TABLE public.t (id integer);\n";
    let file = crafted(&dir.0, "definer.sql.gz", body);
    let run = restore(&dir.0, target.direct_url(), &file);
    run.assert_ok();
    assert!(
        run.stderr.contains("SECURITY DEFINER functions (1)") && run.stderr.contains("definer()"),
        "{}",
        run.stderr
    );
    let owner = text(
        &target,
        "SELECT format('%s %s', r.rolname, r.rolsuper::text) AS text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = 'definer'",
    );
    assert!(owner.starts_with("railgun_owner_") && owner.ends_with(" false"), "{owner}");
    assert_eq!(text(&target, "SELECT public.definer() AS text"), owner.split(' ').next().unwrap());
    // The restore owner cannot log in once the restore is over.
    let login = text(
        &target,
        &format!(
            "SELECT rolcanlogin::text AS text FROM pg_roles WHERE rolname = '{}'",
            owner.split(' ').next().unwrap()
        ),
    );
    assert_eq!(login, "false");
}

/// A schema of the shapes real projects' dumps have: partitions (pagila), views across schemas
/// (aredl), enums, domains, triggers, an identity column, grants.
const SHAPES: &str = r#"
CREATE SCHEMA arepl;
CREATE SCHEMA aredl;
CREATE TYPE public.mpaa_rating AS ENUM ('G', 'PG', 'R');
CREATE DOMAIN public.year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE TABLE public.payment (id int GENERATED ALWAYS AS IDENTITY, paid date NOT NULL, amount numeric(5,2), PRIMARY KEY (id, paid))
    PARTITION BY RANGE (paid);
CREATE TABLE public.payment_p2022_01 PARTITION OF public.payment FOR VALUES FROM ('2022-01-01') TO ('2022-02-01');
CREATE TABLE public.payment_p2022_02 PARTITION OF public.payment FOR VALUES FROM ('2022-02-01') TO ('2022-03-01');
CREATE INDEX payment_amount ON public.payment (amount);
INSERT INTO public.payment (paid, amount) SELECT date '2022-01-01' + (g % 50), g / 7.0 FROM generate_series(1, 200) g;
CREATE TABLE aredl.levels (id int PRIMARY KEY, name text, rating public.mpaa_rating, released public.year);
CREATE TABLE arepl.levels (id int PRIMARY KEY REFERENCES aredl.levels (id), points int);
INSERT INTO aredl.levels SELECT g, 'level ' || g, 'PG', 2000 + g FROM generate_series(1, 20) g;
INSERT INTO arepl.levels SELECT g, g * 10 FROM generate_series(1, 20) g;
CREATE VIEW arepl.ranked AS SELECT l.id, l.name, p.points FROM aredl.levels l JOIN arepl.levels p USING (id);
CREATE VIEW aredl.top AS SELECT * FROM arepl.ranked WHERE points > 100;
CREATE FUNCTION aredl.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE INSERT ON aredl.levels FOR EACH ROW EXECUTE FUNCTION aredl.touch();
"#;

#[test]
fn real_schemas_restore_into_an_empty_database_and_over_an_existing_one() {
    let dir = Dir::new("shapes");
    let (source, file) = backed_up(&dir, SHAPES);
    let expected = content(&source);
    let target = TestDb::empty().unwrap();
    restore(&dir.0, target.direct_url(), &file).assert_ok();
    assert_eq!(content(&target), expected, "into an empty database");
    // Over itself, changed meanwhile: the backup's rows come back.
    target.conn().unwrap().batch_execute("DELETE FROM public.payment WHERE amount > 10; DROP VIEW aredl.top;").unwrap();
    restore(&dir.0, target.direct_url(), &file).assert_ok();
    assert_eq!(content(&target), expected, "over an existing database");
    // The trigger came back too, and the partitions route rows.
    target.conn().unwrap().batch_execute("INSERT INTO aredl.levels VALUES (99, 'lower', 'G', 2001); INSERT INTO public.payment (paid) VALUES ('2022-02-03');").unwrap();
    assert_eq!(text(&target, "SELECT name AS text FROM aredl.levels WHERE id = 99"), "LOWER");
}

#[test]
fn a_database_without_standard_strings_backs_up_and_restores() {
    let dir = Dir::new("strings");
    let (source, file) = backed_up(
        &dir,
        r#"DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off', current_database()); END $$;
               CREATE TABLE public.quotes (id int, body text DEFAULT E'back\\slash ''q''');
               INSERT INTO public.quotes VALUES (1, E'a\\b'), (2, E'it''s \\'' ; COMMIT ; --');
               COMMENT ON TABLE public.quotes IS E'comment with \\ and '' ;';"#,
    );
    let target = TestDb::empty().unwrap();
    restore(&dir.0, target.direct_url(), &file).assert_ok();
    assert_eq!(content(&target), content(&source));
    let comment = text(&target, "SELECT obj_description('public.quotes'::regclass) AS text");
    assert_eq!(comment, "comment with \\ and ' ;");
}

#[test]
fn an_extension_that_needs_a_superuser_is_refused_before_anything_runs_unless_allowed() {
    let dir = Dir::new("extensions");
    // dblink needs a superuser (it reaches other databases); pgcrypto is trusted.
    let (source, file) = backed_up(
        &dir,
        "CREATE EXTENSION dblink; CREATE EXTENSION pgcrypto;
             CREATE TABLE public.tokens (id uuid DEFAULT gen_random_uuid() PRIMARY KEY, note text);
             INSERT INTO public.tokens (note) VALUES ('a'), ('b');",
    );
    let (target, before) = a_target();
    let run = xtask(&dir.0, target.direct_url(), &["db", "restore", &file, "--yes"]);
    run.assert_fails_with("need a superuser: dblink");
    assert!(run.stderr.contains("--allow-extension dblink") && !run.stderr.contains("pgcrypto"), "{}", run.stderr);
    assert!(!run.stderr.contains("safety backup"), "refused before anything else: {}", run.stderr);
    assert_eq!(content(&target), before);
    let run = xtask(
        &dir.0,
        target.direct_url(),
        &["db", "restore", &file, "--yes", "--no-safety-backup", "--allow-extension", "dblink"],
    );
    run.assert_ok();
    assert_eq!(content(&target), content(&source));
    assert_eq!(
        text(&target, "SELECT string_agg(extname::text, ',' ORDER BY extname) AS text FROM pg_extension"),
        "dblink,pgcrypto,plpgsql"
    );
}

#[test]
fn a_copy_runs_the_sources_functions_with_the_restore_owners_rights_only() {
    let dir = Dir::new("copy-rights");
    let source = TestDb::empty().unwrap();
    let target = TestDb::empty().unwrap();
    // The source's owner wrote a function that does harm anywhere but in its own database; a
    // materialized view calls it, and the copy refreshes the view on the target.
    source
        .conn()
        .unwrap()
        .batch_execute(&format!(
            "CREATE FUNCTION public.harm() RETURNS int LANGUAGE plpgsql AS $$
             BEGIN
               IF current_database() <> '{}' THEN EXECUTE 'CREATE ROLE railgun_copy_pwned SUPERUSER'; END IF;
               RETURN 1;
             END $$;
             CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1);
             CREATE MATERIALIZED VIEW public.mv AS SELECT public.harm() AS x;",
            source.name()
        ))
        .unwrap();
    target.conn().unwrap().batch_execute("CREATE TABLE keep (id int); INSERT INTO keep VALUES (1);").unwrap();
    let before = content(&target);
    let run: Run = isolated(&[
        "db",
        "copy",
        "--from",
        source.direct_url().as_str(),
        "--to",
        target.direct_url().as_str(),
        "--yes",
        "--no-safety-backup",
    ])
    .current_dir(&dir.0)
    .output()
    .unwrap()
    .into();
    run.assert_fails_with("rolled back: the database is as it was");
    assert!(
        run.stderr.contains("must be superuser to create superusers")
            || run.stderr.contains("permission denied to create role"),
        "{}",
        run.stderr
    );
    assert_eq!(content(&target), before);
    assert_eq!(roles_named(&target, "railgun_copy_pwned"), "");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn restore_backends(db: &TestDb, filter: &str) -> i64 {
    use diesel::RunQueryDsl;
    let query = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' AND datname = current_database() {filter}"
    );
    diesel::sql_query(query).get_result::<Count>(&mut db.conn().unwrap()).unwrap().n
}

#[test]
fn a_restore_killed_while_the_server_builds_an_index_changes_nothing() {
    let dir = Dir::new("killindex");
    // An index whose build takes the server a while: a restore's last long step.
    let (_source, file) = backed_up(
        &dir,
        "CREATE TABLE big (id int, body text);
             INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 1000000) g;
             CREATE INDEX big_body ON big (body, id);",
    );
    let (target, before) = a_target();
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGKILL", libc::SIGKILL), ("SIGHUP", libc::SIGHUP)] {
        let mut child = isolated(&[
            "--database-url",
            target.direct_url().as_str(),
            "db",
            "restore",
            &file,
            "--yes",
            "--no-safety-backup",
        ])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while restore_backends(&target, "AND query LIKE 'CREATE INDEX%' AND state = 'active'") == 0 {
            assert!(child.try_wait().unwrap().is_none(), "{name}: the restore ended before its index build was seen");
            assert!(Instant::now() < deadline, "{name}: the index build never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The xtask alone, as a supervisor or the OOM killer would signal it.
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(child.id() as i32, signal) };
        assert!(!child.wait().unwrap().success(), "{name}: killed, yet the restore succeeded");
        let deadline = Instant::now() + Duration::from_secs(60);
        while restore_backends(&target, "") > 0 {
            assert!(Instant::now() < deadline, "{name}: the killed restore's session lives on");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(content(&target), before, "after {name}: the target is as it was");
    }
}

/// A login role owning `db`, dropped (with what it owns there) when this goes.
struct Owner<'a> {
    db: &'a TestDb,
    role: String,
}

impl<'a> Owner<'a> {
    fn of(db: &'a TestDb, role: String) -> Owner<'a> {
        db.conn()
            .unwrap()
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD 'pw'; ALTER DATABASE \"{}\" OWNER TO {role}; ALTER SCHEMA public OWNER TO {role};",
                db.name()
            ))
            .unwrap();
        Owner { db, role }
    }

    fn url(&self) -> Url {
        let mut url = self.db.direct_url().clone();
        url.set_username(&self.role).unwrap();
        url.set_password(Some("pw")).unwrap();
        url
    }
}

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        let role = &self.role;
        let _ = self.db.conn().map(|mut c| {
            c.batch_execute(&format!(
                "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role};"
            ))
        });
    }
}

#[test]
fn real_schemas_restore_as_an_ordinary_owner_too() {
    // A managed provider's case: the URL's role owns the database and is no superuser, so it
    // loads as itself and pg_dump's --clean statements empty what the backup replaces.
    let dir = Dir::new("shapes-owner");
    let (source, file) = backed_up(&dir, SHAPES);
    let expected = content(&source);
    let target = TestDb::empty().unwrap();
    let owner = Owner::of(&target, format!("shapes_owner_{}", std::process::id()));
    restore(&dir.0, &owner.url(), &file).assert_ok();
    assert_eq!(content(&target), expected, "into an empty database");
    target.conn().unwrap().batch_execute("DELETE FROM public.payment WHERE amount > 10; DROP VIEW aredl.top;").unwrap();
    restore(&dir.0, &owner.url(), &file).assert_ok();
    assert_eq!(content(&target), expected, "over an existing database");
}

#[test]
fn the_restore_owner_of_a_dropped_database_goes_with_the_next_restore() {
    let dir = Dir::new("owner-gone");
    let (source, file) = backed_up(&dir, "CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1);");
    let gone = format!("railgun_rights_gone_{}", std::process::id());
    let mut conn = source.conn().unwrap();
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {gone}")).unwrap();
    conn.batch_execute(&format!("CREATE DATABASE {gone}")).unwrap();
    let mut url = source.direct_url().clone();
    url.set_path(&gone);
    restore(&dir.0, &url, &file).assert_ok();
    let role = format!("railgun_owner_{gone}");
    assert_eq!(roles_named(&source, &role), role);
    conn.batch_execute(&format!("DROP DATABASE {gone} WITH (FORCE)")).unwrap();
    let target = TestDb::empty().unwrap();
    restore(&dir.0, target.direct_url(), &file).assert_ok();
    assert_eq!(roles_named(&source, &role), "", "the owner of a dropped database is dropped");
    // A database of the same name made again: its restore owner is made again, nothing in the way.
    conn.batch_execute(&format!("CREATE DATABASE {gone}")).unwrap();
    let first = restore(&dir.0, &url, &file);
    conn.batch_execute(&format!("DROP DATABASE {gone} WITH (FORCE)")).unwrap();
    conn.batch_execute(&format!("CREATE DATABASE {gone}")).unwrap();
    let again = restore(&dir.0, &url, &file);
    conn.batch_execute(&format!("DROP DATABASE {gone} WITH (FORCE)")).unwrap();
    first.assert_ok();
    again.assert_ok();
}

#[test]
fn event_triggers_are_left_out_and_named_unless_asked_for() {
    let dir = Dir::new("event-triggers");
    let (_source, file) = backed_up(
        &dir,
        "CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1);
         CREATE FUNCTION public.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl'; END $$;
         CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION public.note_ddl();",
    );
    let target = TestDb::empty().unwrap();
    let triggers = "SELECT coalesce(string_agg(evtname::text, ','), '') AS text FROM pg_event_trigger";
    let run = restore(&dir.0, target.direct_url(), &file);
    run.assert_ok();
    assert!(
        run.stderr.contains("event triggers (note_ddl)") && run.stderr.contains("--with-event-triggers"),
        "{}",
        run.stderr
    );
    assert_eq!(text(&target, triggers), "");
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM public.t"), "1");
    let run = xtask(
        &dir.0,
        target.direct_url(),
        &["db", "restore", &file, "--yes", "--no-safety-backup", "--with-event-triggers"],
    );
    let created = text(&target, triggers);
    target.conn().unwrap().batch_execute("DROP EVENT TRIGGER IF EXISTS note_ddl").unwrap();
    run.assert_ok();
    assert!(run.stderr.contains("created the backup's event trigger(s) as asked: note_ddl"), "{}", run.stderr);
    assert_eq!(created, "note_ddl");
}

#[test]
fn grants_come_back_where_their_roles_exist_and_are_named_where_not() {
    let dir = Dir::new("grants");
    let reader = format!("rights_reader_{}", std::process::id());
    let gone = format!("rights_gone_{}", std::process::id());
    let source = TestDb::empty().unwrap();
    source
        .conn()
        .unwrap()
        .batch_execute(&format!(
            "CREATE ROLE {reader}; CREATE ROLE {gone};
             CREATE TABLE public.t (id int); GRANT SELECT ON public.t TO {reader}; GRANT INSERT ON public.t TO {gone};"
        ))
        .unwrap();
    let out = xtask(&dir.0, source.direct_url(), &["db", "backup", "out", "--with-privileges"]);
    let file = out.assert_ok().stdout.lines().last().unwrap().trim().to_string();
    // The backup goes to a server where one of the two roles is gone.
    source.conn().unwrap().batch_execute(&format!("REVOKE ALL ON public.t FROM {gone}; DROP ROLE {gone};")).unwrap();
    let target = TestDb::empty().unwrap();
    let run = restore(&dir.0, target.direct_url(), &file);
    let grants = text(
        &target,
        "SELECT coalesce(string_agg(format('%s:%s', grantee, privilege_type), ',' ORDER BY grantee, privilege_type), '') AS text
         FROM information_schema.role_table_grants WHERE table_name = 't' AND grantee LIKE 'rights_%'",
    );
    source.conn().unwrap().batch_execute(&format!("REVOKE ALL ON public.t FROM {reader};")).ok();
    target.conn().unwrap().batch_execute(&format!("REVOKE ALL ON public.t FROM {reader}; DROP ROLE {reader};")).ok();
    run.assert_ok();
    assert_eq!(grants, format!("{reader}:SELECT"));
    assert!(run.stderr.contains(&format!("left out: GRANT INSERT ON TABLE public.t TO {gone}")), "{}", run.stderr);
}
