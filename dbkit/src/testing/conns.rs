//! A test database's connections: a pool of its own, kept with the database when it is reset for
//! the next test, so that a test usually gets a connection the server started long before (a new
//! server process costs milliseconds of CPU: fork, exit, page faults).
//!
//! The pool is r2d2's, the one pool diesel implements `Connection` for: a [`TestConn`] is used
//! wherever a `PgConnection` is (it derefs to one, and diesel's query methods take it).
//! Connections are made by [`super::server::connect_waiting`] (a test out of connection slots
//! waits for one), on r2d2's threads: a lease's end stops and waits for those still waiting, so
//! that none is left connecting while the process exits (libpq's and OpenSSL's exit handlers
//! then race it).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Result;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use url::Url;

use super::server::connect_waiting_unless;

/// A connection to a test database, from its pool: back to the pool when dropped (a broken one,
/// or one left inside a transaction, is closed instead).
pub type TestConn = PooledConnection<TestManager>;

/// Opens a test database's connections.
#[derive(Debug)]
pub struct TestManager {
    url: Url,
    shared: Shared,
    /// The first connection's server process is left for its user to note (see [`Lease::note_pid`]).
    first_pid_later: AtomicBool,
}

/// What a lease and its pools' managers share.
#[derive(Debug, Clone, Default)]
struct Shared {
    /// The last connection error, for the test waiting on the pool (r2d2 only retries): kept
    /// whole, so that its [`Failure`](crate::connect::Failure) tells what failed.
    failed: Arc<Mutex<Option<anyhow::Error>>>,
    /// Server processes of every connection opened.
    pids: Arc<Mutex<Vec<i32>>>,
    /// The lease has ended: a connection waiting for a slot gives up.
    ended: Arc<AtomicBool>,
    /// Connections being opened now.
    opening: Arc<AtomicUsize>,
}

/// The server process of a pooled connection (in its r2d2 extensions).
struct Pid(i32);

impl ManageConnection for TestManager {
    type Connection = PgConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<PgConnection, r2d2::Error> {
        let failed = |e: anyhow::Error| {
            let text = crate::error::describe(&e);
            *self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(text))
        };
        let Shared { ended, opening, .. } = &self.shared;
        opening.fetch_add(1, Ordering::SeqCst);
        let conn = connect_waiting_unless(&self.url, &|| ended.load(Ordering::SeqCst));
        opening.fetch_sub(1, Ordering::SeqCst);
        let mut conn = conn.map_err(failed)?;
        if self.first_pid_later.swap(false, Ordering::Relaxed) {
            return Ok(conn);
        }
        let pid = backend_pid(&mut conn).map_err(failed)?;
        self.shared.pids.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_broken()
    }
}

/// A lease on a test database: its name and its pool of connections; what a test holds, and
/// what waits for the next one. (Not a nextest slot: that is `slot`, a database per slot of a run.)
pub(crate) struct Lease {
    pub name: String,
    pool: Mutex<Pool<TestManager>>,
    url: Url,
    shared: Shared,
    /// A test was given the pooler's URL: the pooler may hold a connection of its (see `pooler`).
    pooled: AtomicBool,
}

