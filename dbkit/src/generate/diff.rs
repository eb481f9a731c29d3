//! schema.rs's entities against the live database: the steps that bring the database to
//! schema.rs, each with its exact inverse, or a refusal naming what cannot be generated.

use anyhow::{Context as _, Result, bail};
use diesel::PgConnection;

use super::catalog::{self, TableCatalog, qualified};
use super::columns;
use super::parse::{Entities, Table};
use super::types::{PgType, quote};
use crate::schema::introspect::{self, ColumnDefinition, TableName};
use crate::schema::settings::{ColumnSorting, Settings};

/// One change: `up` makes it, `down` undoes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The table it changes, qualified and quoted as the SQL names it.
    pub table: String,
    pub summary: String,
    pub up: Vec<String>,
    pub down: Vec<String>,
}

/// A table as the database has it.
pub struct DbTable {
    pub name: TableName,
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnDefinition>,
}

const BY_HAND: &str = "write this migration by hand: `cargo xtask migration create NAME`";

/// The steps, in the order up.sql runs them; down.sql runs their inverses in reverse.
pub fn plan(conn: &mut PgConnection, entities: &Entities, settings: &Settings) -> Result<Vec<Step>> {
    let schema = settings.schema.as_deref().filter(|s| *s != introspect::DEFAULT_SCHEMA);
    let mut names = introspect::load_table_names(conn, schema)?;
    names.retain(|name| !settings.filter.ignores(&name.sql_name));
    let mut primary_keys = introspect::primary_keys(conn, &names)?;
    let mut columns = introspect::load_columns(conn, &names, ColumnSorting::OrdinalPosition, settings)?;
    let mut db = Vec::new();
    for name in names {
        let Some(primary_key) = primary_keys.remove(&name.sql_name) else {
            eprintln!(
                "warning: left table `{}` alone: it has no primary key, so schema.rs cannot show it",
                name.full_sql_name()
            );
            continue;
        };
        let columns = columns.remove(&name.sql_name).unwrap_or_default();
        db.push(DbTable { name, primary_key, columns });
    }
    let wanted: Vec<&Table> = entities
        .tables
        .iter()
        .filter(|t| t.schema.as_deref().filter(|s| *s != introspect::DEFAULT_SCHEMA) == schema)
        .filter(|t| !settings.filter.ignores(&t.sql_name))
        .collect();

    let mut refusals = missing_types(conn, &wanted, entities)?;
    let mut steps = Vec::new();
    let to_create: Vec<&Table> =
        wanted.iter().copied().filter(|t| !db.iter().any(|d| d.name.sql_name == t.sql_name)).collect();
    for table in order_parents_first(&to_create, entities) {
        steps.push(create_table(table, entities, schema));
    }
    let mut column_steps = columns::ColumnSteps::default();
    for d in &db {
        let Some(table) = wanted.iter().find(|t| t.sql_name == d.name.sql_name) else { continue };
        if d.primary_key != table.primary_key {
            refusals.push(format!(
                "cannot generate a primary key change on table `{}`: the database has ({}), schema.rs has ({})",
                d.name.full_sql_name(),
                d.primary_key.join(", "),
                table.primary_key.join(", ")
            ));
            continue;
        }
        columns::alter_table(conn, d, table, entities, &mut column_steps, &mut refusals)?;
    }
    let columns::ColumnSteps { adds, types, nulls, drops } = column_steps;
    let foreign_keys = add_foreign_keys(conn, &db, &wanted, entities)?;
    steps.extend(adds.into_iter().chain(types).chain(nulls).chain(foreign_keys).chain(drops));

    let to_drop: Vec<&DbTable> = db.iter().filter(|d| !wanted.iter().any(|t| t.sql_name == d.name.sql_name)).collect();
    let mut catalogs = Vec::new();
    for &d in &to_drop {
        catalogs.push((d, catalog::read(conn, &d.name)?));
    }
    let dropped: Vec<String> = to_drop.iter().map(|d| qualified_regclass(&d.name)).collect();
    for (d, cat) in order_children_first(catalogs) {
        for fk in cat.constraints.iter().filter(|c| c.is_composite_foreign_key()) {
            refusals.push(format!(
                "cannot drop table `{}`: it has the composite foreign key {}, and migration generate does not express composite foreign keys",
                d.name.full_sql_name(),
                fk.describe()
            ));
        }
        for fk in cat.referenced_by.iter().filter(|fk| !dropped.contains(&fk.owner)) {
            refusals.push(format!(
                "cannot drop table `{}`: {} references it and stays",
                d.name.full_sql_name(),
                fk.describe()
            ));
        }
        steps.push(drop_table(&d.name, &cat));
    }
    if !refusals.is_empty() {
        bail!(crate::error::Hinted::new(refusals.join("\n"), BY_HAND));
    }
    Ok(steps)
}

