//! `railgun.toml`, beside diesel.toml: how `cargo xtask migration run` treats out-of-order
//! migrations and lock and statement timeouts. diesel_cli refuses a diesel.toml with keys it
//! does not know (its `Config` denies unknown fields), so these cannot live there.
//!
//! ```toml
//! [migrations]
//! allow_out_of_order = false
//! lock_timeout = "5s"        # each migration's metadata.toml may say otherwise
//! statement_timeout = "10min"
//! lock_retries = 3           # after a lock timeout, tried again this many times
//! retry_backoff = "1s"       # the first wait; it doubles each time
//!
//! [rehearse]
//! max_exclusive = "5s"       # `migration rehearse` fails when a table would be locked longer
//! ```

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::{Limits, Options};
use crate::context::Context;
use crate::diesel_config::DieselConfig;

pub const FILE: &str = "railgun.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub migrations: MigrationSettings,
    /// `[schema]`: read (and checked) by `schema dump` (see `crate::schema::dump`).
    #[serde(default)]
    pub schema: Option<toml::Table>,
    /// `[backup]`: read (and checked) by `db backup` and its kin (see `crate::backup::settings`).
    #[serde(default)]
    pub backup: Option<toml::Table>,
    /// `[mask]`: read (and checked) by `db copy --mask` (see `crate::backup::mask`).
    #[serde(default)]
    pub mask: Option<toml::Table>,
    #[serde(default)]
    pub rehearse: RehearseSettings,
    /// Where the file is (or would be).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    #[serde(default)]
    pub allow_out_of_order: bool,
    pub lock_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub lock_retries: Option<u32>,
    pub retry_backoff: Option<String>,
}

/// `[rehearse]`: what `migration rehearse` holds a migration to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RehearseSettings {
    /// The longest a statement may keep a table under ACCESS EXCLUSIVE at the source, estimated.
    pub max_exclusive: Option<String>,
}

/// The settings beside the diesel config file in use (none when the file does not exist).
pub fn load(cx: &Context) -> Result<Settings> {
    let path = DieselConfig::load(cx)?.base.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings { path, ..Settings::default() }),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut settings: Settings = toml::from_str(&text).with_context(
        || hint!("parse {}", path.display(); "see `cargo xtask migration run --help` for its [migrations] keys"),
    )?;
    if let Some(max) = &settings.rehearse.max_exclusive {
        crate::duration::parse(max).with_context(|| format!("[rehearse] max_exclusive in {}", path.display()))?;
    }
    if let Some(backoff) = &settings.migrations.retry_backoff {
        crate::duration::parse(backoff).with_context(|| format!("retry_backoff in {}", path.display()))?;
    }
    settings.path = path;
    Ok(settings)
}

impl Settings {
    pub fn options(&self) -> Options {
        let m = &self.migrations;
        let defaults = Options::default();
        Options {
            allow_out_of_order: m.allow_out_of_order,
            limits: Limits { lock_timeout: m.lock_timeout.clone(), statement_timeout: m.statement_timeout.clone() },
            lock_retries: m.lock_retries.unwrap_or(defaults.lock_retries),
            retry_backoff: m
                .retry_backoff
                .as_deref()
                .and_then(|b| crate::duration::parse(b).ok())
                .unwrap_or(defaults.retry_backoff),
        }
    }
}
