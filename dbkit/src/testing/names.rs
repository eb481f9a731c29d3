//! The names of the harness's databases on the test server: what each is and whose, parsed and
//! rendered here and nowhere else. A name is the harness's state that every process sees (a
//! rename is atomic, so claiming a clone is renaming it), so it carries what other processes
//! must know: the template's hash, the process that owns it (its server-wide owner id), and for
//! a pooled clone whether a test used it.
//!
//! Every name fits [`MAX_LEN`]: Postgres cuts a longer identifier to 63 bytes with only a
//! NOTICE, so `ALTER DATABASE ... RENAME TO` a longer name succeeds under another name. That was
//! issue 11: a finished slot database pooled as `railgun_pool_<hash>_<slot name>_used` (66
//! bytes) became `..._u`, which read as a clean clone, so its claimer skipped the reset and
//! handed out the last test's row. Hence every part has a bounded width (an own part, a
//! counter, at most [`PART_LEN`] bytes; a run id [`RUN_LEN`]), the `used` mark comes before
//! the counter, and the tests render every kind at its widest.

/// The prefix every harness database shares (cleanup lists the server's databases by it).
pub(crate) const ANY: &str = "railgun_";
const TEMPLATE: &str = "railgun_tpl_";
const BUILDING: &str = "railgun_tplbuild_";
const PREPARING: &str = "railgun_prep_";
const READY: &str = "railgun_pool_";
const TEST: &str = "railgun_test_";
const SLOT: &str = "railgun_slot_";

/// Postgres's longest identifier; see the module's doc.
pub(crate) const MAX_LEN: usize = crate::url::MAX_IDENTIFIER;
/// The longest own part (a counter) a name has: the digits of `u64::MAX`.
pub(crate) const PART_LEN: usize = 20;
/// The hex digits of a nextest run id a slot database's name keeps.
pub(crate) const RUN_LEN: usize = 12;

/// A harness database's name, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbName {
    /// The migrated (and seeded) template of a migration set, by its hash.
    Template { hash: u64 },
    /// A template being built (renamed to [`DbName::Template`] when done).
    Building { hash: u64 },
    /// A clone warming up before it joins the pool.
    Preparing { hash: u64, owner: u32, n: String },
    /// A clone in the pool, ready to be claimed.
    Ready { hash: u64, owner: u32, n: String, state: Pooled },
    /// A database a test has (or kept after it failed), claimed by renaming a ready one.
    Test { owner: u32, n: String },
    /// A nextest slot's database: the tests of one slot of one run use it in turn.
    Slot { hash: u64, run: String, slot: u32 },
}

/// How a pooled clone came to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooled {
    /// Cloned from the template.
    Clean,
    /// A passing test's database: the claimer resets it first.
    Used,
    /// Held ahead by a process that ended before a test got it (cleanup put it back): clean.
    Returned,
}

impl DbName {
    pub(crate) fn parse(name: &str) -> Option<DbName> {
        // Our counters are u64s; a longer part is not ours.
        let part = |s: &str| (!s.is_empty() && s.len() <= PART_LEN).then(|| s.to_string());
        let hex64 = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
        let hex32 = |s: &str| (s.len() == 8).then(|| u32::from_str_radix(s, 16).ok()).flatten();
        // BUILDING first: TEMPLATE is its prefix.
        if let Some(rest) = name.strip_prefix(BUILDING) {
            return Some(DbName::Building { hash: hex64(rest)? });
        }
        if let Some(rest) = name.strip_prefix(TEMPLATE) {
            return Some(DbName::Template { hash: hex64(rest)? });
        }
        if let Some(rest) = name.strip_prefix(PREPARING) {
            let [hash, owner, n] = split3(rest)?;
            return Some(DbName::Preparing { hash: hex64(hash)?, owner: hex32(owner)?, n: part(n)? });
        }
        if let Some(rest) = name.strip_prefix(READY) {
            let [hash, owner, n] = split3(rest)?;
            let (n, state) = if let Some(n) = n.strip_prefix("used") {
                (n, Pooled::Used)
            } else if let Some(n) = n.strip_suffix('u') {
                (n, Pooled::Returned)
            } else {
                (n, Pooled::Clean)
            };
            return Some(DbName::Ready { hash: hex64(hash)?, owner: hex32(owner)?, n: part(n)?, state });
        }
        if let Some(rest) = name.strip_prefix(TEST) {
            let (owner, n) = rest.split_once('_')?;
            return Some(DbName::Test { owner: hex32(owner)?, n: part(n)? });
        }
        if let Some(rest) = name.strip_prefix(SLOT) {
            let [hash, run, slot] = split3(rest)?;
            let run = (run.len() <= RUN_LEN && run.chars().all(|c| c.is_ascii_hexdigit())).then(|| run.to_string())?;
            return Some(DbName::Slot { hash: hex64(hash)?, run, slot: slot.parse().ok()? });
        }
        None
    }

