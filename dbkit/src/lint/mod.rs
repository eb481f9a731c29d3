//! `migration lint`: each statement of a migration parsed by Postgres's own parser (libpg_query,
//! through the `pg_query` crate) and checked against squawk's rules, by squawk's names and with
//! squawk's meanings, knowing what squawk cannot: our runner wraps each migration in a
//! transaction unless its `metadata.toml` says no, a non-transactional file still goes to the
//! server as one batch (an implicit transaction), and `railgun.toml` may set a lock timeout.
//!
//! A statement is silenced, rule by rule, by a comment right before it that gives a reason:
//! `-- lint-ignore adding-required-field: the table is empty in every environment`.

#[cfg(feature = "testing")]
pub mod measure;
mod rules;

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use pg_query::NodeEnum;
use serde::Serialize;

use crate::migration::source::{MigrationFiles, shown};

pub use rules::RULES;

/// A rule: its name (squawk's), why it matters, and the safe way to do the same thing.
pub struct Rule {
    pub name: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

/// What the linter knows beyond the SQL.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's major version (constant defaults stopped rewriting tables in 11).
    pub postgres_major: u32,
    /// A lock timeout comes from railgun.toml or the migration's metadata.toml.
    pub lock_timeout_configured: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { postgres_major: 15, lock_timeout_configured: false }
    }
}

/// One finding: where, which rule, what the statement does, why it matters, the safe rewrite,
/// and what it should lock (for `--measure` to confirm).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    /// Index of the statement in its file (0-based).
    pub statement: usize,
    pub rule: &'static str,
    pub message: String,
    pub why: &'static str,
    pub fix: String,
    pub expect: Option<Expectation>,
}

/// What a finding says the statement does to a table, in pg_locks' words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    /// Relations and the lock each should take (`AccessExclusiveLock`, `ShareLock`, ...).
    pub locks: Vec<(String, &'static str)>,
    /// Whether the table is rewritten (`None`: the rule does not say).
    pub rewrite: Option<bool>,
}

/// A statement of a migration, as the parser split it.
#[derive(Debug, Clone)]
pub struct Statement {
    /// 1-based line of its first token.
    pub line: usize,
    /// The statement's text, without the comments before it.
    pub text: String,
    pub node: Option<NodeEnum>,
    /// `lint-ignore` comments before it: the rules and the reason.
    pub ignores: Vec<(Vec<String>, String)>,
    /// Identifiers longer than Postgres keeps (63 bytes), as written.
    pub long_identifiers: Vec<String>,
}

/// A linted migration: its statements and findings (silenced ones apart).
#[derive(Debug, Clone, Serialize)]
pub struct Linted {
    pub migration: String,
    pub file: String,
    #[serde(skip)]
    pub statements: Vec<Statement>,
    pub findings: Vec<Finding>,
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    pub line: usize,
    pub rule: String,
    pub reason: String,
}

