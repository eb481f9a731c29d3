//! New migrations in diesel_cli's layout: `YYYY-MM-DD-HHMMSS_name/{up.sql,down.sql}`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::{NaiveDateTime, TimeDelta, Utc};

use super::source::{self, shown};

/// down.sql of `migration create`.
pub const DOWN_TEMPLATE: &str = "\
-- Undo everything up.sql does, in reverse order, so `cargo xtask migration revert` (and redo)
-- bring the database back exactly. For example:
--
-- DROP INDEX \"IDX_users_status\";
-- ALTER TABLE \"users\" DROP COLUMN \"status\";
";

/// up.sql of `migration create`.
pub fn up_template(name: &str) -> String {
    format!(
        "\
-- Migration {name}: write the change as plain SQL (keep it to one logical change).
--
-- It runs in a transaction: if any statement fails, nothing of it stays. Statements that cannot
-- run in a transaction (CREATE INDEX CONCURRENTLY) need a metadata.toml next to this file with
-- `run_in_transaction = false`. For example:
--
-- ALTER TABLE \"users\" ADD COLUMN \"status\" varchar(20) DEFAULT 'active';
-- CREATE INDEX \"IDX_users_status\" ON \"users\" (\"status\");
"
    )
}

/// Makes `<dir>/<timestamp>_<name>` with the given up.sql and down.sql; the name is validated
/// and must be new. The timestamp is now (UTC), moved on a second if another migration has it.
pub fn create_migration(dir: &Path, name: &str, up: &str, down: &str) -> Result<PathBuf> {
    validate_name(name)?;
    std::fs::create_dir_all(dir).with_context(|| format!("create the migrations folder {}", shown(dir)))?;
    let existing = source::load(dir)?;
    if let Some(same) = existing.iter().find(|m| m.name.split_once('_').is_some_and(|(_, n)| n == name)) {
        bail!(
            hint!("a migration named {name} already exists: {}", shown(&same.dir); "pick another name, or edit that migration if it was never applied")
        );
    }
    let mut at: NaiveDateTime = Utc::now().naive_utc();
    let folder = loop {
        let version = at.format("%Y-%m-%d-%H%M%S").to_string();
        if !existing.iter().any(|m| m.version == version.replace('-', "")) {
            break dir.join(format!("{version}_{name}"));
        }
        at += TimeDelta::seconds(1);
    };
    std::fs::create_dir(&folder).with_context(|| format!("create {}", shown(&folder)))?;
    std::fs::write(folder.join("up.sql"), up).with_context(|| format!("write {}", shown(&folder.join("up.sql"))))?;
    std::fs::write(folder.join("down.sql"), down)
        .with_context(|| format!("write {}", shown(&folder.join("down.sql"))))?;
    Ok(folder)
}

/// snake_case: lowercase ASCII letters, digits and single underscores, starting with a letter.
fn validate_name(name: &str) -> Result<()> {
    const HINT: &str = "use snake_case, e.g. `cargo xtask migration create add_user_avatar`";
    if name.is_empty() {
        bail!(crate::error::Hinted::new("the migration name is empty", HINT));
    }
    if name.contains(['/', '\\']) || name.contains("..") {
        bail!(crate::error::Hinted::new(
            format!("the migration name `{name}` is a path: give a name, the folder comes from the migrations folder"),
            HINT
        ));
    }
    let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__");
    if !snake {
        bail!(crate::error::Hinted::new(
            format!("the migration name `{name}` is not snake_case (lowercase letters, digits, single underscores)"),
            HINT
        ));
    }
    if name.len() > 200 {
        bail!(crate::error::Hinted::new(
            format!("the migration name is too long ({} characters, at most 200)", name.len()),
            HINT
        ));
    }
    Ok(())
}

/// Writes `count` migrations that build on each other, as a growing app's would: a table every
/// few migrations, then columns, indexes, a view and some rows on it.
pub fn generate_app_like(dir: &Path, count: usize) -> Result<()> {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    for i in 0..count {
        let table = format!("t{}", i / 5);
        let (name, up, down) = match i % 5 {
            0 => (
                format!("create_{table}"),
                format!(
                    "CREATE TABLE {table} (\n    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    name TEXT NOT NULL,\n    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n"
                ),
                format!("DROP TABLE {table};\n"),
            ),
            1 => (
                format!("add_{table}_status"),
                format!("ALTER TABLE {table} ADD COLUMN status VARCHAR(20) DEFAULT 'active';\n"),
                format!("ALTER TABLE {table} DROP COLUMN status;\n"),
            ),
            2 => (
                format!("index_{table}_status"),
                format!("CREATE INDEX {table}_status_idx ON {table} (status);\n"),
                format!("DROP INDEX {table}_status_idx;\n"),
            ),
            3 => (
                format!("seed_{table}"),
                format!("INSERT INTO {table} (name) SELECT 'row ' || n FROM generate_series(1, 20) AS n;\n"),
                format!("DELETE FROM {table};\n"),
            ),
            _ => (
                format!("view_{table}_active"),
                format!("CREATE VIEW {table}_active AS\n    SELECT id, name FROM {table} WHERE status = 'active';\n"),
                format!("DROP VIEW {table}_active;\n"),
            ),
        };
        let at = start + chrono::TimeDelta::seconds(i as i64);
        let folder = dir.join(format!("{}_{name}", at.format("%Y-%m-%d-%H%M%S")));
        std::fs::create_dir_all(&folder).with_context(|| format!("create {}", folder.display()))?;
        std::fs::write(folder.join("up.sql"), up)?;
        std::fs::write(folder.join("down.sql"), down)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names() {
        for good in ["add_user_avatar", "a", "v2_billing"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "AddUserAvatar", "add-user", "../x", "a/b", "a\\b", "_x", "x_", "a__b", "2fa", "añadir"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
