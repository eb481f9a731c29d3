//! The statement reader: one statement's tokens read by its first keywords (`CREATE TABLE`,
//! `ALTER TABLE ... ADD COLUMN`, `DROP`, `INSERT`...), each object it names recorded with what
//! the statement does to it; a shape it does not know leaves the statement unread.

use super::{Access, Kind, Object, Touch};
use crate::migration::sql::{self, Token};

/// Reads one statement's tokens.
pub(super) struct Reader<'a> {
    pub(super) text: &'a str,
    pub(super) line: usize,
    pub(super) tokens: Vec<(usize, Token<'a>)>,
    pub(super) at: usize,
    pub(super) touches: Vec<Touch>,
    /// Part of the statement was not understood (its touches so far stand).
    pub(super) unread: bool,
    /// The names a `WITH` defines.
    pub(super) ctes: Vec<String>,
}

const TABLE_CONSTRAINTS: &[&str] = &["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"];

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str, line: usize) -> Reader<'a> {
        Reader { text, line, tokens: sql::tokens(text), at: 0, touches: Vec::new(), unread: false, ctes: Vec::new() }
    }

    /// `None` when the statement is not one this reads.
    pub(super) fn statement(&mut self) -> Option<()> {
        let first = self.word_at(0)?;
        match first.as_str() {
            "CREATE" => self.create(),
            "ALTER" => self.alter(),
            "DROP" => self.drop(),
            "COMMENT" => self.comment(),
            "INSERT" => {
                self.expect(&["INSERT", "INTO"])?;
                self.touch_name(Kind::Table, Access::Writes)?;
                self.uses_from();
                Some(())
            }
            "UPDATE" => {
                self.advance();
                self.eat(&["ONLY"]);
                self.touch_name(Kind::Table, Access::Writes)?;
                self.uses_from();
                Some(())
            }
            "DELETE" => {
                self.expect(&["DELETE", "FROM"])?;
                self.eat(&["ONLY"]);
                self.touch_name(Kind::Table, Access::Writes)?;
                self.uses_from();
                Some(())
            }
            "TRUNCATE" => {
                self.advance();
                self.eat(&["TABLE"]);
                self.names(Kind::Table, Access::Writes)
            }
            "GRANT" | "REVOKE" => self.grant(),
            "LOCK" | "ANALYZE" | "VACUUM" | "CLUSTER" | "REINDEX" => {
                self.advance();
                self.eat(&["TABLE"]);
                if self.at_name() {
                    self.touch_name(Kind::Table, Access::Uses)?;
                }
                Some(())
            }
            // Settings of the migration's own session: no object.
            "SET" | "RESET" => Some(()),
            "WITH" => self.with(),
            // Without a function call it can only read (or make a table with INTO).
            "SELECT" if !self.tokens.iter().any(|(_, t)| *t == Token::Punct('(')) => {
                while self.at < self.tokens.len() && !self.is_word("INTO") && !self.is_word("FROM") {
                    self.advance();
                }
                if self.eat(&["INTO"]) {
                    self.eat_any(&["TEMPORARY", "TEMP", "UNLOGGED"]);
                    self.eat(&["TABLE"]);
                    self.touch_name(Kind::Table, Access::Creates)?;
                }
                self.uses_from();
                Some(())
            }
            _ => None,
        }
    }

    fn create(&mut self) -> Option<()> {
        self.advance();
        self.eat(&["OR", "REPLACE"]);
        while self.eat_any(&["GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED", "UNIQUE", "RECURSIVE"]) {}
        let what = self.word_at(0)?;
        self.advance();
        match what.as_str() {
            "TABLE" => {
                self.eat(&["IF", "NOT", "EXISTS"]);
                self.touch_name(Kind::Table, Access::Creates)?;
                if self.eat(&["PARTITION", "OF"]) {
                    self.touch_name(Kind::Table, Access::Uses)?;
                }
                self.references_until_end();
                Some(())
            }
            "INDEX" => {
                self.eat(&["CONCURRENTLY"]);
                self.eat(&["IF", "NOT", "EXISTS"]);
                if !self.is_word("ON") {
                    self.touch_name(Kind::Index, Access::Creates)?;
                }
                self.expect(&["ON"])?;
                self.eat(&["ONLY"]);
                let table = self.touch_name(Kind::Table, Access::Uses)?;
                if self.eat(&["USING"]) {
                    self.advance();
                }
                self.index_columns(&table);
                Some(())
            }
            "VIEW" | "MATERIALIZED" => {
                if what == "MATERIALIZED" {
                    self.expect(&["VIEW"])?;
                }
                self.eat(&["IF", "NOT", "EXISTS"]);
                self.touch_name(Kind::View, Access::Creates)?;
                self.uses_from();
                Some(())
            }
            "SEQUENCE" => {
                self.eat(&["IF", "NOT", "EXISTS"]);
                self.touch_name(Kind::Sequence, Access::Creates)?;
                self.owned_by();
                Some(())
            }
            "TYPE" | "DOMAIN" => {
                self.touch_name(Kind::Type, Access::Creates)?;
                Some(())
            }
            "FUNCTION" | "PROCEDURE" => {
                self.touch_name(Kind::Function, Access::Creates)?;
                Some(())
            }
            "TRIGGER" | "CONSTRAINT" => {
                if what == "CONSTRAINT" {
                    self.expect(&["TRIGGER"])?;
                }
                self.on_table(Kind::Trigger, Access::Creates)
            }
            "POLICY" => self.on_table(Kind::Policy, Access::Creates),
            "EXTENSION" => {
                self.eat(&["IF", "NOT", "EXISTS"]);
                self.touch_name(Kind::Extension, Access::Creates)?;
                Some(())
            }
            "SCHEMA" => {
                self.eat(&["IF", "NOT", "EXISTS"]);
                self.touch_name(Kind::Schema, Access::Creates)?;
                Some(())
            }
            _ => None,
        }
    }

    fn alter(&mut self) -> Option<()> {
        self.advance();
        let what = self.word_at(0)?;
        self.advance();
        let kind = match what.as_str() {
            "TABLE" => return self.alter_table(),
            "TRIGGER" => return self.on_table(Kind::Trigger, Access::Alters),
            "POLICY" => return self.on_table(Kind::Policy, Access::Alters),
            // Privileges for objects yet to be created, settings of roles and the database.
            "DEFAULT" | "ROLE" | "USER" | "DATABASE" | "SYSTEM" => return Some(()),
            other => self.named_kind(other)?,
        };
        self.eat(&["IF", "EXISTS"]);
        let (name, at) = self.name()?;
        self.skip_parens();
        let access = self.rename_or_alter(kind, &name);
        self.push(Object::new(kind, name), access, at);
        if kind == Kind::Sequence {
            self.owned_by();
        }
        Some(())
    }

    /// The kind of object `ALTER` and `COMMENT ON` name by `word` (the word read; `MATERIALIZED`
    /// takes its `VIEW`), for the kinds named the same way in both.
    fn named_kind(&mut self, word: &str) -> Option<Kind> {
        Some(match word {
            "INDEX" => Kind::Index,
            "VIEW" => Kind::View,
            "MATERIALIZED" => {
                self.expect(&["VIEW"])?;
                Kind::View
            }
            "SEQUENCE" => Kind::Sequence,
            "TYPE" | "DOMAIN" => Kind::Type,
            "FUNCTION" | "PROCEDURE" => Kind::Function,
            "SCHEMA" => Kind::Schema,
            "EXTENSION" => Kind::Extension,
            _ => return None,
        })
    }

    /// `RENAME TO new` (the new name created), `SET SCHEMA`, or any other change.
    fn rename_or_alter(&mut self, kind: Kind, name: &str) -> Access {
        if self.eat(&["RENAME", "TO"]) {
            if let Some((new, at)) = self.name() {
                let schema = name.rsplit_once('.').map(|(schema, _)| format!("{schema}.")).unwrap_or_default();
                self.push(Object::new(kind, format!("{schema}{new}")), Access::Creates, at);
            }
            return Access::Renames;
        }
        if self.eat(&["SET", "SCHEMA"]) {
            return Access::Renames;
        }
        Access::Alters
    }

    fn alter_table(&mut self) -> Option<()> {
        self.eat(&["IF", "EXISTS"]);
        self.eat(&["ONLY"]);
        if self.is_word("ALL") {
            return None;
        }
        let (table, at) = self.name()?;
        self.eat_punct('*');
        loop {
            self.alter_table_action(&table, at)?;
            // Up to the next action: the rest of this one (a column's type, a default) names nothing.
            self.skip_to_top_level_comma();
            if !self.eat_punct(',') {
                return Some(());
            }
        }
    }

    fn alter_table_action(&mut self, table: &str, table_at: usize) -> Option<()> {
        let action = self.word_at(0)?;
        let next = self.word_at(1).unwrap_or_default();
        let constraint = TABLE_CONSTRAINTS.contains(&next.as_str());
        match action.as_str() {
            "ADD" if !constraint => {
                self.advance();
                self.eat(&["COLUMN"]);
                self.eat(&["IF", "NOT", "EXISTS"]);
                let (column, at) = self.name()?;
                self.push(Object::new(Kind::Column, format!("{table}.{column}")), Access::Creates, at);
                self.references_in_action();
            }
            "DROP" | "ALTER" if !constraint => {
                self.advance();
                self.eat(&["COLUMN"]);
                self.eat(&["IF", "EXISTS"]);
                let (column, at) = self.name()?;
                let access = if action == "DROP" { Access::Drops } else { Access::Alters };
                self.push(Object::new(Kind::Column, format!("{table}.{column}")), access, at);
            }
            "RENAME" if next == "TO" => {
                let access = self.rename_or_alter(Kind::Table, table);
                self.push(Object::new(Kind::Table, table), access, table_at);
            }
            "RENAME" if next != "CONSTRAINT" => {
                self.advance();
                self.eat(&["COLUMN"]);
                let (column, at) = self.name()?;
                self.push(Object::new(Kind::Column, format!("{table}.{column}")), Access::Renames, at);
                self.expect(&["TO"])?;
                let (new, at) = self.name()?;
                self.push(Object::new(Kind::Column, format!("{table}.{new}")), Access::Creates, at);
            }
            "SET" if next == "SCHEMA" => {
                self.push(Object::new(Kind::Table, table), Access::Renames, table_at);
            }
            _ => {
                let at = self.offset();
                self.push(Object::new(Kind::Table, table), Access::Alters, at);
                self.references_in_action();
            }
        }
        Some(())
    }

    fn drop(&mut self) -> Option<()> {
        self.advance();
        let what = self.word_at(0)?;
        self.advance();
        let kind = match what.as_str() {
            "TABLE" => Kind::Table,
            "INDEX" => {
                self.eat(&["CONCURRENTLY"]);
                Kind::Index
            }
            "TRIGGER" => return self.on_table(Kind::Trigger, Access::Drops),
            "POLICY" => return self.on_table(Kind::Policy, Access::Drops),
            other => self.named_kind(other)?,
        };
        self.eat(&["IF", "EXISTS"]);
        self.names(kind, Access::Drops)
    }

    fn comment(&mut self) -> Option<()> {
        self.expect(&["COMMENT", "ON"])?;
        let what = self.word_at(0)?;
        self.advance();
        let kind = match what.as_str() {
            "TABLE" => Kind::Table,
            "COLUMN" => Kind::Column,
            "TRIGGER" => return self.on_table(Kind::Trigger, Access::Alters),
            "POLICY" => return self.on_table(Kind::Policy, Access::Alters),
            // A table's constraint: a change of the table.
            "CONSTRAINT" => {
                self.name()?;
                self.expect(&["ON"])?;
                self.eat(&["DOMAIN"]);
                Kind::Table
            }
            other => self.named_kind(other)?,
        };
        self.touch_name(kind, Access::Alters)?;
        Some(())
    }

    /// `GRANT/REVOKE ... ON [TABLE] a, b TO ...`: uses the tables. A grant of a role, or on
    /// anything but tables, names no table.
    fn grant(&mut self) -> Option<()> {
        while self.at < self.tokens.len() && !self.is_word("ON") {
            self.advance();
        }
        if !self.eat(&["ON"]) {
            return Some(());
        }
        if self.eat_any(&["ALL", "SEQUENCE", "FUNCTION", "PROCEDURE", "SCHEMA", "TYPE", "DOMAIN", "DATABASE"]) {
            return Some(());
        }
        self.eat(&["TABLE"]);
        self.names(Kind::Table, Access::Uses)
    }

    /// `name ON table`: a trigger's or policy's, keyed by its table, which it uses.
    fn on_table(&mut self, kind: Kind, access: Access) -> Option<()> {
        self.eat(&["IF", "NOT", "EXISTS"]);
        self.eat(&["IF", "EXISTS"]);
        let (name, at) = self.name()?;
        let mut renamed = None;
        while self.at < self.tokens.len() && !self.is_word("ON") {
            self.advance();
        }
        self.expect(&["ON"])?;
        let table = self.touch_name(Kind::Table, Access::Uses)?;
        if self.eat(&["RENAME", "TO"]) {
            renamed = self.name();
        }
        let access = if renamed.is_some() { Access::Renames } else { access };
        self.push(Object::new(kind, format!("{table}.{name}")), access, at);
        if let Some((new, at)) = renamed {
            self.push(Object::new(kind, format!("{table}.{new}")), Access::Creates, at);
        }
        Some(())
    }

    /// `a, b, c [CASCADE]`, each a `kind` touched so (a function's argument list skipped).
    fn names(&mut self, kind: Kind, access: Access) -> Option<()> {
        loop {
            self.eat(&["ONLY"]);
            self.touch_name(kind, access)?;
            self.eat_punct('*');
            self.skip_parens();
            if !self.eat_punct(',') {
                return Some(());
            }
        }
    }

    /// `OWNED BY table.column` of a sequence.
    fn owned_by(&mut self) {
        while self.at < self.tokens.len() {
            if self.eat(&["OWNED", "BY"]) {
                if let Some((name, at)) = self.name()
                    && name.contains('.')
                {
                    self.push(Object::new(Kind::Column, name), Access::Uses, at);
                }
                return;
            }
            self.advance();
        }
    }

    /// An index's `(col, lower(expr), ...)`, then its `INCLUDE (...)` and `WHERE ...`: the
    /// columns each reads (see [`Reader::expression_columns`]).
    fn index_columns(&mut self, table: &str) {
        if !self.eat_punct('(') {
            return;
        }
        loop {
            let end = self.top_level_end();
            self.expression_columns(table, end);
            if !self.eat_punct(',') {
                break;
            }
        }
        self.eat_punct(')');
        let end = self.tokens.len() - usize::from(matches!(self.tokens.last(), Some((_, Token::Punct(';')))));
        if self.at < end {
            self.expression_columns(table, end);
        }
    }

    /// The columns of `table` that the tokens up to `end` read: each name that is not a
    /// keyword, a function (`f(`), a type (`::t`, `date '...'`) or what follows an operand (an
    /// operator class, `text_pattern_ops`).
    fn expression_columns(&mut self, table: &str, end: usize) {
        const KEYWORDS: &[&str] = &[
            "ASC", "DESC", "NULLS", "FIRST", "LAST", "AND", "OR", "NOT", "NULL", "TRUE", "FALSE", "IS", "CASE", "WHEN",
            "THEN", "ELSE", "END", "CAST", "AS", "IN", "LIKE", "ILIKE", "BETWEEN", "DISTINCT", "WHERE", "INCLUDE",
            "ANY", "ALL", "SOME", "ARRAY", "INTERVAL", "ON", "USING",
        ];
        let keyword = |w: &str| KEYWORDS.contains(&w.to_ascii_uppercase().as_str());
        while self.at < end {
            let token = self.tokens[self.at].1.clone();
            if let Token::Word(w) = &token {
                match w.to_ascii_uppercase().as_str() {
                    "WITH" => {
                        self.advance();
                        self.skip_parens();
                        continue;
                    }
                    "COLLATE" | "TABLESPACE" => {
                        self.at += 2;
                        continue;
                    }
                    _ => {}
                }
            }
            let next = self.tokens.get(self.at + 1).map(|(_, t)| t);
            let previous = self.at.checked_sub(1).and_then(|n| self.tokens.get(n)).map(|(_, t)| t);
            let named = match &token {
                Token::Word(w) if !keyword(w) => Some(w.to_lowercase()),
                Token::Quoted(q) => Some(q.clone()),
                _ => None,
            };
            let not_a_column = matches!(next, Some(Token::Punct('(' | '.') | Token::Value))
                || matches!(previous, Some(Token::Punct(':' | ')') | Token::Quoted(_)))
                || matches!(previous, Some(Token::Word(p)) if !keyword(p));
            if let Some(column) = named.filter(|_| !not_a_column) {
                let at = self.offset();
                self.push(Object::new(Kind::Column, format!("{table}.{column}")), Access::Uses, at);
            }
            self.advance();
        }
    }

    /// Where the current list element ends: the next `,` or `)` outside parentheses.
    fn top_level_end(&self) -> usize {
        let mut depth = 0usize;
        for (n, (_, token)) in self.tokens.iter().enumerate().skip(self.at) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') if depth == 0 => return n,
                Token::Punct(')') => depth -= 1,
                Token::Punct(',') if depth == 0 => return n,
                _ => {}
            }
        }
        self.tokens.len()
    }

    /// The tables after `FROM`, `JOIN` and `USING` in the rest of the statement, used.
    fn uses_from(&mut self) {
        self.uses_from_until(self.tokens.len());
    }

    /// [`Reader::uses_from`] up to the token `end`.
    fn uses_from_until(&mut self, end: usize) {
        while self.at < end {
            if self.eat_any(&["FROM", "JOIN", "USING"]) {
                self.eat(&["ONLY"]);
                if self.at_name() {
                    let _ = self.touch_name(Kind::Table, Access::Uses);
                }
                continue;
            }
            self.advance();
        }
    }

    /// `WITH [RECURSIVE] name AS (query), ...` and the statement it prefixes: the tables the
    /// queries read are used (the names it defines are no tables). A data-modifying one (an
    /// `INSERT`, `UPDATE`, `DELETE` or `MERGE` in it) is not read.
    fn with(&mut self) -> Option<()> {
        self.advance();
        self.eat(&["RECURSIVE"]);
        loop {
            let (name, _) = self.name()?;
            self.ctes.push(name);
            self.skip_parens();
            self.expect(&["AS"])?;
            self.eat(&["NOT"]);
            self.eat(&["MATERIALIZED"]);
            if !matches!(self.tokens.get(self.at), Some((_, Token::Punct('('))))
                || matches!(self.word_at(1).as_deref(), Some("INSERT" | "UPDATE" | "DELETE" | "MERGE"))
            {
                self.unread = true;
                return None;
            }
            let start = self.at;
            self.skip_parens();
            let end = self.at;
            self.at = start;
            self.uses_from_until(end);
            self.at = end;
            if !self.eat_punct(',') {
                break;
            }
        }
        self.statement()
    }

    /// `REFERENCES t (cols)` anywhere up to the statement's end.
    fn references_until_end(&mut self) {
        while self.at < self.tokens.len() {
            self.reference();
            self.advance();
        }
    }

    /// `REFERENCES t (cols)` up to the end of the current ALTER TABLE action.
    fn references_in_action(&mut self) {
        let mut depth = 0usize;
        while let Some((_, token)) = self.tokens.get(self.at) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                Token::Punct(',') if depth == 0 => return,
                _ => {}
            }
            self.reference();
            self.advance();
        }
    }

    fn reference(&mut self) {
        if !self.is_word("REFERENCES") {
            return;
        }
        self.advance();
        let Some((target, at)) = self.name() else { return };
        self.push(Object::new(Kind::Table, target.clone()), Access::Uses, at);
        if self.eat_punct('(') {
            while let Some((at, token)) = self.tokens.get(self.at).cloned() {
                match token {
                    Token::Word(w) => {
                        self.push(Object::new(Kind::Column, format!("{target}.{}", w.to_lowercase())), Access::Uses, at)
                    }
                    Token::Quoted(q) => self.push(Object::new(Kind::Column, format!("{target}.{q}")), Access::Uses, at),
                    Token::Punct(')') => break,
                    _ => {}
                }
                self.advance();
            }
        }
    }

    /// Reads a name and records it.
    fn touch_name(&mut self, kind: Kind, access: Access) -> Option<String> {
        let (name, at) = self.name()?;
        self.push(Object::new(kind, name.clone()), access, at);
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read;

    fn touched(sql: &str) -> Vec<String> {
        read(sql).touches.iter().map(|t| format!("{}:{t}", t.line)).collect()
    }

    #[test]
    fn tables_and_columns() {
        assert_eq!(
            touched("CREATE TABLE IF NOT EXISTS public.\"Users\" (id int PRIMARY KEY, org int REFERENCES orgs (id));"),
            ["1:creates table Users", "1:uses table orgs", "1:uses column orgs.id"]
        );
        assert_eq!(
            touched(
                "ALTER TABLE IF EXISTS ONLY billing.invoices\n  ADD COLUMN IF NOT EXISTS total numeric(10, 2) DEFAULT 0,\n  DROP COLUMN legacy CASCADE,\n  ALTER COLUMN \"Due\" SET NOT NULL,\n  ADD CONSTRAINT fk FOREIGN KEY (org) REFERENCES orgs (id);"
            ),
            [
                "2:creates column billing.invoices.total",
                "3:drops column billing.invoices.legacy",
                "4:alters column billing.invoices.Due",
                "5:alters table billing.invoices",
                "5:uses table orgs",
                "5:uses column orgs.id",
            ]
        );
        assert_eq!(
            touched("ALTER TABLE users RENAME COLUMN name TO full_name; ALTER TABLE users RENAME TO accounts;"),
            [
                "1:renames column users.name",
                "1:creates column users.full_name",
                "1:creates table accounts",
                "1:renames table users"
            ]
        );
        assert_eq!(touched("DROP TABLE IF EXISTS a, s.b CASCADE;"), ["1:drops table a", "1:drops table s.b"]);
    }

    #[test]
    fn indexes_views_types_functions_triggers_comments_rows() {
        assert_eq!(
            touched(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email ON ONLY users USING btree (email, lower(name));"
            ),
            [
                "1:creates index users_email",
                "1:uses table users",
                "1:uses column users.email",
                "1:uses column users.name"
            ]
        );
        assert_eq!(
            touched(
                "CREATE INDEX ON t (a DESC NULLS LAST, lower(b) text_pattern_ops, (c::text) COLLATE \"C\", (1)) INCLUDE (d) WITH (fillfactor = 70) WHERE e IS NULL AND f = date '2020-01-01';"
            ),
            [
                "1:uses table t",
                "1:uses column t.a",
                "1:uses column t.b",
                "1:uses column t.c",
                "1:uses column t.d",
                "1:uses column t.e",
                "1:uses column t.f"
            ]
        );
        assert_eq!(touched("DROP INDEX CONCURRENTLY IF EXISTS users_email;"), ["1:drops index users_email"]);
        assert_eq!(
            touched("CREATE OR REPLACE VIEW active AS SELECT * FROM users u JOIN orgs o ON o.id = u.org;"),
            ["1:creates view active", "1:uses table users", "1:uses table orgs"]
        );
        assert_eq!(touched("CREATE TYPE mood AS ENUM ('a', 'b');"), ["1:creates type mood"]);
        assert_eq!(touched("ALTER TYPE mood ADD VALUE 'c';"), ["1:alters type mood"]);
        assert_eq!(touched("DROP FUNCTION IF EXISTS f(int, text), g();"), ["1:drops function f", "1:drops function g"]);
        assert_eq!(
            touched(
                "CREATE OR REPLACE FUNCTION f() RETURNS trigger AS $$ BEGIN DROP TABLE x; END $$ LANGUAGE plpgsql;"
            ),
            ["1:creates function f"]
        );
        assert_eq!(
            touched("CREATE TRIGGER audit AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f();"),
            ["1:uses table users", "1:creates trigger users.audit"]
        );
        assert_eq!(
            touched("DROP TRIGGER IF EXISTS audit ON users;"),
            ["1:uses table users", "1:drops trigger users.audit"]
        );
        assert_eq!(touched("COMMENT ON COLUMN public.users.email IS 'x';"), ["1:alters column users.email"]);
        assert_eq!(touched("COMMENT ON TABLE users IS NULL;"), ["1:alters table users"]);
        assert_eq!(touched("COMMENT ON CONSTRAINT users_pkey ON users IS 'x';"), ["1:alters table users"]);
        assert_eq!(
            touched("INSERT INTO users (id) SELECT id FROM staff; UPDATE ONLY orgs SET a = 1; DELETE FROM t USING u;"),
            [
                "1:writes rows of table users",
                "1:uses table staff",
                "1:writes rows of table orgs",
                "1:writes rows of table t",
                "1:uses table u"
            ]
        );
    }

    #[test]
    fn a_select_without_function_calls_only_reads() {
        assert_eq!(touched("SELECT 1;"), Vec::<String>::new());
        assert_eq!(touched("SELECT a, b INTO TEMP copy FROM users;"), ["1:creates table copy", "1:uses table users"]);
        assert_eq!(read("SELECT diesel_manage_updated_at('users');").unread.len(), 1);
    }

    #[test]
    fn with_queries_are_read_through() {
        assert_eq!(
            touched(
                "WITH RECURSIVE bad AS (SELECT id FROM keywords k JOIN crates c ON true), n(x) AS NOT MATERIALIZED (SELECT 1)\nUPDATE crates SET k = 1 FROM bad;"
            ),
            ["1:uses table keywords", "1:uses table crates", "2:writes rows of table crates"]
        );
        assert_eq!(read("WITH gone AS (DELETE FROM t RETURNING id) SELECT * FROM gone;").unread.len(), 1);
    }

    #[test]
    fn what_is_not_read_is_said() {
        let reading = read(
            "SET lock_timeout = '1s';\nDO $$ BEGIN EXECUTE 'DROP TABLE users'; END $$;\nSELECT setval('s', 1);\nCOPY t FROM stdin;\nSELECT 1;",
        );
        assert!(reading.touches.is_empty());
        assert_eq!(reading.unread.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(reading.unread[0].1, "DO");
    }
}
