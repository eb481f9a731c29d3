//! `doctor`: the whole setup checked, one [`Check`](crate::checks::Check) each, every failure
//! with its fix.

use std::path::Path;

use anyhow::Result;
use diesel::{PgConnection, RunQueryDsl};
use url::Url;
use xshell::cmd;

use crate::backup::pgtools;
use crate::checks::{Checks, Outcome, fail};
use crate::context::Context;
use crate::diesel_config::DieselConfig;
use crate::docker::images::{self, Service};
use crate::error::hint_of;
use crate::migration::{Plan, phantom, source};
use crate::pooler::{Probe, SETTING, declared, pgbouncer_config, probe};
use crate::schema::{check_all, configured_files, print_files};
use crate::url::{is_local, redact, sslmode};

/// Checks the whole setup of `cx`'s checkout, in order: docker, images, .env, branch (with
/// branch databases on), pooler, database, tools, ssl, migrations, schema.rs. Without a
/// connection the last three are skipped.
pub fn doctor(cx: &Context) -> Checks {
    let mut checks = Checks::default();
    let docker = docker_engine();
    let docker_up = matches!(docker, Outcome::Pass(_));
    checks.push("docker", docker);
    checks.push("images", if docker_up { images(cx) } else { Outcome::Skip("Docker is not answering".into()) });
    checks.push(".env", env_file(cx));
    if let Some(check) = branch(cx) {
        checks.push("branch", check);
    }

    checks.push("pooler", pooler(cx));
    let connection = cx.session_url().and_then(|(url, _)| Ok((crate::connect::establish(&url)?, url)));
    let (mut conn, url) = match connection {
        Ok((conn, url)) => {
            checks.push("database", Outcome::Pass(format!("connected to {}", redact(&url))));
            (conn, url)
        }
        Err(error) => {
            let (what, fix) = split_hint(&error);
            checks.push("database", fail(what, fix.unwrap_or_else(|| "set DATABASE_URL".into())));
            checks.push("tools", host_tools(cx, None, docker_up));
            for name in ["ssl", "migrations", "schema.rs"] {
                checks.push(name, Outcome::Skip("no database connection".into()));
            }
            return checks;
        }
    };
    checks.push("tools", host_tools(cx, Some(&mut conn), docker_up));
    checks.push("ssl", ssl(&mut conn, &url));
    checks.push("migrations", pending(cx, &mut conn));
    checks.push("schema.rs", schema_drift(cx));
    checks
}

/// An error's text on one line, and its hint.
fn split_hint(error: &anyhow::Error) -> (String, Option<String>) {
    let text = format!("{error:#}");
    (text.split_whitespace().collect::<Vec<_>>().join(" "), hint_of(error))
}

/// Both URLs, which one goes through a pooler and in which mode; fails when the tools would
/// refuse (a pooled URL and no DIRECT_URL) or DIRECT_URL is not direct.
fn pooler(cx: &Context) -> Outcome {
    let report = (|| -> Result<Outcome> {
        let (session, origin) = cx.session_url()?;
        let Some(app) = cx.app_url()?.filter(|_| cx.global.database_url.is_none()) else {
            return Ok(Outcome::Pass(format!("{origin}: {} (one URL, no pooler declared)", redact(&session))));
        };
        let setting = cx.setting(SETTING)?;
        let (app_text, app_breaks_sessions) = describe_route(&app, setting.as_deref())?;
        if !origin.starts_with("DIRECT_URL") {
            if app_breaks_sessions {
                return Ok(fail(
                    format!(
                        "DATABASE_URL {app_text}, and DIRECT_URL is not set: migrations, backups and the other tools refuse it"
                    ),
                    "set DIRECT_URL to a direct connection to Postgres (in .env or the environment); `cargo xtask up --pooler` writes both",
                ));
            }
            return Ok(Outcome::Pass(format!("DATABASE_URL {app_text}; no DIRECT_URL: the tools use DATABASE_URL")));
        }
        let (direct_text, direct_breaks_sessions) = describe_route(&session, None)?;
        if direct_breaks_sessions {
            return Ok(fail(
                format!("DIRECT_URL {direct_text}: it must reach Postgres directly"),
                "point DIRECT_URL at Postgres itself (Supabase: port 5432 on db.<project>.supabase.co), not the pooler",
            ));
        }
        Ok(Outcome::Pass(format!("DATABASE_URL (the app's) {app_text}; DIRECT_URL (the tools') {direct_text}")))
    })();
    report.unwrap_or_else(|error| {
        let (what, fix) = split_hint(&error);
        fail(what, fix.unwrap_or_else(|| "set DATABASE_URL (and DIRECT_URL behind a pooler)".into()))
    })
}

