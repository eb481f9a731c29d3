//! Connection poolers (PgBouncer, Supabase's Supavisor): whether a URL goes through one, and in
//! which mode, from a setting or the URL's own convention; with feature `tools`, from what the
//! server answers too.
//!
//! Under transaction pooling a client has a server connection for one transaction only, so
//! what lives in a session breaks: named prepared statements (diesel's statement cache),
//! session advisory locks (the migration lock), `SET`, temporary tables, `LISTEN`, and pg_dump.
//! Managed providers hand out two URLs for that reason: the pooled one for the app and a direct
//! one for migrations and tools (`DATABASE_URL` and `DIRECT_URL` here, as Prisma names them).

use anyhow::{Result, bail};
use url::Url;

/// The setting that says how `DATABASE_URL` is pooled: `transaction`, `session`, `statement`
/// or `none`.
pub const SETTING: &str = "DATABASE_POOLER";
/// The URL query parameter Prisma and Supabase use to mark a PgBouncer (transaction) URL; libpq
/// does not know it, so it is taken out before connecting.
pub const URL_FLAG: &str = "pgbouncer";

/// How a pooler hands out server connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One server connection per client connection: sessions work.
    Session,
    /// A server connection per transaction: nothing session-bound works.
    Transaction,
    /// A server connection per statement: not even multi-statement transactions work.
    Statement,
}

impl Mode {
    /// False when prepared statements, advisory locks, `SET` and pg_dump break.
    pub fn keeps_sessions(self) -> bool {
        self == Mode::Session
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Session => "session",
            Mode::Transaction => "transaction",
            Mode::Statement => "statement",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads [`SETTING`]: `Some(None)` for `none`, `None` when it is not set.
pub fn parse_setting(value: Option<&str>) -> Result<Option<Option<Mode>>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    Ok(Some(match value.to_ascii_lowercase().as_str() {
        "transaction" => Some(Mode::Transaction),
        "session" => Some(Mode::Session),
        "statement" => Some(Mode::Statement),
        "none" | "off" | "direct" => None,
        _ => bail!(
            hint!("{SETTING} `{value}` is not a pool mode"; "set {SETTING} to transaction (PgBouncer's and Supabase's port 6543 default), session, statement, or none for a direct connection")
        ),
    }))
}

/// The pool mode `url` goes through by its own convention: `?pgbouncer=true` (Prisma's and
/// Supabase's mark of a transaction pooler), or Supabase's pooler host (`*.pooler.supabase.com`:
/// transaction on port 6543, session on 5432).
pub fn by_convention(url: &Url) -> Option<Mode> {
    if url.query_pairs().any(|(k, v)| k == URL_FLAG && matches!(v.as_ref(), "true" | "1")) {
        return Some(Mode::Transaction);
    }
    let host = url.host_str()?.to_ascii_lowercase();
    if host.ends_with(".pooler.supabase.com") {
        return Some(if url.port() == Some(5432) { Mode::Session } else { Mode::Transaction });
    }
    None
}

/// How `url` is pooled, as declared: the setting wins over the URL's convention.
pub fn declared(url: &Url, setting: Option<&str>) -> Result<Option<Mode>> {
    Ok(match parse_setting(setting)? {
        Some(mode) => mode,
        None => by_convention(url),
    })
}

/// `url` without [`URL_FLAG`], which libpq refuses ("invalid URI query parameter").
pub fn strip_convention(url: &Url) -> Url {
    if !url.query_pairs().any(|(k, _)| k == URL_FLAG) {
        return url.clone();
    }
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != URL_FLAG).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut url = url.clone();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    url
}

/// What the server says about a connection to `url`.
#[cfg(feature = "tools")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The backend that runs our queries is the one the server announced: a direct connection.
    Direct,
    /// The announced backend is not the one that runs our queries: a pooler sits between.
    Pooled,
}

