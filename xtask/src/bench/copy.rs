//! Benchmark masked and sampled copies against the plain `db copy`

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use diesel::connection::SimpleConnection;

use super::backup::{Scratch, timed};
use super::median;
use crate::context::Context;

/// Benchmark masked and sampled copies against the plain `db copy`
///
/// Makes a source database on the test server (`cargo xtask test`'s container: scratch
/// databases belong there; dropped at the end) with USERS users (email, name, phone, country;
/// unique emails) and 5 orders each (referencing their user by id and by email), then, side by
/// side in each run, each into a fresh database, the median of RUNS:
///   plain:   `cargo xtask db copy` (backup to a file, restore, compare every table)
///   masked:  `cargo xtask db copy --mask` (email, name, phone masked, country kept)
///   sample:  `cargo xtask db copy --mask --sample 10`
/// Goals: masked <= 1.3x plain, sample <= 0.3x plain.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Copy {
    /// Users in the source (orders: 5 each)
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Timed runs of each; the median is reported
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

const RULES: &str = r#"[mask]
"users.email" = "email"
"users.name" = "name"
"users.phone" = "phone"
"users.country" = "keep"
"orders.contact_email" = "email"
"#;

impl Copy {
    pub fn run(self, _cx: &Context) -> Result<()> {
        if self.runs == 0 || self.users == 0 {
            bail!("--runs and --users must be at least 1");
        }
        let server = dbkit::testing::server_url()?;
        let exe = std::env::current_exe().context("find the xtask binary")?;
        let pid = std::process::id();
        let work = std::env::temp_dir().join(format!("railgun-bench-copy-{pid}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("migrations"))?;
        std::fs::write(work.join("diesel.toml"), "")?;
        std::fs::write(work.join("railgun.toml"), RULES)?;
        let source = Scratch::create(&server, &format!("railgun_bench_copy_source_{pid}"))?;
        eprintln!("generating {} users and {} orders ...", self.users, self.users * 5);
        let users = self.users;
        let mut conn = dbkit::connect::establish(&source.url)?;
        conn.batch_execute(&format!(
                "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL,
                                     phone text, country text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users,
                                      contact_email text REFERENCES users (email), total_cents int NOT NULL,
                                      placed_at timestamptz NOT NULL DEFAULT now());
                 ALTER TABLE orders SET (autovacuum_enabled = false);
                 INSERT INTO users (email, name, phone, country)
                 SELECT 'person' || g || '@example.com', 'First' || g || ' Last' || g, '+44 20 ' || g, (ARRAY['NL', 'FR', 'US'])[1 + g % 3]
                 FROM generate_series(1, {users}) g;
                 INSERT INTO orders (user_id, contact_email, total_cents)
                 SELECT 1 + g % {users}, CASE WHEN g % 4 = 0 THEN 'person' || (1 + g % {users}) || '@example.com' END, g % 100000
                 FROM generate_series(1, {users} * 5) g;
                 CREATE INDEX orders_user_id ON orders (user_id);"
            ))
            .context("generate the source")?;
        conn.batch_execute("ANALYZE users; ANALYZE orders").context("analyze the source")?;
        let key = dbkit::secret::random_hex(32)?;
        let kinds: [(&str, &[&str]); 3] =
            [("plain", &[]), ("masked", &["--mask"]), ("sample", &["--mask", "--sample", "10"])];
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
        for run in 1..=self.runs {
            let mut line = Vec::new();
            // Rotate the order, so none always meets the warmer cache.
            for i in 0..kinds.len() {
                let index = (i + run) % kinds.len();
                let (kind, flags) = kinds[index];
                let target = Scratch::create(&server, &format!("railgun_bench_copy_{kind}_{pid}_{run}"))?;
                let config = work.join("diesel.toml");
                let migrations = work.join("migrations");
                let mut command = Command::new(&exe);
                command
                    .arg("--config-file")
                    .arg(&config)
                    .arg("--migration-dir")
                    .arg(&migrations)
                    .args(["db", "copy", "--yes", "--no-safety-backup", "--dir"])
                    .arg(work.join("backups"))
                    .args(flags)
                    .current_dir(&work)
                    .env("RAILGUN_COPY_FROM", source.url.as_str())
                    .env("RAILGUN_COPY_TO", target.url.as_str())
                    .env("RAILGUN_ENV_FILE", work.join(".env"))
                    .env("RAILGUN_MASK_KEY", &key)
                    .env_remove("APP_ENV");
                let cost = timed(&mut command).with_context(|| format!("the {kind} copy"))?;
                let _ = std::fs::remove_dir_all(work.join("backups"));
                line.push(format!("{kind} {:.1}s", cost.wall.as_secs_f64()));
                samples[index].push(cost.wall);
            }
            eprintln!("run {run}: {}", line.join(", "));
        }
        drop(source);
        let _ = std::fs::remove_dir_all(&work);
        let secs: Vec<f64> = samples.into_iter().map(|s| median(s).as_secs_f64()).collect();
        println!("{} users, {} orders, median of {} run(s)", users, users * 5, self.runs);
        println!("{:<8} {:>10} {:>8}   goal", "", "time (s)", "ratio");
        println!("{:<8} {:>10.1} {:>7.2}x", "plain", secs[0], 1.0);
        println!("{:<8} {:>10.1} {:>7.2}x   <= 1.30x", "masked", secs[1], secs[1] / secs[0]);
        println!("{:<8} {:>10.1} {:>7.2}x   <= 0.30x", "sample", secs[2], secs[2] / secs[0]);
        Ok(())
    }
}
