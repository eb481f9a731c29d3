//! Opening a connection with the guide's troubleshooting built in: every failure keeps
//! Postgres's own words (passwords redacted) and names its fix; failures that pass on their
//! own (a server still starting, refused, out of slots) are retried with backoff.

use std::fmt;
use std::time::Duration;

use diesel::{Connection, ConnectionError, PgConnection};
use url::Url;

use crate::url::{redact, redact_str};

/// How long opening one connection (libpq `connect_timeout`) or getting one from a pool may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the app runs: production gets more connection retries, and destructive commands refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    /// `APP_ENV`: `production` or `staging` (a deployed database), `development`, `dev`, `test`,
    /// `local` or unset. Anything else is an error, not a guess: a typo must not turn off the
    /// production guard.
    pub fn parse(app_env: Option<&str>) -> anyhow::Result<Environment> {
        let value = app_env.unwrap_or_default().trim();
        match value.to_ascii_lowercase().as_str() {
            "production" | "prod" | "staging" => Ok(Environment::Production),
            "" | "development" | "dev" | "test" | "local" => Ok(Environment::Development),
            _ => anyhow::bail!(
                hint!("APP_ENV `{value}` is not an environment this project knows"; "set APP_ENV=production (deployed: more retries, destructive commands refuse) or APP_ENV=development")
            ),
        }
    }
}

/// What went wrong, as the guide's troubleshooting section sorts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Refused,
    SslRequired,
    SslUnsupported,
    TooManyConnections,
    AuthenticationFailed,
    NoSuchDatabase,
    Rejected,
    UnknownHost,
    Timeout,
    StartingUp,
    /// PgBouncer turns clients of a database away for a while (its `server_login_retry`) after
    /// its own login to the server failed: the database may not exist (yet), or the pooler's
    /// credentials may be wrong.
    PoolerLoginRetry,
    MalformedUrl,
    Other,
}

impl Failure {
    /// Sorts a libpq / Postgres error message.
    pub fn classify(message: &str) -> Failure {
        let m = message.to_ascii_lowercase();
        let has = |needle: &str| m.contains(needle);
        if has("ssl/tls required") || has("ssl connection is required") || has("no encryption") || has("ssl off") {
            Failure::SslRequired
        } else if has("server does not support ssl") {
            Failure::SslUnsupported
        } else if has("connection refused") || has("no such file or directory") && has("socket") {
            Failure::Refused
        } else if has("remaining connection slots are reserved")
            || has("too many clients")
            || has("too many connections")
        {
            Failure::TooManyConnections
        } else if has("password authentication failed")
            || has("no password supplied")
            || has("authentication failed")
            || has("role \"") && has("\" does not exist")
        {
            Failure::AuthenticationFailed
        } else if has("database \"") && has("\" does not exist") {
            Failure::NoSuchDatabase
        } else if has("no pg_hba.conf entry") {
            Failure::Rejected
        } else if has("could not translate host name") || has("name or service not known") {
            Failure::UnknownHost
        } else if has("timeout expired") || has("timed out") {
            Failure::Timeout
        } else if has("the database system is starting up") || has("the database system is shutting down") {
            Failure::StartingUp
        } else if has("server login has been failing") {
            Failure::PoolerLoginRetry
        } else if has("invalid uri")
            || has("invalid connection option")
            || has("invalid sslmode value")
            || has("invalid integer value")
            || has("invalid port number")
            || has("missing \"=\" after")
            || has("malformed database url")
        {
            Failure::MalformedUrl
        } else {
            Failure::Other
        }
    }

    /// Worth another try: the cause may pass on its own.
    pub fn is_transient(self) -> bool {
        matches!(self, Failure::Refused | Failure::TooManyConnections | Failure::StartingUp | Failure::Timeout)
    }

    /// The guide's fix for this failure.
    pub fn hint(self) -> Option<&'static str> {
        Some(match self {
            Failure::Refused => {
                "nothing listens there: start local Postgres: `cargo xtask up`, or set DATABASE_URL to your cloud database"
            }
            Failure::SslRequired => {
                "the server requires SSL/TLS: add ?sslmode=require to DATABASE_URL (postgresql://...?sslmode=require)"
            }
            Failure::SslUnsupported => {
                "the server has SSL off: local Docker Postgres needs no sslmode (or sslmode=prefer); a managed database should have SSL enforcement on"
            }
            Failure::TooManyConnections => {
                "the server is out of connection slots: lower DATABASE_POOL_MAX in .env (try 5-10) and look for other clients in pg_stat_activity"
            }
            Failure::AuthenticationFailed => {
                "check the user and password in DATABASE_URL (percent-encode special characters); for local Postgres the password is RAILGUN_POSTGRES_PASSWORD in .env"
            }
            Failure::NoSuchDatabase => {
                "fix the database name at the end of DATABASE_URL, or create it (`createdb`, or your provider's console); `cargo xtask up` creates the local one"
            }
            Failure::Rejected => {
                "the server's pg_hba.conf rejects this host, user or database: check them in DATABASE_URL, or ask the server's admin"
            }
            Failure::UnknownHost => "the host name does not resolve: check DATABASE_URL's host for a typo",
            Failure::Timeout => {
                "nothing answered in time: check DATABASE_URL's host and port, the provider's allowed IPs, and that the server is up"
            }
            Failure::StartingUp => "the server is starting or stopping: try again in a few seconds",
            Failure::PoolerLoginRetry => {
                "the pooler's own login to the database failed a moment ago (a database that does not exist, or the pooler's password): its log says why; it tries again after server_login_retry"
            }
            Failure::MalformedUrl => {
                "the form is postgres://USER:PASSWORD@HOST:5432/DATABASE[?sslmode=require]; percent-encode special characters in the password"
            }
            Failure::Other => return None,
        })
    }
}

