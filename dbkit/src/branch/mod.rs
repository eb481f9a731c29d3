//! A database per git branch. Opted into per checkout (`RAILGUN_BRANCHES=on` in `.env`), each
//! branch gets its own database on the checkout's server, cloned on its first checkout from the
//! database of the branch it came from and brought to the checkout's migrations; `.env`'s
//! `DATABASE_URL` (and `DIRECT_URL`) then name it, so the app, every command and the tests
//! follow git. A git `post-checkout` hook ([`hook`]) switches; by hand, `branch switch`.
//!
//! Which database belongs to which branch is written on the database itself, as a JSON comment
//! ([`Meta`]): a name derived from the branch ([`database_for`]) is only where a new one goes.

pub mod hook;
pub mod manage;
pub mod switch;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::context::Context;
use crate::url::database_name;

/// `.env`'s switch: `on` while the database follows git in this checkout.
pub const ENABLED: &str = "RAILGUN_BRANCHES";
/// `.env`'s record of the branch whose database `DATABASE_URL` names.
pub const CURRENT: &str = "RAILGUN_BRANCH";

/// What a branch database's comment holds, after [`COMMENT_PREFIX`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Meta {
    /// The git branch it belongs to.
    pub branch: String,
    /// The database the branches of its checkout began from (the one `branch on` found): the
    /// family it belongs to. Two checkouts on one server (two clones pointed at one Postgres)
    /// never see each other's branches.
    pub root: String,
    /// The database it was cloned from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A snapshot's name (`branch snapshot NAME`); `None` for the branch's own database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// When it was made, and when a switch last went to it (UTC, RFC 3339).
    pub created: String,
    pub used: String,
}

/// The start of every branch database's comment: the rest is a [`Meta`] in JSON.
pub const COMMENT_PREFIX: &str = "railgun branch ";

/// One database of the registry: its name, what its comment says, its size when asked.
#[derive(Debug, Clone)]
pub struct Entry {
    pub database: String,
    pub meta: Meta,
    pub size: Option<i64>,
}

/// The checkout's branching settings, read from `.env` (never from the environment: the
/// hook, the switch and the next command must agree on one file).
#[derive(Debug, Clone)]
pub struct Branching {
    pub env_file: PathBuf,
    /// The branch whose database `.env` names, as the last switch recorded it.
    pub current: Option<String>,
    /// `.env`'s DATABASE_URL, and DIRECT_URL when `up --pooler` wrote one.
    pub app_url: Url,
    pub direct_url: Option<Url>,
}

impl Branching {
    /// The settings when branch databases are on in this checkout; `None` when they are off.
    pub fn load(cx: &Context) -> Result<Option<Branching>> {
        let env_file = cx.env_file();
        let get = |key: &str| crate::env_file::get(&env_file, key).map(|v| v.filter(|v| !v.trim().is_empty()));
        if get(ENABLED)?.as_deref() != Some("on") {
            return Ok(None);
        }
        let Some(app) = get("DATABASE_URL")? else {
            bail!(hint!("{ENABLED}=on in {}, but it has no DATABASE_URL to follow git with", env_file.display();
                "run `cargo xtask up` (it writes DATABASE_URL), or `cargo xtask branch off`"));
        };
        let app_url = crate::url::parse_database_url(&app).context("DATABASE_URL in .env")?;
        let direct_url =
            get("DIRECT_URL")?.map(|d| crate::url::parse_database_url(&d)).transpose().context("DIRECT_URL in .env")?;
        let current = get(CURRENT)?;
        Ok(Some(Branching { env_file, current, app_url, direct_url }))
    }

    /// The URL the tools use (DIRECT_URL, else DATABASE_URL).
    pub fn session_url(&self) -> &Url {
        self.direct_url.as_ref().unwrap_or(&self.app_url)
    }

    /// The database `.env` names now.
    pub fn database(&self) -> String {
        database_name(self.session_url())
    }

    /// `url` on the same server, naming `database`.
    pub fn url_for(url: &Url, database: &str) -> Url {
        let mut url = url.clone();
        url.set_path(&format!("/{}", encoded(database)));
        url
    }

    /// The server's `postgres` database, where databases are created and dropped.
    pub fn server_url(&self) -> Url {
        Branching::url_for(self.session_url(), "postgres")
    }

    /// Points `.env` at `database` (DATABASE_URL, and DIRECT_URL when set) for `branch`.
    pub fn point_at(&self, database: &str, branch: &str) -> Result<()> {
        let app = Branching::url_for(&self.app_url, database).to_string();
        let direct = self.direct_url.as_ref().map(|d| Branching::url_for(d, database).to_string());
        let mut pairs = vec![("DATABASE_URL", app.as_str()), (CURRENT, branch)];
        if let Some(direct) = &direct {
            pairs.push(("DIRECT_URL", direct.as_str()));
        }
        crate::env_file::set(&self.env_file, None, &pairs)
    }
}

/// The name of a new database for `branch` (or for a snapshot: pass `snapshot:BRANCH:NAME`),
/// beside `base`: `<base>_b_<branch in safe characters>_<hash of the whole name>` (of `base`,
/// its first 24 bytes; of the branch, what fits), at most 63
/// bytes (Postgres's limit), unique however long or unicode the branch name is.
pub fn database_for(base: &str, key: &str) -> String {
    let mut slug = String::new();
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' };
        if !(c == '_' && (slug.is_empty() || slug.ends_with('_'))) {
            slug.push(c);
        }
    }
    let hash = crate::migration::checksum::fnv(&[key.as_bytes()]);
    let hash = format!("{:08x}", (hash ^ (hash >> 32)) as u32);
    let base = truncated(base, 24).trim_end_matches('_');
    let room = 63 - base.len() - "_b_".len() - 1 - hash.len();
    let slug = truncated(slug.trim_end_matches('_'), room).trim_end_matches('_').to_string();
    match slug.is_empty() {
        true => format!("{base}_b_{hash}"),
        false => format!("{base}_b_{slug}_{hash}"),
    }
}