/// How `url` reaches Postgres (redacted, with what says so: the declared mode `setting`, the
/// server, PgBouncer's console), and whether that breaks sessions.
fn describe_route(url: &Url, setting: Option<&str>) -> Result<(String, bool)> {
    let declared = declared(url, setting)?;
    let seen = probe(url);
    let console_mode =
        pgbouncer_config(url).and_then(|config| config.into_iter().find(|(k, _)| k == "pool_mode").map(|(_, v)| v));
    let pooled = declared.is_some() || seen == Some(Probe::Pooled);
    let text = match (declared, seen, console_mode) {
        (_, _, Some(mode)) => format!("through PgBouncer, pool_mode={mode} (its admin console says)"),
        (Some(mode), Some(Probe::Pooled), None) => {
            format!("through a {mode}-mode pooler (declared; the server confirms a pooler)")
        }
        (Some(mode), _, None) => format!("through a {mode}-mode pooler (declared)"),
        (None, Some(Probe::Pooled), None) => {
            format!("through a pooler of unknown mode (the server shows one; say which with {SETTING})")
        }
        (None, Some(Probe::Direct), None) => "direct (the server confirms)".into(),
        (None, None, None) => "direct by its settings (the server did not answer)".into(),
    };
    let session_safe = declared.map(|m| m.keeps_sessions()).unwrap_or(seen != Some(Probe::Pooled));
    Ok((format!("{} {text}", redact(url)), pooled && !session_safe))
}

fn docker_engine() -> Outcome {
    match crate::docker::check_engine() {
        Ok(()) => Outcome::Pass("the engine answers".into()),
        Err(error) => {
            let (what, fix) = split_hint(&error);
            fail(what, fix.unwrap_or_else(|| "start Docker (or set DOCKER_HOST)".into()))
        }
    }
}

fn images(cx: &Context) -> Outcome {
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for (service, official, offline, var) in [
        (Service::Postgres, images::POSTGRES_OFFICIAL, images::POSTGRES_OFFLINE, "RAILGUN_POSTGRES_IMAGE"),
        (Service::Redis, images::REDIS_OFFICIAL, images::REDIS_OFFLINE, "RAILGUN_REDIS_IMAGE"),
    ] {
        let asked = std::env::var(var).ok().filter(|s| !s.is_empty());
        let candidates: Vec<String> = match asked {
            Some(image) => vec![image],
            None => vec![official.to_string(), offline.to_string()],
        };
        match candidates.iter().find(|image| images::present(&cx.sh, image)) {
            Some(image) => found.push(image.clone()),
            None => missing.push(format!("{service:?}: none of {}", candidates.join(", "))),
        }
    }
    if missing.is_empty() {
        Outcome::Pass(found.join(", "))
    } else {
        fail(
            format!("no image for {}", missing.join("; ")),
            "`docker pull` the official images, or build the offline ones with `cargo xtask images build`",
        )
    }
}

