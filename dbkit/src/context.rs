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
    /// What this checkout's containers, volumes and labels are named after (see [`project_of`]).
    pub project: String,
    /// diesel.toml once read (see [`crate::diesel_config::DieselConfig::load`]).
    pub(crate) diesel_config: std::sync::OnceLock<crate::diesel_config::DieselConfig>,
}

impl Context {
    /// A context for the project at `root`; the shell works there.
    pub fn new(root: PathBuf, global: Overrides) -> Result<Context> {
        let sh = Shell::new()?;
        sh.change_dir(&root);
        let project = project_of(&root, &env_file_of(&root))?;
        Ok(Context { sh, root, global, project, diesel_config: std::sync::OnceLock::new() })
    }

    /// What this checkout's containers and volumes are called.
    pub fn project(&self) -> crate::project::Project {
        crate::project::Project::new(&self.project)
    }

    /// The `.env` file this project reads and `up` writes (`RAILGUN_ENV_FILE` moves it).
    pub fn env_file(&self) -> PathBuf {
        env_file_of(&self.root)
    }

    /// A setting from the environment, else from `.env`.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        if let Ok(value) = std::env::var(key) {
            return Ok(Some(value));
        }
        crate::env_file::get(&self.env_file(), key)
    }

    /// The URL of commands that need a session of their own (migrations and their advisory
    /// lock, backup, restore, roles, schema generation): `--database-url`, else `DIRECT_URL`,
    /// else `DATABASE_URL`, each from the environment, else from `.env` (the two are taken from
    /// one place: a `DATABASE_URL` exported for another database never pairs with `.env`'s
    /// `DIRECT_URL`). A URL that goes through a transaction pooler is refused, before anything
    /// is done, with the fix: set `DIRECT_URL`. With branch databases on, refused while `.env`
    /// names another branch's database than HEAD's (see [`crate::branch`]).
    pub fn database_url(&self) -> Result<Url> {
        crate::branch::switch::check_follows(self)?;
        let (url, origin) = self.session_url()?;
        crate::pooler::require_session(
            &url,
            self.pooler_setting(&origin)?.as_deref(),
            "work on the database",
            &origin,
        )?;
        Ok(url)
    }

    /// The session URL and where it came from, unchecked (doctor reports it as it is).
    pub fn session_url(&self) -> Result<(Url, String)> {
        if let Some(url) = &self.global.database_url {
            return Ok((parse_database_url(url)?, "--database-url".into()));
        }
        // An empty DIRECT_URL is unset (`up` empties it when the pooler goes); an empty
        // DATABASE_URL is an error of its own, said as such.
        let direct_env = std::env::var("DIRECT_URL").ok().filter(|v| !v.trim().is_empty());
        let (direct, app, place) = match (direct_env, std::env::var("DATABASE_URL").ok()) {
            (None, None) => (
                crate::env_file::get(&self.env_file(), "DIRECT_URL")?.filter(|v| !v.trim().is_empty()),
                crate::env_file::get(&self.env_file(), "DATABASE_URL")?,
                ".env",
            ),
            (direct, app) => (direct, app, "the environment"),
        };
        match (direct, app) {
            (Some(direct), _) => Ok((parse_database_url(&direct)?, format!("DIRECT_URL (from {place})"))),
            (None, Some(app)) => Ok((parse_database_url(&app)?, format!("DATABASE_URL (from {place})"))),
            (None, None) => bail!(
                hint!("no database to work on: DATABASE_URL is not set"; "start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL / pass --database-url")
            ),
        }
    }

    /// The app's URL (`DATABASE_URL`, which may go through a pooler), if set: doctor reports it.
    pub fn app_url(&self) -> Result<Option<Url>> {
        self.setting("DATABASE_URL")?.filter(|v| !v.trim().is_empty()).map(|raw| parse_database_url(&raw)).transpose()
    }

    /// `DATABASE_POOLER`, which describes `DATABASE_URL` only: a `DIRECT_URL` is direct by name.
    fn pooler_setting(&self, origin: &str) -> Result<Option<String>> {
        match origin.starts_with("DATABASE_URL") {
            true => self.setting(crate::pooler::SETTING),
            false => Ok(None),
        }
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

/// The `.env` of the checkout at `root` (`RAILGUN_ENV_FILE` moves it).
fn env_file_of(root: &Path) -> PathBuf {
    match std::env::var_os("RAILGUN_ENV_FILE") {
        Some(path) => root.join(path),
        None => root.join(".env"),
    }
}

/// The project name of the checkout at `root`: `RAILGUN_PROJECT` from the environment, else
/// from its `.env` (written by `up`), else [`derived_project`]. Each checkout of the repository
/// (a clone, a git worktree, CI's clone) so gets containers and data of its own.
pub fn project_of(root: &Path, env_file: &Path) -> Result<String> {
    if let Some(name) = std::env::var("RAILGUN_PROJECT").ok().filter(|s| !s.is_empty()) {
        return Ok(name);
    }
    if let Some(name) = crate::env_file::get(env_file, "RAILGUN_PROJECT")?.filter(|s| !s.is_empty()) {
        return Ok(name);
    }
    Ok(derived_project(root))
}

/// `railgun-<folder>-<hash of the checkout's path>`, as compose names projects after their
/// folder, with the hash so that two clones in folders of the same name differ.
pub fn derived_project(root: &Path) -> String {
    let path = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let folder: String = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    format!("railgun-{}-{:06x}", folder.trim_matches('-'), hash & 0xff_ffff)
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