/// Asks the server whether a pooler sits in front of it: `None` when `url` does not connect
/// (the caller's own connection then reports why, with its hint).
///
/// Postgres announces the backend's process id in BackendKeyData when a session starts, and
/// `pg_backend_pid()` returns the same number on a direct connection, always. A pooler cannot
/// forward the server's (the client is not bound to one backend), so PgBouncer, Supavisor,
/// pgcat and Odyssey all announce a made-up key of their own: the two numbers differ. This
/// needs no admin access to the pooler and no guess about ports or host names.
#[cfg(feature = "tools")]
pub fn probe(url: &Url) -> Option<Probe> {
    libpq_session(&strip_convention(url), |conn| {
        // SAFETY: `conn` is open; the result is read, then freed.
        unsafe {
            let announced = pq_sys::PQbackendPID(conn);
            let result = pq_sys::PQexec(conn, c"SELECT pg_backend_pid()".as_ptr());
            let running = (pq_sys::PQresultStatus(result) == pq_sys::ExecStatusType::PGRES_TUPLES_OK
                && pq_sys::PQntuples(result) == 1)
                .then(|| std::ffi::CStr::from_ptr(pq_sys::PQgetvalue(result, 0, 0)).to_str().ok()?.parse::<i32>().ok())
                .flatten();
            pq_sys::PQclear(result);
            Some(if running? == announced { Probe::Direct } else { Probe::Pooled })
        }
    })
}

/// PgBouncer's own settings (`SHOW CONFIG` on its admin console, the `pgbouncer` database at
/// `url`'s host and port), as (key, value) pairs: `None` when that is no PgBouncer, or the
/// user is not in its `admin_users`/`stats_users`. Supavisor and managed poolers have no such
/// console: their mode comes from the setting or the URL's convention.
#[cfg(feature = "tools")]
pub fn pgbouncer_config(url: &Url) -> Option<Vec<(String, String)>> {
    let mut url = strip_convention(url);
    url.set_path("pgbouncer");
    libpq_session(&url, |conn| {
        // SAFETY: `conn` is open; one simple query (the console knows no other protocol), its
        // result read, then freed.
        unsafe {
            let result = pq_sys::PQexec(conn, c"SHOW CONFIG".as_ptr());
            let rows = (pq_sys::PQresultStatus(result) == pq_sys::ExecStatusType::PGRES_TUPLES_OK).then(|| {
                let text = |row, col| {
                    std::ffi::CStr::from_ptr(pq_sys::PQgetvalue(result, row, col)).to_string_lossy().into_owned()
                };
                (0..pq_sys::PQntuples(result)).map(|row| (text(row, 0), text(row, 1))).collect()
            });
            pq_sys::PQclear(result);
            rows
        }
    })
}

/// A raw libpq connection to `url` (with the commands' connect timeout) for `work`, finished on
/// every path: for what diesel does not expose (the announced backend pid, the admin console's
/// simple-query-only protocol). `None` when it does not connect.
#[cfg(feature = "tools")]
fn libpq_session<T>(url: &Url, work: impl FnOnce(*mut pq_sys::PGconn) -> Option<T>) -> Option<T> {
    let conninfo = std::ffi::CString::new(crate::connect::with_connect_timeout(url).as_str()).ok()?;
    // SAFETY: libpq's documented use: the connection is checked, used by `work`, and finished
    // whatever `work` returns.
    unsafe {
        let conn = pq_sys::PQconnectdb(conninfo.as_ptr());
        if conn.is_null() {
            return None;
        }
        let answer = (pq_sys::PQstatus(conn) == pq_sys::ConnStatusType::CONNECTION_OK).then(|| work(conn)).flatten();
        pq_sys::PQfinish(conn);
        answer
    }
}

/// Turns diesel's prepared statement cache off on every connection an r2d2 pool opens: each
/// query then goes as the unnamed statement, which lives within its own round trip (what a
/// transaction pooler needs; the app's settings and the pooler bench use it).
#[derive(Debug)]
pub struct NoStatementCache;

