//! Reads the entities out of schema.rs: every `table!` (name, primary key, columns and their
//! SQL types), every `joinable!`, and the custom types of `pub mod sql_types`. A small tokenizer
//! rather than syn: the macros' grammar is tiny and xtask stays cheap to build.
//!
//! Measured against diesel_cli's way (`syn::parse_file`, `diesel_table_macro_syntax::TableDecl`
//! per `table!`, about 140 lines): both read the same entities from all 74 schema.rs texts the
//! print_schema and migration_generate tests print or edit, and from db/src/schema.rs. They
//! differed only on text print-schema never writes: a missing comma, an unclosed `table!`, two
//! tables in one `table!` (diesel 2's `table!` takes one; this reader dropped the second) and
//! `20u32`, which this reader now refuses or reads as syn does; `\u{..}` escapes in a `sql_name`
//! stay undecoded (print-schema writes names as they are). Both crates are already
//! in Cargo.lock, but only as proc-macro dependencies built with other features, so the xtask
//! would compile proc-macro2, quote, unicode-ident, syn (full) and diesel_table_macro_syntax a
//! second time: about 22 s of CPU on a cold build. Same behaviour on what we generate, so the
//! cheaper build wins.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The SQL schema, when the table is written `schema.table`.
    pub schema: Option<String>,
    pub sql_name: String,
    /// Primary key columns (SQL names), in key order; `id` when `table!` names none.
    pub primary_key: Vec<String>,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, sql_name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.sql_name == sql_name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub sql_name: String,
    pub rust_name: String,
    pub ty: Type,
}

/// A column's diesel SQL type: `Nullable<Array<Nullable<Int4>>>` is `Int4`, array, nullable.
#[derive(Debug, Clone, PartialEq)]
pub struct Type {
    /// The innermost type's name as written (`Int4`, `Varchar`, `Mood`).
    pub name: String,
    pub is_array: bool,
    pub is_nullable: bool,
    pub max_length: Option<u64>,
}

/// `joinable!(child -> parent (column))`, all Rust names.
#[derive(Debug, Clone, PartialEq)]
pub struct Joinable {
    pub child: String,
    pub parent: String,
    pub column: String,
}

/// A struct of `pub mod sql_types` and its `postgres_type(name = .., schema = ..)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomType {
    pub rust_name: String,
    pub sql_name: String,
    pub schema: Option<String>,
}

#[derive(Debug, Default)]
pub struct Entities {
    pub tables: Vec<Table>,
    /// The Rust name of each table, in `tables` order (joinable! speaks Rust).
    pub rust_names: Vec<String>,
    pub joinables: Vec<Joinable>,
    pub custom_types: Vec<CustomType>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(String),
    Punct(char),
}

fn tokenize(src: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer { chars: src.chars().collect(), i: 0 };
    let mut out = Vec::new();
    while let Some(&c) = lexer.chars.get(lexer.i) {
        let next = lexer.chars.get(lexer.i + 1).copied();
        if c.is_whitespace() {
            lexer.i += 1;
        } else if c == '/' && next == Some('/') {
            lexer.line_comment();
        } else if c == '/' && next == Some('*') {
            lexer.block_comment();
        } else if c == 'r' && matches!(next, Some('"' | '#')) && raw_string_start(&lexer.chars[lexer.i + 1..]) {
            out.push(lexer.raw_string()?);
        } else if c == '"' {
            out.push(lexer.string());
        } else if c.is_ascii_digit() {
            out.push(lexer.number());
        } else if c == '_' || c.is_alphabetic() {
            out.push(lexer.identifier());
        } else {
            out.push(Token::Punct(c));
            lexer.i += 1;
        }
    }
    Ok(out)
}

/// schema.rs's characters, read from `i` on: each method reads what starts there and leaves
/// `i` after it.
struct Lexer {
    chars: Vec<char>,
    i: usize,
}

impl Lexer {
    /// `// ...` up to its newline.
    fn line_comment(&mut self) {
        while self.i < self.chars.len() && self.chars[self.i] != '\n' {
            self.i += 1;
        }
    }

