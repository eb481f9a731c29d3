//! `cargo xtask status`: what runs, where, and whether it answers.

use anyhow::{Context as _, Result};
use dbkit::docker::services::PROJECT_LABEL;
use dbkit::url::{parse_database_url, redact};
use diesel::{Connection, PgConnection};
use serde::Serialize;
use xshell::cmd;

use crate::context::Context;

/// Show the local containers: image, state, URL (password redacted), healthy or not.
#[derive(clap::Args)]
pub struct Status {
    /// Print JSON (an array, one object a service) instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    service: String,
    container: String,
    image: String,
    state: String,
    url: Option<String>,
    healthy: bool,
}

impl Status {
    pub fn run(self, cx: &Context) -> Result<()> {
        dbkit::docker::check_engine()?;
        let project = cx.project.clone();
        let filter = format!("label={PROJECT_LABEL}={project}");
        let sh = &cx.sh;
        let format = "{{json .}}";
        let lines = cmd!(sh, "docker ps -a --filter {filter} --format {format}").quiet().read()?;
        let mut rows = Vec::new();
        for line in lines.lines() {
            let c: serde_json::Value = serde_json::from_str(line).context("parse docker ps output")?;
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            let container = field("Names");
            let service = container.strip_prefix(&format!("{project}-")).unwrap_or(&container).to_string();
            let running = field("State") == "running";
            // `127.0.0.1:54321->5432/tcp`: where the container really listens, whatever .env says.
            let published = field("Ports")
                .split(", ")
                .find_map(|p| p.split_once("->").and_then(|(host, _)| host.rsplit(':').next()?.parse::<u16>().ok()));
            let (url, healthy) = match service.as_str() {
                "postgres" => self.postgres(cx, running, published)?,
                "redis" => self.redis(cx, running, published)?,
                _ => (None, false),
            };
            rows.push(Row { service, container, image: field("Image"), state: field("Status"), url, healthy });
        }
        rows.sort_by(|a, b| a.service.cmp(&b.service));
        if self.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(());
        }
        if rows.is_empty() {
            println!("no containers of project `{project}`; start them with `cargo xtask up`");
            return Ok(());
        }
        println!("{:<9} {:<8} {:<36} {:<26} URL", "SERVICE", "HEALTH", "IMAGE", "STATE");
        for r in rows {
            let health = if r.healthy { "healthy" } else { "down" };
            println!("{:<9} {:<8} {:<36} {:<26} {}", r.service, health, r.image, r.state, r.url.unwrap_or_default());
        }
        Ok(())
    }

    fn postgres(&self, cx: &Context, running: bool, published: Option<u16>) -> Result<(Option<String>, bool)> {
        let Some(raw) = cx.setting("DATABASE_URL")? else { return Ok((None, false)) };
        let url = at_port(parse_database_url(&raw)?, published, "DATABASE_URL");
        let healthy = running && PgConnection::establish(url.as_str()).is_ok();
        Ok((Some(redact(&url)), healthy))
    }

    fn redis(&self, cx: &Context, running: bool, published: Option<u16>) -> Result<(Option<String>, bool)> {
        let Some(raw) = cx.setting("REDIS_URL")? else { return Ok((None, false)) };
        let Ok(url) = url::Url::parse(&raw) else { return Ok((None, false)) };
        let url = at_port(url, published, "REDIS_URL");
        let healthy = running && dbkit::redis::ping(url.as_str()).is_ok();
        Ok((Some(dbkit::url::redact_str(url.as_str())), healthy))
    }
}

/// `url` at the port the container publishes, saying so when `.env` disagrees.
fn at_port(mut url: url::Url, published: Option<u16>, key: &str) -> url::Url {
    if let Some(port) = published.filter(|p| url.port() != Some(*p)) {
        eprintln!(
            "note: .env's {key} says port {}, but the container listens on {port}: `cargo xtask up` rewrites .env",
            url.port().map_or("(none)".into(), |p| p.to_string())
        );
        let _ = url.set_port(Some(port));
    }
    url
}