/// A failed connection: where to (password redacted), Postgres's words, and (as a value, see
/// [`crate::error::hints_of`]) the fix.
#[derive(Debug)]
pub struct ConnectError {
    pub failure: Failure,
    pub target: String,
    pub message: String,
    pub attempts: u32,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {}: {}", self.target, self.message)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

/// How the connection failed, when `error` is (or was caused by) a failed connection: for code
/// that must tell a missing database from a missing role, never from the message's words.
pub fn failure_of(error: &anyhow::Error) -> Option<Failure> {
    error.chain().find_map(|cause| cause.downcast_ref::<ConnectError>()).map(|e| e.failure)
}

/// How often to try, and how long to wait in between (doubling up to `max_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Retry a connection that timed out (each try already waited the connection timeout).
    pub retry_timeouts: bool,
}

impl Retries {
    /// The guide's retry attempts: 10 in production, 3 in development.
    pub fn for_environment(environment: Environment) -> Retries {
        let attempts = match environment {
            Environment::Production => 10,
            Environment::Development => 3,
        };
        Retries {
            attempts,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            retry_timeouts: true,
        }
    }

    /// For commands run by hand: a few quick tries, no second wait on a host that never answers.
    pub fn command_line() -> Retries {
        Retries { retry_timeouts: false, ..Retries::for_environment(Environment::Development) }
    }

    /// The wait after the `attempt`-th failure (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    fn should_retry(&self, failure: Failure, attempt: u32) -> bool {
        attempt < self.attempts && failure.is_transient() && (self.retry_timeouts || failure != Failure::Timeout)
    }
}

/// Connects to `url` as commands do: quick retries of passing failures, the guide's hint on error.
pub fn establish(url: &Url) -> anyhow::Result<PgConnection> {
    establish_with(url, &Retries::command_line())
}

/// Connects to `url`, retrying passing failures with backoff as `retries` says.
pub fn establish_with(url: &Url, retries: &Retries) -> anyhow::Result<PgConnection> {
    let with_timeout = with_connect_timeout(url);
    retry(retries, || PgConnection::establish(with_timeout.as_str()), std::thread::sleep).map_err(
        |(error, attempts)| {
            let (failure, message) = describe(&error);
            ConnectError { failure, target: redact(url), message, attempts }.into()
        },
    )
}

/// Runs `attempt` until it succeeds, fails for good, or the tries run out; `(error, tries)` on failure.
pub fn retry<T>(
    retries: &Retries,
    mut attempt: impl FnMut() -> Result<T, ConnectionError>,
    mut sleep: impl FnMut(Duration),
) -> Result<T, (ConnectionError, u32)> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if retries.should_retry(describe(&error).0, tries) => sleep(retries.delay(tries)),
            Err(error) => return Err((error, tries)),
        }
    }
}

/// The fix for an error message from anywhere (libpq, pg_dump, psql, diesel's migrations), if known.
pub fn known_fix(message: &str) -> Option<&'static str> {
    if message.contains("Unable to find migration version") || message.contains("missing on disk") {
        return Some(
            "a migration is recorded in __diesel_schema_migrations but its folder is not in the migrations directory: list them with `psql \"$DATABASE_URL\" -c 'SELECT version, run_on FROM __diesel_schema_migrations ORDER BY version'`, restore the folder from git, or if it is really gone delete its row (DELETE FROM __diesel_schema_migrations WHERE version = '...')",
        );
    }
    Failure::classify(message).hint()
}

fn describe(error: &ConnectionError) -> (Failure, String) {
    let text = redact_str(&error.to_string());
    let message = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let failure = match error {
        ConnectionError::InvalidConnectionUrl(_) | ConnectionError::InvalidCString(_) => Failure::MalformedUrl,
        _ => Failure::classify(&message),
    };
    (failure, message)
}

