//! Connection settings from the environment, and the pool built from them (the guide's
//! "Connection Pooling": pool max 10, idle timeout 30 s, connection timeout 10 s, retry
//! attempts 10 in production / 3 in development). Credentials come from `DATABASE_URL` only.
//!
//! Behind a transaction pooler (PgBouncer, Supabase's port 6543), said by `DATABASE_POOLER` or
//! the URL's `?pgbouncer=true`, a connection is a server connection for one transaction only:
//! the pool then turns diesel's prepared statement cache off (named statements would be
//! prepared on one server connection and executed on another), and migrations go to
//! `DIRECT_URL`.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use dbkit::hint;
use diesel::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use url::Url;

use dbkit::connect::{Retries, establish_with};
pub use dbkit::pooler::Mode as PoolMode;
use dbkit::url::parse_database_url;

/// Connections the pool may hold when `DATABASE_POOL_MAX` is not set.
pub const DEFAULT_POOL_MAX: u32 = 10;
/// An idle pooled connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The app's database pool.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

pub use dbkit::connect::{CONNECTION_TIMEOUT, Environment};

/// Everything the app needs to open database connections.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The app's connections: through the pooler when there is one.
    pub database_url: Url,
    /// `DIRECT_URL`: straight to Postgres, for migrations (their advisory lock needs a session).
    pub direct_url: Option<Url>,
    /// How `database_url` is pooled (`DATABASE_POOLER`, else the URL's convention).
    pub pooler: Option<PoolMode>,
    /// diesel's prepared statement cache: on for direct and session-pooled connections, off
    /// behind a transaction or statement pooler.
    pub statement_cache: bool,
    pub pool_max: u32,
    pub idle_timeout: Duration,
    pub connection_timeout: Duration,
    pub environment: Environment,
    pub retries: Retries,
}

impl Settings {
    /// Reads `DATABASE_URL`, `DIRECT_URL`, `DATABASE_POOLER`, `DATABASE_POOL_MAX` and `APP_ENV`
    /// from the process environment.
    pub fn from_env() -> Result<Settings> {
        Settings::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the settings through `get` (the environment, a `.env` file, a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let raw = get("DATABASE_URL").filter(|url| !url.trim().is_empty());
        let Some(raw) = raw else {
            bail!(
                hint!("DATABASE_URL is not set"; "start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL in the environment; never put credentials in code")
            );
        };
        let database_url = parse_database_url(&raw)?;
        let direct_url = get("DIRECT_URL")
            .filter(|url| !url.trim().is_empty())
            .map(|raw| parse_database_url(&raw).context("DIRECT_URL"))
            .transpose()?;
        let pooler = dbkit::pooler::declared(&database_url, get(dbkit::pooler::SETTING).as_deref())?;
        let pool_max = match get("DATABASE_POOL_MAX").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_POOL_MAX,
            Some(value) => parse_pool_max(&value)?,
        };
        let environment = Environment::parse(get("APP_ENV").as_deref())?;
        Ok(Settings {
            database_url,
            direct_url,
            pooler,
            statement_cache: pooler.is_none_or(PoolMode::keeps_sessions),
            pool_max,
            idle_timeout: IDLE_TIMEOUT,
            connection_timeout: CONNECTION_TIMEOUT,
            environment,
            retries: Retries::for_environment(environment),
        })
    }

    /// The URL connections use: `connect_timeout` added unless the URL sets its own, and
    /// `?pgbouncer=true` (a mark for us, unknown to libpq) taken out.
    pub fn connection_url(&self) -> Url {
        let mut url = dbkit::pooler::strip_convention(&self.database_url);
        if !url.query_pairs().any(|(k, _)| k == "connect_timeout") {
            url.query_pairs_mut().append_pair("connect_timeout", &self.connection_timeout.as_secs().to_string());
        }
        url
    }

    /// Where migrations run (`db::migrate`): `DIRECT_URL`, else `DATABASE_URL` unless it goes
    /// through a pooler that breaks sessions (the migration lock is a session advisory lock).
    pub fn migration_url(&self) -> Result<Url> {
        match (&self.direct_url, self.pooler) {
            (Some(direct), _) => Ok(direct.clone()),
            (None, Some(mode)) if !mode.keeps_sessions() => bail!(
                hint!("migrations cannot run through DATABASE_URL: it goes through a {mode}-mode pooler, where the migration lock (a session advisory lock) is not held"; "set DIRECT_URL to a direct connection to Postgres (Supabase: port 5432 on db.<project>.supabase.co)")
            ),
            (None, _) => Ok(self.database_url.clone()),
        }
    }

    /// The pool: first one connection with retries and backoff (so a database that is still
    /// starting is waited for, and a wrong setting fails with its fix), then the pool itself.
    pub fn pool(&self) -> Result<PgPool> {
        let url = self.connection_url();
        drop(establish_with(&url, &self.retries)?);
        let mut builder = Pool::builder();
        if !self.statement_cache {
            builder = builder.connection_customizer(Box::new(dbkit::pooler::NoStatementCache));
        }
        builder
            .max_size(self.pool_max)
            .min_idle(Some(0))
            .idle_timeout(Some(self.idle_timeout))
            .connection_timeout(self.connection_timeout)
            .test_on_check_out(true)
            .build(ConnectionManager::new(url.as_str()))
            .context("build the connection pool")
    }
}

