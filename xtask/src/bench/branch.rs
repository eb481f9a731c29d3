//! `cargo xtask bench branch`: what branch databases cost a `git checkout`, in a repository of
//! its own (the project's migrations, a database of its own on the checkout's server).
//!
//! - Switching between two branches whose databases exist: `git checkout` with the hook beside
//!   `git checkout` without it (`-c core.hooksPath=/dev/null`), alternating, medians.
//! - The first checkout of a new branch from a database of `--size-mb`: `git checkout -b` with
//!   the hook (which clones it) beside `createdb -T` of the same database (the floor).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use diesel::connection::SimpleConnection;
use xshell::{Shell, cmd};

use super::{median, ms, time};
use crate::context::Context;

/// Benchmark `git checkout` with branch databases against git alone, and a new branch's first
/// checkout against `createdb -T` (medians)
#[derive(clap::Args)]
pub struct Branch {
    /// Switches between two existing branch databases, each way, with and without the hook
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// First checkouts of a new branch, and createdb -T, each
    #[arg(long, default_value_t = 3)]
    clones: usize,
    /// Size of the database a new branch is cloned from, in MiB (the dev database's data)
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
}

impl Branch {
    pub fn run(self, cx: &Context) -> Result<()> {
        let server = dbkit::branch::Branching::url_for(&cx.database_url()?, "postgres");
        let base = "railgun_bench_branch";
        let mut admin = dbkit::connect::establish(&server)?;
        drop_family(&mut admin, base)?;
        admin.batch_execute(&format!("CREATE DATABASE {base}"))?;
        let repo = Repo::new(cx, &dbkit::branch::Branching::url_for(&server, base))?;
        let result = self.measure(cx, &repo, &mut admin, base);
        drop_family(&mut admin, base)?;
        let _ = std::fs::remove_dir_all(&repo.dir);
        result
    }

    fn measure(&self, cx: &Context, repo: &Repo, admin: &mut diesel::PgConnection, base: &str) -> Result<()> {
        repo.xtask(&["migration", "run"])?;
        repo.git(&["add", "-A"])?;
        repo.git(&["commit", "-q", "-m", "migrations"])?;
        repo.xtask(&["branch", "on"])?;
        repo.git(&["checkout", "-q", "-b", "other"])?;
        repo.git(&["checkout", "-q", "main"])?;
        let (mut hooked, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..self.runs {
            for target in ["other", "main"] {
                hooked.push(time(|| repo.git(&["checkout", "-q", target]))?);
            }
            for target in ["other", "main"] {
                bare.push(time(|| repo.git(&["-c", "core.hooksPath=/dev/null", "checkout", "-q", target]))?);
            }
            // Without the hook `.env` stayed on main's database, and HEAD is main again.
        }
        let (hooked, bare) = (median(hooked), median(bare));
        println!("{:<40} {:>12} {:>12} {:>10}", "git checkout", "hook (ms)", "git (ms)", "extra (ms)");
        println!(
            "{:<40} {:>12.1} {:>12.1} {:>10.1}",
            format!("existing branch databases ({} switches)", self.runs * 2),
            ms(hooked),
            ms(bare),
            ms(hooked.saturating_sub(bare))
        );

        eprintln!("filling {base} with {} MiB...", self.size_mb);
        let mut conn = dbkit::connect::establish(&dbkit::branch::Branching::url_for(&cx.database_url()?, base))?;
        conn.batch_execute(&format!(
            "CREATE TABLE bench_filler AS SELECT g AS id, repeat(md5(g::text), 31) AS payload FROM generate_series(1, {}) g",
            self.size_mb * 1024 * 1024 / 1060
        ))?;
        conn.batch_execute("VACUUM ANALYZE bench_filler")?;
        drop(conn);
        let size: i64 = size_of(admin, base)?;
        let (mut firsts, mut floors) = (Vec::new(), Vec::new());
        for run in 0..self.clones {
            let branch = format!("new{run}");
            firsts.push(time(|| repo.git(&["checkout", "-q", "-b", &branch, "main"]))?);
            repo.git(&["checkout", "-q", "main"])?;
            drop_branch_databases(admin, base, &branch)?;
            let floor = format!("{base}_floor");
            floors.push(time(|| createdb(cx, &server_of(cx)?, base, &floor))?);
            admin.batch_execute(&format!("DROP DATABASE {floor}"))?;
        }
        let (first, floor) = (median(firsts), median(floors));
        println!("{:<40} {:>12} {:>12} {:>10}", "new branch", "hook (ms)", "createdb -T", "ratio");
        println!(
            "{:<40} {:>12.0} {:>12.0} {:>9.2}x",
            format!("first checkout, {} MiB database", size / 1_048_576),
            ms(first),
            ms(floor),
            first.as_secs_f64() / floor.as_secs_f64()
        );
        Ok(())
    }
}

/// The bench's repository: the project's migrations, committed; `.env` on `url`.
struct Repo {
    dir: PathBuf,
    exe: PathBuf,
}

impl Repo {
    fn new(cx: &Context, url: &url::Url) -> Result<Repo> {
        let dir = std::env::temp_dir().join(format!("railgun-bench-branch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        copy_dir(&cx.migration_dir()?, &dir.join("migrations"))?;
        std::fs::write(
            dir.join("diesel.toml"),
            "[print_schema]\nfile = \"schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n",
        )?;
        std::fs::write(dir.join(".gitignore"), ".env\n")?;
        std::fs::write(dir.join(".env"), format!("DATABASE_URL={url}\n"))?;
        let repo = Repo { dir, exe: std::env::current_exe()? };
        repo.git(&["init", "-q", "-b", "main"])?;
        Ok(repo)
    }

    fn shell(&self) -> Result<Shell> {
        let sh = Shell::new()?;
        sh.change_dir(&self.dir);
        sh.set_var("RAILGUN_CHECKOUT", &self.dir);
        Ok(sh)
    }

    /// `command` with `.env` as its only source of settings (the hook's children inherit this).
    fn clean<'a>(command: xshell::Cmd<'a>) -> xshell::Cmd<'a> {
        ["DATABASE_URL", "DIRECT_URL", "RAILGUN_ENV_FILE", "DIESEL_CONFIG_FILE", "RAILGUN_PROJECT"]
            .into_iter()
            .fold(command.quiet(), |command, key| command.env_remove(key))
    }

