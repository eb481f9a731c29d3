//! An entity-relationship diagram of the live schema: tables, their columns with types, primary
//! and foreign keys, for the tables print-schema would print (the same schema and filter). As
//! Mermaid `erDiagram` (GitHub renders it in Markdown as it is), Graphviz DOT, or SVG through
//! Graphviz's `dot`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use diesel::sql_types::{Array, Bool, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use xshell::{Shell, cmd};

use super::introspect::{self, DEFAULT_SCHEMA};
use super::settings::{ColumnSorting, Settings};

/// The tables and the foreign keys between them, tables by name.
#[derive(Debug, Clone)]
pub struct Diagram {
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    /// As Postgres writes it (`character varying(80)`, `timestamp with time zone`).
    #[diesel(sql_type = Text)]
    pub type_name: String,
    #[diesel(sql_type = Bool)]
    pub not_null: bool,
    #[diesel(sql_type = Bool)]
    pub primary_key: bool,
}

/// A foreign key: `child`'s columns reference `parent`'s.
#[derive(Debug, Clone, QueryableByName)]
pub struct ForeignKey {
    #[diesel(sql_type = Text)]
    pub child: String,
    #[diesel(sql_type = Array<Text>)]
    pub child_columns: Vec<String>,
    #[diesel(sql_type = Text)]
    pub parent: String,
    #[diesel(sql_type = Array<Text>)]
    pub parent_columns: Vec<String>,
}

impl Diagram {
    /// The tables `settings` selects (its schema, its filter; no `__` tables, as print-schema)
    /// with their columns in its column order, and the foreign keys among them.
    pub fn read(conn: &mut PgConnection, settings: &Settings) -> Result<Diagram> {
        let schema = settings.schema.as_deref();
        let mut names = introspect::load_table_names(conn, schema)?;
        names.retain(|t| !settings.filter.ignores(&t.sql_name));
        let names: Vec<String> = names.into_iter().map(|t| t.sql_name).collect();
        let rows: Vec<Column> = diesel::sql_query(
            "SELECT c.relname::text AS table_name, a.attname::text AS name,
                    format_type(a.atttypid, a.atttypmod) AS type_name, a.attnotnull AS not_null,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                                                       AND a.attnum = ANY (i.indkey)) AS primary_key
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relname = ANY ($2)
             ORDER BY a.attnum",
        )
        .bind::<Text, _>(schema.unwrap_or(DEFAULT_SCHEMA))
        .bind::<Array<Text>, _>(&names)
        .load(conn)
        .context("read the tables' columns")?;
        let mut columns: HashMap<String, Vec<Column>> = HashMap::new();
        for row in rows {
            columns.entry(row.table_name.clone()).or_default().push(row);
        }
        let tables: Vec<Table> = names
            .iter()
            .map(|name| {
                let mut columns = columns.remove(name).unwrap_or_default();
                if settings.column_sorting == ColumnSorting::Name {
                    columns.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Table { name: name.clone(), columns }
            })
            .collect();
        // A key each (diesel_cli's query merges two keys between the same tables into one).
        let foreign_keys: Vec<ForeignKey> = diesel::sql_query(
            "SELECT child.relname::text AS child, parent.relname::text AS parent,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, i)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.i) AS child_columns,
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(attnum, i)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.i) AS parent_columns
             FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = child.relnamespace
             JOIN pg_class parent ON parent.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = parent.relnamespace
             WHERE c.contype = 'f' AND c.conparentid = 0 AND cn.nspname = $1 AND pn.nspname = $1
               AND child.relname = ANY ($2) AND parent.relname = ANY ($2)
             ORDER BY child.relname, parent.relname, c.conname",
        )
        .bind::<Text, _>(schema.unwrap_or(DEFAULT_SCHEMA))
        .bind::<Array<Text>, _>(&names)
        .load(conn)
        .context("read the foreign keys")?;
        Ok(Diagram { tables, foreign_keys })
    }

    fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Whether a child row may have no parent: some column of the key is nullable.
    fn optional(&self, fk: &ForeignKey) -> bool {
        let table = self.table(&fk.child);
        fk.child_columns
            .iter()
            .any(|c| table.and_then(|t| t.columns.iter().find(|col| &col.name == c)).is_none_or(|col| !col.not_null))
    }

    fn is_foreign(&self, table: &str, column: &str) -> bool {
        self.foreign_keys.iter().any(|fk| fk.child == table && fk.child_columns.iter().any(|c| c == column))
    }

    /// Mermaid's `erDiagram`: an entity per table (`type name PK, FK`), a relationship per
    /// foreign key (`parent ||--o{ child : "column"`; `|o` when the key may be null).
    pub fn mermaid(&self) -> String {
        let mut out = String::from("erDiagram\n");
        for table in &self.tables {
            let _ = writeln!(out, "    {} {{", mermaid_entity(&table.name));
            for column in &table.columns {
                let name = mermaid_token(&column.name);
                let keys: Vec<&str> =
                    [column.primary_key.then_some("PK"), self.is_foreign(&table.name, &column.name).then_some("FK")]
                        .into_iter()
                        .flatten()
                        .collect();
                let _ = write!(out, "        {} {name}", mermaid_token(&column.type_name));
                if !keys.is_empty() {
                    let _ = write!(out, " {}", keys.join(", "));
                }
                // A name Mermaid cannot take as it is is written out in the comment.
                if name != column.name {
                    let _ = write!(out, " \"{}\"", column.name.replace('"', "'"));
                }
                out.push('\n');
            }
            out.push_str("    }\n");
        }
        for fk in &self.foreign_keys {
            let parent_side = if self.optional(fk) { "|o" } else { "||" };
            let _ = writeln!(
                out,
                "    {} {parent_side}--o{{ {} : \"{}\"",
                mermaid_entity(&fk.parent),
                mermaid_entity(&fk.child),
                fk.child_columns.join(", ").replace('"', "'")
            );
        }
        out
    }

    /// Graphviz DOT: a record-like table per table (a row per column, its type, PK/FK), an
    /// edge per foreign key from the referencing column to the referenced one.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph schema {\n    graph [rankdir=LR];\n    node [shape=plain, fontname=\"Helvetica\", fontsize=10];\n    edge [arrowhead=crow, arrowtail=tee, dir=both];\n",
        );
        for table in &self.tables {
            let _ = write!(
                out,
                "    {} [label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\" cellpadding=\"4\">\n        <tr><td colspan=\"3\" bgcolor=\"lightgrey\"><b>{}</b></td></tr>\n",
                dot_id(&table.name),
                html(&table.name)
            );
            for (i, column) in table.columns.iter().enumerate() {
                let keys: Vec<&str> =
                    [column.primary_key.then_some("PK"), self.is_foreign(&table.name, &column.name).then_some("FK")]
                        .into_iter()
                        .flatten()
                        .collect();
                let _ = writeln!(
                    out,
                    "        <tr><td port=\"c{i}\" align=\"left\">{}</td><td align=\"left\">{}{}</td><td>{}</td></tr>",
                    html(&column.name),
                    html(&column.type_name),
                    if column.not_null { "" } else { "?" },
                    keys.join(" ")
                );
            }
            out.push_str("    </table>>];\n");
        }
        for fk in &self.foreign_keys {
            let port = |table: &str, column: Option<&String>| {
                let index = self.table(table).and_then(|t| t.columns.iter().position(|c| Some(&c.name) == column));
                match index {
                    Some(i) => format!("{}:c{i}", dot_id(table)),
                    None => dot_id(table),
                }
            };
            let _ = writeln!(
                out,
                "    {} -> {} [tooltip={}];",
                port(&fk.child, fk.child_columns.first()),
                port(&fk.parent, fk.parent_columns.first()),
                dot_id(&format!(
                    "{}({}) references {}({})",
                    fk.child,
                    fk.child_columns.join(", "),
                    fk.parent,
                    fk.parent_columns.join(", ")
                ))
            );
        }
        out.push_str("}\n");
        out
    }
}

