//! The template database: migrated once, named after what it holds, complete or absent.
//!
//! Its name carries a hash of every migration's SQL, of the seeds' and of this harness's
//! settings, so unchanged migrations and seeds find it from the last run and changed ones get a
//! new one. The seeds (see [`crate::seed`]) run once the migrations have. It is built
//! under another name and renamed only once migrated and marked a template: a database with a
//! template's name is always whole, whoever crashed wherever. Its comment keeps what a clean
//! clone holds (see `recycle`) and when it was last used.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use diesel::{PgConnection, RunQueryDsl};

use super::recycle::Baseline;
use super::server::{BUILD_LOCKS, Server, now};
use crate::migration::MigrationFiles;
use crate::seed::Seeds;

/// Bumped when how a template is made changes: old ones are then rebuilt, never reused.
const HARNESS_VERSION: &[u8] = b"railgun-testdb-3";
/// How many templates (migration sets: branches, benches) stay on the server; one used within
/// the last hour stays regardless (a run on another branch may be cloning it).
const TEMPLATES_KEPT: usize = 8;

pub(crate) use crate::migration::checksum::fnv;

/// The hash of every migration's name, SQL and transaction mode, of every seed file's name and
/// SQL, and of the harness's version (no seeds: the hash of the migrations alone, as before seeds).
pub(crate) fn fingerprint(migrations: &[MigrationFiles], seeds: &Seeds) -> Result<u64> {
    let mut bytes = HARNESS_VERSION.to_vec();
    for migration in migrations {
        bytes.extend_from_slice(migration.name.as_bytes());
        bytes.push(u8::from(migration.run_in_transaction));
        bytes.extend_from_slice(migration.sql("up.sql")?.as_bytes());
        bytes.push(0);
    }
    if !seeds.is_empty() {
        bytes.extend_from_slice(b"seeds\0");
        bytes.extend_from_slice(&seeds.fingerprint_bytes());
    }
    Ok(fnv(&[&bytes]))
}

/// What a template holds: the migrations, then the seeds.
pub(crate) struct Contents<'m> {
    pub migrations: std::borrow::Cow<'m, [MigrationFiles]>,
    pub seeds: std::borrow::Cow<'m, Seeds>,
}

/// A template on the server: its name, what a clean clone holds, and how long building it took
/// when this process built it.
pub(crate) struct Template {
    pub baseline: Option<Baseline>,
    pub built_in: Option<Duration>,
}

/// The name of the template for `hash`.
pub(crate) fn name_of(hash: u64) -> String {
    super::names::DbName::Template { hash }.render()
}

/// A template's comment: the baseline's text and when it was last used.
fn parse_comment(comment: &str) -> Option<(&str, &str)> {
    comment.strip_prefix(COMMENT_PREFIX)?.rsplit_once(COMMENT_USED)
}

/// Makes sure the template for `hash` exists.
/// What it holds is asked for (`contents`) only when it must be built.
pub(crate) fn ensure<'m>(server: &Server, contents: &dyn Fn() -> Result<Contents<'m>>, hash: u64) -> Result<Template> {
    let name = name_of(hash);
    let found = server.admin(|c| {
        let found = exists(c, &name)?;
        // Stamped once in a while, not by every test process (a write to a shared catalog).
        if let Some((baseline, used)) = &found
            && now().saturating_sub(*used) > 600
        {
            mark_used(c, &name, baseline)?;
        }
        Ok(found.map(|(baseline, _)| baseline))
    })?;
    if let Some(baseline) = found {
        return Ok(Template { baseline: Baseline::from_text(&baseline).ok(), built_in: None });
    }
    let mut session = server.connect_admin()?;
    // One builder per template across every process; the others wait here, then find it.
    let key = hash as i32;
    diesel::sql_query(format!("SELECT pg_advisory_lock({BUILD_LOCKS}, {key})"))
        .execute(&mut session)
        .context("wait for the template build lock")?;
    let built = (|| -> Result<(String, Option<Duration>)> {
        if let Some((baseline, _)) = exists(&mut session, &name)? {
            return Ok((baseline, None));
        }
        let started = Instant::now();
        let baseline = build(server, &mut session, &contents()?, hash, &name)?;
        Ok((baseline, Some(started.elapsed())))
    })();
    let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({BUILD_LOCKS}, {key})")).execute(&mut session);
    let (baseline, built_in) = built?;
    if built_in.is_some() {
        evict_old_templates(&mut session, &name);
    }
    Ok(Template { baseline: Baseline::from_text(&baseline).ok(), built_in })
}