fn env_file(cx: &Context) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let path = cx.env_file();
    let shown = path.display();
    let Ok(meta) = std::fs::metadata(&path) else {
        if std::env::var_os("DATABASE_URL").is_some() || cx.global.database_url.is_some() {
            return Outcome::Pass(format!("no {shown}: the database URL comes from the environment"));
        }
        return fail(format!("{shown} does not exist"), "run `cargo xtask up` (it writes .env from .env.example)");
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return fail(
            format!("{shown} has mode {mode:o}: other users can read its passwords"),
            format!("chmod 600 {shown}"),
        );
    }
    if let Some(problem) = committed_secret_risk(cx, &path) {
        return problem;
    }
    if let Some(problem) = example_has_secret(&cx.root.join(".env.example")) {
        return problem;
    }
    Outcome::Pass(format!("{shown}: mode {mode:o}, not tracked by git"))
}

/// `.env` inside the repository must be ignored by git.
fn committed_secret_risk(cx: &Context, path: &Path) -> Option<Outcome> {
    let path = path.canonicalize().ok()?;
    if !path.starts_with(cx.root.canonicalize().ok()?) {
        return None;
    }
    let sh = &cx.sh;
    let out = cmd!(sh, "git check-ignore -q {path}").quiet().ignore_status().ignore_stderr().output().ok()?;
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(fail(
            format!("{} is not git-ignored: its passwords could be committed", path.display()),
            "add `.env` to .gitignore (and `git rm --cached .env` if it was committed)",
        )),
        _ => None,
    }
}

/// The committed template must not carry a password.
fn example_has_secret(path: &Path) -> Option<Outcome> {
    let text = std::fs::read_to_string(path).ok()?;
    let leaks = text.lines().any(|line| {
        let value = line.split_once('=').map(|(_, v)| v.trim()).unwrap_or_default();
        !line.trim_start().starts_with('#') && crate::url::redact_str(value) != value
    });
    leaks.then(|| {
        fail(
            format!("{} holds a URL with a password, and it is committed", path.display()),
            "blank the value in .env.example (`cargo xtask up` fills .env), and rotate that password",
        )
    })
}

/// pg_dump must be at least the server's major; when it is older, backups run the pg_dump of
/// a Postgres container instead, so that needs Docker. The tools judged are the ones backups
/// pick ([`pgtools::host_tools`]), not whatever `PATH` finds first.
fn host_tools(cx: &Context, conn: Option<&mut PgConnection>, docker_up: bool) -> Outcome {
    let Some((bindir, major)) = pgtools::host_tools(&cx.sh) else {
        return fail(
            "pg_dump/psql are not installed on this machine",
            "install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client)",
        );
    };
    let listed = format!("pg_dump/psql {major} in {}", bindir.display());
    let Some(server) = conn.and_then(|conn| pgtools::server_major_on(conn).ok()) else {
        return Outcome::Pass(format!("{listed} (server version unknown)"));
    };
    if major < server {
        let what = format!("{listed}: older than the server (PostgreSQL {server})");
        if docker_up {
            return Outcome::Pass(format!("{what}: backups and restores use a Postgres container's tools"));
        }
        return fail(
            format!("{what}, and no Docker for a container's tools"),
            format!("install postgresql-client-{server} (apt.postgresql.org) or newer, or start Docker"),
        );
    }
    Outcome::Pass(format!("{listed}; server is PostgreSQL {server}"))
}

fn ssl(conn: &mut PgConnection, url: &Url) -> Outcome {
    let encrypted = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
    ))
    .get_result::<bool>(conn);
    let Ok(encrypted) = encrypted else {
        return fail("cannot read pg_stat_ssl", "check that the user may read pg_stat_ssl");
    };
    let mode = sslmode(url).unwrap_or_else(|| "prefer (default)".into());
    let required = matches!(mode.as_str(), "require" | "verify-ca" | "verify-full");
    match (is_local(url), encrypted, required) {
        (true, _, _) => Outcome::Pass(format!(
            "local server; connection is {} (sslmode={mode})",
            if encrypted { "encrypted" } else { "plain, fine on this machine" }
        )),
        (false, true, true) => Outcome::Pass(format!("encrypted (sslmode={mode})")),
        (false, true, false) => fail(
            format!("encrypted now, but sslmode={mode} would fall back to a plain connection"),
            "add ?sslmode=require to DATABASE_URL",
        ),
        (false, false, _) => fail(
            format!("the connection to a remote server is not encrypted (sslmode={mode})"),
            "add ?sslmode=require to DATABASE_URL and enable SSL enforcement on the server",
        ),
    }
}

