//! The pool of ready clones on the test server: claimed by renaming (one rename wins, across
//! threads and processes alike), refilled ahead of demand by a background thread under `cargo
//! test`, and given back by passing tests (reset by their next claimer, or at once by this
//! process for its next test). Names: see `names`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl};

use super::conns::Lease;
use super::names::{self, DbName, Pooled};
use super::server::{FILL_LOCKS, connect_waiting, databases};
use super::slot;
use super::{HELD_AHEAD, Harness, Local, POOL_KEPT, UNUSED, USED, is_used, next_test_name, recycle};

/// What a claim took from the pool.
pub(super) enum Claimed {
    /// A clean clone.
    Clean,
    /// A used one, to be reset; `since`: the statistics epoch its last test began in (`None`
    /// when its comment does not say: it cannot be reset).
    Used { since: Option<i64> },
}

/// The comment of a used clone whose last test began in the statistics epoch `since` (see [`USED`]).
fn used_mark(since: i64) -> String {
    format!("{USED}{since}")
}

/// The statistics epoch a used clone's comment names.
fn used_since(comment: &str) -> Option<i64> {
    comment.strip_prefix(USED)?.parse().ok()
}

impl Harness {
    /// Takes a ready clone by renaming it to `name`; `None` when the pool is empty (clean ones
    /// go first).
    pub(super) fn claim(&self, name: &str) -> Result<Option<Claimed>> {
        self.server.admin(|c| {
            let mut ready = databases(c, &self.pool_prefix)?;
            // Clean ones first, then our own: other processes are likelier to go for theirs.
            let ours = names::ready_prefix_of(self.hash, self.server.owner);
            ready.sort_by_key(|(n, _)| (is_used(n), !n.starts_with(&ours)));
            for (candidate, comment) in ready {
                // Two claimers of one clone: one rename wins, the other finds it gone and moves on.
                if diesel::sql_query(format!("ALTER DATABASE \"{candidate}\" RENAME TO \"{name}\"")).execute(c).is_ok()
                {
                    // The comment came into the pool with the name, in one transaction.
                    let since = comment.as_deref().and_then(used_since);
                    return Ok(Some(if is_used(&candidate) { Claimed::Used { since } } else { Claimed::Clean }));
                }
            }
            Ok(None)
        })
    }

    /// Claims a clone from the pool as `name`, reset when a test used it before (on a connection
    /// of its pool, for the test); `None` when the pool has none to give.
    pub(super) fn claim_ready(&self, name: &str) -> Result<Option<Lease>> {
        loop {
            let lease = || Lease::new(name.to_string(), self.server.fast_url_for(name));
            let since = match self.claim(name)? {
                None => return Ok(None),
                Some(Claimed::Clean) => return Ok(Some(lease())),
                Some(Claimed::Used { since }) => since,
            };
            let slot = lease();
            // Renamed: nobody else was connected, and nobody knows the new name. Its mark goes
            // with the reset, in one transaction.
            let reset = match (self.baseline()?, since) {
                (Some(baseline), Some(since)) => baseline.reset(&mut *slot.get()?, since, &slot::unmark(name))?,
                _ => false,
            };
            if reset {
                return Ok(Some(slot));
            }
            // DDL ran in it after all, or the statistics were lost since (or nothing can reset
            // it): it goes, the next one comes.
            drop(slot);
            self.server.admin(|c| recycle::drop_database(c, name))?;
        }
    }

    pub(super) fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a passing test, when a background thread runs: its database is queued for a reset
    /// and this process's next test (the test's end waits for nothing). Handed back when it must
    /// go another way (no background, no reset possible, a connection still out of its pool).
    pub(super) fn give_back(&self, slot: Lease) -> Option<Lease> {
        let resets = self.ready.get().is_some_and(|(baseline, _)| baseline.is_some());
        if !self.background || !resets || self.pool_size == 0 || !slot.all_back() {
            return Some(slot);
        }
        self.local().returned.push(slot);
        self.wake_refill();
        None
    }

    /// Resets a returned database: its pool's sessions reset, every other connection ended,
    /// then the rows the last test wrote. `None` when it cannot be reset (DDL ran): it is dropped.
    pub(super) fn reset_returned(&self, slot: Lease) -> Result<Option<Lease>> {
        let reset = (|| -> Result<bool> {
            let Some(baseline) = self.baseline()? else { return Ok(false) };
            let mut conns = slot.idle_reset()?;
            let ours: Vec<i32> = conns.iter().map(|(_, pid)| *pid).collect();
            let mut conn = match conns.pop() {
                Some((conn, _)) => conn,
                None => slot.get()?,
            };
            let since = self.server.stats_epoch;
            let grace = if slot.pooled() { recycle::RELEASE_GRACE } else { Duration::ZERO };
            Ok(recycle::wait_alone(&mut conn, &ours, grace)? && baseline.reset(&mut conn, since, "")?)
        })();
        if reset.unwrap_or(false) {
            return Ok(Some(slot));
        }
        let name = slot.name.clone();
        drop(slot);
        self.server.admin(|c| recycle::drop_database(c, &name))?;
        Ok(None)
    }

    /// The background thread's turn at the returned databases: reset, marked unused, held.
    pub(super) fn reset_returned_ahead(&self) -> Result<()> {
        loop {
            let Some(slot) = self.local().returned.pop() else { return Ok(()) };
            let Some(slot) = self.reset_returned(slot)? else { continue };
            self.mark_unused(&slot)?;
            self.local().held.push(slot);
        }
    }

    pub(super) fn mark_unused(&self, slot: &Lease) -> Result<()> {
        let comment = format!("{UNUSED}{:016x}", self.hash);
        let name = &slot.name;
        diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'")).execute(&mut slot.get()?)?;
        Ok(())
    }

