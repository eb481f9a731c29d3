//! Which test runner this process runs under, read from the environment once: `cargo test`
//! (many tests in one process: background work pays), a nextest test process (one test: none
//! does), or nextest's setup script. What nextest tells each (its slot, its run, how many tests
//! at once) is kept with the kind it belongs to. What the setup script hands the test processes
//! is `handoff`'s.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Runner {
    /// `cargo test`, or any runner that runs many tests in one process.
    InProcess,
    /// A process nextest started for one test (`NEXTEST_EXECUTION_MODE=process-per-test`):
    /// its slot (`NEXTEST_TEST_GLOBAL_SLOT`), when nextest itself started it (not a process a
    /// test started, which inherits the slot and would share its database), and its run.
    NextestTest { slot: Option<u32>, run: Option<String> },
    /// nextest's setup script (a run id, no execution mode): the run and how many tests it
    /// runs at once (`NEXTEST_TEST_THREADS`).
    SetupScript { run: String, threads: Option<u32> },
}

impl Runner {
    fn read() -> Runner {
        let var = |key: &str| std::env::var(key).ok();
        // The run's id as slot names carry it: its first 12 hex digits.
        let run = var("NEXTEST_RUN_ID")
            .map(|id| id.chars().filter(char::is_ascii_hexdigit).take(super::names::RUN_LEN).collect::<String>())
            .filter(|run| !run.is_empty());
        if var("NEXTEST_EXECUTION_MODE").as_deref() == Some("process-per-test") {
            let slot = var("NEXTEST_TEST_GLOBAL_SLOT").and_then(|s| s.parse().ok()).filter(|_| started_by_nextest());
            return Runner::NextestTest { slot, run };
        }
        match run {
            Some(run) => Runner::SetupScript { run, threads: var("NEXTEST_TEST_THREADS").and_then(|t| t.parse().ok()) },
            None => Runner::InProcess,
        }
    }

    /// One test per process: background work would be wasted.
    pub(crate) fn one_test_per_process(&self) -> bool {
        matches!(self, Runner::NextestTest { .. })
    }

    /// The nextest run this process belongs to (a test's or the setup script's).
    pub(crate) fn run(&self) -> Option<&str> {
        match self {
            Runner::NextestTest { run, .. } => run.as_deref(),
            Runner::SetupScript { run, .. } => Some(run),
            Runner::InProcess => None,
        }
    }
}

/// This process's runner.
pub(crate) fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(Runner::read)
}

/// True in the process nextest started, not in one a test started. `RAILGUN_TEST_SLOT_PARENT`
/// names another parent whose children may take slots (the harness's own tests play nextest
/// that way).
fn started_by_nextest() -> bool {
    let parent = std::os::unix::process::parent_id();
    std::env::var("RAILGUN_TEST_SLOT_PARENT").is_ok_and(|p| p == parent.to_string())
        || std::fs::read_to_string(format!("/proc/{parent}/comm")).is_ok_and(|comm| comm.trim() == "cargo-nextest")
}
