//! "A backup is data": each statement of a dump judged against what pg_dump writes.
//!
//! The [scanner](super::scan) cuts the dump into statements; here each one is classified by its
//! leading words (and, for the few `SELECT`s and `SET`s pg_dump writes, its exact shape). What
//! pg_dump never writes is refused with its line: `DO` blocks, `CALL`, DML but `INSERT`, roles,
//! `ALTER DATABASE`/`SYSTEM`, `GRANT` of a role, `SET ROLE`/`SESSION AUTHORIZATION`, settings
//! other than pg_dump's, functions called from a `SELECT`. This is the rule; the restore also
//! loads with a role that has no more rights than the data needs, for what a rule cannot see
//! (a function a default, an index or a trigger calls).

use std::sync::LazyLock;

use regex::Regex;

use super::scan::{Forbidden, Piece, Scanner, Words};

/// What the restore does with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Runs it.
    Run,
    /// `COPY ... FROM stdin`: its data follows.
    Copy,
    /// Part of pg_dump's `--clean` prelude (a `DROP`, an `ALTER ... DROP`): the restore that
    /// empties the target itself leaves it out.
    Clean,
    /// A privilege (`GRANT`/`REVOKE ... ON`, `ALTER DEFAULT PRIVILEGES`, `COMMENT ON EXTENSION`):
    /// left out, and said, when its role does not exist here or the loading role may not.
    Privilege,
    /// `CREATE EXTENSION`, with the extension's name.
    Extension(String),
    /// pg_dump's `SET lock_timeout = 0;`: the restore keeps its own.
    LockTimeout,
    /// Left out, and said: what needs a superuser and is no data (event triggers, owners).
    Skip(&'static str),
}

/// The kind of statement left out that makes, changes or drops an event trigger.
pub const EVENT_TRIGGER: &str = "event trigger";

/// A statement of the dump, judged.
#[derive(Debug)]
pub struct Statement<'a> {
    /// Its text, with the comments before it.
    pub text: &'a [u8],
    pub line: u64,
    pub kind: Kind,
}

/// A piece of the dump, statements judged.
#[derive(Debug)]
pub enum Event<'a> {
    Statement(Statement<'a>),
    CopyData(&'a [u8]),
    CopyEnd,
}

/// A statement longer than this is not pg_dump's (the longest are function bodies and views).
const STATEMENT_MAX: usize = 64 << 20;

/// Cuts a dump into judged statements and COPY data as it streams by.
pub struct Statements {
    scanner: Scanner,
    text: Vec<u8>,
    /// Still in pg_dump's header and `--clean` prelude.
    prelude: bool,
    /// The extensions the dump creates, in order.
    extensions: Vec<String>,
}

impl Default for Statements {
    fn default() -> Statements {
        Statements::new()
    }
}

impl Statements {
    pub fn new() -> Statements {
        Statements { scanner: Scanner::new(), text: Vec::new(), prelude: true, extensions: Vec::new() }
    }

    /// The extensions the dump creates, so far.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// How many statements went by.
    pub fn statements(&self) -> u64 {
        self.scanner.statements()
    }

    /// Scans `chunk`; `emit` gets each complete statement, judged, and each COPY's data.
    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Event<'_>)) -> Result<(), Forbidden> {
        let Statements { scanner, text, prelude, extensions } = self;
        let mut refused = None;
        let scanned = scanner.feed(chunk, &mut |piece| {
            if refused.is_some() {
                return;
            }
            if let Err(e) = take(piece, text, prelude, extensions, emit) {
                refused = Some(e);
            }
        });
        match refused {
            Some(e) => Err(e),
            None => scanned,
        }
    }

    /// The end of the dump: nothing may be left unfinished.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> Result<(), Forbidden> {
        let Statements { scanner, text, prelude, extensions } = self;
        let mut refused = None;
        scanner.finish(&mut |piece| {
            if refused.is_none()
                && let Err(e) = take(piece, text, prelude, extensions, emit)
            {
                refused = Some(e);
            }
        })?;
        if let Some(e) = refused {
            return Err(e);
        }
        if let Some(words) = self.scanner.unfinished() {
            return Err(Forbidden { line: words.line, what: "a statement without its closing `;` at the end".into() });
        }
        Ok(())
    }
}

