//! The production guard: destructive commands ask first, and refuse production or remote
//! targets unless forced with the database name typed back.

use anyhow::{Result, bail};
use db::url::{database_name, is_local, redact};
use url::Url;

use crate::context::{Context, confirm};

/// Flags of every destructive command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Guard {
    /// Do not ask for confirmation (local, non-production targets only)
    #[arg(long, short)]
    pub yes: bool,
    /// Allow a production or remote target; the database name must be typed back (or --confirm-db)
    #[arg(long)]
    pub force: bool,
    /// The target database's name, for scripts that pass --force without a terminal
    #[arg(long, value_name = "NAME")]
    pub confirm_db: Option<String>,
}

impl Guard {
    /// Decides, before anything connects, whether `what` may happen to the database at `url`.
    pub fn check(&self, cx: &Context, url: &Url, what: &str) -> Result<()> {
        let name = database_name(url);
        let production = cx.setting("APP_ENV")?.is_some_and(|env| env.eq_ignore_ascii_case("production"));
        if production || !is_local(url) {
            let why = if production {
                "APP_ENV=production".to_string()
            } else {
                format!("`{}` is not a local database", redact(url))
            };
            if !self.force {
                bail!(
                    "refused to {what}: {why}\n  hint: this is destructive; if you really mean it, add --force and type the database name back (or --confirm-db {name} in scripts)"
                );
            }
            if let Some(typed) = &self.confirm_db {
                if *typed != name {
                    bail!("refused to {what}: --confirm-db `{typed}` does not match the target database `{name}`");
                }
                return Ok(());
            }
            let typed = crate::context::prompt(&format!(
                "{what} on {} ({why}). Type the database name to go on:",
                redact(url)
            ))?;
            if typed.as_deref() != Some(name.as_str()) {
                bail!(
                    "refused to {what}: the database name was not typed back\n  hint: without a terminal, pass --confirm-db {name}"
                );
            }
            return Ok(());
        }
        if self.yes || confirm(&format!("{what} on {}?", redact(url)))? {
            return Ok(());
        }
        bail!(
            "refused to {what}: not confirmed\n  hint: answer y at the prompt, or pass --yes in scripts (no terminal means no)"
        );
    }
}
