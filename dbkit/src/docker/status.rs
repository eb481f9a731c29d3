//! `cargo xtask status`: the project's containers (Postgres, Redis, PgBouncer when it runs),
//! where they listen, and whether they answer.

use anyhow::{Context as _, Result, anyhow, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde::Serialize;
use url::Url;
use xshell::cmd;

use crate::context::Context;
use crate::url::{parse_database_url, redact, redact_str};

/// One container of the project, as `status` shows it.
#[derive(Debug, Serialize)]
pub struct Service {
    /// `postgres`, `redis` or `pgbouncer`: the container's name after the project's.
    pub service: String,
    pub container: String,
    pub image: String,
    /// Docker's words: `Up 5 minutes`, `Exited (0) 2 hours ago`.
    pub state: String,
    /// Where it answers (password redacted), when the settings name it.
    pub url: Option<String>,
    /// Running, and answering a query (Postgres, and Postgres through PgBouncer) or PING (Redis).
    pub healthy: bool,
}

/// The fields `status` reads, each named: `{{json .}}` makes Docker compute every container's
/// disk size (seconds on a machine with a few containers; these answer in milliseconds).
const FORMAT: &str = "{{.Names}}\t{{.Image}}\t{{.State}}\t{{.Status}}\t{{.Ports}}";

/// The containers of `cx`'s project, by service name, each asked whether it answers.
pub fn services(cx: &Context) -> Result<Vec<Service>> {
    super::check_engine()?;
    let project = cx.project();
    let filter = project.label_filter();
    let sh = &cx.sh;
    let lines = cmd!(sh, "docker ps -a --filter {filter} --format {FORMAT}").quiet().read()?;
    let settings = Settings::read(cx)?;
    let found = lines
        .lines()
        .map(|line| {
            let container = Container::parse(line)?;
            let service = project.service_of(&container.name).unwrap_or(&container.name);
            let kind = Kind::of(service);
            let url = settings.url_of(kind, container.published)?;
            Ok((service.to_string(), container, kind, url))
        })
        .collect::<Result<Vec<_>>>()?;
    // Asked side by side: a service that does not answer costs its connect timeout once, not
    // once more for each after it.
    let mut services = std::thread::scope(|scope| {
        let checks: Vec<_> = found
            .into_iter()
            .map(|(service, container, kind, url)| scope.spawn(move || check(service, container, kind, url)))
            .collect();
        checks.into_iter().map(|c| c.join().map_err(|_| anyhow!("a status check panicked"))).collect::<Result<Vec<_>>>()
    })?;
    services.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(services)
}

fn check(service: String, container: Container, kind: Kind, url: Option<Url>) -> Service {
    let healthy = container.running && url.as_ref().is_some_and(|url| kind.answers(url));
    let Container { name, image, status, .. } = container;
    Service { service, container: name, image, state: status, url: url.map(|url| kind.shown(&url)), healthy }
}

/// `services` as a table for a terminal; a sentence when the project has none.
pub fn table(project: &str, services: &[Service]) -> String {
    if services.is_empty() {
        return format!("no containers of project `{project}`; start them with `cargo xtask up`\n");
    }
    let rows: Vec<[&str; 5]> = services
        .iter()
        .map(|s| {
            let health = if s.healthy { "healthy" } else { "down" };
            [&s.service, health, &s.image, &s.state, s.url.as_deref().unwrap_or_default()]
        })
        .collect();
    let header = ["SERVICE", "HEALTH", "IMAGE", "STATE", "URL"];
    let width = |column: usize| rows.iter().map(|r| r[column].len()).chain([header[column].len()]).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line: String = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$} ")).collect();
        line.push_str(row[4]);
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A line of `docker ps` in [`FORMAT`].
struct Container {
    name: String,
    image: String,
    running: bool,
    status: String,
    /// The host port it publishes (`127.0.0.1:54321->5432/tcp`): where it really listens,
    /// whatever the settings say.
    published: Option<u16>,
}

impl Container {
    fn parse(line: &str) -> Result<Container> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, image, state, status, ports] = fields[..] else {
            bail!("unexpected `docker ps` output: {}", crate::error::escaped(line))
        };
        let published = ports
            .split(", ")
            .find_map(|p| p.split_once("->").and_then(|(host, _)| host.rsplit(':').next()?.parse::<u16>().ok()));
        Ok(Container {
            name: name.to_string(),
            image: image.to_string(),
            running: state == "running",
            status: status.to_string(),
            published,
        })
    }
}

/// What a container is, by its service name: what it speaks, and which setting names its URL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Redis,
    Pooler,
    Unknown,
}

impl Kind {
    fn of(service: &str) -> Kind {
        match service {
            "postgres" => Kind::Postgres,
            "redis" => Kind::Redis,
            "pgbouncer" => Kind::Pooler,
            _ => Kind::Unknown,
        }
    }

