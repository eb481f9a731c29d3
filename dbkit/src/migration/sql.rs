//! Just enough of Postgres's lexer to find where statements start in a migration file: line
//! numbers for errors, and whether a file holds any SQL at all. Migrations still run as one
//! batch, exactly as diesel runs them; this never decides what is executed.

/// One statement of a file, without the comments before it.
#[derive(Debug, PartialEq)]
pub struct Statement<'a> {
    pub text: &'a str,
    /// 1-based line of its first character.
    pub line: usize,
    /// Its leading keywords (up to four, upper-cased): the words before any other token.
    pub keywords: Vec<String>,
}

/// The statements of `sql`, split as psql splits them: at semicolons outside quotes, dollar
/// quotes, comments and parentheses, and outside the `BEGIN ATOMIC ... END` body of a
/// `CREATE [OR REPLACE] FUNCTION | PROCEDURE` (psql's own heuristic, which the backup scanner
/// follows too).
pub fn statements(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut keywords: Vec<String> = Vec::new();
    let mut leading = true;
    let mut paren = 0usize;
    let mut begin_depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let skip_to = match b {
            b'-' if next == Some(b'-') => Some(sql[i..].find('\n').map_or(bytes.len(), |n| i + n)),
            b'/' if next == Some(b'*') => Some(block_comment_end(bytes, i)),
            _ => None,
        };
        if let Some(end) = skip_to {
            i = end;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let first = *start.get_or_insert(i);
        if is_ident_start(b) {
            let end = ident_end(bytes, i);
            let word = sql[i..end].to_ascii_uppercase();
            let routine = matches!(
                keywords.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
                ["CREATE", "FUNCTION" | "PROCEDURE", ..] | ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]
            );
            if routine && paren == 0 {
                match word.as_str() {
                    "BEGIN" => begin_depth += 1,
                    "CASE" if begin_depth > 0 => begin_depth += 1,
                    "END" if begin_depth > 0 => begin_depth -= 1,
                    _ => {}
                }
            }
            if leading && keywords.len() < 4 {
                keywords.push(word);
            }
            i = end;
            continue;
        }
        leading = false;
        i = match b {
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_ident_byte(bytes, i.wrapping_sub(2));
                quoted_end(bytes, i, b'\'', escapes)
            }
            b'"' => quoted_end(bytes, i, b'"', false),
            b'$' if !is_ident_byte(bytes, i.wrapping_sub(1)) => dollar_quoted_end(sql, i).unwrap_or(i + 1),
            b'(' => {
                paren += 1;
                i + 1
            }
            b')' => {
                paren = paren.saturating_sub(1);
                i + 1
            }
            b';' if paren == 0 && begin_depth == 0 => {
                let keywords = std::mem::take(&mut keywords);
                out.push(Statement { text: &sql[first..=i], line: line_at(sql, first), keywords });
                start = None;
                leading = true;
                i + 1
            }
            _ => i + 1,
        };
    }
    if let Some(first) = start {
        out.push(Statement { text: sql[first..].trim_end(), line: line_at(sql, first), keywords });
    }
    out
}

/// A token of a statement, for readers of what it names (see [`tokens`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> {
    /// A keyword or unquoted identifier, as written.
    Word(&'a str),
    /// A `"quoted"` identifier, its doubled quotes made single.
    Quoted(String),
    /// A string, dollar-quoted text, number or parameter: a value, never a name.
    Value,
    /// Any other character (`(`, `,`, `.`, `;`, an operator's).
    Punct(char),
}

