//! Dropping what crashed runs left: test databases whose process is gone, kept ones past their
//! time, ready clones of templates that were evicted, and half-built templates nobody builds.

use anyhow::Result;
use diesel::RunQueryDsl;

use super::server::{BUILD_LOCKS, CLEAN_LOCKS, databases, now, server};
use super::slot::{self, SLOT_PREFIX};
use super::template::TEMPLATE_PREFIX;
use super::{KEEP_FOR, POOL_PREFIX, PREP_PREFIX, TEST_PREFIX, UNUSED};

/// Unused clones of a gone process go back to a pool holding fewer than this (the default pool
/// size; a process that wants more makes them).
const RETURNED_UP_TO: usize = 3;

/// Drops stale test databases on the test server; returns their names. Each test process runs
/// it once in the background; nothing in use is touched.
pub fn clean_stale() -> Result<Vec<String>> {
    let server = server()?;
    // One cleanup at a time across processes: each sees what the one before it did.
    let mut session = server.connect_admin()?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({CLEAN_LOCKS}, 0)")).execute(&mut session)?;
    let live = server.live_owners()?;
    let all = server.admin(|c| databases(c, "railgun_"))?;
    // Read once, not per database: a run's setup script walks every slot database of the server.
    let in_use = server.admin(connected)?;
    let templates: Vec<&str> = all.iter().filter_map(|(n, _)| n.strip_prefix(TEMPLATE_PREFIX)).collect();
    let pooled_count = |hash: &str| all.iter().filter(|(n, _)| n.starts_with(&format!("{POOL_PREFIX}{hash}_"))).count();
    let mut returned: Vec<&str> = Vec::new();
    let mut stale = Vec::new();
    for (name, comment) in &all {
        let drop = if let Some(rest) = name.strip_prefix(TEST_PREFIX) {
            let owner = rest.split('_').next().and_then(|o| u32::from_str_radix(o, 16).ok());
            let kept_at =
                comment.as_deref().and_then(|c| c.strip_prefix("railgun test kept ")).and_then(|t| t.parse().ok());
            let alive = owner.is_some_and(|o| live.contains(&o));
            let unused = comment.as_deref().and_then(|c| c.strip_prefix(UNUSED));
            let room =
                |hash: &&str| pooled_count(hash) + returned.iter().filter(|&&h| h == *hash).count() < RETURNED_UP_TO;
            if let Some(hash) = unused.filter(|hash| !alive && templates.contains(hash) && room(hash)) {
                // Held ahead by a process that ended before any test got it: as good as new.
                let pooled = format!("{POOL_PREFIX}{hash}_{rest}u");
                let back = server.admin(|c| {
                    diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS NULL")).execute(c)?;
                    Ok(diesel::sql_query(format!("ALTER DATABASE \"{name}\" RENAME TO \"{pooled}\"")).execute(c)?)
                });
                if back.is_ok() {
                    returned.push(hash);
                    continue;
                }
            }
            !alive && kept_at.is_none_or(|at: u64| now().saturating_sub(at) > KEEP_FOR.as_secs())
        } else if let Some(rest) = name.strip_prefix(SLOT_PREFIX) {
            // Another run's (nextest's run id): dropped, never while connected. Skipped while
            // anyone is (the pooler keeps a finished run's server connections 5 s): a DROP of a
            // database in use waits 5 s before it fails, which made a run started right after
            // another wait that long in its setup script. A later run drops it. Not pooled: a
            // finished slot database pooled here was once handed out with its last test's row
            // still in it (issue 11, not understood yet).
            // One made ready a moment ago waits for its run's first test.
            let ready = comment.as_deref().and_then(slot::ready_since);
            if slot::run_of(rest).is_some_and(|run| Some(run.to_string()) != slot::current_run())
                && !in_use.contains(name)
                && ready.is_none_or(|at| now().saturating_sub(at) > slot::READY_FOR)
            {
                let gone =
                    server.admin(|c| Ok(diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\"")).execute(c)?));
                if gone.is_ok() {
                    stale.push(name.clone());
                }
            }
            false
        } else if let Some(rest) = name.strip_prefix(PREP_PREFIX) {
            let owner = rest.split('_').nth(1).and_then(|o| u32::from_str_radix(o, 16).ok());
            !owner.is_some_and(|o| live.contains(&o))
        } else if let Some(rest) = name.strip_prefix(POOL_PREFIX) {
            rest.split('_').next().is_some_and(|hash| !templates.contains(&hash))
        } else if let Some(hash) = name.strip_prefix("railgun_tplbuild_") {
            // Only when nobody is building it: its builder holds this lock.
            let key = u64::from_str_radix(hash, 16).unwrap_or(0) as i32;
            server
                .admin(|c| {
                    #[derive(diesel::QueryableByName)]
                    struct Locked {
                        #[diesel(sql_type = diesel::sql_types::Bool)]
                        locked: bool,
                    }
                    let locked: Locked =
                        diesel::sql_query(format!("SELECT pg_try_advisory_lock({BUILD_LOCKS}, {key}) AS locked"))
                            .get_result(c)?;
                    if locked.locked {
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(c)?;
                        diesel::sql_query(format!("SELECT pg_advisory_unlock({BUILD_LOCKS}, {key})")).execute(c)?;
                        stale.push(name.clone());
                    }
                    Ok(())
                })
                .ok();
            false
        } else {
            false
        };
        if drop {
            let dropped = server.admin(|c| {
                Ok(diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(c)?)
            });
            if dropped.is_ok() {
                stale.push(name.clone());
            }
        }
    }
    Ok(stale)
}

/// The databases a server process is connected to.
fn connected(conn: &mut diesel::PgConnection) -> Result<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Connected {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let rows: Vec<Connected> = diesel::sql_query(
        "SELECT DISTINCT d.datname::text FROM pg_stat_get_activity(NULL) s JOIN pg_database d ON d.oid = s.datid",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.datname).collect())
}
