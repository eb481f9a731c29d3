//! Seeds: the rows a new database starts with, from the `seeds` folder beside the migrations
//! (`db/seeds/*.sql` in name order, then `db/seeds/<APP_ENV>/*.sql` in name order).
//!
//! A seed file is data, judged as a backup is: the restore's scanner and statement classifier
//! (no psql meta-command, no transaction control, no role or database statement), and rows
//! only (`INSERT`, `COPY ... FROM stdin`, pg_dump's `setval` and settings): a schema change
//! belongs in a migration. Every file is judged before any statement is sent, then all of them
//! run in one transaction on a session of this process: a failure names the file and line, and
//! nothing of any seed stays.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use url::Url;

use crate::backup::scan::Forbidden;
use crate::backup::session::{PgError, Session};
use crate::backup::statement::{self, Event, Kind, Statements};
use crate::error::escaped;

/// The environment when `APP_ENV` is not set.
pub const DEFAULT_ENV: &str = "development";
/// The environment of the test template's seeds, whatever `APP_ENV` says: a test run seeds the
/// same on every machine.
pub const TEST_ENV: &str = "test";

/// The seed files of one environment, in the order they run.
#[derive(Clone, Debug, Default)]
pub struct Seeds {
    files: Vec<SeedFile>,
}

/// One seed file, read.
#[derive(Clone, Debug)]
pub struct SeedFile {
    /// As shown in messages: `db/seeds/01_users.sql`, `db/seeds/development/02_demo.sql`.
    pub shown: String,
    pub sql: Vec<u8>,
}

/// What [`Seeds::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    pub files: usize,
    pub statements: u64,
}

impl Seeds {
    /// The seeds folder of a migrations folder: `seeds` beside it (`db/migrations` → `db/seeds`).
    pub fn dir_beside(migration_dir: &Path) -> PathBuf {
        migration_dir.parent().unwrap_or_else(|| Path::new(".")).join("seeds")
    }

