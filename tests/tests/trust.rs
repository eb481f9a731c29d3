//! Trust boundaries, tried as users and attackers would: a real dump with every tricky shape
//! restores exactly; a lock held elsewhere fails the restore in seconds naming its holder; a
//! `?password=` never reaches a command line; several `up` at once, and two checkouts on one
//! machine, never destroy each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{QueryableByName, RunQueryDsl};
use tests::{Project, Run, root, text, xtask_bin};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("railgun-trust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn xtask(dir: &Path, url: &url::Url, args: &[&str]) -> Command {
    let mut cmd = Command::new(xtask_bin());
    cmd.arg("--database-url")
        .arg(url.as_str())
        .args(args)
        .current_dir(dir)
        .env("RAILGUN_ENV_FILE", dir.join("no.env"))
        .env_remove("DATABASE_URL")
        .env_remove("APP_ENV")
        .stdin(Stdio::null());
    cmd
}

/// Every table's rows and every function's definition, as text.
fn content(db: &TestDb) -> String {
    text(
        db,
        "SELECT coalesce(string_agg(t, E'\\n' ORDER BY t), '') AS text FROM (
            SELECT format('%s: %s', 'tricky', (SELECT string_agg(format('%s=%s', id, body), ' | ' ORDER BY id) FROM tricky)) AS t
            UNION ALL SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
         ) s",
    )
}

const TRICKY: &str = r#"
CREATE TABLE tricky (id int PRIMARY KEY, body text);
INSERT INTO tricky VALUES
  (1, E'\\! touch /tmp/railgun-should-not-exist'),
  (2, E'line one\n\\connect postgres\nline three'),
  (3, 'COMMIT; -- in a string'),
  (4, E'tab\there, backslash \\ and \\. alone'),
  (5, E'\\.'),
  (6, '$$ dollar $$ and '' quote'),
  (7, E'ends with a backslash \\');
CREATE FUNCTION f_plpgsql() RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
  -- \! not a meta-command in here
  RETURN 'BEGIN; COMMIT; \gexec';
END
$body$;
CREATE FUNCTION f_atomic(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN x ELSE 0 END;
END;
CREATE FUNCTION "weird ""name"""() RETURNS text LANGUAGE sql AS $$ SELECT E'\\'::text $$;
"#;

#[test]
fn a_real_dump_with_every_tricky_shape_restores_exactly() {
    let dir = Dir::new("tricky");
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute(TRICKY).unwrap();
    let expected = content(&source);
    let out: Run = xtask(&dir.0, source.direct_url(), &["db", "backup", "out"]).output().unwrap().into();
    out.assert_ok();
    let file = out.stdout.lines().last().unwrap().trim().to_string();
    xtask(&dir.0, source.direct_url(), &["db", "verify", &file]).output().map(Run::from).unwrap().assert_ok();
    let target = TestDb::empty().unwrap();
    let out: Run = xtask(&dir.0, target.direct_url(), &["db", "restore", &file, "--yes", "--no-safety-backup"])
        .output()
        .unwrap()
        .into();
    out.assert_ok();
    assert_eq!(content(&target), expected);
    assert!(!Path::new("/tmp/railgun-should-not-exist").exists());
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A backup of a database with `orders` (one row), and a target whose `orders` has two rows.
fn orders_backup_and_target(dir: &Dir) -> (String, TestDb) {
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);").unwrap();
    let out: Run = xtask(&dir.0, source.direct_url(), &["db", "backup", "out"]).output().unwrap().into();
    let file = out.assert_ok().stdout.lines().last().unwrap().trim().to_string();
    let target = TestDb::empty().unwrap();
    target.conn().unwrap().batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2);").unwrap();
    (file, target)
}

#[test]
fn a_lock_held_elsewhere_fails_the_restore_naming_its_holder_and_leaves_nothing_queued() {
    let dir = Dir::new("locked");
    let (file, target) = orders_backup_and_target(&dir);
    // Another session reads orders in an open transaction: the dump's DROP TABLE must wait.
    let mut reader = target.conn().unwrap();
    reader.batch_execute("SET application_name = 'the-reader'; BEGIN; SELECT count(*) FROM orders;").unwrap();
    let started = Instant::now();
    let out: Run = xtask(
        &dir.0,
        target.direct_url(),
        &["db", "restore", &file, "--yes", "--no-safety-backup", "--lock-timeout", "1s"],
    )
    .output()
    .unwrap()
    .into();
    let took = started.elapsed();
    out.assert_fails_with("waited 1000ms for a lock and was rolled back");
    assert!(out.stderr.contains("public.orders") || out.stderr.contains("orders by pid"), "{}", out.stderr);
    assert!(out.stderr.contains("the-reader") && out.stderr.contains("idle in transaction"), "{}", out.stderr);
    assert!(took < Duration::from_secs(60), "the restore gave up ({took:?})");
    // Nothing of the restore waits on the server any more: new readers of orders are not blocked.
    let waiting: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' AND datname = current_database()",
    )
    .get_result(&mut target.conn().unwrap())
    .unwrap();
    assert_eq!(waiting.n, 0);
    reader.batch_execute("COMMIT").unwrap();
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM orders"), "2", "the target is as it was");
}

