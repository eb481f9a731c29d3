//! PgBouncer in front of the test container. A new Postgres connection is a new server process
//! (fork, exit, page faults: ~5 ms of CPU here) whose first queries find its catalog caches
//! cold. PgBouncer, in session mode and on Unix sockets only, keeps server connections between
//! tests: a client connects to it in a fifth of a millisecond and gets the connection the last
//! test left, reset ([`RESET`]). Through it go a nextest slot database's own connections (see
//! `slot`: a slot's next test process gets the one its last test left) and, under any runner,
//! every connection made from `TestDb::url()` (an app's own pool).
//!
//! Started once per machine like the test container (`<project>-pgbouncer-<hash of its
//! settings>`, no network: it reaches Postgres through the container's bind-mounted socket
//! folder and listens in a folder of the same name in the temp dir): by the setup script
//! (`cargo xtask test --prepare-db`), which hands its URL to the test processes (in
//! `handoff`), else by the first process that needs it. Without Docker or the PgBouncer
//! image, tests connect straight to Postgres.

use std::path::Path;
use std::time::{Duration, Instant};

use url::Url;
use xshell::{Shell, cmd};

use crate::docker::Project;
use crate::docker::images::{self, Service};

/// Where the pooler listens (the socket is `.s.PGSQL.6439` in that folder). Not 6432, the port
/// of `up --pooler`'s PgBouncer: a client that ignores the URL's `host=` and tries TCP on
/// localhost must find nothing there, not the dev server's pooler.
const PORT: u16 = 6439;
/// Its folder inside its container (config, user list and socket).
const INSIDE: &str = "/run/railgun-pooler";

// DISCARD ALL's parts, as its manual lists them: DISCARD ALL itself refuses to run in the
// implicit transaction of a query of several statements (the reset would fail, and the
// connection serve the next client unreset).
macro_rules! reset {
    () => {
        "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; \
         SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; \
         SELECT pg_stat_force_next_flush()"
    };
}

/// What PgBouncer runs on a server connection its client let go, before another client gets
/// it: the session reset, then its pending statistics flushed. A backend flushes them before it
/// reports itself idle, so a connection idle after this query (see [`RELEASED`]) has reported
/// every row its last client wrote: the harness resets the database and keeps the connection.
pub(crate) const RESET: &str = reset!();

/// A condition on `s`, a row of `pg_stat_get_activity`: a server connection the pooler let go
/// (idle after [`RESET`]), which a database's reset keeps for its next test.
pub(crate) const RELEASED: &str = concat!("(s.state = 'idle' AND s.query = '", reset!(), "')");

/// PgBouncer's settings: session mode (a client keeps its server connection to its end, so
/// locks, prepared statements and LISTEN work as straight to Postgres); no TCP; trust on its
/// socket as Postgres's own socket has, for the server's user and (looked up by it) any role
/// the server has, as a test may connect as a role it made; a released connection reset and
/// its statistics flushed ([`RESET`]); server connections kept 5 s idle (a test's next use
/// comes within milliseconds; a finished run's go, so that the next run's cleanup can drop
/// its databases); a server login that failed (a slot database not made yet) retried at once.
fn config(user: &str) -> (String, String) {
    let quoted = user.replace('"', "\"\"");
    let ini = format!(
        "[databases]\n* = host=/var/run/postgresql port=5432\n\n[pgbouncer]\nlisten_addr =\nlisten_port = {PORT}\n\
         unix_socket_dir = {INSIDE}\nunix_socket_mode = 0777\nauth_type = trust\nauth_file = {INSIDE}/userlist.txt\n\
         auth_user = {user}\npool_mode = session\nserver_reset_query = {RESET}\nmax_client_conn = 2000\n\
         default_pool_size = 50\nserver_idle_timeout = 5\nserver_login_retry = 0\nlog_connections = 0\n\
         log_disconnections = 0\n"
    );
    // userlist.txt: a `"` inside a name is written twice; trust needs no password.
    let users = format!("\"{quoted}\" \"\"\n");
    (ini, users)
}

/// The pooler of the test container `project` with settings `(ini, users)`: its name (its
/// container's, and its folder's in the temp dir), and its URL for `base`'s user, with no
/// password (PgBouncer trusts its socket). Named by its settings: a checkout whose harness
/// wants other settings starts a pooler of its own beside this one, rather than replace one
/// another checkout's tests are using.
fn named(project: &str, (ini, users): &(String, String), base: &Url) -> Option<(String, Url)> {
    let settings = super::template::fnv(&[ini.as_bytes(), users.as_bytes()]);
    let name = Project::new(project).pgbouncer_with(settings as u32);
    let folder = std::env::temp_dir().join(&name);
    let mut url = Url::parse(&format!("postgres://localhost:{PORT}/postgres")).ok()?;
    url.set_username(base.username()).ok()?;
    url.query_pairs_mut().append_pair("host", folder.to_str()?);
    Some((name, url))
}

/// The pooler of the test container `project` (whose Postgres socket is in `sockets`), started
/// unless it runs and passes a query on; `None` when it cannot run (no image, no Docker).
/// The caller holds the test container's start lock.
pub(crate) fn ensure(project: &str, sockets: &Path, base: &Url) -> Option<Url> {
    let settings = config(base.username());
    let (container, url) = named(project, &settings, base)?;
    if passes_queries(&url, Duration::ZERO) {
        return Some(url);
    }
    let (ini, users) = settings;
    let folder = std::env::temp_dir().join(&container);
    if !sockets.join(".s.PGSQL.5432").exists() {
        return None;
    }
    let sh = Shell::new().ok()?;
    let image = images::resolve(&sh, Service::Pgbouncer, None).ok()?;
    // One that runs but does not answer (its socket folder was removed, say) is replaced.
    let _ = cmd!(sh, "docker rm -f {container}").quiet().ignore_status().ignore_stdout().ignore_stderr().run();
    let _ = std::fs::remove_dir_all(&folder);
    // Made here, not found (someone else's folder in the shared temp dir would hold our settings).
    std::fs::create_dir(&folder).ok()?;
    // Its user in the container (not ours) creates the socket here: writable by all, sticky, as /tmp.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o1777)).ok()?;
    }
    std::fs::write(folder.join("pgbouncer.ini"), &ini).ok()?;
    std::fs::write(folder.join("userlist.txt"), users).ok()?;
    let (own, theirs) =
        (format!("{}:{INSIDE}", folder.display()), format!("{}:/var/run/postgresql", sockets.display()));
    let label = Project::new(project).label();
    let settings = format!("{INSIDE}/pgbouncer.ini");
    // The image's own entry point configures PgBouncer from its environment for TCP: bypassed.
    let started = cmd!(
        sh,
        "docker run -d --name {container} --label {label} --network none --user postgres --entrypoint pgbouncer -v {own} -v {theirs} {image} {settings}"
    )
    .quiet()
    .ignore_stdout()
    .ignore_stderr()
    .run();
    if started.is_err() || !passes_queries(&url, Duration::from_secs(10)) {
        let _ = cmd!(sh, "docker rm -f {container}").quiet().ignore_status().ignore_stdout().ignore_stderr().run();
        return None;
    }
    Some(url)
}

/// True when a query through `url` succeeds within `wait`.
fn passes_queries(url: &Url, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if super::server::answers(url) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
