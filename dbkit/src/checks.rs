//! A list of named checks, each passed, failed (with its fix) or skipped: what `doctor` and
//! `db audit` find, as values a test reads and a CLI prints as a table.

use std::fmt;

use anyhow::{Result, bail};

use crate::url::redact_str;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail { what: String, fix: String },
    Skip(String),
}

/// A failed check: what is wrong and how to fix it.
pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail { what: what.into(), fix: fix.into() }
}

/// A check's short name (`docker`, `ssl`, ...) and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// The checks in the order they ran. `Display` is the table: one line a check (two for a
/// failure, the second its fix), every URL in it redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn push(&mut self, name: &'static str, outcome: Outcome) {
        self.0.push(Check { name, outcome });
    }

    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.0.iter().filter(|c| matches!(c.outcome, Outcome::Fail { .. })).map(|c| c.name).collect()
    }

    /// An error (exit 1 for the CLI) that names the failed checks, if any failed.
    pub fn verdict(&self) -> Result<()> {
        let failed = self.failed();
        if !failed.is_empty() {
            bail!("{} of {} checks failed: {}", failed.len(), self.0.len(), failed.join(", "));
        }
        Ok(())
    }
}

impl fmt::Display for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for Check { name, outcome } in &self.0 {
            let line = match outcome {
                Outcome::Pass(what) => format!("pass  {name:<11} {what}"),
                Outcome::Skip(why) => format!("skip  {name:<11} {why}"),
                Outcome::Fail { what, fix } => format!("FAIL  {name:<11} {what}\n      {:<11} fix: {fix}", ""),
            };
            writeln!(f, "{}", redact_str(&line))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_table_and_names_the_failures() {
        let mut checks = Checks::default();
        checks.push("docker", Outcome::Pass("the engine answers".into()));
        checks.push("ssl", fail("plain", "add ?sslmode=require"));
        checks.push("schema.rs", Outcome::Skip("no database connection".into()));
        assert_eq!(
            checks.to_string(),
            "pass  docker      the engine answers\nFAIL  ssl         plain\n                  fix: add ?sslmode=require\nskip  schema.rs   no database connection\n"
        );
        assert_eq!(checks.verdict().unwrap_err().to_string(), "1 of 3 checks failed: ssl");
    }
}