/// The command lines of `parent`'s descendants named `name`.
fn command_lines_of(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if comm.trim() == name
            && let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
        {
            lines.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    lines
}

#[test]
fn a_query_string_password_never_reaches_a_command_line() {
    let dir = Dir::new("query-password");
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute("CREATE TABLE things (id int); INSERT INTO things VALUES (1);").unwrap();
    let mut url = source.direct_url().clone();
    let password = url.password().unwrap().to_string();
    url.set_password(None).unwrap();
    url.query_pairs_mut().append_pair("password", &password);
    // pg_dump waits on a writer's lock, long enough to read its command line.
    let mut holder = source.conn().unwrap();
    holder.batch_execute("BEGIN; LOCK TABLE things IN ACCESS EXCLUSIVE MODE;").unwrap();
    let child =
        xtask(&dir.0, &url, &["db", "backup", "out"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let lines = command_lines_of("pg_dump");
        if let Some(line) = lines.into_iter().find(|l| l.contains(source.name())) {
            break line;
        }
        assert!(Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    holder.batch_execute("COMMIT").unwrap();
    let out: Run = child.wait_with_output().unwrap().into();
    out.assert_ok();
    assert!(!seen.contains(&password), "the password is on pg_dump's command line: {seen}");
    assert!(!out.all().contains(&password));
}

#[test]
fn three_ups_at_once_share_one_set_of_containers() {
    let project = Project::new("three-ups");
    let children: Vec<_> = (0..3)
        .map(|_| {
            project.command(&["up", "--no-migrate"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| c.wait_with_output().unwrap().into()).collect();
    for run in &runs {
        run.assert_ok();
    }
    let urls: Vec<&str> =
        runs.iter().filter_map(|r| r.stdout.lines().find(|l| l.starts_with("DATABASE_URL="))).collect();
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(|u| *u == urls[0]), "{urls:?}");
    let mut containers = project.containers();
    containers.sort();
    assert_eq!(containers, [format!("{}-postgres", project.name), format!("{}-redis", project.name)]);
}

/// A checkout of the repository of the test's own (what `up` and `down` read of it).
struct Checkout {
    dir: Dir,
}

impl Checkout {
    fn new(tag: &str) -> Checkout {
        let dir = Dir::new(tag);
        std::fs::copy(root().join(".env.example"), dir.0.join(".env.example")).unwrap();
        Checkout { dir }
    }

    fn run(&self, args: &[&str]) -> Run {
        Command::new(xtask_bin())
            .args(args)
            .current_dir(&self.dir.0)
            .env("RAILGUN_CHECKOUT", &self.dir.0)
            .env_remove("RAILGUN_PROJECT")
            .env_remove("RAILGUN_ENV_FILE")
            .env_remove("RAILGUN_POSTGRES_PORT")
            .env_remove("RAILGUN_REDIS_PORT")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("RAILGUN_POSTGRES_PASSWORD")
            .env_remove("APP_ENV")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    fn setting(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir.0.join(".env")).unwrap();
        text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_default().to_string()
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let project = self.setting("RAILGUN_PROJECT");
        if project.starts_with("railgun-") && project != "railgun" {
            for c in tests::containers_labelled(&format!("org.railgun.project={project}")) {
                let _ = Command::new("docker").args(["rm", "-f", "-v", &c]).output();
            }
            for v in ["postgres-data", "redis-data"] {
                let _ = Command::new("docker").args(["volume", "rm", "-f", &format!("{project}-{v}")]).output();
            }
        }
    }
}

#[test]
fn two_checkouts_on_one_machine_keep_their_own_services_and_data() {
    let (a, b) = (Checkout::new("checkout-a"), Checkout::new("checkout-b"));
    a.run(&["up", "--no-migrate"]).assert_ok();
    b.run(&["up", "--no-migrate"]).assert_ok();
    let (project_a, project_b) = (a.setting("RAILGUN_PROJECT"), b.setting("RAILGUN_PROJECT"));
    assert!(project_a.starts_with("railgun-") && project_b.starts_with("railgun-"), "{project_a} {project_b}");
    assert_ne!(project_a, project_b);
    assert_ne!(a.setting("DATABASE_URL"), b.setting("DATABASE_URL"), "each checkout has its own server and port");
    let url_b = url::Url::parse(&b.setting("DATABASE_URL")).unwrap();
    let mut conn_b = dbkit::connect::establish(&url_b).unwrap();
    conn_b.batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (42);").unwrap();
    // A second `up` in either finds its own, and `status` names its own.
    b.run(&["up", "--no-migrate"]).assert_ok();
    assert!(a.run(&["status", "--json"]).stdout.contains(&format!("\"{project_a}-postgres\"")));
    // Deleting a's data leaves b's containers and rows alone.
    a.run(&["down", "--volumes", "--yes"]).assert_ok();
    assert!(tests::containers_labelled(&format!("org.railgun.project={project_a}")).is_empty());
    assert_eq!(tests::containers_labelled(&format!("org.railgun.project={project_b}")).len(), 2);
    let rows: Count = diesel::sql_query("SELECT count(*) AS n FROM kept WHERE id = 42")
        .get_result(&mut dbkit::connect::establish(&url_b).unwrap())
        .unwrap();
    assert_eq!(rows.n, 1, "b's data is intact");
}

#[test]
fn an_env_file_with_a_byte_order_mark_is_read() {
    let dir = Dir::new("bom");
    let db = TestDb::empty().unwrap();
    std::fs::write(dir.0.join("bom.env"), format!("\u{feff}DATABASE_URL={}\n", db.direct_url())).unwrap();
    let out: Run = Command::new(xtask_bin())
        .args(["migration", "show", "--migration-dir"])
        .arg(root().join("db/migrations"))
        .current_dir(&dir.0)
        .env("RAILGUN_ENV_FILE", dir.0.join("bom.env"))
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    out.assert_ok();
    assert!(out.all().contains("pending"), "{}", out.all());
    assert_eq!(out.stderr.matches("hint:").count(), 0, "{}", out.stderr);
}

#[test]
fn status_shows_the_port_the_container_listens_on() {
    let project = Project::new("status-port");
    project.run(&["up", "--no-migrate"]).assert_ok();
    let real = project.setting("REDIS_URL").unwrap();
    let env = std::fs::read_to_string(project.env_file()).unwrap();
    std::fs::write(project.env_file(), env.replace(&real, "redis://127.0.0.1:1/0")).unwrap();
    let out = project.run(&["status", "--json"]);
    out.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let redis = rows.as_array().unwrap().iter().find(|r| r["service"] == "redis").unwrap();
    assert_eq!(redis["url"].as_str().unwrap(), real, "{}", out.all());
    assert_eq!(redis["healthy"], true);
    assert!(out.stderr.contains("says port 1"), "{}", out.stderr);
}

/// A throwaway Postgres reached through its Unix socket only, in a folder of the test's own.
struct SocketServer {
    name: String,
    dir: Dir,
}

impl SocketServer {
    fn start() -> SocketServer {
        let dir = Dir::new("socket");
        let sockets = dir.0.join("run");
        std::fs::create_dir_all(&sockets).unwrap();
        std::fs::set_permissions(
            &sockets,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
        )
        .unwrap();
        let name = format!("railgun-test-socket-{}", std::process::id());
        let image = dbkit::docker::images::POSTGRES_OFFLINE;
        let out = Command::new("docker")
            .args(["run", "-d", "--rm", "--name", &name, "--label", &format!("org.railgun.project={name}")])
            .args(["-v", &format!("{}:/var/run/postgresql", sockets.display())])
            .args(["-e", "POSTGRES_USER=railgun", "-e", "POSTGRES_PASSWORD=socket-pw", "--network", "none", image])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let server = SocketServer { name, dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        // The image's first start initialises with a temporary server, then restarts for good.
        let initialised = || {
            let logs = Command::new("docker").args(["logs", &server.name]).output().unwrap();
            String::from_utf8_lossy(&logs.stdout).contains("init process complete")
                || String::from_utf8_lossy(&logs.stderr).contains("init process complete")
        };
        while !initialised() || dbkit::connect::establish(&server.url_encoded_host()).is_err() {
            assert!(Instant::now() < deadline, "the socket server never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn sockets(&self) -> String {
        self.dir.0.join("run").display().to_string()
    }

    /// `postgres://railgun:pw@%2Fpath%2Fto%2Frun:5432/postgres`
    fn url_encoded_host(&self) -> url::Url {
        let host: String = url::form_urlencoded::byte_serialize(self.sockets().as_bytes()).collect();
        url::Url::parse(&format!("postgres://railgun:socket-pw@{host}:5432/postgres")).unwrap()
    }

    /// `postgres:///postgres?host=/path/to/run&user=railgun&password=pw`
    fn url_host_param(&self) -> url::Url {
        let mut url = url::Url::parse("postgres:///postgres").unwrap();
        url.query_pairs_mut()
            .append_pair("host", &self.sockets())
            .append_pair("user", "railgun")
            .append_pair("password", "socket-pw");
        url
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
    }
}

#[test]
fn unix_socket_urls_back_up_and_restore_in_both_forms() {
    let server = SocketServer::start();
    let work = Dir::new("socket-work");
    let mut conn = dbkit::connect::establish(&server.url_encoded_host()).unwrap();
    conn.batch_execute("CREATE TABLE over_socket (id int); INSERT INTO over_socket VALUES (1), (2);").unwrap();
    for (backup_url, restore_url) in
        [(server.url_encoded_host(), server.url_host_param()), (server.url_host_param(), server.url_encoded_host())]
    {
        let out: Run = xtask(&work.0, &backup_url, &["db", "backup", "out"]).output().unwrap().into();
        let file = out.assert_ok().stdout.lines().last().unwrap().trim().to_string();
        conn.batch_execute("INSERT INTO over_socket VALUES (3)").unwrap();
        let out: Run = xtask(&work.0, &restore_url, &["db", "restore", &file, "--yes", "--no-safety-backup"])
            .output()
            .unwrap()
            .into();
        out.assert_ok();
        assert!(!out.all().contains("socket-pw"), "{}", out.all());
        let rows: Count = diesel::sql_query("SELECT count(*) AS n FROM over_socket").get_result(&mut conn).unwrap();
        assert_eq!(rows.n, 2, "the restore put back the backup's rows");
    }
}

#[test]
fn ctrl_c_midway_leaves_nothing_queued_and_the_target_as_it_was() {
    use std::os::unix::process::CommandExt;
    let dir = Dir::new("ctrl-c");
    let (file, target) = orders_backup_and_target(&dir);
    let mut reader = target.conn().unwrap();
    reader.batch_execute("BEGIN; SELECT count(*) FROM orders;").unwrap();
    // Its own process group, as a terminal's foreground job: Ctrl-C reaches the xtask and psql.
    let child = xtask(
        &dir.0,
        target.direct_url(),
        &["db", "restore", &file, "--yes", "--no-safety-backup", "--lock-timeout", "60s"],
    )
    .process_group(0)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let restoring = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' \
                     AND datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while diesel::sql_query(restoring).get_result::<Count>(&mut target.conn().unwrap()).unwrap().n == 0 {
        assert!(Instant::now() < deadline, "the restore never waited for the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: a signal to the process group we just made.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let out: Run = child.wait_with_output().unwrap().into();
    assert!(!out.ok(), "interrupted, yet the restore succeeded");
    let gone = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'railgun-restore-%' \
                AND datname = current_database()";
    let deadline = Instant::now() + Duration::from_secs(15);
    while diesel::sql_query(gone).get_result::<Count>(&mut target.conn().unwrap()).unwrap().n > 0 {
        assert!(Instant::now() < deadline, "the interrupted restore is still queued on the server");
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.batch_execute("COMMIT").unwrap();
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM orders"), "2", "the target is as it was");
}

/// A checkout with what makes it one to the xtask: a workspace Cargo.toml listing `xtask`, and
/// the folder.
fn bare_checkout(tag: &str) -> Dir {
    let dir = Dir::new(tag);
    std::fs::write(dir.0.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\", \"db\"]\n").unwrap();
    std::fs::create_dir_all(dir.0.join("xtask")).unwrap();
    std::fs::create_dir_all(dir.0.join("db/migrations")).unwrap();
    dir
}

/// `status` run in `dir`, with cargo's `CARGO_MANIFEST_DIR` as given (none: a binary started by
/// hand) and nothing else that would name a checkout or a project.
fn status_in(dir: &Path, manifest_dir: Option<&Path>) -> Run {
    let mut cmd = Command::new(xtask_bin());
    cmd.arg("status")
        .current_dir(dir)
        .env_remove("RAILGUN_CHECKOUT")
        .env_remove("RAILGUN_PROJECT")
        .env_remove("RAILGUN_ENV_FILE")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    match manifest_dir {
        Some(manifest_dir) => cmd.env("CARGO_MANIFEST_DIR", manifest_dir),
        None => cmd.env_remove("CARGO_MANIFEST_DIR"),
    };
    cmd.output().unwrap().into()
}

#[test]
fn two_clones_sharing_one_binary_each_act_on_themselves() {
    // One binary for both, as with a shared CARGO_TARGET_DIR: its compiled-in checkout is neither.
    let clones = [bare_checkout("clone1"), bare_checkout("clone2")];
    for (n, clone) in clones.iter().enumerate() {
        // A new checkout's project is `railgun-<folder>-<hash of its path>`.
        let own = format!("project `railgun-railgun-trust-clone{}-", n + 1);
        // As `cargo xtask` runs it: in the clone, CARGO_MANIFEST_DIR its xtask package.
        let run = status_in(&clone.0, Some(&clone.0.join("xtask")));
        assert!(run.assert_ok().stdout.contains(&own), "not clone {}'s project:\n{}", n + 1, run.all());
        // Started by hand from a folder inside the clone: the nearest workspace above.
        let run = status_in(&clone.0.join("db/migrations"), None);
        assert!(run.assert_ok().stdout.contains(&own), "not clone {}'s project:\n{}", n + 1, run.all());
    }
    // Cargo's variable naming a package of no railgun checkout is not taken for one.
    let elsewhere = Dir::new("not-a-checkout");
    std::fs::create_dir_all(elsewhere.0.join("pkg")).unwrap();
    let run = status_in(&clones[1].0, Some(&elsewhere.0.join("pkg")));
    assert!(run.assert_ok().stdout.contains("project `railgun-railgun-trust-clone2-"), "{}", run.all());
}

#[test]
fn an_env_file_that_is_a_fifo_is_refused_not_waited_on() {
    let dir = Dir::new("fifo-env");
    let fifo = dir.0.join("fifo.env");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path of our own.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut child = Command::new(xtask_bin())
        .args(["migration", "show"])
        .current_dir(&dir.0)
        .env("RAILGUN_ENV_FILE", &fifo)
        .env_remove("DATABASE_URL")
        .env_remove("RAILGUN_PROJECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the xtask hangs on a FIFO .env");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out: Run = child.wait_with_output().unwrap().into();
    out.assert_fails_with("fifo.env is a FIFO (named pipe)");
    out.assert_fails_with("hint: replace it with a regular file");
}

#[test]
fn a_query_string_sslpassword_never_reaches_a_command_line() {
    let dir = Dir::new("query-sslpassword");
    let source = TestDb::empty().unwrap();
    source.conn().unwrap().batch_execute("CREATE TABLE things (id int); INSERT INTO things VALUES (1);").unwrap();
    let secret = "SslPassphraseCanary42";
    let mut url = source.direct_url().clone();
    url.query_pairs_mut().append_pair("sslpassword", secret);
    // pg_dump waits on a writer's lock, long enough to read its command line.
    let mut holder = source.conn().unwrap();
    holder.batch_execute("BEGIN; LOCK TABLE things IN ACCESS EXCLUSIVE MODE;").unwrap();
    let child =
        xtask(&dir.0, &url, &["db", "backup", "out"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (seen, service_file) = loop {
        if let Some(found) = pg_dump_of(source.name()) {
            break found;
        }
        assert!(Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    holder.batch_execute("COMMIT").unwrap();
    // It reached pg_dump's libpq, in the service file pg_dump holds open.
    assert!(service_file.contains(&format!("sslpassword={secret}\n")), "{service_file:?}");
    let out: Run = child.wait_with_output().unwrap().into();
    out.assert_ok();
    assert!(
        !seen.contains(secret) && !seen.contains("sslpassword"),
        "sslpassword is on pg_dump's command line: {seen}"
    );
    assert!(!out.all().contains(secret), "{}", out.all());
}

/// The command line of the pg_dump working on `database`, and the service file its
/// `PGSERVICEFILE` names (read through its open descriptor).
fn pg_dump_of(database: &str) -> Option<(String, String)> {
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if comm.trim() != "pg_dump" || !cmdline.contains(database) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let environ = String::from_utf8_lossy(&environ).into_owned();
        let file = environ.split('\0').find_map(|v| v.strip_prefix("PGSERVICEFILE=/dev/fd/"))?.to_string();
        let text = std::fs::read_to_string(entry.path().join("fd").join(file)).ok()?;
        return Some((cmdline, text));
    }
    None
}
