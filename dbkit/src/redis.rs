//! Just enough of Redis's protocol (RESP) for the workflow: readiness, status, the test
//! harness's databases. One command at a time; no crate needed for that.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use url::Url;

use crate::url::{percent_decode, redact_str};

/// A Redis reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Integer(i64),
    /// A bulk string; `None` is Redis's nil.
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// One connection, authenticated and on the URL's database.
pub struct Connection(BufReader<TcpStream>);

impl Connection {
    /// Connects to `redis://[user:password@]host[:port][/db]`: AUTH when the URL has a
    /// password, SELECT when it names a database.
    pub fn open(url: &str) -> Result<Connection> {
        let parsed = Url::parse(url).with_context(|| format!("malformed Redis URL `{}`", redact_str(url)))?;
        let addr = format!("{}:{}", parsed.host_str().unwrap_or("127.0.0.1"), parsed.port().unwrap_or(6379));
        let stream = TcpStream::connect(&addr).with_context(|| format!("connect to Redis at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = Connection(BufReader::new(stream));
        if let Some(password) = parsed.password() {
            let password = percent_decode(password);
            match parsed.username() {
                "" => conn.call(&["AUTH", &password])?,
                user => conn.call(&["AUTH", user, &password])?,
            };
        }
        match parsed.path().trim_start_matches('/') {
            "" => {}
            db => {
                conn.call(&["SELECT", db])?;
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its whole reply; an error reply is an `Err`.
    pub fn call(&mut self, args: &[&str]) -> Result<Reply> {
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

/// One command on its own connection.
pub fn command(url: &str, args: &[&str]) -> Result<Reply> {
    Connection::open(url)?.call(args)
}

/// Redis answers PING with PONG.
pub fn ping(url: &str) -> Result<()> {
    match command(url, &["PING"])? {
        Reply::Status(pong) if pong == "PONG" => Ok(()),
        other => bail!("Redis answered PING with {other:?}"),
    }
}
