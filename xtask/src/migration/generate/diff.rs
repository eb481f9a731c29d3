//! schema.rs's entities against the live database: the steps that bring the database to
//! schema.rs, each with its exact inverse, or a refusal naming what cannot be generated.

use anyhow::{Context as _, Result, bail};
use diesel::PgConnection;

use super::catalog::{self, TableCatalog, qualified};
use super::parse::{Entities, Table};
use super::types::{PgType, quote};
use crate::schema::introspect::{self, ColumnDefinition, TableName};
use crate::schema::settings::{ColumnSorting, Settings};

/// One change: `up` makes it, `down` undoes it.
#[derive(Debug)]
pub struct Step {
    pub summary: String,
    pub up: Vec<String>,
    pub down: Vec<String>,
}

/// A table as the database has it.
struct DbTable {
    name: TableName,
    primary_key: Vec<String>,
    columns: Vec<ColumnDefinition>,
}

const BY_HAND: &str = "\n  hint: write this migration by hand: `cargo xtask migration create NAME`";

/// The steps, in the order up.sql runs them; down.sql runs their inverses in reverse.
pub fn plan(conn: &mut PgConnection, entities: &Entities, settings: &Settings) -> Result<Vec<Step>> {
    let schema = settings.schema.as_deref().filter(|s| *s != introspect::DEFAULT_SCHEMA);
    let mut db = Vec::new();
    for name in introspect::load_table_names(conn, schema)? {
        if settings.filter.ignores(&name.sql_name) {
            continue;
        }
        let primary_key = introspect::primary_key(conn, &name)?;
        if primary_key.is_empty() {
            eprintln!(
                "warning: left table `{}` alone: it has no primary key, so schema.rs cannot show it",
                name.full_sql_name()
            );
            continue;
        }
        let columns = introspect::load_columns(conn, &name, ColumnSorting::OrdinalPosition, settings)?;
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
    let mut column_steps = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        alter_table(conn, d, table, entities, &mut column_steps, &mut refusals)?;
    }
    let (adds, types, nulls, drops) = column_steps;
    steps.extend(adds.into_iter().chain(types).chain(nulls).chain(drops));

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
        bail!("{}{BY_HAND}", refusals.join("\n"));
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

/// `REFERENCES "parent" ("pk")` for a column a joinable! names, when the parent has a one-column key.
fn references(table: &Table, column: &str, entities: &Entities, schema: Option<&str>) -> Option<String> {
    let rust = rust_name_of(table, entities)?;
    let col_rust = &table.column(column)?.rust_name;
    let joinable = entities.joinables.iter().find(|j| j.child == rust && &j.column == col_rust)?;
    let parent_idx = entities.rust_names.iter().position(|n| *n == joinable.parent)?;
    let parent = &entities.tables[parent_idx];
    match parent.primary_key.as_slice() {
        [pk] => Some(format!("REFERENCES {} ({})", qualified(&db_name(parent, schema)), quote(pk))),
        _ => None,
    }
}

fn column_sql(column: &super::parse::Column, entities: &Entities) -> String {
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
    }
}

fn drop_table(name: &TableName, cat: &TableCatalog) -> Step {
    let table = qualified(name);
    let columns: Vec<String> = cat.columns.iter().map(|c| format!("    {}", c.ddl())).collect();
    let mut down = vec![format!("CREATE TABLE {table} (\n{}\n);", columns.join(",\n"))];
    down.extend(cat.restore_sql(&table, None));
    let summary =
        format!("drop table {} (its rows are lost: down.sql brings the table back empty)", name.full_sql_name());
    Step { summary, up: vec![format!("DROP TABLE {table};")], down }
}

type ColumnSteps = (Vec<Step>, Vec<Step>, Vec<Step>, Vec<Step>);

/// The table's catalog, read once and only when a change needs it.
fn catalog_of<'a>(
    conn: &mut PgConnection,
    slot: &'a mut Option<TableCatalog>,
    name: &TableName,
) -> Result<&'a TableCatalog> {
    if slot.is_none() {
        *slot = Some(catalog::read(conn, name)?);
    }
    Ok(slot.as_ref().expect("just read"))
}