    /// `/* ... */`, nested ones inside.
    fn block_comment(&mut self) {
        let (chars, mut i) = (&self.chars, self.i);
        let mut depth = 0;
        while i < chars.len() {
            if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                depth += 1;
                i += 2;
            } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    break;
                }
            } else {
                i += 1;
            }
        }
        self.i = i;
    }

    /// `r"..."`, `r#"..."#`: the text as it is.
    fn raw_string(&mut self) -> Result<Token> {
        let (chars, i) = (&self.chars, self.i);
        let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
        let start = i + 2 + hashes;
        let fence: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
        let rest: String = chars[start..].iter().collect();
        let Some(end) = rest.find(&fence) else { bail!("unterminated raw string in schema.rs") };
        self.i = start + rest[..end].chars().count() + fence.chars().count();
        Ok(Token::Str(rest[..end].to_owned()))
    }

    /// `"..."`, its `\n` and `\t` decoded, any other escaped character taken as it is.
    fn string(&mut self) -> Token {
        let (chars, mut i) = (&self.chars, self.i);
        let mut s = String::new();
        i += 1;
        while i < chars.len() && chars[i] != '"' {
            if chars[i] == '\\' {
                i += 1;
                match chars.get(i) {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some(&other) => s.push(other),
                    None => {}
                }
            } else {
                s.push(chars[i]);
            }
            i += 1;
        }
        self.i = i + 1;
        Token::Str(s)
    }

    /// An integer: the digits before a type suffix (`20u32`), `_` separators left out.
    fn number(&mut self) -> Token {
        let (chars, mut i) = (&self.chars, self.i);
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let digits = chars[start..i].iter().take_while(|c| c.is_ascii_digit() || **c == '_');
        self.i = i;
        Token::Int(digits.filter(|c| c.is_ascii_digit()).collect())
    }

    /// An identifier; `r#type` is the identifier `type`.
    fn identifier(&mut self) -> Token {
        let (chars, mut i) = (&self.chars, self.i);
        let start = i;
        while i < chars.len() && (chars[i] == '_' || chars[i].is_alphanumeric()) {
            i += 1;
        }
        let mut ident: String = chars[start..i].iter().collect();
        if ident == "r" && chars.get(i) == Some(&'#') {
            i += 1;
            let start = i;
            while i < chars.len() && (chars[i] == '_' || chars[i].is_alphanumeric()) {
                i += 1;
            }
            ident = chars[start..i].iter().collect();
        }
        self.i = i;
        Token::Ident(ident)
    }
}

fn raw_string_start(rest: &[char]) -> bool {
    let hashes = rest.iter().take_while(|&&c| c == '#').count();
    rest.get(hashes) == Some(&'"')
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.tokens.get(self.pos + n)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Token::Punct(c))
    }
    fn eat_punct(&mut self, c: char) -> bool {
        let found = self.is_punct(c);
        if found {
            self.pos += 1;
        }
        found
    }
    fn expect_punct(&mut self, c: char, context: &str) -> Result<()> {
        if !self.eat_punct(c) {
            bail!("schema.rs: expected `{c}` {context}, found {:?}", self.peek());
        }
        Ok(())
    }
    fn ident(&mut self, context: &str) -> Result<String> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            other => bail!("schema.rs: expected a name {context}, found {other:?}"),
        }
    }
    /// Skips a balanced group whose opening delimiter was just consumed.
    fn skip_group(&mut self, open: char, close: char) {
        let mut depth = 1;
        while let Some(t) = self.next() {
            if t == Token::Punct(open) {
                depth += 1;
            } else if t == Token::Punct(close) {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
        }
    }
    /// `#[...]` attributes; returns `(name, value)` for `#[name = value]` ones.
    fn attributes(&mut self) -> Vec<(String, Token)> {
        let mut attrs = Vec::new();
        while self.is_punct('#') && self.peek_at(1) == Some(&Token::Punct('[')) {
            self.pos += 2;
            if let (Some(Token::Ident(name)), Some(Token::Punct('=')), Some(value), Some(Token::Punct(']'))) =
                (self.peek().cloned(), self.peek_at(1).cloned(), self.peek_at(2).cloned(), self.peek_at(3).cloned())
            {
                attrs.push((name, value));
                self.pos += 4;
            } else {
                self.skip_group('[', ']');
            }
        }
        attrs
    }
}

