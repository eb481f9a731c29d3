//! What every tool operation shares: the project root, one shell, the overrides a command line
//! gave (diesel_cli's names and fallbacks), settings from the environment or `.env`, and the
//! terminal questions destructive operations ask.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use url::Url;
use xshell::Shell;

use crate::url::parse_database_url;

/// diesel_cli's global flags, as values: each `None` falls back as diesel_cli does.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Else `$DATABASE_URL`, else DATABASE_URL in `.env`.
    pub database_url: Option<String>,
    /// Else diesel.toml's migrations_directory, else `db/migrations`.
    pub migration_dir: Option<PathBuf>,
    /// Else `$DIESEL_CONFIG_FILE`, else `diesel.toml`.
    pub config_file: Option<PathBuf>,
}

pub struct Context {
    pub sh: Shell,
    pub root: PathBuf,
    pub global: Overrides,
}

impl Context {
    /// A context for the project at `root`; the shell works there.
    pub fn new(root: PathBuf, global: Overrides) -> Result<Context> {
        let sh = Shell::new()?;
        sh.change_dir(&root);
        Ok(Context { sh, root, global })
    }

    /// The `.env` file this project reads and `up` writes (`RAILGUN_ENV_FILE` moves it).
    pub fn env_file(&self) -> PathBuf {
        match std::env::var_os("RAILGUN_ENV_FILE") {
            Some(path) => self.root.join(path),
            None => self.root.join(".env"),
        }
    }

    /// A setting from the environment, else from `.env`.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        if let Ok(value) = std::env::var(key) {
            return Ok(Some(value));
        }
        crate::env_file::get(&self.env_file(), key)
    }

    /// `--database-url`, else `DATABASE_URL` from the environment, else from `.env`.
    pub fn database_url(&self) -> Result<Url> {
        let raw = match &self.global.database_url {
            Some(url) => url.clone(),
            None => match self.setting("DATABASE_URL")? {
                Some(url) => url,
                None => bail!(
                    hint!("no database to work on: DATABASE_URL is not set"; "start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL / pass --database-url")
                ),
            },
        };
        parse_database_url(&raw)
    }

    /// A path given on the command line, relative to where the user ran cargo.
    pub fn user_path(&self, path: &Path) -> PathBuf {
        std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }

    /// The migrations folder of this invocation (flags, then diesel.toml, then `db/migrations`).
    pub fn migration_dir(&self) -> Result<PathBuf> {
        Ok(crate::diesel_config::DieselConfig::load(self)?.migration_dir(self))
    }
}

/// Asks a yes/no question on the terminal; without a terminal the answer is no, never a hang.
pub fn confirm(question: &str) -> Result<bool> {
    let answer = prompt(&format!("{question} [y/N]"))?;
    Ok(answer.is_some_and(|a| matches!(a.as_str(), "y" | "Y" | "yes" | "YES" | "Yes")))
}

/// The project's name: containers, volumes and labels carry it (`RAILGUN_PROJECT`, default `railgun`).
pub fn project_name() -> String {
    std::env::var("RAILGUN_PROJECT").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "railgun".into())
}

/// Asks for a line on the terminal; `None` without a terminal (never hangs).
pub fn prompt(question: &str) -> Result<Option<String>> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("read the answer")?;
    Ok(Some(answer.trim().to_string()))
}