/// A database name as a URL path segment: every byte but `[A-Za-z0-9_.~-]` percent-encoded.
fn encoded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'~' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// At most `bytes` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Every database of the server whose comment is a branch's, sizes included when `sizes`.
pub fn registry(conn: &mut PgConnection, sizes: bool) -> Result<Vec<Entry>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        datname: String,
        #[diesel(sql_type = Text)]
        comment: String,
        #[diesel(sql_type = Nullable<BigInt>)]
        size: Option<i64>,
    }
    let size = if sizes { "pg_database_size(d.oid)" } else { "NULL::bigint" };
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT d.datname::text AS datname, c.comment, {size} AS size FROM pg_database d,
           LATERAL (SELECT shobj_description(d.oid, 'pg_database') AS comment) c
         WHERE c.comment LIKE 'railgun branch %' AND d.datallowconn ORDER BY d.datname"
    ))
    .load(conn)
    .context("list the branch databases")?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let meta = serde_json::from_str(row.comment.strip_prefix(COMMENT_PREFIX)?).ok()?;
            Some(Entry { database: row.datname, meta, size: row.size })
        })
        .collect())
}

/// The branch databases of `database`'s family (see [`Meta::root`]), and its root: `database`
/// itself when it is not a branch's yet.
pub fn family(conn: &mut PgConnection, database: &str, sizes: bool) -> Result<(String, Vec<Entry>)> {
    let all = registry(conn, sizes)?;
    let root =
        all.iter().find(|e| e.database == database).map_or_else(|| database.to_string(), |e| e.meta.root.clone());
    let entries = all.into_iter().filter(|e| e.meta.root == root).collect();
    Ok((root, entries))
}

/// The branch's own database in `entries` (not a snapshot of it).
pub fn own<'a>(entries: &'a [Entry], branch: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.meta.branch == branch && e.meta.snapshot.is_none())
}

/// Writes `meta` as `database`'s comment.
pub fn write_meta(conn: &mut PgConnection, database: &str, meta: &Meta) -> Result<()> {
    let comment = format!("{COMMENT_PREFIX}{}", serde_json::to_string(meta)?);
    execute_formatted(conn, "COMMENT ON DATABASE %I IS %L", &[database, &comment])
        .with_context(|| format!("record the branch of database {database}"))
}

/// Runs `template` (a `format()` string of Postgres: `%I` an identifier, `%L` a literal) with
/// `args` quoted by the server itself: utility statements take no parameters.
pub fn execute_formatted(conn: &mut PgConnection, template: &str, args: &[&str]) -> Result<()> {
    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = Text)]
        statement: String,
    }
    let mut query = diesel::sql_query(format!(
        "SELECT format($1{}) AS statement",
        (0..args.len()).map(|i| format!(", ${}", i + 2)).collect::<String>()
    ))
    .into_boxed::<diesel::pg::Pg>()
    .bind::<Text, _>(template.to_string());
    for arg in args {
        query = query.bind::<Text, _>(arg.to_string());
    }
    let statement: Statement = query.get_result(conn)?;
    diesel::sql_query(statement.statement).execute(conn)?;
    Ok(())
}

/// The sessions on `database` other than this one, for a message: `pid N (application, user,
/// since ...)`.
pub fn sessions_on(conn: &mut PgConnection, database: &str) -> Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Session {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let rows: Vec<Session> = diesel::sql_query(
        "SELECT format('pid %s (%s, user %s, connected %s)', pid, coalesce(nullif(application_name, ''), 'no application name'),
                usename, to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS')) AS line
         FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid",
    )
    .bind::<Text, _>(database)
    .load(conn)
    .context("list the sessions on the database")?;
    Ok(rows.into_iter().map(|s| s.line).collect())
}

/// Whether the server has a database named `name`.
pub fn exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result(conn)
        .context("look for the database")?;
    Ok(count.n > 0)
}

/// Now, UTC, as the comments record it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Where the switch records why it failed, for the next command to say (the checkout's own git
/// folder: a worktree has its own).
pub fn failure_file(git_dir: &Path) -> PathBuf {
    git_dir.join("railgun-branch-failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_short_and_unique() {
        assert_eq!(database_for("railgun", "main").len(), "railgun_b_main_".len() + 8);
        assert!(database_for("railgun", "feature/avatar").starts_with("railgun_b_feature_avatar_"));
        let long = "x".repeat(300);
        let unicode = "fonctionnalité/été-über-日本語";
        for name in [long.as_str(), unicode, "feature/Avatar", "feature/avatar", "a--b", "--", "🚀"] {
            let db = database_for("a_very_long_database_name_indeed", name);
            assert!(db.len() <= 63, "{db} is {} bytes", db.len());
            assert!(db.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{db}");
        }
        assert_ne!(database_for("railgun", "feature/avatar"), database_for("railgun", "feature-avatar"));
        assert_ne!(database_for("railgun", "Feature"), database_for("railgun", "feature"));
        assert_ne!(database_for("railgun", &format!("{long}a")), database_for("railgun", &format!("{long}b")));
        assert!(database_for("base", "🚀").starts_with("base_b_"), "{}", database_for("base", "🚀"));
        assert!(database_for("bäse_ünïcode_database", "x").len() <= 63);
    }
}