/// The DOT text drawn as SVG by Graphviz's `dot`.
pub fn svg(sh: &Shell, dot: &str) -> Result<String> {
    if which::which("dot").is_err() {
        bail!(
            hint!("SVG is drawn by Graphviz's `dot`, and it is not installed"; "install Graphviz (`apt-get install graphviz`, `brew install graphviz`), or use --format mermaid or --format dot")
        );
    }
    cmd!(sh, "dot -Tsvg").stdin(dot).quiet().read().context("draw the diagram with Graphviz's dot")
}

/// A name Mermaid takes bare (letters, digits, `_`, `-`, not starting with a digit or `-`),
/// else quoted; a name whose characters even quotes cannot hold (`"`, `%`, `\`) has them as `_`.
fn mermaid_entity(name: &str) -> String {
    let token = mermaid_token(name);
    if token == name && !name.contains(['(', ')', '[', ']']) {
        name.to_string()
    } else if !name.contains(['"', '%', '\\']) {
        format!("\"{name}\"")
    } else {
        name.replace(['"', '%', '\\'], "_")
    }
}

/// `text` as a Mermaid attribute type or name: letters, digits, `_`, `-`, `(`, `)`, `[`, `]`,
/// starting with a letter or `_`; anything else (a space, a comma, a dot) becomes `_`.
fn mermaid_token(text: &str) -> String {
    let mut token: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '(' | ')' | '[' | ']') { c } else { '_' })
        .collect();
    if !token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        token.insert(0, '_');
    }
    token
}

/// A DOT quoted string.
fn dot_id(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Text inside a DOT HTML-like label.
fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str, not_null: bool, primary_key: bool) -> Column {
        Column { table_name: String::new(), name: name.into(), type_name: type_name.into(), not_null, primary_key }
    }

    fn sample() -> Diagram {
        Diagram {
            tables: vec![
                Table {
                    name: "posts".into(),
                    columns: vec![
                        column("id", "integer", true, true),
                        column("author id", "integer", false, false),
                        column("price", "numeric(10,2)", true, false),
                    ],
                },
                Table { name: "user list".into(), columns: vec![column("id", "integer", true, true)] },
            ],
            foreign_keys: vec![ForeignKey {
                child: "posts".into(),
                child_columns: vec!["author id".into()],
                parent: "user list".into(),
                parent_columns: vec!["id".into()],
            }],
        }
    }

    #[test]
    fn mermaid_quotes_and_escapes_what_it_cannot_take() {
        assert_eq!(
            sample().mermaid(),
            "erDiagram\n    posts {\n        integer id PK\n        integer author_id FK \"author id\"\n        numeric(10_2) price\n    }\n    \"user list\" {\n        integer id PK\n    }\n    \"user list\" |o--o{ posts : \"author id\"\n"
        );
        assert_eq!(mermaid_entity("a\"b%c"), "a_b_c");
        assert_eq!(mermaid_token("2fa"), "_2fa");
        assert_eq!(mermaid_token("timestamp with time zone"), "timestamp_with_time_zone");
    }

    #[test]
    fn dot_escapes_names() {
        let dot = sample().dot();
        assert!(dot.contains("\"user list\" [label=<"), "{dot}");
        assert!(dot.contains("\"posts\":c1 -> \"user list\":c0"), "{dot}");
        assert!(dot.contains("<td align=\"left\">numeric(10,2)</td>"), "{dot}");
        assert_eq!(html("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
        assert_eq!(dot_id("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