fn take(
    piece: Piece<'_>,
    text: &mut Vec<u8>,
    prelude: &mut bool,
    extensions: &mut Vec<String>,
    emit: &mut dyn FnMut(Event<'_>),
) -> Result<(), Forbidden> {
    match piece {
        Piece::Sql(bytes) => {
            if text.len() + bytes.len() > STATEMENT_MAX {
                return Err(Forbidden {
                    line: 0,
                    what: format!("a statement over {} MiB (pg_dump writes none)", STATEMENT_MAX >> 20),
                });
            }
            text.extend_from_slice(bytes);
        }
        Piece::End(words) => {
            let kind = classify(words, text, prelude).map_err(|what| Forbidden { line: words.line, what })?;
            if let Kind::Extension(name) = &kind {
                extensions.push(name.clone());
            }
            emit(Event::Statement(Statement { text, line: words.line, kind }));
            text.clear();
        }
        Piece::CopyData(bytes) => {
            // What came between the COPY's `;` and its data: the rest of its line.
            text.clear();
            emit(Event::CopyData(bytes));
        }
        Piece::CopyEnd => {
            text.clear();
            emit(Event::CopyEnd);
        }
    }
    Ok(())
}

/// pg_dump's settings (`SET name = value;` in a dump's header), those that only shape how the
/// rest reads or how long it may take.
const SETTINGS: &[&str] = &[
    "STATEMENT_TIMEOUT",
    "IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
    "TRANSACTION_TIMEOUT",
    "CLIENT_ENCODING",
    "STANDARD_CONFORMING_STRINGS",
    "ESCAPE_STRING_WARNING",
    "CHECK_FUNCTION_BODIES",
    "XMLOPTION",
    "CLIENT_MIN_MESSAGES",
    "ROW_SECURITY",
    "DEFAULT_TABLESPACE",
    "DEFAULT_TABLE_ACCESS_METHOD",
    "DEFAULT_WITH_OIDS",
    "SEARCH_PATH",
];

/// Object kinds no dump of one database creates, alters or drops: they belong to the server.
const SERVER_OBJECTS: &[&str] = &["ROLE", "USER", "GROUP", "DATABASE", "TABLESPACE", "SYSTEM", "SUBSCRIPTION"];

/// The `SELECT`s pg_dump writes: setting the search path, sequences' values, large objects.
static SELECTS: LazyLock<Regex> = LazyLock::new(|| {
    let string = r"'(?:[^'\\]|'')*'";
    Regex::new(&format!(
        r"^SELECT pg_catalog\.(?:set_config\('search_path', '', false\)|setval\({string}, -?[0-9]+, (?:true|false)\)|lo_create\('[0-9]+'\)|lo_open\('[0-9]+', [0-9]+\)|lowrite\(0, '\\\\?x[0-9a-f]*'\)|lo_close\(0\)|lo_unlink\(oid\) FROM pg_catalog\.pg_largeobject_metadata WHERE oid = '[0-9]+')\s*;\s*$"
    ))
    .expect("a valid regex")
});

static CLIENT_ENCODING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^SET\s+client_encoding\s*(?:=|TO)\s*'(?:UTF8|UTF-8|UNICODE)'\s*;\s*$").expect("a valid regex")
});

static EXTENSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)^CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)"#)
        .expect("a valid regex")
});

/// Judges one statement; the refusal says what it is.
fn classify(words: &Words, text: &[u8], prelude: &mut bool) -> Result<Kind, String> {
    let first = words.first();
    let body = body(text);
    let in_prelude = std::mem::replace(prelude, false);
    let kind = match first.as_slice() {
        ["SET", name, ..] if SETTINGS.contains(name) => {
            *prelude = in_prelude;
            if *name == "CLIENT_ENCODING" {
                client_encoding(body)?;
            }
            Kind::Run
        }
        ["SET", "LOCK_TIMEOUT", ..] => {
            *prelude = in_prelude;
            Kind::LockTimeout
        }
        ["SET", ..] => return refuse(&format!("`SET {}`", setting_name(body))),
        ["SELECT", ..] => {
            if !SELECTS.is_match(&String::from_utf8_lossy(body)) {
                return refuse("a `SELECT` that calls a function");
            }
            *prelude = in_prelude;
            if in_prelude && first.get(2).is_some_and(|w| *w == "LO_UNLINK") { Kind::Clean } else { Kind::Run }
        }
        ["COPY", ..] => Kind::Copy,
        ["INSERT", "INTO", ..] => Kind::Run,
        ["CREATE", rest @ ..] => create(rest, body)?,
        ["ALTER", "EVENT", ..] => Kind::Skip(EVENT_TRIGGER),
        ["ALTER", "DEFAULT", "PRIVILEGES", ..] => Kind::Privilege,
        ["ALTER", word, ..] if server_object(word) => return refuse(&format!("`ALTER {word}`")),
        ["ALTER", ..] if words.last[..2] == ["OWNER", "TO"] => Kind::Skip("owner"),
        ["ALTER", ..] => {
            let drops = words.first.iter().chain(&words.last).any(|w| w == "DROP");
            if in_prelude && drops {
                *prelude = true;
                Kind::Clean
            } else {
                Kind::Run
            }
        }
        ["DROP", "EVENT", ..] => Kind::Skip(EVENT_TRIGGER),
        ["DROP", word, ..] if server_object(word) => return refuse(&format!("`DROP {word}`")),
        ["DROP", ..] => {
            *prelude = in_prelude;
            if in_prelude { Kind::Clean } else { Kind::Run }
        }
        ["COMMENT", "ON", "EVENT", ..] => Kind::Skip(EVENT_TRIGGER),
        ["COMMENT", "ON", "EXTENSION", ..] => Kind::Privilege,
        ["COMMENT", "ON", word, ..] if server_object(word) => return refuse(&format!("`COMMENT ON {word}`")),
        ["COMMENT", "ON", ..] | ["SECURITY", "LABEL", ..] | ["REFRESH", "MATERIALIZED", "VIEW", ..] => Kind::Run,
        ["GRANT" | "REVOKE", ..] if !words.on_at_top => return refuse("a `GRANT` or `REVOKE` of a role"),
        ["GRANT" | "REVOKE", ..] if grants_on_database(body) => {
            return refuse("a `GRANT` or `REVOKE` on a database");
        }
        ["GRANT" | "REVOKE", ..] => Kind::Privilege,
        [word, ..] => return refuse(&format!("`{word}`")),
        [] => return refuse("a statement of no words"),
    };
    Ok(kind)
}

