//! What a backup may make psql do: run SQL statements, and nothing else.
//!
//! psql executes more than SQL: a backslash outside a string starts a meta-command (`\!` runs a
//! shell command, `\o` and `\copy ... to program` write files, `\connect` switches databases),
//! and transaction control in the file would end the one transaction a restore relies on. This
//! scanner follows psql's own lexer (strings, `E''` escapes, quoted identifiers, dollar quotes,
//! nested comments, parentheses, `BEGIN ATOMIC` bodies, COPY data up to `\.`) and refuses, with
//! its line, any meta-command, any transaction control, any COPY but `FROM stdin`, and any change
//! of `standard_conforming_strings` (which would make psql read strings differently from this
//! scanner). pg_dump's own `\restrict KEY` (first) and `\unrestrict KEY` (last) lines are
//! dropped from what psql gets: the restore arms `\restrict` with a key of its own instead.

use std::fmt;

/// A line of the dump that would make psql do something else than run a dump's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// 1-based, in the decompressed SQL.
    pub line: u64,
    pub what: String,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} of the backup's SQL: {}; a backup may only hold SQL statements", self.line, self.what)
    }
}

impl std::error::Error for Forbidden {}

/// The fix for a [`Forbidden`] line.
pub const FORBIDDEN_HINT: &str = "this file is not what pg_dump wrote (it was edited or crafted): do not restore it; \
look at the line with `gunzip -c FILE | sed -n 'LINEp'`, and take the backup again from the source database";

const TRANSACTION_CONTROL: &[&str] = &["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT"];
const META_LINE_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    /// After `-` in Normal: a comment if another `-` follows.
    Dash,
    /// After `/` in Normal: a comment if `*` follows.
    Slash,
    LineComment,
    /// Nested `/* */` comments, with what the previous byte may start.
    Block {
        depth: u32,
        star: bool,
        slash: bool,
    },
    /// `'...'` (`escapes`: an `E'...'` string, where backslash escapes the next byte).
    Single {
        escapes: bool,
        backslash: bool,
        quote: bool,
    },
    /// `"..."`, `""` inside.
    Double {
        quote: bool,
    },
    /// Reading a possible dollar-quote tag after `$`.
    DollarTag,
    /// Inside `$tag$...$tag$`; `matched` bytes of the closing tag seen.
    Dollar {
        matched: usize,
    },
    Identifier,
    /// A number, with what psql lexes as part of it (`1e`, `123abc`): what follows may not
    /// start an `E''` string.
    Number,
    /// The rest of a `COPY ... FROM stdin;` line: only blanks, then the data.
    AfterCopy,
    /// A backslash line, buffered to its end.
    Meta {
        at_line_start: bool,
    },
    /// COPY data lines, up to a line `\.`; `matched` bytes of `\.` at this line's start, or None mid-line.
    CopyData {
        matched: Option<u8>,
    },
}

