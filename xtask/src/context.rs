//! What every command shares: the global flags (diesel_cli's names and fallbacks), the
//! project root, one shell, and error reporting.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use db::url::{parse_database_url, redact_str};
use url::Url;
use xshell::Shell;

/// Flags every command takes, with diesel_cli's names and fallbacks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Global {
    /// The database to work on [default: $DATABASE_URL, else DATABASE_URL in .env]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where the migrations are [default: diesel.toml's migrations_directory, else db/migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migration_dir: Option<PathBuf>,
    /// diesel.toml to read [default: $DIESEL_CONFIG_FILE, else diesel.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

pub struct Context {
    pub sh: Shell,
    pub root: PathBuf,
    pub global: Global,
}

impl Context {
    pub fn new(global: Global) -> Result<Context> {
        let sh = Shell::new()?;
        let root = project_root();
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
                    "no database to work on: DATABASE_URL is not set\n  hint: start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL / pass --database-url"
                ),
            },
        };
        parse_database_url(&raw)
    }

    /// A path given on the command line, relative to where the user ran cargo.
    pub fn user_path(&self, path: &Path) -> PathBuf {
        std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The workspace root, from where this crate's sources are: never the current directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Prints an error once: `error: ...`, its causes, every URL redacted.
pub fn report(error: &anyhow::Error) {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    // Hints travel inside messages as "\n  hint: ..."; keep them last, where the eye lands.
    let (mut body, mut hints) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if line.trim_start().starts_with("hint:") { hints.push(line) } else { body.push(line) }
    }
    // Errors raised outside `db::connect` (pg_dump, psql, diesel's migrations) get the guide's fix too.
    let known = db::connect::known_fix(&text).map(|fix| format!("  hint: {fix}"));
    if hints.is_empty() {
        hints.extend(known.as_deref());
    }
    body.extend(hints);
    eprintln!("{}", redact_str(&body.join("\n")));
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