fn parse_pool_max(value: &str) -> Result<u32> {
    const HINT: &str = "DATABASE_POOL_MAX is the most connections the app holds; 5-10 suits a managed free tier (about 60 connections in all)";
    match value.trim().parse::<u32>() {
        Ok(0) => {
            bail!(dbkit::error::Hinted::new("DATABASE_POOL_MAX is 0: the pool needs at least one connection", HINT))
        }
        Ok(n) if n > 1000 => bail!(dbkit::error::Hinted::new(
            format!("DATABASE_POOL_MAX is {n}, more than any Postgres server accepts"),
            HINT
        )),
        Ok(n) => Ok(n),
        Err(_) => bail!(dbkit::error::Hinted::new(format!("DATABASE_POOL_MAX `{value}` is not a whole number"), HINT)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_guide() {
        let s = settings(&[("DATABASE_URL", "postgres://app:pw@localhost/rail")]).unwrap();
        assert_eq!(s.pool_max, 10);
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.connection_timeout, Duration::from_secs(10));
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.retries.attempts, 3);
    }

    #[test]
    fn production_retries_ten_times() {
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("APP_ENV", "Production")]).unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert_eq!(s.retries.attempts, 10);
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("APP_ENV", "test")]).unwrap();
        assert_eq!(s.retries.attempts, 3);
        let err = dbkit::error::describe(
            &settings(&[("DATABASE_URL", "postgres://a@h/d"), ("APP_ENV", "prodution")]).unwrap_err(),
        );
        assert!(err.contains("APP_ENV `prodution`") && err.contains("hint:"), "{err}");
    }

    #[test]
    fn pool_max_is_read_and_checked() {
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("DATABASE_POOL_MAX", " 5 ")]).unwrap();
        assert_eq!(s.pool_max, 5);
        for bad in ["0", "-1", "ten", "1.5", "100000"] {
            let err = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("DATABASE_POOL_MAX", bad)]).unwrap_err();
            let text = dbkit::error::describe(&err);
            assert!(text.contains("DATABASE_POOL_MAX") && text.contains("hint:"), "{bad}: {text}");
        }
    }

    #[test]
    fn missing_or_malformed_url_is_a_clear_error() {
        let err = dbkit::error::describe(&settings(&[]).unwrap_err());
        assert!(err.contains("DATABASE_URL is not set") && err.contains("cargo xtask up"), "{err}");
        let err = dbkit::error::describe(&settings(&[("DATABASE_URL", "  ")]).unwrap_err());
        assert!(err.contains("DATABASE_URL is not set"), "{err}");
        let err = dbkit::error::describe(&settings(&[("DATABASE_URL", "mysql://u:canary@h/d")]).unwrap_err());
        assert!(err.contains("expected postgres://") && !err.contains("canary"), "{err}");
        let err = dbkit::error::describe(&settings(&[("DATABASE_URL", "postgres://u:canary@h:99999/d")]).unwrap_err());
        assert!(err.contains("malformed database URL") && !err.contains("canary"), "{err}");
    }

    #[test]
    fn a_transaction_pooler_turns_the_statement_cache_off() {
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d")]).unwrap();
        assert!(s.statement_cache && s.pooler.is_none());
        assert_eq!(s.migration_url().unwrap().as_str(), "postgres://a@h/d");
        let s = settings(&[("DATABASE_URL", "postgres://a@h:6432/d?pgbouncer=true")]).unwrap();
        assert_eq!(s.pooler, Some(PoolMode::Transaction));
        assert!(!s.statement_cache);
        assert_eq!(s.connection_url().as_str(), "postgres://a@h:6432/d?connect_timeout=10");
        let err = dbkit::error::describe(&s.migration_url().unwrap_err());
        assert!(err.contains("transaction-mode pooler") && err.contains("DIRECT_URL"), "{err}");
        let s = settings(&[
            ("DATABASE_URL", "postgres://a@h:6432/d"),
            ("DATABASE_POOLER", "transaction"),
            ("DIRECT_URL", "postgres://a@h:5432/d"),
        ])
        .unwrap();
        assert!(!s.statement_cache);
        assert_eq!(s.migration_url().unwrap().as_str(), "postgres://a@h:5432/d");
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("DATABASE_POOLER", "session")]).unwrap();
        assert!(s.statement_cache);
        let err = settings(&[("DATABASE_URL", "postgres://a@h/d"), ("DIRECT_URL", "mysql://x@h/d")]).unwrap_err();
        assert!(dbkit::error::describe(&err).contains("DIRECT_URL"));
    }

    #[test]
    fn connect_timeout_is_added_once() {
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d?sslmode=require")]).unwrap();
        assert_eq!(s.connection_url().as_str(), "postgres://a@h/d?sslmode=require&connect_timeout=10");
        let s = settings(&[("DATABASE_URL", "postgres://a@h/d?connect_timeout=3")]).unwrap();
        assert_eq!(s.connection_url().as_str(), "postgres://a@h/d?connect_timeout=3");
    }
}
