//! Opening a connection with the guide's troubleshooting built in: every failure names its fix.

use anyhow::{Result, anyhow};
use diesel::{Connection, PgConnection};
use url::Url;

use crate::url::{redact, redact_str};

/// Connects to `url`; the error keeps Postgres's words (password redacted) and adds the hint.
pub fn establish(url: &Url) -> Result<PgConnection> {
    PgConnection::establish(url.as_str())
        .map_err(|e| anyhow!("cannot connect to {}: {}", redact(url), redact_str(e.to_string().trim())))
}