/// The tokens of `sql` with the byte offset each starts at, comments left out, cut by the same
/// lexer as [`statements`].
pub fn tokens(sql: &str) -> Vec<(usize, Token<'_>)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = blank_end(sql, i) {
            i = end;
            continue;
        }
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (token, end) = match b {
            b'\'' => (Token::Value, quoted_end(bytes, i, b'\'', false)),
            b'"' => {
                let end = quoted_end(bytes, i, b'"', false);
                let inner = sql.get(i + 1..end.saturating_sub(1).max(i + 1)).unwrap_or_default();
                (Token::Quoted(inner.replace("\"\"", "\"")), end)
            }
            b'$' => match dollar_quoted_end(sql, i) {
                Some(end) => (Token::Value, end),
                None => (Token::Value, ident_end(bytes, i + 1)),
            },
            b if b.is_ascii_digit() => {
                let mut end = i;
                while is_ident_byte(bytes, end) || bytes.get(end) == Some(&b'.') {
                    end += 1;
                }
                (Token::Value, end)
            }
            b if (b == b'e' || b == b'E') && next == Some(b'\'') => {
                (Token::Value, quoted_end(bytes, i + 1, b'\'', true))
            }
            b if is_ident_start(b) => {
                let end = ident_end(bytes, i);
                (Token::Word(&sql[i..end]), end)
            }
            _ => {
                let c = sql[i..].chars().next().unwrap_or('?');
                (Token::Punct(c), i + c.len_utf8())
            }
        };
        out.push((i, token));
        i = end;
    }
    out
}

/// The first statement of `sql` that ends, opens or marks a transaction (`BEGIN`, `START
/// TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `SAVEPOINT`, `RELEASE`, `PREPARE
/// TRANSACTION`), with its line and its words as written for messages. `BEGIN ATOMIC` bodies
/// and PL/pgSQL's `BEGIN ... END` in dollar quotes are parts of other statements, never this.
pub fn transaction_control(sql: &str) -> Option<(usize, String)> {
    statements(sql).into_iter().find_map(|statement| {
        let words: Vec<&str> = statement.keywords.iter().map(String::as_str).collect();
        let shown = match words.as_slice() {
            ["BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE", ..] => words[0].to_string(),
            ["START" | "PREPARE", "TRANSACTION", ..] => format!("{} TRANSACTION", words[0]),
            _ => return None,
        };
        Some((statement.line, shown))
    })
}

/// `sql`'s tokens as Postgres's lexer reads them, one space between each: comments and
/// whitespace left out, unquoted identifiers and keywords lower-cased (Postgres folds them so),
/// everything else exactly as written (quoted identifiers, strings and their prefixes, dollar
/// quotes with their bodies, numbers, each run of operator characters as one operator). Two
/// texts with the same tokens parse to the same tree; an edit to comments, whitespace or keyword
/// case only leaves the tokens as they were. (Conservative: a change the parser would not see,
/// inside a function body's dollar quotes say, counts as a change.)
pub fn normalized(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::new();
    let push = |token: &str, out: &mut String| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(token);
    };
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = blank_end(sql, i) {
            i = end;
            continue;
        }
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let end = match b {
            _ if is_ident_start(b) => {
                let end = ident_end(bytes, i);
                // A prefix glued to its string (E'..', U&'..', B'..', X'..') is part of it.
                if bytes.get(end) == Some(&b'\'') {
                    let escapes = end - i == 1 && matches!(b, b'e' | b'E');
                    let close = quoted_end(bytes, end, b'\'', escapes);
                    push(&format!("{}{}", sql[i..end].to_ascii_lowercase(), &sql[end..close]), &mut out);
                    i = close;
                    continue;
                }
                push(&sql[i..end].to_ascii_lowercase(), &mut out);
                i = end;
                continue;
            }
            b'\'' => quoted_end(bytes, i, b'\'', false),
            b'"' => quoted_end(bytes, i, b'"', false),
            b'$' => dollar_quoted_end(sql, i).unwrap_or_else(|| {
                let mut end = i + 1;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                end
            }),
            b'0'..=b'9' | b'.' if b != b'.' || next.is_some_and(|n| n.is_ascii_digit()) => {
                let mut end = i + 1;
                while bytes.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_') {
                    end += 1;
                }
                end
            }
            _ if OPERATOR.contains(&b) => {
                let mut end = i + 1;
                while bytes.get(end).is_some_and(|c| OPERATOR.contains(c))
                    && !matches!((bytes[end], bytes.get(end + 1)), (b'-', Some(b'-')) | (b'/', Some(b'*')))
                {
                    end += 1;
                }
                end
            }
            _ => i + 1 + usize::from(b >= 0x80) * (sql[i..].chars().next().map_or(1, char::len_utf8) - 1),
        };
        push(&sql[i..end], &mut out);
        i = end;
    }
    out
}

