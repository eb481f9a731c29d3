//! Who holds the lock a tool's session waits for: pg_dump or psql run under an
//! `application_name` of ours, and a second connection asks the server about that session.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::sql_types::{Integer, Text};
use url::Url;

/// How often the watch asks.
const POLL: Duration = Duration::from_millis(200);

/// A session that holds a lock another waits for.
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct LockHolder {
    /// The relation, schema-qualified; else the lock's type (`transactionid`, `advisory`, ...).
    #[diesel(sql_type = Text)]
    pub relation: String,
    #[diesel(sql_type = Integer)]
    pub pid: i32,
    #[diesel(sql_type = Text)]
    pub application_name: String,
    #[diesel(sql_type = Text)]
    pub state: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LockHolder { relation, pid, application_name, state } = self;
        // A quoted identifier may hold escape codes: they are shown, not sent to the terminal.
        let [relation, application_name, state] = [relation, application_name, state].map(|text| {
            text.chars()
                .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
                .collect::<String>()
        });
        write!(f, "{relation} held by pid {pid} (application_name '{application_name}', state '{state}')")
    }
}

/// Watches the sessions named `app` while they run: when one waits for a lock, who holds it is
/// said once on stderr ("waiting for a lock on ...") and kept for the error.
pub struct LockWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<LockHolder>>>,
}

impl LockWatch {
    /// Starts watching the server at `url` for sessions whose application_name is `app`.
    pub fn start(url: Url, app: String) -> LockWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conn = crate::connect::establish(&url).ok()?;
            let mut seen: Option<LockHolder> = None;
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
                let holders: Vec<LockHolder> = diesel::sql_query(
                    "SELECT coalesce((SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.relation),
                                     l.locktype) AS relation,
                            b.pid, coalesce(b.application_name, '') AS application_name, coalesce(b.state, '') AS state
                     FROM pg_stat_activity w
                     JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
                     CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
                     JOIN pg_stat_activity b ON b.pid = blocking.pid
                     WHERE w.application_name = $1
                     ORDER BY b.backend_start",
                )
                .bind::<Text, _>(&app)
                .load(&mut conn)
                .unwrap_or_default();
                if let Some(first) = holders.into_iter().next()
                    && seen.as_ref() != Some(&first)
                {
                    eprintln!("waiting for a lock on {first}");
                    seen = Some(first);
                }
            }
            seen
        });
        LockWatch { stop, thread: Some(thread) }
    }

    /// Ends the watch; the last lock holder seen, if any.
    pub fn stop(mut self) -> Option<LockHolder> {
        self.end()
    }

    fn end(&mut self) -> Option<LockHolder> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()?.join().ok().flatten()
    }
}

/// The thread is inside libpq: it must be done before the process exits (libpq's Kerberos
/// library aborts a process that exits under a thread using it).
impl Drop for LockWatch {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::LockHolder;

    #[test]
    fn a_holder_is_shown_with_its_control_characters_escaped() {
        let holder = LockHolder {
            relation: "public.\"x\x1b[2Jy\"".into(),
            pid: 42,
            application_name: "the-migration".into(),
            state: "idle in transaction".into(),
        };
        assert_eq!(
            holder.to_string(),
            "public.\"x\\u{1b}[2Jy\" held by pid 42 (application_name 'the-migration', state 'idle in transaction')"
        );
    }
}