/// libpq waits for the operating system's TCP timeout (minutes) unless told otherwise.
pub(crate) fn with_connect_timeout(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.query_pairs().any(|(k, _)| k == "connect_timeout") {
        url.query_pairs_mut().append_pair("connect_timeout", &CONNECTION_TIMEOUT.as_secs().to_string());
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_the_guides_errors() {
        let cases = [
            (
                "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running",
                Failure::Refused,
            ),
            (
                "FATAL: no pg_hba.conf entry for host \"172.17.0.1\", user \"u\", database \"d\", no encryption",
                Failure::SslRequired,
            ),
            ("Error: SSL/TLS required", Failure::SslRequired),
            ("server does not support SSL, but SSL was required", Failure::SslUnsupported),
            (
                "FATAL: remaining connection slots are reserved for non-replication superuser connections",
                Failure::TooManyConnections,
            ),
            ("FATAL: sorry, too many clients already", Failure::TooManyConnections),
            ("FATAL: password authentication failed for user \"app\"", Failure::AuthenticationFailed),
            ("FATAL: role \"nobody\" does not exist", Failure::AuthenticationFailed),
            ("FATAL: database \"nope\" does not exist", Failure::NoSuchDatabase),
            ("could not translate host name \"dbb\" to address: Name or service not known", Failure::UnknownHost),
            ("timeout expired", Failure::Timeout),
            ("FATAL: the database system is starting up", Failure::StartingUp),
            ("invalid sslmode value: \"sometimes\"", Failure::MalformedUrl),
            ("something new", Failure::Other),
        ];
        for (message, failure) in cases {
            assert_eq!(Failure::classify(message), failure, "{message}");
        }
        assert!(Failure::TooManyConnections.hint().unwrap().contains("DATABASE_POOL_MAX"));
        assert!(Failure::Refused.hint().unwrap().contains("cargo xtask up"));
        assert!(Failure::SslRequired.hint().unwrap().contains("?sslmode=require"));
    }

    #[test]
    fn a_missing_role_is_no_missing_database_and_the_failure_is_found_through_contexts() {
        let failed = |message: &str| -> anyhow::Error {
            let error = ConnectError {
                failure: Failure::classify(message),
                target: "t".into(),
                message: message.into(),
                attempts: 1,
            };
            anyhow::Error::new(error).context("connect to the test database")
        };
        let database = failed("connection to server failed: FATAL:  database \"railgun_slot_1\" does not exist");
        assert_eq!(failure_of(&database), Some(Failure::NoSuchDatabase));
        let role = failed("connection to server failed: FATAL:  role \"railgun_slot_1\" does not exist");
        assert_eq!(failure_of(&role), Some(Failure::AuthenticationFailed));
        let pooler = failed("ERROR:  server login has been failing, try again later (server_login_retry)");
        assert_eq!(failure_of(&pooler), Some(Failure::PoolerLoginRetry));
        assert!(!Failure::PoolerLoginRetry.is_transient(), "callers decide how long to wait for it");
        assert_eq!(failure_of(&anyhow::anyhow!("database \"x\" does not exist")), None, "words are no failure");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retries::for_environment(Environment::Production);
        let delays: Vec<u64> = (1..10).map(|n| r.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
        assert_eq!(r.delay(64), Duration::from_secs(5));
    }

    fn refused() -> ConnectionError {
        ConnectionError::BadConnection("connection to server failed: Connection refused".into())
    }

    #[test]
    fn retries_passing_failures_only() {
        for (environment, expected) in [(Environment::Production, 10), (Environment::Development, 3)] {
            let retries = Retries::for_environment(environment);
            let (mut tries, mut slept) = (0, Duration::ZERO);
            let result: Result<(), _> = retry(
                &retries,
                || {
                    Err::<(), _>({
                        tries += 1;
                        refused()
                    })
                },
                |d| slept += d,
            );
            assert_eq!(result.unwrap_err().1, expected);
            assert_eq!(tries, expected);
            assert!(slept > Duration::ZERO);
        }
        let retries = Retries::for_environment(Environment::Production);
        let mut tries = 0;
        let wrong_password = || {
            tries += 1;
            Err::<(), _>(ConnectionError::BadConnection("password authentication failed for user \"a\"".into()))
        };
        assert_eq!(retry(&retries, wrong_password, |_| ()).unwrap_err().1, 1);
        let mut tries = 0;
        let third_time_lucky = || {
            tries += 1;
            if tries < 3 { Err(refused()) } else { Ok(tries) }
        };
        assert_eq!(retry(&retries, third_time_lucky, |_| ()).unwrap(), 3);
        let timeout = || Err::<(), _>(ConnectionError::BadConnection("timeout expired".into()));
        assert_eq!(retry(&Retries::command_line(), timeout, |_| ()).unwrap_err().1, 1);
    }

    #[test]
    fn error_keeps_the_cause_and_hides_the_password() {
        let url = Url::parse("postgres://app:canary-pw@127.0.0.1:1/x").unwrap();
        let err = establish_with(&url, &Retries { attempts: 1, ..Retries::command_line() }).err().unwrap();
        let text = crate::error::describe(&err);
        assert!(text.contains("Connection refused") && text.contains("cargo xtask up"), "{text}");
        assert!(!text.contains("canary-pw") && text.contains("app:****@127.0.0.1:1"), "{text}");
        assert_eq!(err.downcast_ref::<ConnectError>().unwrap().failure, Failure::Refused);
    }

    #[test]
    fn knows_the_missing_migration_fix() {
        let fix = known_fix("Unable to find migration version 20240101000000 to revert in the migrations directory.");
        assert!(fix.unwrap().contains("__diesel_schema_migrations"));
        assert_eq!(known_fix("syntax error at or near \"SELEC\""), None);
    }
}