    /// A query runs there (through PgBouncer: on Postgres), or Redis answers PING.
    fn answers(self, url: &Url) -> bool {
        match self {
            Kind::Postgres | Kind::Pooler => {
                PgConnection::establish(crate::connect::with_connect_timeout(url).as_str())
                    .is_ok_and(|mut conn| diesel::sql_query("SELECT 1").execute(&mut conn).is_ok())
            }
            Kind::Redis => crate::redis::ping(url.as_str()).is_ok(),
            Kind::Unknown => false,
        }
    }

    /// `url` with its password redacted.
    fn shown(self, url: &Url) -> String {
        match self {
            Kind::Redis => redact_str(url.as_str()),
            _ => redact(url),
        }
    }
}

/// The URLs the environment, else `.env`, gives the services (as `up` writes them: without the
/// pooler `DATABASE_URL` goes to Postgres; with it `DATABASE_URL` goes through PgBouncer and
/// `DIRECT_URL` to Postgres).
struct Settings {
    database: Option<String>,
    direct: Option<String>,
    redis: Option<String>,
}

impl Settings {
    fn read(cx: &Context) -> Result<Settings> {
        let get = |key: &str| -> Result<Option<String>> { Ok(cx.setting(key)?.filter(|v| !v.trim().is_empty())) };
        Ok(Settings { database: get("DATABASE_URL")?, direct: get("DIRECT_URL")?, redis: get("REDIS_URL")? })
    }

    /// The URL of a service of `kind` that publishes `published`, at that port.
    fn url_of(&self, kind: Kind, published: Option<u16>) -> Result<Option<Url>> {
        let postgres = |raw: &str| parse_database_url(raw).context("read the database URL for `status`");
        Ok(match kind {
            Kind::Postgres => match (&self.direct, &self.database) {
                (Some(direct), _) => Some(at_port(postgres(direct)?, published, Some("DIRECT_URL"))),
                (None, Some(database)) => Some(at_port(postgres(database)?, published, Some("DATABASE_URL"))),
                (None, None) => None,
            },
            Kind::Pooler => match (&self.direct, &self.database) {
                (Some(_), Some(pooled)) => Some(at_port(postgres(pooled)?, published, Some("DATABASE_URL"))),
                // The app goes straight to Postgres, yet the pooler runs (an earlier `up
                // --pooler`): it takes the same user and password, at its own port.
                (None, Some(direct)) => Some(at_port(postgres(direct)?, published, None)),
                (_, None) => None,
            },
            Kind::Redis => self
                .redis
                .as_deref()
                .and_then(|raw| Url::parse(raw).ok())
                .map(|url| at_port(url, published, Some("REDIS_URL"))),
            Kind::Unknown => None,
        })
    }
}

/// `url` at the port the container publishes; when `key`'s setting said another, says so.
fn at_port(mut url: Url, published: Option<u16>, key: Option<&str>) -> Url {
    if let Some(port) = published.filter(|p| url.port() != Some(*p)) {
        if let Some(key) = key {
            eprintln!(
                "note: .env's {key} says port {}, but the container listens on {port}: `cargo xtask up` rewrites .env",
                url.port().map_or("(none)".into(), |p| p.to_string())
            );
        }
        let _ = url.set_port(Some(port));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_ps_lines() {
        let up = Container::parse(
            "p-pgbouncer\tedoburu/pgbouncer:latest\trunning\tUp 3 minutes\t[::1]:6433->6432/tcp, 127.0.0.1:6433->6432/tcp",
        )
        .unwrap();
        assert_eq!((up.name.as_str(), up.running, up.published), ("p-pgbouncer", true, Some(6433)));
        let stopped = Container::parse("p-redis\tredis:7-alpine\texited\tExited (0) 2 hours ago\t").unwrap();
        assert_eq!(
            (stopped.running, stopped.published, stopped.status.as_str()),
            (false, None, "Exited (0) 2 hours ago")
        );
        assert!(Container::parse("p-redis running").is_err());
    }

    #[test]
    fn the_table_fits_its_longest_cells() {
        let service = |name: &str, image: &str, healthy| Service {
            service: name.into(),
            container: format!("p-{name}"),
            image: image.into(),
            state: "Up 3 minutes".into(),
            url: None,
            healthy,
        };
        let services =
            [service("pgbouncer", "railgun-local/pgbouncer:1.18-bookworm", true), service("redis", "r", false)];
        let text = table("p", &services);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SERVICE   HEALTH  IMAGE                                 STATE        URL");
        assert_eq!(lines[2], "redis     down    r                                     Up 3 minutes");
        assert_eq!(table("p", &[]), "no containers of project `p`; start them with `cargo xtask up`\n");
    }
}