impl diesel::r2d2::CustomizeConnection<diesel::PgConnection, diesel::r2d2::Error> for NoStatementCache {
    fn on_acquire(&self, conn: &mut diesel::PgConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        diesel::connection::Connection::set_prepared_statement_cache_size(
            conn,
            diesel::connection::CacheSize::Disabled,
        );
        Ok(())
    }
}

/// Refuses `url` for work that needs a session of its own (advisory locks, pg_dump, psql's
/// single transaction, `SET`): when it is declared pooled in a mode that breaks sessions, or
/// the server shows a pooler that is not declared to keep them. `what` names the work and
/// `origin` where the URL came from, for the message.
#[cfg(feature = "tools")]
pub fn require_session(url: &Url, setting: Option<&str>, what: &str, origin: &str) -> Result<()> {
    let fix = "set DIRECT_URL to a direct connection to Postgres (a managed provider's \"direct\" / \"session\" URL; Supabase: port 5432 on db.<project>.supabase.co), in the environment or .env: tools use it for session work while the app keeps DATABASE_URL; `cargo xtask up --pooler` writes both";
    match declared(url, setting)? {
        Some(mode) if !mode.keeps_sessions() => bail!(
            hint!("refused to {what}: {origin} goes through a {mode}-mode connection pooler ({}), where advisory locks, prepared statements, SET and pg_dump do not work", crate::url::redact(url); "{fix}")
        ),
        Some(_) => Ok(()),
        None => match probe(url) {
            Some(Probe::Pooled) => bail!(
                hint!("refused to {what}: {origin} ({}) goes through a connection pooler (the server's announced backend is not the one that runs queries), where advisory locks, prepared statements, SET and pg_dump break in transaction mode", crate::url::redact(url); "{fix}; if it is a session-mode pooler, set {SETTING}=session")
            ),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn conventions_and_the_setting() {
        assert_eq!(by_convention(&url("postgres://u@h:6432/d?pgbouncer=true")), Some(Mode::Transaction));
        assert_eq!(
            by_convention(&url("postgres://u@aws-0-eu-west-1.pooler.supabase.com:6543/postgres")),
            Some(Mode::Transaction)
        );
        assert_eq!(
            by_convention(&url("postgres://u@aws-0-eu-west-1.pooler.supabase.com:5432/postgres")),
            Some(Mode::Session)
        );
        assert_eq!(by_convention(&url("postgres://u@db.abc.supabase.co:5432/postgres")), None);
        assert_eq!(by_convention(&url("postgres://u@h/d?pgbouncer=false")), None);
        let pooled = url("postgres://u@h/d?pgbouncer=true");
        assert_eq!(declared(&pooled, Some("none")).unwrap(), None);
        assert_eq!(declared(&url("postgres://u@h/d"), Some(" Transaction ")).unwrap(), Some(Mode::Transaction));
        assert_eq!(declared(&url("postgres://u@h/d"), Some("")).unwrap(), None);
        let err = crate::error::describe(&declared(&pooled, Some("transactoin")).unwrap_err());
        assert!(err.contains("DATABASE_POOLER `transactoin`") && err.contains("hint:"), "{err}");
    }

    #[test]
    fn the_url_flag_is_taken_out_for_libpq() {
        let stripped = strip_convention(&url("postgres://u:p@h:6432/d?pgbouncer=true&sslmode=require"));
        assert_eq!(stripped.as_str(), "postgres://u:p@h:6432/d?sslmode=require");
        assert_eq!(strip_convention(&url("postgres://u@h/d?pgbouncer=true")).as_str(), "postgres://u@h/d");
        assert_eq!(
            strip_convention(&url("postgres://u@h/d?sslmode=disable")).as_str(),
            "postgres://u@h/d?sslmode=disable"
        );
    }
}
