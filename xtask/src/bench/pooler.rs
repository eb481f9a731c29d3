//! `cargo xtask bench pooler`: the same read load straight to Postgres and through PgBouncer in
//! transaction mode, with pgbench and with the app's own query path (diesel over an r2d2 pool),
//! in one run; medians and ratios, for the README's "when to use the pooler".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use url::Url;
use xshell::cmd;

use crate::context::Context;

/// Benchmark Postgres directly against PgBouncer (transaction mode) in front of it
///
/// pgbench select-only (-S) with 50 clients, each keeping its connection and with a new
/// connection per transaction (-C, what serverless functions and short-lived workers do); then
/// the app's query path: 50 threads sharing an r2d2 pool of DATABASE_POOL_MAX=10 diesel
/// connections, each looking up a random account with a typed diesel query, with the statement
/// cache on directly and off through the pooler (as db::config sets it). Runs alternate, and
/// the medians are compared.
///
/// Needs `cargo xtask up --pooler` (DATABASE_URL through PgBouncer, DIRECT_URL direct); makes
/// and drops a scratch database with `pgbench -i`.
///
/// Example: cargo xtask bench pooler --seconds 5 --runs 3
#[derive(clap::Args)]
pub struct Pooler {
    /// Seconds each run lasts
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of each side (alternating); medians are reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent clients
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// pgbench scale of the scratch database (100 000 accounts per unit)
    #[arg(long, default_value_t = 10)]
    scale: u32,
}

const SCRATCH: &str = "railgun_bench_pooler";
/// The app's default pool (db::config's DEFAULT_POOL_MAX).
const POOL_MAX: u32 = 10;

impl Pooler {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.runs == 0 || self.seconds == 0 || self.clients == 0 {
            bail!("--runs, --seconds and --clients must be at least 1");
        }
        let (direct, _) = cx.session_url()?;
        let pooled = match cx.app_url()? {
            Some(app) if app != direct => dbkit::pooler::strip_convention(&app),
            _ => bail!(
                hint!("no pooler to compare with: DATABASE_URL and DIRECT_URL are one URL"; "run `cargo xtask up --pooler` (it writes both), or set DATABASE_URL to the pooler and DIRECT_URL to Postgres")
            ),
        };
        if dbkit::pooler::probe(&pooled) != Some(dbkit::pooler::Probe::Pooled) {
            bail!(
                hint!("DATABASE_URL ({}) does not go through a pooler (or does not answer)", dbkit::url::redact(&pooled); "run `cargo xtask up --pooler`")
            );
        }
        which::which("pgbench").context(hint!("pgbench is not installed"; "apt-get install postgresql-client"))?;
        let (direct_db, pooled_db) = (scratch(&direct), scratch(&pooled));
        self.prepare(cx, &direct, &direct_db)?;
        let result = self.bench(cx, &direct_db, &pooled_db);
        let mut admin = dbkit::connect::establish(&direct)?;
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")).execute(&mut admin);
        result
    }

    fn prepare(&self, cx: &Context, direct: &Url, scratch: &Url) -> Result<()> {
        let mut admin = dbkit::connect::establish(direct)?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")).execute(&mut admin)?;
        diesel::sql_query(format!("CREATE DATABASE {SCRATCH}")).execute(&mut admin)?;
        let (target, env) = dbkit::url::libpq_env(scratch)?;
        let scale = self.scale.to_string();
        eprintln!("$ pgbench -i -s {scale} (scratch database {SCRATCH})");
        cmd!(cx.sh, "pgbench -i -q -s {scale} {target}").envs(env).quiet().ignore_stderr().ignore_stdout().run()?;
        Ok(())
    }

    fn bench(&self, cx: &Context, direct: &Url, pooled: &Url) -> Result<()> {
        let accounts = i32::try_from(self.scale * 100_000).context("--scale is too large")?;
        let sides: [(&str, &Url, bool); 2] = [("direct", direct, true), ("pooler", pooled, false)];
        let mut tps: [[Vec<f64>; 2]; 3] = Default::default();
        for run in 0..self.runs {
            eprintln!("run {}/{}", run + 1, self.runs);
            for (side, (_, url, cache)) in sides.iter().enumerate() {
                tps[0][side].push(self.pgbench(cx, url, false)?);
                tps[1][side].push(self.pgbench(cx, url, true)?);
                tps[2][side].push(self.app(url, *cache, accounts)?);
            }
        }
        println!(
            "{} clients, {} s a run, median of {} runs (transactions or queries per second)",
            self.clients, self.seconds, self.runs
        );
        println!("{:<42} {:>12} {:>12} {:>15}", "", "direct", "pooler", "pooler/direct");
        let names = [
            "pgbench -S, connections kept",
            "pgbench -S -C, a connection per transaction",
            "app: diesel + r2d2 pool of 10",
        ];
        for (name, [d, p]) in names.iter().zip(tps) {
            let (d, p) = (median(d), median(p));
            println!("{name:<42} {d:>12.0} {p:>12.0} {:>15.2}", p / d);
        }
        Ok(())
    }

    /// pgbench's tps (without the initial connection time) for one run.
    fn pgbench(&self, cx: &Context, url: &Url, connect_each: bool) -> Result<f64> {
        let (target, env) = dbkit::url::libpq_env(url)?;
        let (clients, seconds) = (self.clients.to_string(), self.seconds.to_string());
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(self.clients).to_string();
        let connect = connect_each.then_some("-C");
        let out = cmd!(cx.sh, "pgbench -n -S {connect...} -c {clients} -j {threads} -T {seconds} {target}")
            .envs(env)
            .quiet()
            .ignore_stderr()
            .read()
            .context("pgbench")?;
        out.lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no tps in pgbench's output:\n{out}"))
    }

    /// Queries per second of the app's path: `clients` threads sharing a pool of [`POOL_MAX`].
    fn app(&self, url: &Url, statement_cache: bool, accounts: i32) -> Result<f64> {
        diesel::table! {
            pgbench_accounts (aid) {
                aid -> Int4,
                bid -> Nullable<Int4>,
                abalance -> Nullable<Int4>,
            }
        }
        let mut builder = Pool::builder();
        if !statement_cache {
            builder = builder.connection_customizer(Box::new(dbkit::pooler::NoStatementCache));
        }
        let pool = builder
            .max_size(POOL_MAX)
            .connection_timeout(Duration::from_secs(30))
            .build(ConnectionManager::<PgConnection>::new(url.as_str()))
            .context("build the pool")?;
        let (done, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let start = Arc::new(Barrier::new(self.clients + 1));
        let workers: Vec<_> = (0..self.clients)
            .map(|client| {
                let (pool, done, stop, start) = (pool.clone(), done.clone(), stop.clone(), start.clone());
                std::thread::spawn(move || -> Result<()> {
                    let mut aid = (client as i32 * 7919) % accounts + 1;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let mut conn = pool.get()?;
                        let _: Option<i32> = pgbench_accounts::table
                            .filter(pgbench_accounts::aid.eq(aid))
                            .select(pgbench_accounts::abalance)
                            .first(&mut conn)?;
                        done.fetch_add(1, Ordering::Relaxed);
                        aid = (aid * 31 + 17) % accounts + 1;
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        std::thread::sleep(Duration::from_secs(self.seconds));
        stop.store(true, Ordering::Relaxed);
        let count = done.load(Ordering::Relaxed);
        let elapsed = began.elapsed();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(count as f64 / elapsed.as_secs_f64())
    }
}

fn scratch(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_path(SCRATCH);
    url
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