/// The refusal of what pg_dump never writes.
fn refuse(what: &str) -> Result<Kind, String> {
    Err(format!("{what} (pg_dump writes none: a backup may only hold data and its schema)"))
}

/// A kind of object that belongs to the server (or `OWNED`, as in `DROP OWNED`).
fn server_object(word: &str) -> bool {
    SERVER_OBJECTS.contains(&word) || word == "OWNED"
}

/// pg_dump's `SET client_encoding`: UTF8 only.
fn client_encoding(body: &[u8]) -> Result<(), String> {
    if !CLIENT_ENCODING.is_match(&String::from_utf8_lossy(body)) {
        return Err("a client encoding other than UTF8 (take the backup again with `cargo xtask db backup`, \
                    or `pg_dump --encoding=UTF8`)"
            .into());
    }
    Ok(())
}

/// The name a refused `SET` sets, as written (a quoted name is not one of pg_dump's settings
/// either), lowercased and cut to 64 characters.
fn setting_name(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let name = text.split([' ', '\t', '\n', '=', ';']).filter(|w| !w.is_empty()).nth(1).unwrap_or_default();
    name.chars().take(64).collect::<String>().to_lowercase()
}

/// `CREATE [OR REPLACE]` and the words after it: event triggers left out, extensions named,
/// the server's objects refused.
fn create(rest: &[&str], body: &[u8]) -> Result<Kind, String> {
    let rest: &[&str] = match rest {
        ["OR", "REPLACE", rest @ ..] => rest,
        rest => rest,
    };
    Ok(match rest {
        ["EVENT", ..] => Kind::Skip(EVENT_TRIGGER),
        ["EXTENSION", ..] => {
            let name = EXTENSION
                .captures(&String::from_utf8_lossy(body))
                .map(|c| c[1].trim_matches('"').replace("\"\"", "\"").to_lowercase())
                .ok_or("a `CREATE EXTENSION` pg_dump would not write")?;
            Kind::Extension(name)
        }
        [word, ..] if server_object(word) => return refuse(&format!("`CREATE {word}`")),
        _ => Kind::Run,
    })
}

fn grants_on_database(body: &[u8]) -> bool {
    static ON_DATABASE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\sON\s+DATABASE\s").expect("a valid regex"));
    ON_DATABASE.is_match(&String::from_utf8_lossy(body))
}

/// The statement without the blanks and comments before it.
pub fn body(text: &[u8]) -> &[u8] {
    let mut rest = text;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b"--") {
            rest = after.iter().position(|&b| b == b'\n').map_or(&[][..], |at| &after[at + 1..]);
        } else if rest.starts_with(b"/*") {
            let mut depth = 0usize;
            let mut at = 0;
            while at + 1 < rest.len() {
                match &rest[at..at + 2] {
                    b"/*" => {
                        depth += 1;
                        at += 2;
                    }
                    b"*/" => {
                        depth -= 1;
                        at += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => at += 1,
                }
            }
            rest = &rest[at.min(rest.len())..];
        } else {
            return rest;
        }
    }
}

