//! Changes inside a table both sides have: added, retyped, re-nulled and dropped columns.

use anyhow::{Context as _, Result};
use diesel::PgConnection;

use super::catalog::{self, TableCatalog, qualified};
use super::diff::{DbTable, Step, column_sql, references};
use super::parse::{Entities, Table};
use super::types::{PgType, quote};
use crate::schema::introspect::TableName;

pub type ColumnSteps = (Vec<Step>, Vec<Step>, Vec<Step>, Vec<Step>);

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
pub fn alter_table(
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
            table: name.clone(),
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
                table: name.clone(),
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
            nulls.push(Step { table: name.clone(), summary, up: vec![up], down: vec![down] });
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
    drops.push(Step { table: name, summary, up, down });
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