/// How `regclass::text` names a table (to match constraint owners).
fn qualified_regclass(name: &TableName) -> String {
    let plain = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let part = |s: &str| if plain(s) { s.to_owned() } else { quote(s) };
    match &name.schema {
        Some(schema) => format!("{}.{}", part(schema), part(&name.sql_name)),
        None => part(&name.sql_name),
    }
}

fn db_name(table: &Table, schema: Option<&str>) -> TableName {
    TableName::new(&table.sql_name, schema)
}

/// New tables, a referenced table before the tables that reference it (joinable!).
fn order_parents_first<'a>(tables: &[&'a Table], entities: &Entities) -> Vec<&'a Table> {
    let parents_of = |t: &Table| -> Vec<String> {
        let rust = rust_name_of(t, entities);
        entities.joinables.iter().filter(|j| Some(&j.child) == rust.as_ref()).map(|j| j.parent.clone()).collect()
    };
    let mut ordered: Vec<&Table> = Vec::new();
    let mut rest: Vec<&Table> = tables.to_vec();
    while !rest.is_empty() {
        let ready = rest
            .iter()
            .position(|t| {
                parents_of(t).iter().all(|p| {
                    Some(p) == rust_name_of(t, entities).as_ref()
                        || !rest.iter().any(|r| rust_name_of(r, entities).as_ref() == Some(p))
                })
            })
            .unwrap_or(0);
        ordered.push(rest.remove(ready));
    }
    ordered
}

/// Dropped tables, a referencing table before the table it references.
fn order_children_first(mut rest: Vec<(&DbTable, TableCatalog)>) -> Vec<(&DbTable, TableCatalog)> {
    let mut ordered = Vec::new();
    while !rest.is_empty() {
        let names: Vec<String> = rest.iter().map(|(d, _)| qualified_regclass(&d.name)).collect();
        let ready = rest
            .iter()
            .position(|(d, cat)| {
                let me = qualified_regclass(&d.name);
                !cat.referenced_by.iter().any(|fk| fk.owner != me && names.contains(&fk.owner))
            })
            .unwrap_or(0);
        ordered.push(rest.remove(ready));
    }
    ordered
}

fn rust_name_of(table: &Table, entities: &Entities) -> Option<String> {
    entities.tables.iter().position(|t| t == table).map(|i| entities.rust_names[i].clone())
}

/// The parent table and key column a joinable! gives `column`, when the parent has a one-column key.
fn joinable_parent<'a>(table: &Table, column: &str, entities: &'a Entities) -> Option<(&'a Table, &'a str)> {
    let rust = rust_name_of(table, entities)?;
    let col_rust = &table.column(column)?.rust_name;
    let joinable = entities.joinables.iter().find(|j| j.child == rust && &j.column == col_rust)?;
    let parent_idx = entities.rust_names.iter().position(|n| *n == joinable.parent)?;
    let parent = &entities.tables[parent_idx];
    match parent.primary_key.as_slice() {
        [pk] => Some((parent, pk.as_str())),
        _ => None,
    }
}

/// `REFERENCES "parent" ("pk")` for a column a joinable! names.
pub fn references(table: &Table, column: &str, entities: &Entities, schema: Option<&str>) -> Option<String> {
    let (parent, pk) = joinable_parent(table, column, entities)?;
    Some(format!("REFERENCES {} ({})", qualified(&db_name(parent, schema)), quote(pk)))
}

/// A joinable! between columns both sides have, without its foreign key in the database.
fn add_foreign_keys(
    conn: &mut PgConnection,
    db: &[DbTable],
    wanted: &[&Table],
    entities: &Entities,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for d in db {
        let Some(table) = wanted.iter().find(|t| t.sql_name == d.name.sql_name) else { continue };
        for column in d.columns.iter().filter_map(|c| table.column(&c.sql_name)) {
            let Some((parent, pk)) = joinable_parent(table, &column.sql_name, entities) else { continue };
            let Some(parent_db) = db.iter().find(|p| p.name.sql_name == parent.sql_name) else { continue };
            if catalog::has_foreign_key(conn, &d.name, &column.sql_name, &parent_db.name)? {
                continue;
            }
            let name = qualified(&d.name);
            let constraint = quote(&format!("{}_{}_fkey", d.name.sql_name, column.sql_name));
            let refs =
                references(table, &column.sql_name, entities, d.name.schema.as_deref()).expect("joinable parent");
            steps.push(Step {
                table: name.clone(),
                summary: format!(
                    "add the foreign key {}.{} -> {}.{pk}",
                    d.name.full_sql_name(),
                    column.sql_name,
                    parent.sql_name
                ),
                up: vec![format!(
                    "ALTER TABLE {name} ADD CONSTRAINT {constraint} FOREIGN KEY ({}) {refs};",
                    quote(&column.sql_name)
                )],
                down: vec![format!("ALTER TABLE {name} DROP CONSTRAINT {constraint};")],
            });
        }
    }
    Ok(steps)
}