/// With branch databases on: whether .env names the database of the branch checked out.
fn branch(cx: &Context) -> Option<Outcome> {
    let branching = match crate::branch::Branching::load(cx) {
        Ok(branching) => branching?,
        Err(error) => return Some(fail(format!("{error:#}"), "fix .env, or `cargo xtask branch off`")),
    };
    Some(match crate::branch::switch::check_follows(cx) {
        Ok(()) => Outcome::Pass(format!(
            "the database follows git: .env names {}{}",
            branching.database(),
            branching.current.map(|b| format!(", branch `{b}`'s")).unwrap_or_default()
        )),
        Err(error) => {
            let (what, fix) = split_hint(&error);
            fail(what, fix.unwrap_or_else(|| "cargo xtask branch switch".into()))
        }
    })
}

fn pending(cx: &Context, conn: &mut PgConnection) -> Outcome {
    let dir = match DieselConfig::load(cx) {
        Ok(config) => config.migration_dir(cx),
        Err(error) => return fail(format!("{error:#}"), "fix diesel.toml"),
    };
    if !dir.exists() {
        return Outcome::Skip(format!("no migrations directory at {}", dir.display()));
    }
    let plan = source::load(&dir).and_then(|on_disk| Plan::read(conn, &on_disk));
    match plan {
        Ok(plan) if !plan.phantoms.is_empty() => fail(
            format!(
                "{} applied migration(s) this checkout lacks (from another branch or checkout): {}",
                plan.phantoms.len(),
                phantom::names(&plan.phantoms)
            ),
            phantom::fix(&plan.phantoms),
        ),
        Ok(plan) if plan.pending.is_empty() => Outcome::Pass("every migration on disk is applied".into()),
        Ok(plan) => {
            let names: Vec<String> = plan.pending.iter().map(|m| m.name.clone()).collect();
            fail(format!("{} pending: {}", names.len(), names.join(", ")), "cargo xtask migration run")
        }
        Err(error) => fail(format!("{error:#}"), "check the migrations directory and __diesel_schema_migrations"),
    }
}

/// `schema generate --check` with diesel.toml's settings, in this process: every schema file.
fn schema_drift(cx: &Context) -> Outcome {
    let checked = (|| -> Result<usize> {
        let (url, _) = cx.session_url()?;
        let files = configured_files(cx, &DieselConfig::load(cx)?)?;
        let mut conn = crate::connect::establish(&url)?;
        check_all(&files, &print_files(cx, &mut conn, &files)?)?;
        let dumped = crate::schema::dump::check_configured(cx, &url)?;
        Ok(files.len() + usize::from(dumped))
    })();
    match checked {
        Ok(1) => Outcome::Pass("matches the database".into()),
        Ok(n) => Outcome::Pass(format!("all {n} schema files match the database")),
        Err(error) => fail(
            error.to_string().lines().next().unwrap_or("schema.rs differs from the database"),
            hint_of(&error).unwrap_or_else(|| "cargo xtask schema generate (then commit db/src/schema.rs)".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_passwords_in_the_template() {
        let dir = std::env::temp_dir().join(format!("doctor-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env.example");
        std::fs::write(&path, "# postgres://USER:PASSWORD@HOST/DB\nDATABASE_URL=\nAPP_ENV=development\n").unwrap();
        assert!(example_has_secret(&path).is_none());
        std::fs::write(&path, "DATABASE_URL=postgres://app:hunter2@db.example.com/rail\n").unwrap();
        assert!(matches!(example_has_secret(&path), Some(Outcome::Fail { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn splits_the_hint_off() {
        let (what, fix) = split_hint(&anyhow::Error::new(crate::hint!("cannot connect: refused"; "cargo xtask up")));
        assert_eq!(what, "cannot connect: refused");
        assert_eq!(fix.as_deref(), Some("cargo xtask up"));
    }
}