/// Every entity in the text of a schema.rs.
pub fn parse(src: &str) -> Result<Entities> {
    let mut p = Parser { tokens: tokenize(src)?, pos: 0 };
    let mut entities = Entities::default();
    let mut pending_postgres_type: Option<(String, Option<String>)> = None;
    while let Some(token) = p.next() {
        match token {
            Token::Ident(name) if p.is_punct('!') && (name == "table" || name == "joinable") => {
                p.pos += 1;
                let (open, close) = match p.next() {
                    Some(Token::Punct('{')) => ('{', '}'),
                    Some(Token::Punct('(')) => ('(', ')'),
                    other => bail!("schema.rs: expected `{{` or `(` after {name}!, found {other:?}"),
                };
                let end = group_end(&p, open, close);
                if end == p.tokens.len() {
                    bail!("schema.rs: {name}! is never closed (no `{close}`)");
                }
                let mut inner = Parser { tokens: p.tokens[p.pos..end].to_vec(), pos: 0 };
                p.pos = end + 1;
                let what = if name == "table" {
                    let (table, rust_name) = table(&mut inner)?;
                    let what = table.sql_name.clone();
                    entities.tables.push(table);
                    entities.rust_names.push(rust_name);
                    what
                } else {
                    let joinable = joinable(&mut inner)?;
                    let what = format!("{} -> {}", joinable.child, joinable.parent);
                    entities.joinables.push(joinable);
                    what
                };
                // diesel's table! takes one table: a second one here would be read as gone.
                if let Some(stray) = inner.peek() {
                    bail!(
                        "schema.rs: {name}! for {what} goes on after it ({stray:?}): one {name}! per table, as diesel print-schema writes"
                    );
                }
            }
            Token::Ident(name) if name == "postgres_type" && p.is_punct('(') => {
                p.pos += 1;
                let (mut sql_name, mut schema) = (None, None);
                while let (Some(Token::Ident(key)), Some(Token::Punct('=')), Some(Token::Str(value))) =
                    (p.peek().cloned(), p.peek_at(1).cloned(), p.peek_at(2).cloned())
                {
                    p.pos += 3;
                    match key.as_str() {
                        "name" => sql_name = Some(value),
                        "schema" => schema = Some(value),
                        _ => {}
                    }
                    p.eat_punct(',');
                }
                if let Some(sql_name) = sql_name {
                    pending_postgres_type = Some((sql_name, schema));
                }
            }
            Token::Ident(kw) if kw == "struct" => {
                let rust_name = p.ident("after struct")?;
                if let Some((sql_name, schema)) = pending_postgres_type.take() {
                    entities.custom_types.push(CustomType { rust_name, sql_name, schema });
                }
            }
            _ => {}
        }
    }
    Ok(entities)
}

/// The index of the token closing the group that starts at `p.pos`.
fn group_end(p: &Parser, open: char, close: char) -> usize {
    let mut depth = 1;
    for (i, t) in p.tokens.iter().enumerate().skip(p.pos) {
        if *t == Token::Punct(open) {
            depth += 1;
        } else if *t == Token::Punct(close) {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    p.tokens.len()
}

/// `use ...;`* `#[sql_name = ".."]`? `[schema.]name [(pk, ..)] { columns }`
fn table(p: &mut Parser) -> Result<(Table, String)> {
    while p.peek() == Some(&Token::Ident("use".into())) {
        while !p.eat_punct(';') {
            if p.next().is_none() {
                bail!("schema.rs: unterminated `use` in table!");
            }
        }
    }
    let sql_name_attr = p.attributes().into_iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("sql_name", Token::Str(s)) => Some(s),
        _ => None,
    });
    let first = p.ident("for the table")?;
    let (rust_schema, rust_name) =
        if p.eat_punct('.') { (Some(first), p.ident("for the table after its schema")?) } else { (None, first) };
    let (schema, sql_name) = match (sql_name_attr, rust_schema) {
        // `#[sql_name = "schema.table"]` holds the full SQL name.
        (Some(full), Some(_)) => match full.split_once('.') {
            Some((s, t)) => (Some(s.to_owned()), t.to_owned()),
            None => (None, full),
        },
        (Some(full), None) => (None, full),
        (None, schema) => (schema, rust_name.clone()),
    };
    let mut primary_key_rust = Vec::new();
    if p.eat_punct('(') {
        while !p.eat_punct(')') {
            primary_key_rust.push(p.ident("in the primary key")?);
            p.eat_punct(',');
        }
    }
    p.expect_punct('{', &format!("opening the columns of {sql_name}"))?;
    let mut columns = Vec::new();
    while !p.eat_punct('}') {
        if p.peek().is_none() {
            bail!("schema.rs: unterminated columns of table {sql_name}");
        }
        let attrs = p.attributes();
        let rust_name = p.ident(&format!("for a column of {sql_name}"))?;
        p.expect_punct('-', &format!("in `{rust_name} -> Type`"))?;
        p.expect_punct('>', &format!("in `{rust_name} -> Type`"))?;
        let mut ty = sql_type(p)?;
        let mut column_sql_name = rust_name.clone();
        for (key, value) in attrs {
            match (key.as_str(), value) {
                ("sql_name", Token::Str(s)) => column_sql_name = s,
                ("max_length", Token::Int(n)) => ty.max_length = n.parse().ok(),
                _ => {}
            }
        }
        if !p.eat_punct(',') && !p.is_punct('}') {
            bail!("schema.rs: expected `,` after column {rust_name} of table {sql_name}, found {:?}", p.peek());
        }
        columns.push(Column { sql_name: column_sql_name, rust_name, ty });
    }
    let rust_to_sql = |k: &String| columns.iter().find(|c| &c.rust_name == k).map_or(k.clone(), |c| c.sql_name.clone());
    let primary_key = if primary_key_rust.is_empty() {
        vec!["id".into()]
    } else {
        primary_key_rust.iter().map(rust_to_sql).collect()
    };
    Ok((Table { schema, sql_name, primary_key, columns }, rust_name))
}