    /// The name, at most [`MAX_LEN`] bytes (the widest of each kind is tested).
    pub(crate) fn render(&self) -> String {
        let name = match self {
            DbName::Template { hash } => format!("{TEMPLATE}{hash:016x}"),
            DbName::Building { hash } => format!("{BUILDING}{hash:016x}"),
            DbName::Preparing { hash, owner, n } => format!("{PREPARING}{hash:016x}_{owner:08x}_{n}"),
            DbName::Ready { hash, owner, n, state } => match state {
                Pooled::Clean => format!("{READY}{hash:016x}_{owner:08x}_{n}"),
                Pooled::Used => format!("{READY}{hash:016x}_{owner:08x}_used{n}"),
                Pooled::Returned => format!("{READY}{hash:016x}_{owner:08x}_{n}u"),
            },
            DbName::Test { owner, n } => format!("{TEST}{owner:08x}_{n}"),
            DbName::Slot { hash, run, slot } => format!("{SLOT}{hash:016x}_{run}_{slot}"),
        };
        debug_assert!(name.len() <= MAX_LEN, "{name} is longer than Postgres keeps");
        name
    }

    pub(crate) fn is_slot(name: &str) -> bool {
        name.starts_with(SLOT)
    }
}

/// The prefix of the pooled clones of template `hash` (for `LIKE` and `starts_with`).
pub(crate) fn ready_prefix(hash: u64) -> String {
    format!("{READY}{hash:016x}_")
}

/// The prefix of the pooled clones of template `hash` that process `owner` made.
pub(crate) fn ready_prefix_of(hash: u64, owner: u32) -> String {
    format!("{READY}{hash:016x}_{owner:08x}_")
}

/// The prefix of every template's name.
pub(crate) fn template_prefix() -> &'static str {
    TEMPLATE
}

/// `A_B_REST`: the last part may hold `_` (a test database's own part may: a pooled clone made
/// of one keeps it).
fn split3(rest: &str) -> Option<[&str; 3]> {
    let mut parts = rest.splitn(3, '_');
    let parts = [parts.next()?, parts.next()?, parts.next()?];
    (!parts[2].is_empty()).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::{DbName, MAX_LEN, PART_LEN, Pooled, RUN_LEN};

    #[test]
    fn names_round_trip() {
        let hash = 0x0123_4567_89ab_cdef;
        for name in [
            DbName::Template { hash },
            DbName::Building { hash },
            DbName::Preparing { hash, owner: 0xdead_beef, n: "3".into() },
            DbName::Ready { hash, owner: 7, n: "0".into(), state: Pooled::Clean },
            DbName::Ready { hash, owner: 7, n: "12".into(), state: Pooled::Used },
            DbName::Ready { hash, owner: 7, n: "5".into(), state: Pooled::Returned },
            DbName::Test { owner: 0x10, n: "42".into() },
            DbName::Slot { hash, run: "0a1b2c3d4e5f".into(), slot: 1 },
        ] {
            let rendered = name.render();
            assert_eq!(DbName::parse(&rendered), Some(name), "{rendered}");
        }
        assert_eq!(
            DbName::Ready { hash, owner: 7, n: "12".into(), state: Pooled::Used }.render(),
            "railgun_pool_0123456789abcdef_00000007_used12"
        );
    }

    /// Issue 11's cause: a name longer than Postgres keeps lost its `used` mark in a rename.
    /// Each kind at its widest fits, and still reads back as itself.
    #[test]
    fn the_widest_names_fit_postgres() {
        let (hash, owner, n) = (u64::MAX, u32::MAX, u64::MAX.to_string());
        assert_eq!(n.len(), PART_LEN);
        for name in [
            DbName::Template { hash },
            DbName::Building { hash },
            DbName::Preparing { hash, owner, n: n.clone() },
            DbName::Ready { hash, owner, n: n.clone(), state: Pooled::Clean },
            DbName::Ready { hash, owner, n: n.clone(), state: Pooled::Used },
            DbName::Ready { hash, owner, n: n.clone(), state: Pooled::Returned },
            DbName::Test { owner, n: n.clone() },
            DbName::Slot { hash, run: "f".repeat(RUN_LEN), slot: u32::MAX },
        ] {
            let rendered = name.render();
            assert!(rendered.len() <= MAX_LEN, "{rendered}: {} bytes", rendered.len());
            assert_eq!(DbName::parse(&rendered), Some(name), "{rendered}");
        }
        // The name that issue 11 pooled, cut as Postgres cut it, is not a clean clone's.
        let cut = "railgun_pool_0123456789abcdef_0123456789abcdef_0a1b2c3d4e5f_0_u";
        assert!(!matches!(DbName::parse(cut), Some(DbName::Ready { state: Pooled::Clean, .. })));
    }

    #[test]
    fn names_of_others_are_not_ours() {
        for other in [
            "railgun",
            "railgun_dev",
            "railgun_tpl_123",
            "railgun_tpl_0123456789abcdeg",
            "railgun_test_0000000g_1",
            "railgun_test_00000001",
            "railgun_pool_0123456789abcdef_00000001_",
            "railgun_slot_0123456789abcdef_run!_1",
            "railgun_bench_floor_12",
        ] {
            assert_eq!(DbName::parse(other), None, "{other}");
        }
    }
}
