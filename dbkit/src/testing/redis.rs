//! Redis for tests: each test gets a database number of its own, empty, flushed after.
//!
//! Numbers 1 to 14 are handed out (0 is the app's, 15 holds the claims). A claim is a key in
//! database 15 set with NX, so two processes never get the same number; it expires after
//! 15 minutes, so a crashed run's numbers come back on their own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use url::Url;

use super::server::server;
use crate::redis::{Connection, Reply};

const FIRST: u8 = 1;
const LAST: u8 = 14;
const CLAIMS: u8 = 15;
const CLAIM_SECONDS: &str = "900";

/// A Redis database of the test's own: empty at the start, flushed when dropped.
pub struct TestRedis {
    server: Url,
    db: u8,
    url: String,
}

impl TestRedis {
    /// Claims a free database number on the test Redis (waits while all are in use).
    pub fn new() -> Result<TestRedis> {
        let raw = server()?.redis.clone().context(hint!("no test Redis: TEST_DATABASE_URL is set but TEST_REDIS_URL / REDIS_URL are not"; "set TEST_REDIS_URL=redis://HOST:6379"))?;
        let mut server =
            Url::parse(&raw).with_context(|| format!("malformed Redis URL `{}`", crate::url::redact_str(&raw)))?;
        server.set_path("");
        let owner = format!("{}:{:?}", std::process::id(), std::thread::current().id());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut claims = connect(&server, CLAIMS)?;
            for db in FIRST..=LAST {
                let key = format!("railgun:test-redis:{db}");
                if claims.call(&["SET", &key, &owner, "NX", "EX", CLAIM_SECONDS])? == Reply::Status("OK".into()) {
                    let mut url = server.clone();
                    url.set_path(&db.to_string());
                    let redis = TestRedis { url: url.to_string(), server, db };
                    // A crashed run's claim expired but its keys did not.
                    redis.command(&["FLUSHDB"])?;
                    return Ok(redis);
                }
            }
            if Instant::now() > deadline {
                bail!("every test Redis database ({FIRST} to {LAST}) stayed in use for 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://host:port/N`: this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database number.
    pub fn db(&self) -> u8 {
        self.db
    }

    /// Runs one command in this test's database.
    pub fn command(&self, args: &[&str]) -> Result<Reply> {
        connect(&self.server, self.db)?.call(args)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let released = (|| {
            self.command(&["FLUSHDB"])?;
            connect(&self.server, CLAIMS)?.call(&["DEL", &format!("railgun:test-redis:{}", self.db)])
        })();
        if let Err(e) = released {
            eprintln!("warning: could not flush test Redis database {}: {e:#}", self.db);
        }
    }
}

/// A connection to database `db` of the test Redis.
fn connect(server: &Url, db: u8) -> Result<Connection> {
    let mut url = server.clone();
    url.set_path(&db.to_string());
    Connection::open(url.as_str())
}