fn build(
    server: &Server,
    session: &mut PgConnection,
    contents: &Contents<'_>,
    hash: u64,
    name: &str,
) -> Result<String> {
    let Contents { migrations, seeds } = contents;
    let building = super::names::DbName::Building { hash }.render();
    // A build that crashed half-way left this behind; we hold the lock, so nobody else uses it.
    super::recycle::drop_database(session, &building)?;
    diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
        .execute(session)
        .with_context(|| format!("create the template database {building}"))?;
    let baseline = (|| -> Result<String> {
        let mut conn = crate::connect::establish(&server.fast_url_for(&building))?;
        // No migrations, no bookkeeping table: an empty database stays empty.
        if !migrations.is_empty() {
            let mut session = crate::migration::Locked::lock(conn)?;
            crate::migration::apply_pending_with(&mut session, migrations, &mut |_| ()).map_err(|e| {
                anyhow::Error::new(hint!("the migrations fail on a fresh database: {}", crate::error::describe(&e); "the test template ({building}) is left unfinished and is rebuilt on the next run; fix the migration, or check it with `cargo xtask migration run` on a scratch database"))
            })?;
            conn = session.conn;
        }
        if !seeds.is_empty() {
            seeds.apply(&server.fast_url_for(&building)).map_err(|e| {
                anyhow::Error::new(hint!("the seeds fail on a fresh database: {}", crate::error::describe(&e); "the test template ({building}) is left unfinished and is rebuilt on the next run; fix the seed, or try it with `cargo xtask db seed` on a scratch database"))
            })?;
        }
        // Clones copy the statistics and hint bits: their first queries plan and read as on a settled database.
        diesel::sql_query("VACUUM ANALYZE").execute(&mut conn).context("analyze the template")?;
        Baseline::learn(&mut conn).context("read what the test template holds")?.to_text()
    })();
    let baseline = match baseline {
        Ok(baseline) => baseline,
        Err(e) => {
            // Kept for its user to look at: another process's cleanup leaves it a while.
            let failed = format!("COMMENT ON DATABASE \"{building}\" IS '{FAILED}{}'", now());
            let _ = diesel::sql_query(failed).execute(session);
            return Err(e);
        }
    };
    for statement in [
        format!("ALTER DATABASE \"{building}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""),
    ] {
        diesel::sql_query(&statement).execute(session).with_context(|| format!("finish the template: {statement}"))?;
    }
    mark_used(session, name, &baseline)?;
    Ok(baseline)
}

const COMMENT_PREFIX: &str = "railgun test template ";
/// The comment of a template whose migrations or seeds failed, followed by when (seconds since
/// the epoch): kept for [`super::KEEP_FOR`] (its next build replaces it sooner), where a
/// build that crashed is dropped by the next cleanup.
pub(crate) const FAILED: &str = "railgun test template failed ";
const COMMENT_USED: &str = " used ";

/// The baseline kept in the comment of template `name` and when it was last used, when it exists.
fn exists(conn: &mut PgConnection, name: &str) -> Result<Option<(String, u64)>> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        comment: Option<String>,
    }
    let found: Vec<Found> = diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1 AND datistemplate",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load(conn)
    .context("look for the test template")?;
    Ok(found.into_iter().next().map(|f| {
        let comment = f.comment.unwrap_or_default();
        let (baseline, used) = parse_comment(&comment).unwrap_or_default();
        (baseline.to_string(), used.parse().unwrap_or(0))
    }))
}

/// Stamps the template with the time it was last used (the comment's last word, for eviction).
fn mark_used(conn: &mut PgConnection, name: &str, baseline: &str) -> Result<()> {
    let comment = format!("{COMMENT_PREFIX}{baseline}{COMMENT_USED}{}", now()).replace('\'', "''");
    diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'"))
        .execute(conn)
        .context("stamp the test template")?;
    Ok(())
}

/// Keeps the most recently used templates; older ones (and their pooled clones, see cleanup) go.
fn evict_old_templates(conn: &mut PgConnection, current: &str) {
    let Ok(mut templates) = super::server::databases(conn, super::names::template_prefix()) else { return };
    let used = |comment: &Option<String>| -> u64 {
        comment.as_deref().and_then(|c| c.rsplit(' ').next()).and_then(|t| t.parse().ok()).unwrap_or(0)
    };
    templates.sort_by_key(|(_, comment)| std::cmp::Reverse(used(comment)));
    let recent = now().saturating_sub(3600);
    for (name, _) in templates.iter().skip(TEMPLATES_KEPT).filter(|(n, c)| n != current && used(c) < recent) {
        let _ = diesel::sql_query(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false")).execute(conn);
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\"")).execute(conn);
    }
}
