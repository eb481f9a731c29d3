//! A throwaway database on a server, dropped whatever happens (an error, a panic; a killed
//! process leaves it, named after the process so a person can tell).

use anyhow::{Context as _, Result};
use diesel::RunQueryDsl;
use url::Url;

/// A database made for one operation and dropped at its end.
pub struct Scratch {
    pub name: String,
    pub url: Url,
    admin: Url,
    dropped: bool,
}

impl Scratch {
    /// An empty database on `url`'s server, `railgun_<tag>_<pid>_<microseconds>`.
    pub fn empty(url: &Url, tag: &str) -> Result<Scratch> {
        let name = format!("railgun_{tag}_{}_{}", std::process::id(), chrono::Utc::now().timestamp_micros());
        let mut admin = url.clone();
        admin.set_path("/postgres");
        let mut conn = crate::connect::establish(&admin)?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .with_context(|| format!("create the throwaway database {name}"))?;
        let mut scratch_url = url.clone();
        scratch_url.set_path(&format!("/{name}"));
        Ok(Scratch { name, url: scratch_url, admin, dropped: false })
    }

    /// Drops it also when this process is interrupted (SIGINT, SIGTERM, SIGHUP) from now on:
    /// those signals are blocked in this thread and the threads it starts later, and a thread
    /// of its own waits for them, drops the database (ending its sessions) and exits (130).
    /// Call it before starting other threads. SIGKILL cannot be caught: [`drop_abandoned`].
    pub fn drop_on_signal(&self) -> Result<()> {
        // SAFETY: an empty set filled with three signals, then this thread's mask changed.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                anyhow::bail!("block the interrupting signals");
            }
            set
        };
        let (admin, name) = (self.admin.clone(), self.name.clone());
        std::thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: a set of blocked signals and a place for the one that came.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("interrupted: dropping the throwaway database {name}");
                if let Err(e) = drop_database(&admin, &name) {
                    eprintln!("warning: {e:#}; drop it by hand");
                }
                std::process::exit(128 + signal);
            }
        });
        Ok(())
    }

    /// Drops it now, saying so when that fails.
    pub fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        drop_database(&self.admin, &self.name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        if let Err(e) = drop_database(&self.admin, &self.name) {
            eprintln!("warning: could not drop the throwaway database {}: {e:#}; drop it by hand", self.name);
        }
    }
}

/// Set when a signal came and a throwaway database is being dropped: the process ends with the
/// signal's code once that is done (see [`wait_if_interrupted`]).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits for the end of the process when a signal interrupted it (see
/// [`Scratch::drop_on_signal`]): the command's own end (an error the drop caused, say) must not
/// exit first, with another code and its throwaway database or role still there.
pub fn wait_if_interrupted() {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

fn drop_database(admin: &Url, name: &str) -> Result<()> {
    let mut conn = crate::connect::establish(admin)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .with_context(|| format!("drop the throwaway database {name}"))?;
    drop_load_owner(&mut conn, name);
    Ok(())
}

/// The role a restore into database `name` made to own what it loads (see
/// [`crate::backup::load::owner_role`]): it owns nothing once the database is gone, and a
/// login role left behind is one more way in, so it goes with it (none there: nothing happens).
fn drop_load_owner(conn: &mut diesel::PgConnection, name: &str) {
    let role = crate::backup::load::owner_role(name);
    let _ = diesel::sql_query(format!("DROP ROLE IF EXISTS \"{}\"", role.replace('"', "\"\""))).execute(conn);
}

/// Drops the `railgun_<tag>_<pid>_...` databases on `url`'s server that a killed process of this
/// machine left: its pid no longer runs here and nobody is connected (a plain DROP, which fails,
/// and is passed over, should someone connect meanwhile). Returns their names.
pub fn drop_abandoned(url: &Url, tag: &str) -> Result<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let mut admin = url.clone();
    admin.set_path("/postgres");
    let mut conn = crate::connect::establish(&admin)?;
    let prefix = format!("railgun_{tag}_");
    let idle: Vec<Name> = diesel::sql_query(
        "SELECT datname::text AS name FROM pg_database d
         WHERE starts_with(datname, $1)
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .bind::<diesel::sql_types::Text, _>(&prefix)
    .load(&mut conn)
    .context("look for throwaway databases left by killed runs")?;
    let mut dropped = Vec::new();
    for Name { name } in idle {
        let pid = name[prefix.len()..].split('_').next().and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\"", name.replace('"', "\"\"")))
            .execute(&mut conn)
            .is_ok()
        {
            drop_load_owner(&mut conn, &name);
            dropped.push(name);
        }
    }
    Ok(dropped)
}
