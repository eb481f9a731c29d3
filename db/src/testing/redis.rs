//! Redis for tests: each test gets a database number of its own, empty, flushed after.
//!
//! Numbers 1 to 14 are handed out (0 is the app's, 15 holds the claims). A claim is a key in
//! database 15 set with NX, so two processes never get the same number; it expires after
//! 15 minutes, so a crashed run's numbers come back on their own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use url::Url;

use super::server::server;

const FIRST: u8 = 1;
const LAST: u8 = 14;
const CLAIMS: u8 = 15;
const CLAIM_SECONDS: &str = "900";

/// A Redis reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Integer(i64),
    /// A bulk string; `None` is Redis's nil.
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// A Redis database of the test's own: empty at the start, flushed when dropped.
pub struct TestRedis {
    server: Url,
    db: u8,
    url: String,
}

impl TestRedis {
    /// Claims a free database number on the test Redis (waits while all are in use).
    pub fn new() -> Result<TestRedis> {
        let raw = server()?.redis.clone().context(
            "no test Redis: TEST_DATABASE_URL is set but TEST_REDIS_URL / REDIS_URL are not\n  hint: set TEST_REDIS_URL=redis://HOST:6379",
        )?;
        let mut server =
            Url::parse(&raw).with_context(|| format!("malformed Redis URL `{}`", crate::url::redact_str(&raw)))?;
        server.set_path("");
        let owner = format!("{}:{:?}", std::process::id(), std::thread::current().id());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut claims = Resp::connect(&server, CLAIMS)?;
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
        Resp::connect(&self.server, self.db)?.call(args)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let released = (|| {
            self.command(&["FLUSHDB"])?;
            Resp::connect(&self.server, CLAIMS)?.call(&["DEL", &format!("railgun:test-redis:{}", self.db)])
        })();
        if let Err(e) = released {
            eprintln!("warning: could not flush test Redis database {}: {e:#}", self.db);
        }
    }
}

/// Just enough RESP for the harness: one connection, one database.
struct Resp(BufReader<TcpStream>);

impl Resp {
    fn connect(server: &Url, db: u8) -> Result<Resp> {
        let addr = format!("{}:{}", server.host_str().unwrap_or("127.0.0.1"), server.port().unwrap_or(6379));
        let stream = TcpStream::connect(&addr).with_context(|| format!("connect to Redis at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut resp = Resp(BufReader::new(stream));
        if let Some(password) = server.password() {
            let password = url::form_urlencoded::parse(password.as_bytes()).map(|(k, _)| k).collect::<String>();
            match server.username() {
                "" => resp.call(&["AUTH", &password])?,
                user => resp.call(&["AUTH", user, &password])?,
            };
        }
        resp.call(&["SELECT", &db.to_string()])?;
        Ok(resp)
    }

    fn call(&mut self, args: &[&str]) -> Result<Reply> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.0.get_mut().write_all(request.as_bytes()).context("send to Redis")?;
        self.read()
    }

    fn read(&mut self) -> Result<Reply> {
        let mut line = String::new();
        self.0.read_line(&mut line).context("read from Redis")?;
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at_checked(1).context("Redis closed the connection")?;
        Ok(match kind {
            "+" => Reply::Status(rest.into()),
            "-" => bail!("Redis answered an error: {rest}"),
            ":" => Reply::Integer(rest.parse()?),
            "$" => match rest.parse::<i64>()? {
                -1 => Reply::Bulk(None),
                len => {
                    let mut bytes = vec![0; len as usize + 2];
                    self.0.read_exact(&mut bytes)?;
                    bytes.truncate(len as usize);
                    Reply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
                }
            },
            "*" => match rest.parse::<i64>()? {
                -1 => Reply::Array(Vec::new()),
                len => Reply::Array((0..len).map(|_| self.read()).collect::<Result<_>>()?),
            },
            _ => bail!("unexpected reply from Redis: {line}"),
        })
    }
}