/// Parses `sql` into statements with their lines, ignore comments and over-long identifiers.
pub fn statements(sql: &str) -> Result<Vec<Statement>> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The parser cuts identifiers to 63 bytes (as the server does): only the tokens show the length written.
    let long: Vec<(usize, String)> = if !has_long_word(sql) {
        Vec::new()
    } else {
        pg_query::scan(sql)
            .map(|scan| {
                scan.tokens
                    .iter()
                    .filter(|t| t.token == pg_query::protobuf::Token::Ident as i32)
                    .filter_map(|t| {
                        let text = sql.get(t.start as usize..t.end as usize)?;
                        let name = text.trim_matches('"');
                        (name.len() > 63).then(|| (t.start as usize, name.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut previous_end = 0;
    for raw in &parsed.protobuf.stmts {
        let start = raw.stmt_location as usize;
        let end = if raw.stmt_len == 0 { sql.len() } else { (start + raw.stmt_len as usize).min(sql.len()) };
        // Comments before a statement: between the previous one's end and its start (Postgres 18
        // starts a statement at its first token), or at the start of its text (older parsers).
        let gap = sql.get(previous_end..start).unwrap_or_default();
        let (lead, body) = split_leading_comments(&sql[start..end]);
        let first = start + lead.len();
        let mut ignores = ignore_comments(gap);
        ignores.extend(ignore_comments(lead));
        out.push(Statement {
            line: crate::migration::sql::line_at(sql, first),
            text: body.trim_end().trim_end_matches(';').trim_end().to_string() + ";",
            node: raw.stmt.as_ref().and_then(|n| n.node.clone()),
            ignores,
            long_identifiers: long.iter().filter(|(at, _)| (first..end).contains(at)).map(|(_, n)| n.clone()).collect(),
        });
        previous_end = end;
    }
    Ok(out)
}

/// Whether `sql` may hold an identifier of more than 63 bytes (a quoted one, or a run of more
/// than 63 identifier bytes): the only files worth a second pass through the scanner, which
/// costs about a fifth of the linter's time.
fn has_long_word(sql: &str) -> bool {
    if sql.contains('"') {
        return true;
    }
    let mut run = 0;
    for &b in sql.as_bytes() {
        run = if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 { run + 1 } else { 0 };
        if run > 63 {
            return true;
        }
    }
    false
}

/// The whitespace and comments at the start of `chunk`, and the rest.
fn split_leading_comments(chunk: &str) -> (&str, &str) {
    let bytes = chunk.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if chunk[i..].starts_with("--") {
            i = chunk[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
        } else if chunk[i..].starts_with("/*") {
            i = chunk[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2);
        } else {
            return chunk.split_at(i);
        }
    }
}

/// `-- lint-ignore RULE[, RULE]: REASON` lines; one without a reason keeps an empty reason
/// (reported, and it silences nothing).
fn ignore_comments(lead: &str) -> Vec<(Vec<String>, String)> {
    lead.lines()
        .filter_map(|line| line.trim().strip_prefix("--")?.trim().strip_prefix("lint-ignore"))
        .map(|rest| {
            let (rules, reason) = rest.split_once(':').unwrap_or((rest, ""));
            let rules = rules.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
            (rules, reason.trim().to_string())
        })
        .collect()
}

/// Lints one migration's up.sql.
pub fn lint(migration: &MigrationFiles, settings: &Settings) -> Result<Linted> {
    let sql = migration.sql("up.sql")?;
    let file = shown(&migration.dir.join("up.sql"));
    let statements = match statements(&sql) {
        Ok(statements) => statements,
        Err(e) => bail!(
            hint!("{file} does not parse as Postgres SQL: {e}"; "fix the syntax (the linter uses Postgres's own parser)")
        ),
    };
    let settings = Settings {
        lock_timeout_configured: settings.lock_timeout_configured || migration.limits.lock_timeout.is_some(),
        ..settings.clone()
    };
    let mut findings = rules::check(&statements, migration.run_in_transaction, &settings, &file);
    let mut ignored = Vec::new();
    let known: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    for (index, statement) in statements.iter().enumerate() {
        for (rules, reason) in &statement.ignores {
            for rule in rules {
                if !known.contains(rule.as_str()) {
                    findings.push(meta_finding(&file, statement, index, format!("lint-ignore names no rule: {rule}")));
                } else if reason.is_empty() {
                    findings.push(meta_finding(&file, statement, index, format!("lint-ignore {rule} gives no reason")));
                } else {
                    let before = findings.len();
                    findings.retain(|f| !(f.statement == index && f.rule == rule));
                    if findings.len() < before {
                        ignored.push(Ignored { line: statement.line, rule: rule.clone(), reason: reason.clone() });
                    }
                }
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.rule));
    Ok(Linted { migration: migration.name.clone(), file, statements, findings, ignored })
}

fn meta_finding(file: &str, statement: &Statement, index: usize, message: String) -> Finding {
    Finding {
        file: file.to_string(),
        line: statement.line.saturating_sub(1).max(1),
        statement: index,
        rule: "lint-ignore",
        message,
        why: "an ignore comment must name a rule and say why the statement is safe, for the next reader",
        fix: format!(
            "-- lint-ignore RULE: REASON (rules: {})",
            RULES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
        expect: None,
    }
}
