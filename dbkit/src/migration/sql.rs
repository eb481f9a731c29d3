//! Just enough of Postgres's lexer to find where statements start in a migration file: line
//! numbers for errors, and whether a file holds any SQL at all. Migrations still run as one
//! batch, exactly as diesel runs them; this never decides what is executed.

/// One statement of a file, without the comments before it.
#[derive(Debug, PartialEq)]
pub struct Statement<'a> {
    pub text: &'a str,
    /// 1-based line of its first character.
    pub line: usize,
}

/// The statements of `sql`, split at top-level semicolons (not inside quotes, dollar quotes or
/// comments). `BEGIN ATOMIC` bodies are not understood: callers treat the split as a guess.
pub fn statements(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
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
        i = match b {
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_ident_byte(bytes, i.wrapping_sub(2));
                quoted_end(bytes, i, b'\'', escapes)
            }
            b'"' => quoted_end(bytes, i, b'"', false),
            b'$' if !is_ident_byte(bytes, i.wrapping_sub(1)) => dollar_quoted_end(sql, i).unwrap_or(i + 1),
            b';' => {
                out.push(Statement { text: &sql[first..=i], line: line_at(sql, first) });
                start = None;
                i + 1
            }
            _ => i + 1,
        };
    }
    if let Some(first) = start {
        out.push(Statement { text: sql[first..].trim_end(), line: line_at(sql, first) });
    }
    out
}

/// The 1-based line of a 1-based character position, as Postgres reports error positions.
pub fn line_of_position(sql: &str, position: usize) -> usize {
    let offset = sql.char_indices().nth(position.saturating_sub(1)).map_or(sql.len(), |(i, _)| i);
    line_at(sql, offset)
}

/// The 1-based line of a byte offset.
pub fn line_at(sql: &str, offset: usize) -> usize {
    sql.as_bytes()[..offset.min(sql.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn is_ident_byte(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' || *b >= 0x80)
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
    fn positional_parameters_are_not_dollar_quotes() {
        assert_eq!(lines("PREPARE p AS SELECT $1; SELECT 2;").len(), 2);
    }
}