/// Added, retyped, re-nulled and dropped columns of a table both sides have.
fn alter_table(
    conn: &mut PgConnection,
    d: &DbTable,
    table: &Table,
    entities: &Entities,
    (adds, types, nulls, drops): &mut ColumnSteps,
    refusals: &mut Vec<String>,
) -> Result<()> {
    let name = qualified(&d.name);
    let shown = d.name.full_sql_name();
    let schema = d.name.schema.as_deref();
    let mut slot = None;

    for column in table.columns.iter().filter(|c| !d.columns.iter().any(|dc| dc.sql_name == c.sql_name)) {
        if !column.ty.is_nullable && has_rows(conn, &name)? {
            eprintln!(
                "warning: {shown} has rows, so adding the NOT NULL column `{}` without a default will fail on them\n  hint: give it a DEFAULT in up.sql, or add it nullable, backfill it, then make it NOT NULL",
                column.sql_name
            );
        }
        let mut def = column_sql(column, entities);
        if let Some(refs) = references(table, &column.sql_name, entities, schema) {
            def = format!("{def} {refs}");
        }
        adds.push(Step {
            summary: format!("add column {shown}.{}", column.sql_name),
            up: vec![format!("ALTER TABLE {name} ADD COLUMN {def};")],
            down: vec![format!("ALTER TABLE {name} DROP COLUMN {};", quote(&column.sql_name))],
        });
    }

    for dc in &d.columns {
        let Some(column) = table.column(&dc.sql_name) else { continue };
        let col = quote(&dc.sql_name);
        let (have, want) = (PgType::from_database(&dc.ty), PgType::from_schema_rs(&column.ty, &entities.custom_types));
        if have != want {
            let cat = catalog_of(conn, &mut slot, &d.name)?;
            let info = cat.column(&dc.sql_name).expect("the catalog has the column print-schema saw");
            for fk in composite_foreign_keys_on(cat, info.num) {
                refusals.push(format!(
                    "cannot change the type of {shown}.{}: it is part of the composite foreign key {}, and migration generate does not express composite foreign keys",
                    dc.sql_name,
                    fk.describe()
                ));
            }
            let (old, new) = (&info.type_sql, want.sql());
            types.push(Step {
                summary: format!("change the type of {shown}.{} from {old} to {new}", dc.sql_name),
                up: vec![format!(
                    "ALTER TABLE {name} ALTER COLUMN {col} TYPE {new} USING {};",
                    convert(&col, have.is_array, want.is_array, &new)
                )],
                down: vec![format!(
                    "ALTER TABLE {name} ALTER COLUMN {col} TYPE {old} USING {};",
                    convert(&col, want.is_array, have.is_array, old)
                )],
            });
        }
        if dc.ty.is_nullable != column.ty.is_nullable {
            let set = format!("ALTER TABLE {name} ALTER COLUMN {col} SET NOT NULL;");
            let unset = format!("ALTER TABLE {name} ALTER COLUMN {col} DROP NOT NULL;");
            let (summary, up, down) = if column.ty.is_nullable {
                (format!("make {shown}.{} nullable", dc.sql_name), unset, set)
            } else {
                (format!("make {shown}.{} NOT NULL", dc.sql_name), set, unset)
            };
            nulls.push(Step { summary, up: vec![up], down: vec![down] });
        }
    }

    let gone: Vec<&str> =
        d.columns.iter().filter(|dc| table.column(&dc.sql_name).is_none()).map(|dc| dc.sql_name.as_str()).collect();
    if gone.is_empty() {
        return Ok(());
    }
    let cat = catalog_of(conn, &mut slot, &d.name)?;
    let columns: Vec<&catalog::Column> = gone.iter().filter_map(|c| cat.column(c)).collect();
    let nums: Vec<i32> = columns.iter().map(|c| c.num).collect();
    for column in &columns {
        for fk in composite_foreign_keys_on(cat, column.num) {
            refusals.push(format!(
                "cannot drop column {shown}.{}: it is part of the composite foreign key {}, and migration generate does not express composite foreign keys",
                column.name,
                fk.describe()
            ));
        }
        for fk in cat.referenced_by.iter().filter(|fk| fk.ref_columns.contains(&column.num)) {
            refusals.push(format!("cannot drop column {shown}.{}: {} references it", column.name, fk.describe()));
        }
    }
    let up = columns.iter().map(|c| format!("ALTER TABLE {name} DROP COLUMN {};", quote(&c.name))).collect();
    let mut down: Vec<String> = columns.iter().map(|c| format!("ALTER TABLE {name} ADD COLUMN {};", c.ddl())).collect();
    down.extend(cat.restore_sql(&name, Some(&nums)));
    let summary = format!(
        "drop column(s) {shown}.{} (their data is lost: down.sql brings the columns back empty)",
        gone.join(", ")
    );
    drops.push(Step { summary, up, down });
    Ok(())
}

/// The USING expression that turns `col` into `to`: a value becomes a one-element array, an
/// array its first element.
fn convert(col: &str, from_array: bool, to_array: bool, to: &str) -> String {
    match (from_array, to_array) {
        (false, true) => format!("(CASE WHEN {col} IS NULL THEN NULL ELSE ARRAY[{col}] END)::{to}"),
        (true, false) => format!("{col}[1]::{to}"),
        _ => format!("{col}::{to}"),
    }
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

#[derive(diesel::QueryableByName)]
struct HasRows {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    has_rows: bool,
}

fn has_rows(conn: &mut PgConnection, table: &str) -> Result<bool> {
    use diesel::RunQueryDsl;
    let row: HasRows = diesel::sql_query(format!("SELECT EXISTS (SELECT 1 FROM {table}) AS has_rows"))
        .get_result(conn)
        .with_context(|| format!("look for rows in {table}"))?;
    Ok(row.has_rows)
}

fn composite_foreign_keys_on(cat: &TableCatalog, num: i32) -> Vec<&catalog::Constraint> {
    let own = cat.constraints.iter().filter(|c| c.is_composite_foreign_key() && c.columns.contains(&num));
    let incoming = cat.referenced_by.iter().filter(|c| c.is_composite_foreign_key() && c.ref_columns.contains(&num));
    own.chain(incoming).collect()
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
