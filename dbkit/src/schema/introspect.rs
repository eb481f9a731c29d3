//! What the database holds, read with the same catalog queries diesel_cli 2.3 runs for
//! `print-schema` on Postgres (`infer_schema_internals::{information_schema, pg}`).

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use diesel::sql_types::{Array, Integer, Nullable, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use super::names::{is_reserved_name, rust_name_for_sql_name, upper_camel_case};
use super::settings::{ColumnSorting, Settings};

/// Postgres's default schema: diesel_cli leaves it out of names.
pub const DEFAULT_SCHEMA: &str = "public";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName {
    pub sql_name: String,
    pub rust_name: String,
    pub schema: Option<String>,
    pub rust_schema: Option<String>,
}

impl TableName {
    pub fn new(name: &str, schema: Option<&str>) -> TableName {
        let schema = schema.filter(|s| *s != DEFAULT_SCHEMA);
        TableName {
            sql_name: name.to_owned(),
            rust_name: rust_name_for_sql_name(name, None),
            schema: schema.map(str::to_owned),
            rust_schema: schema.map(|s| rust_name_for_sql_name(s, None)),
        }
    }

    /// `schema.table`, or `table` in the default schema.
    pub fn full_sql_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.sql_name),
            None => self.sql_name.clone(),
        }
    }

    /// How `table!` spells it: `schema.table`, or `table`.
    pub fn rust_path(&self) -> String {
        match &self.rust_schema {
            Some(schema) => format!("{schema}.{}", self.rust_name),
            None => self.rust_name.clone(),
        }
    }

    /// The schema the catalog queries look in.
    pub fn schema_or_default(&self) -> &str {
        self.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
    }

    /// An SQL expression for the table's `regclass`, built as diesel_cli builds it.
    /// `name` and `schema` are SQL expressions for the table's name and schema.
    fn regclass_sql(&self, name: &str, schema: &str) -> String {
        match &self.schema {
            Some(_) => format!("(quote_ident({schema}) || '.' || quote_ident({name}))::regclass"),
            None => format!("quote_ident({name})::regclass"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// The type's schema, unless it is `public`.
    pub schema: Option<String>,
    pub rust_name: String,
    pub sql_name: String,
    pub is_array: bool,
    pub is_nullable: bool,
    pub max_length: Option<u64>,
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let name = &self.rust_name;
        match (self.is_nullable, self.is_array) {
            (false, false) => write!(f, "{name}"),
            (true, false) => write!(f, "Nullable<{name}>"),
            (false, true) => write!(f, "Array<Nullable<{name}>>"),
            (true, true) => write!(f, "Nullable<Array<Nullable<{name}>>>"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnDefinition {
    pub sql_name: String,
    pub rust_name: String,
    pub ty: ColumnType,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TableData {
    pub name: TableName,
    /// Rust names of the primary key's columns, in key order.
    pub primary_key: Vec<String>,
    pub column_data: Vec<ColumnDefinition>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyConstraint {
    pub child_table: TableName,
    pub parent_table: TableName,
    pub foreign_key_columns: Vec<String>,
    pub foreign_key_columns_rust: Vec<String>,
    pub primary_key_columns: Vec<String>,
}

impl ForeignKeyConstraint {
    fn ordered_tables(&self) -> (&TableName, &TableName) {
        let (a, b) = (&self.parent_table, &self.child_table);
        if a <= b { (a, b) } else { (b, a) }
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Base tables of `schema` (default `public`), minus diesel's `__` tables, sorted by name.
pub fn load_table_names(conn: &mut PgConnection, schema: Option<&str>) -> Result<Vec<TableName>> {
    let mut names: Vec<String> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name NOT LIKE '\\_\\_%' AND table_type LIKE 'BASE TABLE'",
    )
    .bind::<Text, _>(schema.unwrap_or(DEFAULT_SCHEMA))
    .load::<Name>(conn)
    .context("list the tables")?
    .into_iter()
    .map(|n| n.name)
    .collect();
    names.sort_unstable();
    Ok(names.iter().map(|name| TableName::new(name, schema)).collect())
}

#[derive(QueryableByName)]
struct KeyColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
}

/// Each table's primary key columns (SQL names) in key order; a table without one is absent.
/// One query for all `tables` (of one schema): diesel_cli asks table by table, same filter.
pub fn primary_keys(conn: &mut PgConnection, tables: &[TableName]) -> Result<HashMap<String, Vec<String>>> {
    let Some(first) = tables.first() else { return Ok(HashMap::new()) };
    // diesel_cli's query, quirks included: the constraint is matched by name alone.
    let rows: Vec<KeyColumn> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS name FROM information_schema.key_column_usage \
         WHERE constraint_name IN (SELECT constraint_name FROM information_schema.table_constraints \
                                   WHERE constraint_type = 'PRIMARY KEY') \
           AND table_name = ANY($1) AND table_schema = $2 \
         ORDER BY information_schema.key_column_usage.table_name, ordinal_position",
    )
    .bind::<Array<Text>, _>(tables.iter().map(|t| t.sql_name.as_str()).collect::<Vec<_>>())
    .bind::<Text, _>(first.schema_or_default())
    .load(conn)
    .context("read the primary keys")?;
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        keys.entry(row.table_name).or_default().push(row.name);
    }
    Ok(keys)
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    type_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    type_schema: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    domain_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    domain_schema: Option<String>,
    #[diesel(sql_type = Text)]
    nullable: String,
    #[diesel(sql_type = Nullable<Integer>)]
    max_length: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    comment: Option<String>,
}

/// The columns of `tables` (of one schema), typed as diesel_cli types them, by table.
pub fn load_columns(
    conn: &mut PgConnection,
    tables: &[TableName],
    sorting: ColumnSorting,
    settings: &Settings,
) -> Result<HashMap<String, Vec<ColumnDefinition>>> {
    let Some(first) = tables.first() else { return Ok(HashMap::new()) };
    let order = match sorting {
        ColumnSorting::OrdinalPosition => "ordinal_position",
        ColumnSorting::Name => "column_name",
    };
    // Output names differ from the input columns so ORDER BY sorts `name`s, not collated text.
    let sql = format!(
        "SELECT table_name::text AS table_name, column_name::text AS name, udt_name::text AS type_name, \
                udt_schema::text AS type_schema, domain_name::text AS domain_name, domain_schema::text AS domain_schema, \
                is_nullable::text AS nullable, character_maximum_length::int4 AS max_length, \
                col_description({}, ordinal_position) AS comment \
         FROM information_schema.columns WHERE table_name = ANY($1) AND table_schema = $2 \
         ORDER BY information_schema.columns.table_name, information_schema.columns.{order}",
        first.regclass_sql("table_name", "table_schema")
    );
    let rows: Vec<ColumnRow> = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(tables.iter().map(|t| t.sql_name.as_str()).collect::<Vec<_>>())
        .bind::<Text, _>(first.schema_or_default())
        .load(conn)
        .context("read the columns")?;
    let rust_names: HashMap<&str, &str> = tables.iter().map(|t| (t.sql_name.as_str(), t.rust_name.as_str())).collect();
    let mut columns: HashMap<String, Vec<ColumnDefinition>> = HashMap::new();
    for row in rows {
        let (type_name, type_schema) = match row.domain_name {
            Some(domain) if settings.pg_domains_as_custom_types.iter().any(|rx| rx.is_match(&domain)) => {
                (domain, row.domain_schema)
            }
            _ => (row.type_name, row.type_schema),
        };
        let ty = column_type(&row.name, &type_name, type_schema, row.nullable == "YES", row.max_length);
        let rust_name = rust_name_for_sql_name(&row.name, rust_names.get(row.table_name.as_str()).copied());
        let column = ColumnDefinition { rust_name, sql_name: row.name, ty, comment: row.comment };
        columns.entry(row.table_name).or_default().push(column);
    }
    Ok(columns)
}

/// diesel_cli's `pg::determine_column_type`: `_name` is an array of `name`.
fn column_type(
    column: &str,
    type_name: &str,
    type_schema: Option<String>,
    nullable: bool,
    max_length: Option<i32>,
) -> ColumnType {
    let (is_array, tpe) = match type_name.strip_prefix('_') {
        Some(element) => (true, element),
        None => (false, type_name),
    };
    if is_array && matches!(tpe.to_lowercase().as_str(), "varchar" | "citext") {
        // diesel_cli's own warning, word for word.
        eprintln!(
            "The column `{column}` is of type `{tpe}[]`. This will cause problems when using Diesel. You should consider changing the column type to `text[]`."
        );
    }
    ColumnType {
        schema: type_schema.filter(|s| s != DEFAULT_SCHEMA),
        rust_name: upper_camel_case(tpe),
        sql_name: tpe.to_owned(),
        is_array,
        is_nullable: nullable,
        max_length: max_length.and_then(|n| u64::try_from(n).ok()),
    }
}

#[derive(QueryableByName)]
struct Comment {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    comment: Option<String>,
}

/// The comments of `tables` (of one schema), by table.
pub fn table_comments(conn: &mut PgConnection, tables: &[TableName]) -> Result<HashMap<String, Option<String>>> {
    let Some(first) = tables.first() else { return Ok(HashMap::new()) };
    let regclass = first.regclass_sql("t.name", "$2::text");
    let rows: Vec<Comment> = diesel::sql_query(format!(
        "SELECT t.name AS table_name, obj_description({regclass}, 'pg_class') AS comment \
         FROM unnest($1::text[]) AS t(name)"
    ))
    .bind::<Array<Text>, _>(tables.iter().map(|t| t.sql_name.as_str()).collect::<Vec<_>>())
    .bind::<Text, _>(first.schema_or_default())
    .load(conn)
    .context("read the table comments")?;
    Ok(rows.into_iter().map(|r| (r.table_name, r.comment)).collect())
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    self_schema: String,
    #[diesel(sql_type = Text)]
    self_table: String,
    #[diesel(sql_type = Array<Text>)]
    self_columns: Vec<String>,
    #[diesel(sql_type = Text)]
    foreign_schema: String,
    #[diesel(sql_type = Text)]
    foreign_table: String,
    #[diesel(sql_type = Array<Text>)]
    foreign_columns: Vec<String>,
}

/// Every foreign key between tables of `schema`, sorted as diesel_cli sorts them.
pub fn load_foreign_keys(conn: &mut PgConnection, schema: Option<&str>) -> Result<Vec<ForeignKeyConstraint>> {
    let rows: Vec<ForeignKeyRow> = diesel::sql_query(include_str!("load_foreign_keys.sql"))
        .bind::<Text, _>(schema.unwrap_or(DEFAULT_SCHEMA))
        .load(conn)
        .context("read the foreign keys")?;
    let mut keys: Vec<ForeignKeyConstraint> = rows
        .into_iter()
        .map(|row| {
            let child_table = TableName::new(&row.self_table, Some(&row.self_schema));
            let parent_table = TableName::new(&row.foreign_table, Some(&row.foreign_schema));
            let foreign_key_columns_rust =
                row.self_columns.iter().map(|c| rust_name_for_sql_name(c, Some(&child_table.rust_name))).collect();
            ForeignKeyConstraint {
                child_table,
                parent_table,
                foreign_key_columns: row.self_columns,
                foreign_key_columns_rust,
                primary_key_columns: row.foreign_columns,
            }
        })
        .collect();
    keys.sort();
    for key in &mut keys {
        for name in &mut key.foreign_key_columns_rust {
            if is_reserved_name(name) {
                name.push('_');
            }
        }
    }
    Ok(keys)
}

/// diesel_cli's `remove_unsafe_foreign_keys_for_codegen`: only keys `joinable!` can express.
/// `primary_keys` holds the tables' keys by SQL name.
pub fn joinable_foreign_keys(
    keys: &[ForeignKeyConstraint],
    tables: &[TableName],
    primary_keys: &HashMap<String, Vec<String>>,
) -> Vec<ForeignKeyConstraint> {
    let duplicated = |fk: &ForeignKeyConstraint| {
        keys.iter().filter(|other| other.ordered_tables() == fk.ordered_tables()).count() > 1
    };
    keys.iter()
        .filter(|fk| fk.parent_table != fk.child_table)
        .filter(|fk| tables.contains(&fk.parent_table) && tables.contains(&fk.child_table))
        .filter(|fk| fk.foreign_key_columns.len() == 1)
        .filter(|fk| {
            let parent_key = primary_keys.get(&fk.parent_table.sql_name).map(Vec::as_slice).unwrap_or_default();
            parent_key.len() == 1 && fk.primary_key_columns.first() == parent_key.first()
        })
        .filter(|fk| !duplicated(fk))
        .cloned()
        .collect()
}