/// Judges a whole dump's text at once: every statement's kind, or the first refusal.
#[cfg(test)]
fn classify_all(sql: &[u8]) -> Result<Vec<(u64, Kind)>, Forbidden> {
    let mut statements = Statements::new();
    let mut kinds = Vec::new();
    let mut put = |event: Event<'_>| {
        if let Event::Statement(s) = event {
            kinds.push((s.line, s.kind));
        }
    };
    statements.feed(sql, &mut put)?;
    statements.finish(&mut put)?;
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<Kind> {
        classify_all(sql.as_bytes()).unwrap_or_else(|e| panic!("{sql}: {e}")).into_iter().map(|(_, k)| k).collect()
    }

    fn refused(sql: &str) -> Forbidden {
        classify_all(sql.as_bytes()).expect_err(sql)
    }

    #[test]
    fn what_pg_dump_writes_runs() {
        let sql = "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\nSET lock_timeout = 0;\n\
            SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\n\
            ALTER TABLE IF EXISTS ONLY public.p DROP CONSTRAINT IF EXISTS p_pkey;\nDROP TABLE IF EXISTS public.p;\n\
            DROP EXTENSION IF EXISTS pgcrypto;\n\
            CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;\nCOMMENT ON EXTENSION pgcrypto IS 'x';\n\
            CREATE SCHEMA arepl;\nCREATE TABLE public.p (id int) PARTITION BY RANGE (id);\n\
            ALTER TABLE ONLY public.p ALTER COLUMN id SET DEFAULT nextval('public.s'::regclass);\n\
            COPY public.p (id) FROM stdin;\n1\n\\.\n\
            SELECT pg_catalog.setval('public.s', 42, true);\nGRANT SELECT,INSERT ON TABLE public.p TO app;\n\
            REVOKE ALL ON SCHEMA public FROM PUBLIC;\nALTER TABLE public.p OWNER TO bob;\n\
            CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION public.f();\n\
            CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;\n\
            INSERT INTO public.p VALUES (1);\nREFRESH MATERIALIZED VIEW public.m;\n";
        use Kind::*;
        assert_eq!(
            kinds(sql),
            [
                Run,
                LockTimeout,
                Run,
                Run,
                Run,
                Run,
                Clean,
                Clean,
                Clean,
                Extension("pgcrypto".into()),
                Privilege,
                Run,
                Run,
                Run,
                Copy,
                Run,
                Privilege,
                Privilege,
                Skip("owner"),
                Skip(EVENT_TRIGGER),
                Run,
                Run,
                Run
            ]
        );
    }

    #[test]
    fn what_pg_dump_never_writes_is_refused_with_its_line() {
        for (sql, needle) in [
            ("DO $$ BEGIN EXECUTE 'COPY t TO PROGRAM ''id'''; END $$;", "`DO`"),
            ("CALL p();", "`CALL`"),
            ("SELECT pg_read_file('/etc/passwd');", "calls a function"),
            ("SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);", ""),
            ("SELECT pg_catalog.setval('s', 1, true); SELECT 1;", "calls a function"),
            ("SET \"standard_conforming_strings\" = off;", "`SET \"standard_conforming_strings\"`"),
            ("SET client_encoding = 'SJIS';", "UTF8"),
            ("SET ROLE postgres;", "`SET role`"),
            ("SET SESSION AUTHORIZATION postgres;", "`SET session`"),
            ("CREATE ROLE x SUPERUSER;", "`CREATE ROLE`"),
            ("CREATE OR REPLACE ROLE x;", "`CREATE ROLE`"),
            ("ALTER ROLE railgun PASSWORD 'x';", "`ALTER ROLE`"),
            ("ALTER USER railgun NOSUPERUSER;", "`ALTER USER`"),
            ("ALTER DATABASE other SET default_transaction_read_only = on;", "`ALTER DATABASE`"),
            ("ALTER SYSTEM SET archive_command = 'id';", "`ALTER SYSTEM`"),
            ("GRANT pg_execute_server_program TO app;", "of a role"),
            ("GRANT CONNECT ON DATABASE railgun TO app;", "on a database"),
            ("DROP DATABASE other;", "`DROP DATABASE`"),
            ("DROP OWNED BY railgun;", "`DROP OWNED`"),
            ("UPDATE t SET a = 1;", "`UPDATE`"),
            ("DELETE FROM t;", "`DELETE`"),
            ("LOAD 'evil';", "`LOAD`"),
            ("CREATE TABLE t (a int)", "closing `;`"),
        ] {
            let sql = format!("SET statement_timeout = 0;\n{sql}\n");
            let err = refused(&sql);
            assert_eq!(err.line, 2, "{sql}: {err}");
            assert!(err.to_string().contains(needle), "{sql}: {err}");
        }
    }

    #[test]
    fn bodies_skip_leading_comments() {
        assert_eq!(body(b"\n--\n-- Name: x\n--\n/* a /* b */ */ SELECT 1;"), b"SELECT 1;");
        assert_eq!(body(b"-- only"), b"");
    }
}