    /// The seeds of environment `env` in `dir`: its `*.sql`, then those of `dir/<env>`, each
    /// set in name order. A missing folder holds none.
    pub fn load(dir: &Path, env: &str) -> Result<Seeds> {
        if env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            bail!(hint!("APP_ENV `{}` cannot name a seeds folder", escaped(env);
                "set APP_ENV to a plain name (development, test, production, ...): its seeds are in {}/<APP_ENV>/", dir.display()));
        }
        let mut files = sql_files(dir)?;
        files.extend(sql_files(&dir.join(env))?);
        Ok(Seeds { files })
    }

    /// The seeds of the environment `APP_ENV` names (environment, else `.env`; default
    /// development), beside the checkout's migrations.
    pub fn for_checkout(cx: &crate::context::Context) -> Result<(Seeds, String, PathBuf)> {
        let env = cx.setting("APP_ENV")?.map(|e| e.trim().to_string()).filter(|e| !e.is_empty());
        let env = env.unwrap_or_else(|| DEFAULT_ENV.to_string());
        let dir = Seeds::dir_beside(&cx.migration_dir()?);
        Ok((Seeds::load(&dir, &env)?, env, dir))
    }

    pub fn files(&self) -> &[SeedFile] {
        &self.files
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Each file's name and SQL, for a hash of what the seeds put in (the test template's name).
    pub fn fingerprint_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for file in &self.files {
            bytes.extend_from_slice(file.shown.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(&file.sql);
            bytes.push(0);
        }
        bytes
    }

    /// Judges every file, statement by statement, without sending any.
    pub fn check(&self) -> Result<()> {
        for file in &self.files {
            walk(file, &mut |_, _| Ok(()))?;
        }
        Ok(())
    }

    /// Judges every file, then runs them all in one transaction on the database at `url`.
    pub fn apply(&self, url: &Url) -> Result<Applied> {
        self.check()?;
        let mut applied = Applied { files: self.files.len(), statements: 0 };
        if self.files.is_empty() {
            return Ok(applied);
        }
        let mut session = Session::connect(url).context("connect to seed the database")?;
        let begin =
            |session: &mut Session| session.exec(b"BEGIN").map_err(|e| anyhow!("begin the seeds' transaction: {e}"));
        begin(&mut session)?;
        let ran = (|| -> Result<()> {
            for file in &self.files {
                walk(file, &mut |event, line| {
                    let sent = match event {
                        Event::Statement(s) => {
                            applied.statements += 1;
                            let sql = statement::body(s.text);
                            match s.kind {
                                Kind::Copy => session.start_copy(sql),
                                _ => session.exec(sql),
                            }
                        }
                        Event::CopyData(data) => session.put(data),
                        Event::CopyEnd => session.end_copy(),
                    };
                    sent.map_err(|e| failed(file, line, &e))?;
                    if !session.in_transaction() {
                        bail!("{}:{line}: the seeds' transaction ended early", escaped(&file.shown));
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })();
        if let Err(e) = ran {
            let _ = session.exec(b"ROLLBACK");
            return Err(e.context("the seeds were rolled back: the database is as it was"));
        }
        session.exec(b"COMMIT").map_err(|e| anyhow!("commit the seeds: {e}"))?;
        Ok(applied)
    }
}

/// Applies the checkout's seeds (see [`Seeds::for_checkout`]) to `url`, saying what ran on stderr.
pub fn seed(cx: &crate::context::Context, url: &Url) -> Result<Applied> {
    let started = Instant::now();
    let (seeds, env, dir) = Seeds::for_checkout(cx)?;
    if seeds.is_empty() {
        eprintln!("no seeds for APP_ENV={env} in {}", escaped(&dir.display().to_string()));
        return Ok(Applied::default());
    }
    let applied = seeds.apply(url)?;
    eprintln!(
        "seeded {} file(s) for APP_ENV={env} ({} statements) in {:.2}s",
        applied.files,
        applied.statements,
        started.elapsed().as_secs_f64()
    );
    Ok(applied)
}

/// The `*.sql` files directly in `dir`, in name order; none when it does not exist.
fn sql_files(dir: &Path) -> Result<Vec<SeedFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read the seeds folder {}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("read the seeds folder {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths
        .into_iter()
        .map(|path| {
            let sql = std::fs::read(&path).with_context(|| format!("read the seed {}", path.display()))?;
            Ok(SeedFile { shown: path.display().to_string(), sql })
        })
        .collect()
}

/// The statements a seed may hold, by their first word: rows, and what pg_dump writes around
/// them (its settings, `setval`).
const SEED_STATEMENTS: &[&str] = &["INSERT", "COPY", "SELECT", "SET"];

/// Cuts `file` into judged statements and COPY data, each handed to `run` with its line; the
/// first refusal or failure names the file and line.
fn walk(file: &SeedFile, run: &mut dyn FnMut(Event<'_>, u64) -> Result<()>) -> Result<()> {
    let mut statements = Statements::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut line = 0;
    let mut take = |event: Event<'_>| {
        if failure.is_some() {
            return;
        }
        if let Event::Statement(s) = &event {
            line = s.line;
            let word = first_word(statement::body(s.text));
            let allowed = matches!(s.kind, Kind::Run | Kind::Copy | Kind::LockTimeout)
                && SEED_STATEMENTS.contains(&word.as_str());
            if !allowed {
                failure = Some(refused(
                    file,
                    s.line,
                    &format!("`{word}`: a seed holds rows, and a schema change belongs in a migration"),
                ));
                return;
            }
        }
        if let Err(e) = run(event, line) {
            failure = Some(e);
        }
    };
    let scanned = statements.feed(&file.sql, &mut take).and_then(|()| statements.finish(&mut take));
    if let Some(e) = failure {
        return Err(e);
    }
    scanned.map_err(|Forbidden { line, what }| refused(file, line, &what))
}

/// The statement's first word, uppercased.
fn first_word(body: &[u8]) -> String {
    let end = body.iter().position(|b| !b.is_ascii_alphabetic()).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).to_ascii_uppercase()
}

fn refused(file: &SeedFile, line: u64, what: &str) -> anyhow::Error {
    anyhow!(hint!("{}:{line}: {what}; refused before any seed ran", escaped(&file.shown);
        "a seed file is data: rows (INSERT, COPY ... FROM stdin) with no psql meta-command (`\\!`, `\\connect`), no transaction control (all seeds run in one transaction) and no role or database statement"))
}

fn failed(file: &SeedFile, line: u64, e: &PgError) -> anyhow::Error {
    anyhow!(hint!("{}:{line}: {e}", escaped(&file.shown);
        "fix the seed (a seed that may run twice, as `db seed` on a seeded database does, wants `INSERT ... ON CONFLICT DO NOTHING`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sql: &str) -> SeedFile {
        SeedFile { shown: "db/seeds/01.sql".into(), sql: sql.as_bytes().to_vec() }
    }

    fn refusal(sql: &str) -> String {
        crate::error::describe(&Seeds { files: vec![file(sql)] }.check().expect_err(sql))
    }

    #[test]
    fn rows_pass_and_the_rest_is_refused_with_file_and_line() {
        let rows = "-- users\nINSERT INTO users (email) VALUES ('a@example.com') ON CONFLICT DO NOTHING;\n\
            COPY public.users (email) FROM stdin;\nb@example.com\n\\.\nSELECT pg_catalog.setval('public.users_id_seq', 2, true);\n";
        Seeds { files: vec![file(rows)] }.check().unwrap();
        for (sql, needle) in [
            ("INSERT INTO t VALUES (1);\n\\! touch /tmp/pwned\n", "db/seeds/01.sql:2: the psql meta-command `\\!`"),
            ("INSERT INTO t VALUES (1);\nCOMMIT;\n", "db/seeds/01.sql:2:"),
            ("\nCREATE ROLE x SUPERUSER;\n", "db/seeds/01.sql:2: `CREATE ROLE`"),
            ("ALTER DATABASE d SET x = 1;\n", "db/seeds/01.sql:1: `ALTER DATABASE`"),
            ("CREATE TABLE t (a int);\n", "db/seeds/01.sql:1: `CREATE`: a seed holds rows"),
            ("UPDATE t SET a = 1;\n", "db/seeds/01.sql:1: `UPDATE`"),
        ] {
            let error = refusal(sql);
            assert!(error.contains(needle), "{sql:?}: {error}");
            assert!(error.contains("hint: a seed file is data"), "{error}");
        }
    }

    #[test]
    fn files_load_in_name_order_then_the_environments() {
        let dir = std::env::temp_dir().join(format!("railgun-seeds-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, sql) in
            [("10_b.sql", ""), ("02_a.sql", ""), ("notes.txt", ""), ("test/01_t.sql", ""), ("development/01_d.sql", "")]
        {
            std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.join(path), sql).unwrap();
        }
        let names = |env: &str| -> Vec<String> {
            Seeds::load(&dir, env)
                .unwrap()
                .files()
                .iter()
                .map(|f| f.shown.strip_prefix(&format!("{}/", dir.display())).unwrap().to_string())
                .collect()
        };
        assert_eq!(names("test"), ["02_a.sql", "10_b.sql", "test/01_t.sql"]);
        assert_eq!(names("development"), ["02_a.sql", "10_b.sql", "development/01_d.sql"]);
        assert!(Seeds::load(&dir, "../etc").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