pub fn column_sql(column: &super::parse::Column, entities: &Entities) -> String {
    let ty = PgType::from_schema_rs(&column.ty, &entities.custom_types);
    let not_null = if column.ty.is_nullable { "" } else { " NOT NULL" };
    format!("{} {}{not_null}", quote(&column.sql_name), ty.sql())
}

fn create_table(table: &Table, entities: &Entities, schema: Option<&str>) -> Step {
    let name = qualified(&db_name(table, schema));
    let mut lines: Vec<String> = table.columns.iter().map(|c| format!("    {}", column_sql(c, entities))).collect();
    lines.push(format!(
        "    PRIMARY KEY ({})",
        table.primary_key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")
    ));
    for column in &table.columns {
        if let Some(refs) = references(table, &column.sql_name, entities, schema) {
            lines.push(format!("    FOREIGN KEY ({}) {refs}", quote(&column.sql_name)));
        }
    }
    Step {
        summary: format!("create table {}", table.sql_name),
        up: vec![format!("CREATE TABLE {name} (\n{}\n);", lines.join(",\n"))],
        down: vec![format!("DROP TABLE {name};")],
        table: name,
    }
}

fn drop_table(name: &TableName, cat: &TableCatalog) -> Step {
    let table = qualified(name);
    let columns: Vec<String> = cat.columns.iter().map(|c| format!("    {}", c.ddl())).collect();
    let mut down = vec![format!("CREATE TABLE {table} (\n{}\n);", columns.join(",\n"))];
    down.extend(cat.restore_sql(&table, None));
    let summary =
        format!("drop table {} (its rows are lost: down.sql brings the table back empty)", name.full_sql_name());
    Step { up: vec![format!("DROP TABLE {table};")], table, summary, down }
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Types schema.rs uses that the database lacks: schema.rs cannot say what they are (an enum's
/// values), so no generated SQL could create them.
fn missing_types(conn: &mut PgConnection, wanted: &[&Table], entities: &Entities) -> Result<Vec<String>> {
    use diesel::RunQueryDsl;
    let mut known: Vec<(String, bool)> = Vec::new();
    let mut refusals = Vec::new();
    for table in wanted {
        for column in &table.columns {
            let ty = PgType::from_schema_rs(&column.ty, &entities.custom_types);
            let element = PgType { is_array: false, max_length: None, ..ty }.sql();
            let exists = match known.iter().find(|(name, _)| *name == element) {
                Some((_, exists)) => *exists,
                None => {
                    let row: Exists = diesel::sql_query("SELECT to_regtype($1) IS NOT NULL AS exists")
                        .bind::<diesel::sql_types::Text, _>(&element)
                        .get_result(conn)
                        .with_context(|| format!("look for the type {element}"))?;
                    known.push((element.clone(), row.exists));
                    row.exists
                }
            };
            if !exists {
                refusals.push(format!(
                    "column {}.{} has the type {element}, which the database does not have: schema.rs cannot say what it is (an enum's values), so migration generate cannot create it",
                    table.sql_name, column.sql_name
                ));
            }
        }
    }
    Ok(refusals)
}

/// up.sql and down.sql from the steps: down undoes them in reverse order.
pub fn render(steps: &[Step], source: &str) -> (String, String) {
    let header = |what: &str| {
        format!("-- Generated by `cargo xtask migration generate`: {what}\n-- Review it before running it.\n")
    };
    let mut up = header(&format!("brings the database to {source}."));
    for step in steps {
        up.push_str(&format!("\n-- {}\n{}\n", step.summary, step.up.join("\n")));
    }
    let mut down = header("undoes up.sql, in reverse order.");
    for step in steps.iter().rev() {
        down.push_str(&format!("\n-- undo: {}\n{}\n", step.summary, step.down.join("\n")));
    }
    (up, down)
}
