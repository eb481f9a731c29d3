//! `cargo xtask bench`: each benchmark runs ours side by side with its anchor, in one run,
//! and reports medians and ratios.

mod backup;
mod branch;
mod check;
mod copy;
mod lint;
mod migrations;
mod pooler;
mod test_db;
mod up;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::context::Context;

/// Benchmarks, each side by side with its anchor.
#[derive(clap::Subcommand)]
pub enum Bench {
    Up(up::Up),
    Backup(backup::Backup),
    Branch(branch::Branch),
    Migrations(migrations::Migrations),
    TestDb(test_db::TestDb),
    Lint(lint::Lint),
    Pooler(pooler::Pooler),
    Check(check::Check),
    Copy(copy::Copy),
}

impl Bench {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Bench::Up(cmd) => cmd.run(cx),
            Bench::Backup(cmd) => cmd.run(cx),
            Bench::Branch(cmd) => cmd.run(cx),
            Bench::Migrations(cmd) => cmd.run(cx),
            Bench::TestDb(cmd) => cmd.run(cx),
            Bench::Lint(cmd) => cmd.run(cx),
            Bench::Pooler(cmd) => cmd.run(cx),
            Bench::Check(cmd) => cmd.run(cx),
            Bench::Copy(cmd) => cmd.run(cx),
        }
    }
}

/// How long `f` took.
fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The median of `samples` (zero when there are none).
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