    /// After a passing test: its database back to the pool, marked used with this process's
    /// statistics epoch (the next claimer resets it), when the pool has room; false when it must
    /// be dropped instead.
    pub(super) fn recycle(&self, name: &str) -> Result<bool> {
        let kept = if self.pool_size == 0 { 0 } else { self.pool_size.max(POOL_KEPT) };
        if self.baseline()?.is_none() || kept == 0 {
            return Ok(false);
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed).to_string();
        let pooled = DbName::Ready { hash: self.hash, owner: self.server.owner, n, state: Pooled::Used }.render();
        self.server.admin(|c| {
            if !recycle::close_clients(c, name, Some((&self.pool_prefix, kept)))? {
                return Ok(false);
            }
            // One transaction: no claimer sees it without its comment.
            let used = used_mark(self.server.stats_epoch);
            Ok(c.batch_execute(&format!(
                "COMMENT ON DATABASE \"{name}\" IS '{used}'; ALTER DATABASE \"{name}\" RENAME TO \"{pooled}\""
            ))
            .is_ok())
        })
    }

    pub(super) fn clone_template(&self, name: &str) -> Result<()> {
        let strategy = if self.server.file_copy { " STRATEGY FILE_COPY" } else { "" };
        self.server.admin(|c| {
            diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"{strategy}", self.template))
                .execute(c)
                .with_context(|| format!("clone the test template into {name}"))?;
            Ok(())
        })
    }

    pub(super) fn wake_refill(&self) {
        let (generation, wake) = &self.wake;
        *generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        wake.notify_one();
    }

    /// The pool thread: keeps `pool_size` clones ready; one process at a time fills a pool.
    pub(super) fn refill_forever(&self) {
        let mut conn = None;
        let mut next = 0u64;
        let mut complained = false;
        loop {
            let (generation, wake) = &self.wake;
            let seen = *generation.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.refill(&mut conn, &mut next) {
                conn = None;
                if !complained {
                    eprintln!("warning: the test database pool cannot refill ({e:#}); tests clone on demand");
                    complained = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            let guard = generation.lock().unwrap_or_else(|e| e.into_inner());
            if *guard == seen {
                let _ = wake.wait_timeout(guard, Duration::from_millis(500));
            }
        }
    }

    pub(super) fn held_ahead(&self) -> usize {
        HELD_AHEAD.min(self.pool_size)
    }

    /// Claims clones for this process's next tests and opens their connections: the test then
    /// waits for neither. Marked unused, so that if this process ends first a later run pools them again.
    pub(super) fn hold_ahead(&self) -> Result<()> {
        while self.local().held.len() < self.held_ahead() {
            let name = next_test_name(self.server);
            let Some(slot) = self.claim_ready(&name)? else { return Ok(()) };
            // Marking it opens its first connection.
            self.mark_unused(&slot)?;
            self.local().held.push(slot);
        }
        Ok(())
    }

    pub(super) fn refill(&self, conn: &mut Option<PgConnection>, next: &mut u64) -> Result<()> {
        if self.pool_size == 0 {
            return Ok(());
        }
        // Returned databases first (the cheapest for the next tests), then held clones from the
        // pool: take them, fill the pool, take again, fill again.
        self.reset_returned_ahead()?;
        self.hold_ahead()?;
        self.fill_pool(conn, next)?;
        self.hold_ahead()?;
        self.fill_pool(conn, next)
    }

    pub(super) fn fill_pool(&self, conn: &mut Option<PgConnection>, next: &mut u64) -> Result<()> {
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(self.server.connect_admin()?),
        };
        #[derive(diesel::QueryableByName)]
        struct Locked {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            locked: bool,
        }
        let key = self.hash as i32;
        let locked: Locked = diesel::sql_query(format!("SELECT pg_try_advisory_lock({FILL_LOCKS}, {key}) AS locked"))
            .get_result(conn)?;
        if !locked.locked {
            return Ok(());
        }
        let strategy = if self.server.file_copy { " STRATEGY FILE_COPY" } else { "" };
        let filled = (|| {
            // Between clones, returned databases first: a test may be waiting for one.
            while self.reset_returned_ahead().is_ok() && databases(conn, &self.pool_prefix)?.len() < self.pool_size {
                let (hash, owner, n) = (self.hash, self.server.owner, next.to_string());
                let preparing = DbName::Preparing { hash, owner, n: n.clone() }.render();
                let ready = DbName::Ready { hash, owner, n, state: Pooled::Clean }.render();
                *next += 1;
                diesel::sql_query(format!("CREATE DATABASE \"{preparing}\" TEMPLATE \"{}\"{strategy}", self.template))
                    .execute(conn)
                    .with_context(|| format!("clone the test template into {preparing}"))?;
                // A first connection builds the database's relation cache file: the test's
                // connection then starts in a few ms instead of a dozen or more.
                if let Ok(mut warm) = connect_waiting(&self.server.fast_url_for(&preparing)) {
                    let _ = diesel::sql_query("SELECT count(*) FROM pg_attribute").execute(&mut warm);
                }
                // Renaming waits for that connection's process to be gone, in steps of 100 ms:
                // waited for here, in steps of a fraction of a millisecond.
                recycle::close_clients(conn, &preparing, None)?;
                diesel::sql_query(format!("ALTER DATABASE \"{preparing}\" RENAME TO \"{ready}\""))
                    .execute(conn)
                    .with_context(|| format!("add {ready} to the pool"))?;
            }
            Ok(())
        })();
        diesel::sql_query(format!("SELECT pg_advisory_unlock({FILL_LOCKS}, {key})")).execute(conn)?;
        filled
    }
}