impl Drop for Lease {
    /// Its connections waiting for a slot give up, and are waited for (a second at most).
    fn drop(&mut self) {
        self.shared.ended.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.shared.opening.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The threads that open pooled connections, shared by every pool of the process.
fn connect_threads() -> Arc<scheduled_thread_pool::ScheduledThreadPool> {
    static THREADS: OnceLock<Arc<scheduled_thread_pool::ScheduledThreadPool>> = OnceLock::new();
    THREADS
        .get_or_init(|| {
            Arc::new(
                scheduled_thread_pool::ScheduledThreadPool::builder()
                    .num_threads(2)
                    .thread_name_pattern("test-db-connect-{}")
                    .build(),
            )
        })
        .clone()
}

impl Lease {
    pub fn new(name: String, url: Url) -> Lease {
        Lease::with_first_pid(name, url, false)
    }

    /// A nextest slot's: its first connection's server process is learnt with its first query,
    /// and given to [`Lease::note_pid`] (a round trip saved).
    pub fn for_nextest_slot(name: String, url: Url) -> Lease {
        Lease::with_first_pid(name, url, true)
    }

    fn with_first_pid(name: String, url: Url, later: bool) -> Lease {
        let shared = Shared::default();
        let pool = Mutex::new(Lease::pool(&url, &shared, later));
        Lease { name, pool, url, shared, pooled: AtomicBool::new(false) }
    }

    fn pool(url: &Url, shared: &Shared, later: bool) -> Pool<TestManager> {
        let manager = TestManager { url: url.clone(), shared: shared.clone(), first_pid_later: later.into() };
        Pool::builder()
            .max_size(64)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .idle_timeout(None)
            .max_lifetime(None)
            // connect_waiting waits for a free slot up to 10 minutes; failures end the wait at once (see `get`).
            .connection_timeout(Duration::from_secs(660))
            .thread_pool(connect_threads())
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager)
    }

    fn current(&self) -> Pool<TestManager> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A connection: an idle one of the pool, else a new one (its error, as it was, if it fails).
    pub fn get(&self) -> Result<TestConn> {
        let pool = self.current();
        if let Some(conn) = pool.try_get() {
            return Ok(conn);
        }
        self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()).take();
        loop {
            if let Ok(conn) = pool.get_timeout(Duration::from_millis(50)) {
                return Ok(conn);
            }
            if let Some(error) = self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(error);
            }
        }
    }

    /// Notes that a test was given the pooler's URL.
    pub fn note_pooled(&self) {
        self.pooled.store(true, Ordering::Relaxed);
    }

    /// True when a test was given the pooler's URL.
    pub fn pooled(&self) -> bool {
        self.pooled.load(Ordering::Relaxed)
    }

    /// Closes the idle connections (a tool given the URL may want the database to itself).
    pub fn close_idle(&self) {
        let fresh = Lease::pool(&self.url, &self.shared, false);
        drop(std::mem::replace(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()), fresh));
    }

    /// True when no connection is out of the pool (the test let go of every one).
    pub fn all_back(&self) -> bool {
        let state = self.current().state();
        state.connections == state.idle_connections
    }

    /// Notes `pid`, the server process of `conn` (the first connection of [`Lease::for_nextest_slot`]).
    pub fn note_pid(&self, conn: &mut TestConn, pid: i32) {
        self.shared.pids.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        PooledConnection::extensions_mut(conn).insert(Pid(pid));
    }

    /// The server process of `conn`, one of this pool's: known when the pool opened that one
    /// connection only (as in a nextest test process), else asked once and kept with it.
    pub fn pid_of(&self, conn: &mut TestConn) -> Result<i32> {
        if let Some(pid) = PooledConnection::extensions(conn).get::<Pid>() {
            return Ok(pid.0);
        }
        let only = match self.shared.pids.lock().unwrap_or_else(|e| e.into_inner()).as_slice() {
            [pid] if self.current().state().connections == 1 => Some(*pid),
            _ => None,
        };
        let pid = match only {
            Some(pid) => pid,
            None => backend_pid(conn)?,
        };
        PooledConnection::extensions_mut(conn).insert(Pid(pid));
        Ok(pid)
    }

    /// Every idle connection, each brought back to a fresh session's state (settings, role,
    /// cursors, listens, advisory locks, temporary objects) with its pending statistics flushed,
    /// and with its server process id; an error when one is inside a transaction. Prepared
    /// statements stay: the schema has not changed (a test that changed it gets its database
    /// dropped), and diesel's statement cache names them.
    pub fn idle_reset(&self) -> Result<Vec<(TestConn, i32)>> {
        self.each_idle(
            "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
             SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; SELECT pg_stat_force_next_flush()",
        )
    }

    /// Every idle connection with its pending statistics flushed (the pooler resets the
    /// sessions), and with its server process id; an error when one is inside a transaction.
    pub fn idle_flush(&self) -> Result<Vec<(TestConn, i32)>> {
        self.each_idle("SELECT pg_stat_force_next_flush()")
    }

    /// Runs `script` on every idle connection, which stay out of the pool until dropped. One
    /// left inside a transaction (diesel's pool keeps a `begin_test_transaction` one) fails
    /// first: its database is then dropped, not reused.
    fn each_idle(&self, script: &str) -> Result<Vec<(TestConn, i32)>> {
        let pool = self.current();
        let mut conns = Vec::new();
        while let Some(mut conn) = pool.try_get() {
            conn.batch_execute(&format!(
                "DO $$ BEGIN IF now() <> statement_timestamp() THEN RAISE 'left inside a transaction'; END IF; END $$; {script}"
            ))?;
            let pid = self.pid_of(&mut conn)?;
            conns.push((conn, pid));
        }
        Ok(conns)
    }
}

fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(conn)?;
    Ok(pid.pid)
}
