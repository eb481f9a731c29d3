//! railgun.toml's `[backup]` section: what `db backup` does when its flags do not say.
//!
//! ```toml
//! [backup]
//! encrypt = true                # as --encrypt
//! recipients = ["age1..."]      # the public keys backups are encrypted to (in the repo)
//! to = "s3://bucket/prefix"     # as --to: where `db backup` writes without a DIR
//! ```
//!
//! The private key (identity) is never here: `RAILGUN_BACKUP_IDENTITY` names its file.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::context::Context;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Encrypt every backup, as `--encrypt`.
    #[serde(default)]
    pub encrypt: bool,
    /// age X25519 public keys (`age1...`): whoever holds one of their identities can decrypt.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Where backups go by default, as `--to` (an `s3://` URL).
    pub to: Option<String>,
}

/// The `[backup]` section of railgun.toml (defaults when there is none).
pub fn load(cx: &Context) -> Result<BackupSettings> {
    let settings = crate::migration::settings::load(cx)?;
    let Some(table) = settings.backup else {
        return Ok(BackupSettings::default());
    };
    table.try_into().with_context(
        || hint!("read [backup] in {}", settings.path.display(); "its keys are encrypt = true|false, recipients = [\"age1...\"] and to = \"s3://BUCKET/PREFIX\""),
    )
}
