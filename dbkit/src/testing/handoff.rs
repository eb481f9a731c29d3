//! What nextest's setup script (`cargo xtask test --prepare-db`) hands the test processes of
//! its run, as one value (`RAILGUN_TEST_HANDOFF`, JSON, through `NEXTEST_ENV`): the server it
//! prepared and what that allows, the pooler in front of it, the template it built, the
//! migrations folder it read, and what a clean clone holds. A test process that finds it (for
//! its own server and template) connects only to its slot's database. Read once per process.

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::recycle::Baseline;

/// The variable: internal, written by the setup script and read by the test processes.
pub(crate) const HANDOFF_ENV: &str = "RAILGUN_TEST_HANDOFF";

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Handoff {
    /// Who the server is: user, host, port, socket (no secret). A handoff of another server
    /// (or user) says nothing of this one.
    pub server: String,
    /// `CREATE DATABASE ... STRATEGY FILE_COPY` works there.
    pub file_copy: bool,
    /// Used databases are reset rather than dropped there.
    pub recycles: bool,
    /// The server's statistics epoch as the script found it (see `Server::stats_epoch`); 0,
    /// which no server has, in a handoff without it.
    #[serde(default)]
    pub stats_epoch: i64,
    /// PgBouncer's URL in front of it (no password: it trusts its socket), when it runs.
    pub pooler: Option<String>,
    /// The template the script prepared (its hash, in hex as in its name).
    pub template: String,
    /// The migrations folder it read, when it read one.
    pub dir: Option<PreparedDir>,
    /// What a clean clone of the template holds.
    pub baseline: Option<Baseline>,
}

/// A migrations folder as the setup script read it.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct PreparedDir {
    /// The hash of its canonical path.
    pub path: String,
    /// Its modification time: a migration added or removed since changes it.
    pub stamp: u64,
}

impl PreparedDir {
    pub(crate) fn new(dir: &Path, stamp: u64) -> PreparedDir {
        PreparedDir { path: path_key(dir), stamp }
    }
}

fn path_key(dir: &Path) -> String {
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("{:016x}", super::template::fnv(&[path.as_os_str().as_encoded_bytes()]))
}

impl Handoff {
    /// As the variable holds it.
    pub(crate) fn to_env(&self) -> (String, String) {
        (HANDOFF_ENV.to_string(), serde_json::to_string(self).unwrap_or_default())
    }

    /// True when it is of the template `hash`.
    pub(crate) fn prepared(&self, hash: u64) -> bool {
        self.template == format!("{hash:016x}")
    }
}

/// The handoff of this process's run, when the setup script gave one (and it reads).
pub(crate) fn handed() -> Option<&'static Handoff> {
    static HANDED: OnceLock<Option<Handoff>> = OnceLock::new();
    HANDED.get_or_init(|| serde_json::from_str(&std::env::var(HANDOFF_ENV).ok()?).ok()).as_ref()
}

/// The template the setup script found for the migrations folder `dir`, unless a migration
/// was added or removed since (its modification time is not `stamp` any more).
pub(crate) fn prepared_dir(dir: &Path, stamp: u64) -> Option<u64> {
    let handoff = handed()?;
    let seen = handoff.dir.as_ref()?;
    let hash = u64::from_str_radix(&handoff.template, 16).ok()?;
    (seen.stamp == stamp && seen.path == path_key(dir)).then_some(hash)
}