/// Scans a dump's SQL as it streams by, chunk after chunk.
pub struct Scanner {
    state: State,
    line: u64,
    line_has_text: bool,
    buf: Vec<u8>,
    tag: Vec<u8>,
    paren: u32,
    begin_depth: u32,
    /// The statement's identifiers so far (uppercased; the first few and the last two).
    first_words: Vec<String>,
    last_words: [String; 2],
    word_count: usize,
    statement_has_string: bool,
    /// The start of the current single-quoted string, uppercased, to spot `set_config('standard_conforming_strings', ...)`.
    string_start: Vec<u8>,
    in_statement: bool,
    restrict_key: Option<String>,
    unrestricted: bool,
    statements: u64,
    stripped: Vec<u64>,
    /// Emitted right after any statement that sets `lock_timeout` (pg_dump's `SET lock_timeout = 0;`).
    reassert: Option<Vec<u8>>,
    reassert_now: bool,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            state: State::Normal,
            line: 1,
            line_has_text: false,
            buf: Vec::new(),
            tag: Vec::new(),
            paren: 0,
            begin_depth: 0,
            first_words: Vec::new(),
            last_words: Default::default(),
            word_count: 0,
            statement_has_string: false,
            string_start: Vec::new(),
            in_statement: false,
            restrict_key: None,
            unrestricted: false,
            statements: 0,
            stripped: Vec::new(),
            reassert: None,
            reassert_now: false,
        }
    }

    /// Emits `sql` after every statement that sets `lock_timeout`, on the same line: the
    /// restore's own timeout stays in force after pg_dump's `SET lock_timeout = 0;`.
    pub fn reassert_after_lock_timeout(&mut self, sql: &str) {
        self.reassert = Some(sql.as_bytes().to_vec());
    }

    /// The lines left out of what psql gets (pg_dump's `\restrict` and `\unrestrict`).
    pub fn stripped(&self) -> &[u64] {
        &self.stripped
    }

    /// How many statements went by.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Scans `chunk`; `emit` gets what psql may run (pg_dump's `\restrict` lines left out).
    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(&[u8])) -> Result<(), Forbidden> {
        let mut emitted = 0;
        let mut i = 0;
        while i < chunk.len() {
            if let State::CopyData { matched: None } = self.state {
                // The fast path through table data: straight to the next line start.
                match memchr::memchr(b'\n', &chunk[i..]) {
                    Some(at) => {
                        i += at + 1;
                        self.line += 1;
                        self.state = State::CopyData { matched: Some(0) };
                        continue;
                    }
                    None => break,
                }
            }
            let byte = chunk[i];
            if let State::Meta { .. } = self.state {
                if byte == b'\n' {
                    let stripped = self.end_meta_line()?;
                    if stripped {
                        // Leave out the line, its newline too.
                        let start = i.saturating_sub(self.buf.len());
                        emit(&chunk[emitted..start.max(emitted)]);
                        emitted = i + 1;
                    }
                    self.buf.clear();
                    self.state = State::Normal;
                    self.newline();
                } else if self.buf.len() < META_LINE_MAX {
                    self.buf.push(byte);
                } else {
                    return Err(self.meta_error());
                }
                i += 1;
                continue;
            }
            if self.step(byte)? {
                // Reprocess this byte in the state `step` moved to.
                continue;
            }
            if self.reassert_now {
                self.reassert_now = false;
                emit(&chunk[emitted..=i]);
                emit(self.reassert.as_deref().unwrap_or_default());
                emitted = i + 1;
            }
            i += 1;
        }
        if let State::Meta { .. } = self.state {
            // A meta line cut by the chunk's end: hold it back until it is judged.
            let held = self.buf.len().min(chunk.len() - emitted);
            emit(&chunk[emitted..chunk.len() - held]);
        } else {
            emit(&chunk[emitted..]);
        }
        Ok(())
    }

    /// The end of the SQL: a dangling meta line is judged; returns what was held back, if allowed.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) -> Result<(), Forbidden> {
        if let State::Meta { .. } = self.state {
            if !self.end_meta_line()? {
                let held = std::mem::take(&mut self.buf);
                emit(&held);
            }
            self.state = State::Normal;
        }
        Ok(())
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_has_text = false;
    }

    /// One byte; true when the byte must be seen again in the new state.
    fn step(&mut self, byte: u8) -> Result<bool, Forbidden> {
        use State::*;
        match self.state {
            Normal => self.normal(byte),
            Dash => {
                self.state = Normal;
                if byte == b'-' {
                    self.state = LineComment;
                    return Ok(false);
                }
                self.start_token()?;
                Ok(true)
            }
            Slash => {
                self.state = Normal;
                if byte == b'*' {
                    self.state = Block { depth: 1, star: false, slash: false };
                    return Ok(false);
                }
                self.start_token()?;
                Ok(true)
            }
            LineComment => {
                if byte == b'\n' {
                    self.state = Normal;
                    self.newline();
                }
                Ok(false)
            }
            Block { depth, star, slash } => {
                if byte == b'\n' {
                    self.newline();
                }
                self.state = if star && byte == b'/' {
                    if depth == 1 { Normal } else { Block { depth: depth - 1, star: false, slash: false } }
                } else if slash && byte == b'*' {
                    Block { depth: depth + 1, star: false, slash: false }
                } else {
                    Block { depth, star: byte == b'*', slash: byte == b'/' }
                };
                Ok(false)
            }
            Single { escapes, backslash, quote } => {
                if quote {
                    if byte == b'\'' {
                        self.state = Single { escapes, backslash: false, quote: false };
                        return Ok(false);
                    }
                    self.state = Normal;
                    if self
                        .string_start
                        .strip_suffix(b"'")
                        .is_some_and(|s| s.eq_ignore_ascii_case(b"standard_conforming_strings"))
                    {
                        return Err(self.forbidden("a change of `standard_conforming_strings`".into()));
                    }
                    return Ok(true);
                }
                if byte == b'\n' {
                    self.newline();
                }
                if self.string_start.len() < 40 {
                    self.string_start.push(byte);
                }
                self.state = match (backslash, byte) {
                    (true, _) => Single { escapes, backslash: false, quote: false },
                    (false, b'\\') if escapes => Single { escapes, backslash: true, quote: false },
                    (false, b'\'') => Single { escapes, backslash: false, quote: true },
                    _ => Single { escapes, backslash: false, quote: false },
                };
                Ok(false)
            }
            Double { quote } => {
                if quote {
                    if byte == b'"' {
                        self.state = Double { quote: false };
                        return Ok(false);
                    }
                    self.word(String::from("\"\""));
                    self.state = Normal;
                    return Ok(true);
                }
                if byte == b'\n' {
                    self.newline();
                }
                self.state = Double { quote: byte == b'"' };
                Ok(false)
            }
            DollarTag => {
                if byte == b'$' {
                    self.tag.push(b'$');
                    self.state = Dollar { matched: 0 };
                    self.statement_has_string = true;
                    return Ok(false);
                }
                let first = self.tag.len() == 1;
                if is_ident_start(byte) || (!first && byte.is_ascii_digit()) {
                    self.tag.push(byte);
                    return Ok(false);
                }
                // `$1`, or `$` in an operator: not a quote.
                self.tag.clear();
                self.state = Normal;
                Ok(true)
            }
            Dollar { matched } => {
                if byte == b'\n' {
                    self.newline();
                }
                let matched = if byte == self.tag[matched] {
                    matched + 1
                } else if byte == b'$' {
                    1
                } else {
                    0
                };
                if matched == self.tag.len() {
                    self.tag.clear();
                    self.state = Normal;
                } else {
                    self.state = Dollar { matched };
                }
                Ok(false)
            }
            Identifier => {
                if is_ident_cont(byte) {
                    self.buf.push(byte);
                    return Ok(false);
                }
                let word = String::from_utf8_lossy(&self.buf).to_ascii_uppercase();
                self.buf.clear();
                self.state = Normal;
                if byte == b'\'' && matches!(word.as_str(), "E" | "N" | "B" | "X") {
                    self.statement_has_string = true;
                    self.string_start.clear();
                    self.state = Single { escapes: word == "E", backslash: false, quote: false };
                    return Ok(false);
                }
                self.word(word);
                self.check_words()?;
                Ok(true)
            }
            Number => {
                if is_ident_start(byte) || byte.is_ascii_digit() || byte == b'.' {
                    return Ok(false);
                }
                self.state = Normal;
                Ok(true)
            }
            AfterCopy => {
                match byte {
                    b'\n' => {
                        self.line += 1;
                        self.state = CopyData { matched: Some(0) };
                    }
                    b' ' | b'\t' | b'\r' => {}
                    _ => return Err(self.forbidden("text after `COPY ... FROM stdin;` on its line".into())),
                }
                Ok(false)
            }
            CopyData { matched } => {
                // `matched` is Some here: at a line's start, matching `\.`.
                let matched = matched.unwrap_or(0);
                self.state = match (matched, byte) {
                    (0, b'\\') => CopyData { matched: Some(1) },
                    (1, b'.') => CopyData { matched: Some(2) },
                    (2, b'\n') => {
                        self.newline();
                        Normal
                    }
                    (2, b'\r') => CopyData { matched: Some(3) },
                    (3, b'\n') => {
                        self.newline();
                        Normal
                    }
                    (_, b'\n') => {
                        self.line += 1;
                        CopyData { matched: Some(0) }
                    }
                    _ => CopyData { matched: None },
                };
                Ok(false)
            }
            Meta { .. } => unreachable!("meta lines are buffered by feed"),
        }
    }

    fn normal(&mut self, byte: u8) -> Result<bool, Forbidden> {
        match byte {
            b'\n' => self.newline(),
            b' ' | b'\t' | b'\r' | b'\x0c' => {}
            b'-' => self.state = State::Dash,
            b'/' => self.state = State::Slash,
            b'\\' => {
                self.state = State::Meta { at_line_start: !self.line_has_text };
                self.buf.clear();
                self.buf.push(b'\\');
            }
            b'\'' => {
                self.start_token()?;
                self.statement_has_string = true;
                self.string_start.clear();
                self.state = State::Single { escapes: false, backslash: false, quote: false };
            }
            b'"' => {
                self.start_token()?;
                self.state = State::Double { quote: false };
            }
            b'$' => {
                self.start_token()?;
                self.tag.clear();
                self.tag.push(b'$');
                self.state = State::DollarTag;
            }
            b'(' => {
                self.start_token()?;
                self.paren += 1;
            }
            b')' => {
                self.start_token()?;
                self.paren = self.paren.saturating_sub(1);
            }
            b';' => {
                self.start_token()?;
                if self.paren == 0 && self.begin_depth == 0 {
                    self.end_statement()?;
                }
            }
            byte if byte.is_ascii_digit() => {
                self.start_token()?;
                self.state = State::Number;
            }
            byte if is_ident_start(byte) => {
                self.start_token()?;
                self.buf.clear();
                self.buf.push(byte);
                self.state = State::Identifier;
            }
            _ => self.start_token()?,
        }
        Ok(false)
    }

    /// Something that is not a comment or blank: part of a statement.
    fn start_token(&mut self) -> Result<(), Forbidden> {
        self.line_has_text = true;
        if !self.in_statement {
            if self.unrestricted {
                return Err(self.forbidden("SQL after pg_dump's closing `\\unrestrict`".into()));
            }
            self.in_statement = true;
        }
        Ok(())
    }

    fn word(&mut self, word: String) {
        if self.first_words.len() < 4 {
            self.first_words.push(word.clone());
        }
        // psql's heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END`:
        // semicolons inside do not end the statement.
        let words: Vec<&str> = self.first_words.iter().map(String::as_str).collect();
        let routine = matches!(words.as_slice(), ["CREATE", "FUNCTION" | "PROCEDURE", ..])
            || matches!(words.as_slice(), ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]);
        if routine && self.paren == 0 {
            match word.as_str() {
                "BEGIN" => self.begin_depth += 1,
                "CASE" if self.begin_depth > 0 => self.begin_depth += 1,
                "END" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        self.last_words = [std::mem::take(&mut self.last_words[1]), word];
        self.word_count += 1;
    }

    /// Refuses transaction control and settings that change how strings read, as soon as the
    /// statement's first words say so.
    fn check_words(&self) -> Result<(), Forbidden> {
        let words: Vec<&str> = self.first_words.iter().map(String::as_str).collect();
        let refuse = |what: String| Err(self.forbidden(what));
        match words.as_slice() {
            [first] if TRANSACTION_CONTROL.contains(first) => {
                refuse(format!("transaction control `{first}` (a restore is one transaction, ended by the restore)"))
            }
            ["START" | "PREPARE", "TRANSACTION"] => refuse(format!("transaction control `{} TRANSACTION`", words[0])),
            ["RESET", "ALL" | "STANDARD_CONFORMING_STRINGS"] => {
                refuse(format!("`RESET {}` (strings would read differently)", words[1].to_ascii_lowercase()))
            }
            _ => Ok(()),
        }
    }

    fn end_statement(&mut self) -> Result<(), Forbidden> {
        let copy = self.first_words.first().is_some_and(|w| w == "COPY");
        if copy && (self.last_words != ["FROM", "STDIN"] || self.statement_has_string) {
            return Err(
                self.forbidden("a COPY other than `COPY table (columns) FROM stdin;` (pg_dump's only form)".into())
            );
        }
        let words: Vec<&str> = self.first_words.iter().map(String::as_str).collect();
        let sets_strings = matches!(
            words.as_slice(),
            ["SET", "STANDARD_CONFORMING_STRINGS", ..]
                | ["SET", "SESSION" | "LOCAL", "STANDARD_CONFORMING_STRINGS", ..]
        );
        if sets_strings && (self.last_words[1] != "ON" || self.statement_has_string) {
            return Err(self.forbidden("`SET standard_conforming_strings` to anything but on".into()));
        }
        let sets_lock_timeout =
            matches!(words.as_slice(), ["SET", "LOCK_TIMEOUT", ..] | ["SET", "SESSION" | "LOCAL", "LOCK_TIMEOUT", ..]);
        self.reassert_now = sets_lock_timeout && self.reassert.is_some();
        self.statements += 1;
        self.first_words.clear();
        self.last_words = Default::default();
        self.word_count = 0;
        self.statement_has_string = false;
        self.in_statement = false;
        self.begin_depth = 0;
        if copy {
            // Data starts on the next line; the rest of this one is psql's to ignore.
            self.state = State::AfterCopy;
        }
        Ok(())
    }

    /// Judges a complete backslash line: true when it is one of pg_dump's `\restrict` lines,
    /// to be left out.
    fn end_meta_line(&mut self) -> Result<bool, Forbidden> {
        let State::Meta { at_line_start } = self.state else { return Ok(false) };
        let text = String::from_utf8_lossy(&self.buf).trim_end_matches('\r').to_string();
        let mut parts = text.split_whitespace();
        let (command, key) = (parts.next().unwrap_or_default(), parts.next());
        let whole_line = at_line_start && parts.next().is_none();
        let key_ok = key.is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric()));
        match command {
            "\\restrict"
                if whole_line
                    && key_ok
                    && self.restrict_key.is_none()
                    && self.statements == 0
                    && !self.in_statement =>
            {
                self.restrict_key = key.map(str::to_owned);
                self.stripped.push(self.line);
                Ok(true)
            }
            "\\unrestrict"
                if whole_line && key.is_some() && key == self.restrict_key.as_deref() && !self.in_statement =>
            {
                self.unrestricted = true;
                self.stripped.push(self.line);
                Ok(true)
            }
            _ => Err(self.meta_error()),
        }
    }

    fn meta_error(&self) -> Forbidden {
        let text = String::from_utf8_lossy(&self.buf);
        let command: String = text.split_whitespace().next().unwrap_or("\\").chars().take(40).collect();
        let what = match command.as_str() {
            "\\connect" | "\\c" => "`\\connect`: a switch to another database".to_string(),
            "\\restrict" | "\\unrestrict" => format!("`{command}` that is not pg_dump's own (first and last lines)"),
            _ => format!("the psql meta-command `{command}` (a backslash outside a string)"),
        };
        self.forbidden(what)
    }

    fn forbidden(&self, what: String) -> Forbidden {
        Forbidden { line: self.line, what }
    }
}

fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn is_ident_cont(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

/// Scans a whole SQL text at once; what psql may run.
pub fn scan_all(sql: &[u8]) -> Result<Vec<u8>, Forbidden> {
    let mut scanner = Scanner::new();
    let mut out = Vec::with_capacity(sql.len());
    scanner.feed(sql, &mut |part| out.extend_from_slice(part))?;
    scanner.finish(&mut |part| out.extend_from_slice(part))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> Forbidden {
        scan_all(sql.as_bytes()).expect_err(sql)
    }

    /// Every split of the text into two chunks scans as the whole does.
    fn same_in_pieces(sql: &str) -> Result<Vec<u8>, Forbidden> {
        let whole = scan_all(sql.as_bytes());
        for cut in 0..=sql.len() {
            let mut scanner = Scanner::new();
            let mut out = Vec::new();
            let result = scanner
                .feed(&sql.as_bytes()[..cut], &mut |p| out.extend_from_slice(p))
                .and_then(|()| scanner.feed(&sql.as_bytes()[cut..], &mut |p| out.extend_from_slice(p)))
                .and_then(|()| scanner.finish(&mut |p| out.extend_from_slice(p)))
                .map(|()| out);
            assert_eq!(result, whole, "cut at {cut}: {sql:?}");
        }
        whole
    }

    #[test]
    fn sql_of_every_shape_passes() {
        let sql = "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\nSET standard_conforming_strings = on;\n\
            CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN '\\! no'; COMMIT; END $_$;\n\
            CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END;\n\
            COMMENT ON TABLE t IS 'it''s \\! fine';\nSELECT E'a\\'b \\\\', \"we\"\"ird\\\", $1, a$b;\n\
            /* a /* nested */ \\! comment */ -- \\! too\nCOPY public.t (a, b) FROM stdin;\n\\! data\nx\t\\\\.\n\\.\n\
            SELECT 1;\n\\unrestrict abc123\n\n--\n-- PostgreSQL database dump complete\n--\n";
        let out = same_in_pieces(sql).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("restrict abc123"), "{out}");
        assert!(out.contains("\\! data") && out.contains("BEGIN ATOMIC"));
        assert_eq!(out.len(), sql.len() - "\\restrict abc123\n".len() - "\\unrestrict abc123\n".len());
    }

    #[test]
    fn meta_commands_are_refused_with_their_line() {
        for (sql, line, needle) in [
            ("SELECT 1;\n\\! touch pwned\n", 2, "`\\!`"),
            ("SELECT 1 \\g |cat\n", 1, "`\\g`"),
            ("\\connect victim\nDROP TABLE x;\n", 1, "\\connect"),
            ("\\restrict a\n\\unrestrict a\n\\restrict b\n", 3, "not pg_dump's own"),
            ("\\restrict a\nSELECT 1;\n\\unrestrict b\n", 3, "not pg_dump's own"),
            ("SELECT 1;\n\\restrict a\n", 2, "not pg_dump's own"),
            ("\\restrict a\n\\unrestrict a\nDROP TABLE t;\n", 3, "after pg_dump's closing"),
            ("COPY t FROM stdin;\nx\n\\.\n\\o /tmp/x\n", 4, "`\\o`"),
            ("SELECT 'a' \\gexec\n", 1, "`\\gexec`"),
        ] {
            let err = refused(sql);
            assert_eq!(err.line, line, "{sql:?}: {err}");
            assert!(err.to_string().contains(needle), "{sql:?}: {err}");
            assert_eq!(same_in_pieces(sql), Err(err));
        }
    }

    #[test]
    fn transaction_control_and_string_mode_changes_are_refused() {
        for sql in [
            "CREATE TABLE a();\nCOMMIT;\n",
            "begin;",
            "  /* x */ Rollback;",
            "SAVEPOINT s;",
            "RELEASE s;",
            "END;",
            "ABORT;",
            "START TRANSACTION;",
            "PREPARE TRANSACTION 'x';",
            "SET standard_conforming_strings = off;",
            "SET SESSION standard_conforming_strings TO 'off';",
            "COPY t TO PROGRAM 'id';",
            "COPY t FROM '/etc/passwd';",
            "COPY (SELECT 1) TO STDOUT;",
            "COPY t FROM stdin; \\! id\nx\n\\.\n",
            "RESET ALL;",
            "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);",
            "SELECT 1e'\\' \\! id ';",
        ] {
            let err = refused(sql);
            assert_eq!(same_in_pieces(sql), Err(err), "{sql}");
        }
        assert!(scan_all(b"SET standard_conforming_strings = on;\nPREPARE p AS SELECT 1;\nSELECT 1 AS end_;").is_ok());
    }

    #[test]
    fn the_restores_lock_timeout_outlives_pg_dumps() {
        let mut scanner = Scanner::new();
        scanner.reassert_after_lock_timeout(" SET LOCAL lock_timeout = '5000ms';");
        let mut out = Vec::new();
        let sql = "SET statement_timeout = 0;\nSET lock_timeout = 0;\nDROP TABLE x;\n";
        scanner.feed(sql.as_bytes(), &mut |p| out.extend_from_slice(p)).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "SET statement_timeout = 0;\nSET lock_timeout = 0; SET LOCAL lock_timeout = '5000ms';\nDROP TABLE x;\n"
        );
    }
}
