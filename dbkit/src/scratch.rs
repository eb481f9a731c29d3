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

fn drop_database(admin: &Url, name: &str) -> Result<()> {
    let mut conn = crate::connect::establish(admin)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .with_context(|| format!("drop the throwaway database {name}"))?;
    Ok(())
}