/// `path::Name` or `Wrapper<Type>`, unwrapping Nullable and Array.
fn sql_type(p: &mut Parser) -> Result<Type> {
    let mut name = p.ident("for a column type")?;
    while p.is_punct(':') && p.peek_at(1) == Some(&Token::Punct(':')) {
        p.pos += 2;
        name = p.ident("in a type path")?;
    }
    if !p.eat_punct('<') {
        return Ok(Type { name, is_array: false, is_nullable: false, max_length: None });
    }
    if p.is_punct('(') {
        bail!("schema.rs: record (tuple) column types are not supported by migration generate");
    }
    let inner = sql_type(p)?;
    p.expect_punct('>', &format!("closing {name}<..>"))?;
    Ok(match name.as_str() {
        "Nullable" => Type { is_nullable: true, ..inner },
        "Array" => Type { is_array: true, is_nullable: false, ..inner },
        other => {
            bail!("schema.rs: `{other}<..>` column types (ranges, records) are not supported by migration generate")
        }
    })
}

/// `child -> parent (column)`
fn joinable(p: &mut Parser) -> Result<Joinable> {
    let child = p.ident("in joinable!")?;
    p.expect_punct('-', "in joinable!")?;
    p.expect_punct('>', "in joinable!")?;
    let parent = p.ident("in joinable!")?;
    p.expect_punct('(', "in joinable!")?;
    let column = p.ident("in joinable!")?;
    p.expect_punct(')', "in joinable!")?;
    Ok(Joinable { child, parent, column })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_diesel_would_not_compile_is_refused_not_misread() {
        // A second table in one table! was read as absent (generate then planned its DROP).
        let two = "diesel::table! { a (id) { id -> Int4, } b (id) { id -> Int4, } }";
        let e = parse(two).unwrap_err().to_string();
        assert!(e.contains("table! for a goes on after it"), "{e}");
        let no_comma = "diesel::table! { a (id) { id -> Int4 name -> Text, } }";
        assert!(parse(no_comma).unwrap_err().to_string().contains("expected `,` after column id"));
        let unclosed = "diesel::table! { a (id) { id -> Int4, }";
        assert!(parse(unclosed).unwrap_err().to_string().contains("never closed"));
        let stray_joinable = "diesel::joinable!(b -> a (a_id) x);";
        assert!(parse(stray_joinable).is_err());
        // A typed literal keeps its digits, not the suffix's.
        let suffixed = "diesel::table! { a (id) { id -> Int4, #[max_length = 20u32] code -> Varchar, } }";
        let code = parse(suffixed).unwrap().tables[0].column("code").unwrap().ty.max_length;
        assert_eq!(code, Some(20));
        let last_without_comma = "diesel::table! { a (id) { id -> Int4 } }";
        assert_eq!(parse(last_without_comma).unwrap().tables[0].columns.len(), 1);
    }

    #[test]
    fn reads_what_print_schema_writes() {
        let src = r##"
// @generated automatically by Diesel CLI.
pub mod sql_types {
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "mood"))]
    pub struct Mood;
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "currency", schema = "billing"))]
    pub struct Currency;
}
diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Mood;

    /// Docs { with braces }
    #[sql_name = "type"]
    type_ (key_a, r#type) {
        key_a -> Int4,
        #[sql_name = "type"]
        r#type -> Text,
        #[max_length = 20]
        status -> Nullable<Varchar>,
        moods -> Nullable<Array<Nullable<Mood>>>,
        #[sql_name = r#"quoted"name"#]
        quoted_name -> diesel::sql_types::Int8,
    }
}
diesel::table! {
    billing.accounts { id -> Int4, }
}
diesel::joinable!(accounts -> type_ (id));
"##;
        let e = parse(src).unwrap();
        assert_eq!(e.custom_types.len(), 2);
        assert_eq!(e.custom_types[1].schema.as_deref(), Some("billing"));
        let t = &e.tables[0];
        assert_eq!((t.sql_name.as_str(), t.primary_key.clone()), ("type", vec!["key_a".into(), "type".into()]));
        assert_eq!(
            t.columns[2].ty,
            Type { name: "Varchar".into(), is_array: false, is_nullable: true, max_length: Some(20) }
        );
        assert_eq!(t.columns[3].ty, Type { name: "Mood".into(), is_array: true, is_nullable: true, max_length: None });
        assert_eq!(t.columns[4].sql_name, "quoted\"name");
        assert_eq!(e.tables[1].schema.as_deref(), Some("billing"));
        assert_eq!(e.tables[1].primary_key, vec!["id".to_string()]);
        assert_eq!(e.joinables[0], Joinable { child: "accounts".into(), parent: "type_".into(), column: "id".into() });
    }
}