    fn git(&self, args: &[&str]) -> Result<()> {
        let sh = self.shell()?;
        Repo::clean(cmd!(sh, "git -c user.name=bench -c user.email=bench@example.com {args...}"))
            .ignore_stderr()
            .run()?;
        Ok(())
    }

    fn xtask(&self, args: &[&str]) -> Result<()> {
        let sh = self.shell()?;
        let exe = &self.exe;
        Repo::clean(cmd!(sh, "{exe} {args...}")).ignore_stderr().ignore_stdout().run()?;
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn server_of(cx: &Context) -> Result<url::Url> {
    Ok(dbkit::branch::Branching::url_for(&cx.database_url()?, "postgres"))
}

/// `createdb -T source target`, the password in the environment.
fn createdb(cx: &Context, server: &url::Url, source: &str, target: &str) -> Result<()> {
    let (conninfo, env) = dbkit::url::libpq_env(server)?;
    let sh = &cx.sh;
    let mut command = cmd!(sh, "createdb --maintenance-db {conninfo} -T {source} {target}").quiet();
    for (key, value) in env {
        command = command.env(key, value);
    }
    command.run()?;
    Ok(())
}

fn size_of(admin: &mut diesel::PgConnection, database: &str) -> Result<i64> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        size: i64,
    }
    let size: Size = diesel::sql_query("SELECT pg_database_size($1) AS size")
        .bind::<diesel::sql_types::Text, _>(database)
        .get_result(admin)?;
    Ok(size.size)
}

/// Drops the databases the bench made: `base` and every branch database of its family.
fn drop_family(admin: &mut diesel::PgConnection, base: &str) -> Result<()> {
    for entry in dbkit::branch::registry(admin, false)?.into_iter().filter(|e| e.meta.root == base) {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", entry.database))?;
    }
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {base}_floor WITH (FORCE)"))?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {base} WITH (FORCE)"))?;
    Ok(())
}

fn drop_branch_databases(admin: &mut diesel::PgConnection, base: &str, branch: &str) -> Result<()> {
    for entry in
        dbkit::branch::registry(admin, false)?.into_iter().filter(|e| e.meta.root == base && e.meta.branch == branch)
    {
        admin.batch_execute(&format!("DROP DATABASE \"{}\"", entry.database))?;
    }
    Ok(())
}