/// The characters Postgres's lexer reads as one operator when they follow each other.
const OPERATOR: &[u8] = b"+-*/<>=~!@#%^&|`?";

/// The 1-based line of a 1-based character position, as Postgres reports error positions.
pub fn line_of_position(sql: &str, position: usize) -> usize {
    let offset = sql.char_indices().nth(position.saturating_sub(1)).map_or(sql.len(), |(i, _)| i);
    line_at(sql, offset)
}

/// The 1-based line of a byte offset.
pub fn line_at(sql: &str, offset: usize) -> usize {
    sql.as_bytes()[..offset.min(sql.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Past the end of an identifier or keyword starting at `i`.
fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while is_ident_byte(bytes, i) {
        i += 1;
    }
    i
}

fn is_ident_byte(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' || *b >= 0x80)
}

/// Past the comment (`--`, `/* */`) or whitespace character at `i`, if one starts there.
fn blank_end(sql: &str, i: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    match (bytes[i], bytes.get(i + 1)) {
        (b'-', Some(b'-')) => Some(sql[i..].find('\n').map_or(bytes.len(), |n| i + n)),
        (b'/', Some(b'*')) => Some(block_comment_end(bytes, i)),
        (b, _) if b.is_ascii_whitespace() => Some(i + 1),
        _ => None,
    }
}

/// Past the end of a (nested) block comment starting at `i`.
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past the closing quote of a literal opened at `i` (a doubled quote is part of it).
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past the end of a `$tag$ ... $tag$` string opened at `i`, if one opens there.
fn dollar_quoted_end(sql: &str, i: usize) -> Option<usize> {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let valid = tag.chars().enumerate().all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    if !valid {
        return None;
    }
    let delimiter = &sql[i..i + tag_len + 2];
    let body = i + delimiter.len();
    Some(sql[body..].find(delimiter).map_or(sql.len(), |n| body + n + delimiter.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(sql: &str) -> Vec<(usize, &str)> {
        statements(sql).into_iter().map(|s| (s.line, s.text)).collect()
    }

    #[test]
    fn tokens_ignore_comments_whitespace_and_keyword_case_only() {
        let sql =
            "-- users\nCREATE TABLE users (\n  id serial PRIMARY KEY, /* the key */\n  name text DEFAULT 'A  b'\n);";
        let same = "create   table USERS (id SERIAL primary key, name TEXT default 'A  b'); -- done";
        assert_eq!(normalized(sql), normalized(same));
        assert_eq!(normalized(sql), "create table users ( id serial primary key , name text default 'A  b' ) ;");
        for changed in [
            "CREATE TABLE users (id serial PRIMARY KEY, name text DEFAULT 'a  b');",
            "CREATE TABLE \"Users\" (id serial PRIMARY KEY, name text DEFAULT 'A  b');",
            "CREATE TABLE users (id serial PRIMARY KEY, name text DEFAULT 'A b');",
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text DEFAULT 'A  b');",
        ] {
            assert_ne!(normalized(sql), normalized(changed), "{changed}");
        }
        assert_ne!(normalized("SELECT a <= b"), normalized("SELECT a < = b"), "one operator is not two");
        assert_ne!(normalized("SELECT 1 -1"), normalized("SELECT 1 --1"), "a comment is not a minus");
        assert_eq!(normalized("SELECT E'it''s\\n'"), normalized("select e'it''s\\n'"));
        assert_ne!(normalized("SELECT E'x'"), normalized("SELECT E 'x'"), "a prefix is not a type name");
        assert_ne!(normalized("SELECT $$ a $$"), normalized("SELECT $$a$$"), "a body is a string");
        assert_eq!(normalized("SELECT $1, 1.5e3"), "select $1 , 1.5e3");
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "-- a; comment\nCREATE TABLE t (a text DEFAULT 'x;y', \"b;\" int);\n/* c; /* nested; */ */\n\nINSERT INTO t VALUES (E'\\';', 1);\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT $$;$$, a$b FROM t";
        assert_eq!(
            lines(sql),
            vec![
                (2, "CREATE TABLE t (a text DEFAULT 'x;y', \"b;\" int);"),
                (5, "INSERT INTO t VALUES (E'\\';', 1);"),
                (6, "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;"),
                (7, "SELECT $$;$$, a$b FROM t"),
            ]
        );
    }

    #[test]
    fn comments_only_is_no_statement() {
        assert!(statements("-- nothing here\n/* nor; here */\n  \n").is_empty());
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let sql = "SELECT 'é';\nSELECT nope;";
        assert_eq!(line_of_position(sql, 20), 2);
        assert_eq!(line_of_position(sql, 1), 1);
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 2 END;\nEND;\nCREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 3;";
        let found = lines(sql);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!((found[1].0, found[2]), (6, (7, "SELECT 3;")));
        assert_eq!(lines("SELECT (1;\n2); SELECT 3").len(), 2, "parentheses hold semicolons as psql's do");
    }

    #[test]
    fn transaction_control_is_found_at_the_top_level_only() {
        let found = |sql| transaction_control(sql);
        assert_eq!(found("BEGIN;\nCREATE TABLE a();\nCOMMIT;"), Some((1, "BEGIN".into())));
        assert_eq!(found("CREATE TABLE a();\n  commit ;"), Some((2, "COMMIT".into())));
        assert_eq!(
            found("-- setup\nstart transaction isolation level serializable;"),
            Some((2, "START TRANSACTION".into()))
        );
        assert_eq!(found("SELECT 1; /* x */ SAVEPOINT s; RELEASE s;"), Some((1, "SAVEPOINT".into())));
        assert_eq!(found("SELECT 1;\nEND;"), Some((2, "END".into())));
        assert_eq!(found("SELECT 1;\nROLLBACK;"), Some((2, "ROLLBACK".into())));
        assert_eq!(found("PREPARE TRANSACTION 'x';"), Some((1, "PREPARE TRANSACTION".into())));
        let not_control = [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
            "CREATE FUNCTION g() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN COMMIT; RETURN NEW; END $$;",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "PREPARE q AS SELECT 1; SELECT 'BEGIN; COMMIT'; -- COMMIT;\nCREATE TABLE begin_log (\"end\" int);",
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 1;",
        ];
        for sql in not_control {
            assert_eq!(found(sql), None, "{sql}");
        }
    }

    #[test]
    fn tokens_leave_out_comments_and_values() {
        let found: Vec<Token> =
            tokens("ALTER TABLE \"My \"\"T\"\"\" -- x\n ADD c int DEFAULT E'a\\'b' /* y */, $$z$$ 1.5;")
                .into_iter()
                .map(|(_, t)| t)
                .collect();
        assert_eq!(
            found,
            vec![
                Token::Word("ALTER"),
                Token::Word("TABLE"),
                Token::Quoted("My \"T\"".into()),
                Token::Word("ADD"),
                Token::Word("c"),
                Token::Word("int"),
                Token::Word("DEFAULT"),
                Token::Value,
                Token::Punct(','),
                Token::Value,
                Token::Value,
                Token::Punct(';'),
            ]
        );
        assert_eq!(tokens("a\n  b")[1].0, 4);
    }

    #[test]
    fn positional_parameters_are_not_dollar_quotes() {
        assert_eq!(lines("PREPARE p AS SELECT $1; SELECT 2;").len(), 2);
    }
}
