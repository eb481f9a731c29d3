//! Changes inside a table both sides have: added, retyped, re-nulled and dropped columns.

use anyhow::{Context as _, Result};
use diesel::PgConnection;

use super::catalog::{self, TableCatalog, qualified};
use super::diff::{DbTable, Step, column_sql, references};
use super::parse::{Column, Entities, Table};
use super::types::{PgType, quote};
use crate::schema::introspect::{ColumnDefinition, TableName};

/// A table's column changes by kind: up.sql runs all the adds, then the type changes, then the
/// changes of nullability (foreign keys next), then the drops.
#[derive(Default)]
pub struct ColumnSteps {
    pub adds: Vec<Step>,
    pub types: Vec<Step>,
    pub nulls: Vec<Step>,
    pub drops: Vec<Step>,
}

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
    steps: &mut ColumnSteps,
    refusals: &mut Vec<String>,
) -> Result<()> {
    let mut change = TableChange {
        conn,
        d,
        table,
        entities,
        name: qualified(&d.name),
        shown: d.name.full_sql_name(),
        catalog: None,
        steps,
        refusals,
    };
    change.add_columns()?;
    for dc in &d.columns {
        let Some(column) = table.column(&dc.sql_name) else { continue };
        change.change_type(dc, column)?;
        change.change_nullability(dc, column);
    }
    change.drop_columns()
}

/// One table both sides have, compared column by column: the database's `d`, schema.rs's
/// `table`, and where the steps and refusals go.
struct TableChange<'a> {
    conn: &'a mut PgConnection,
    d: &'a DbTable,
    table: &'a Table,
    entities: &'a Entities,
    /// The table as SQL names it, and as messages show it.
    name: String,
    shown: String,
    /// Read by [`catalog_of`], once a change needs it.
    catalog: Option<TableCatalog>,
    steps: &'a mut ColumnSteps,
    refusals: &'a mut Vec<String>,
}

impl TableChange<'_> {
    /// Columns schema.rs has and the database lacks: ADD COLUMN, with the warning that a NOT
    /// NULL one without a default fails on a table with rows.
    fn add_columns(&mut self) -> Result<()> {
        let (name, shown, table, entities) = (&self.name, &self.shown, self.table, self.entities);
        let schema = self.d.name.schema.as_deref();
        for column in table.columns.iter().filter(|c| !self.d.columns.iter().any(|dc| dc.sql_name == c.sql_name)) {
            if !column.ty.is_nullable && has_rows(self.conn, name)? {
                eprintln!(
                    "warning: {shown} has rows, so adding the NOT NULL column `{}` without a default will fail on them\n  hint: give it a DEFAULT in up.sql, or add it nullable, backfill it, then make it NOT NULL",
                    column.sql_name
                );
            }
            let mut def = column_sql(column, entities);
            if let Some(refs) = references(table, &column.sql_name, entities, schema) {
                def = format!("{def} {refs}");
            }
            self.steps.adds.push(Step {
                table: name.clone(),
                summary: format!("add column {shown}.{}", column.sql_name),
                up: vec![format!("ALTER TABLE {name} ADD COLUMN {def};")],
                down: vec![format!("ALTER TABLE {name} DROP COLUMN {};", quote(&column.sql_name))],
            });
        }
        Ok(())
    }

    /// ALTER COLUMN TYPE when the types differ (an array and its element convert both ways);
    /// refused for a column of a composite foreign key.
    fn change_type(&mut self, dc: &ColumnDefinition, column: &Column) -> Result<()> {
        let (name, shown) = (&self.name, &self.shown);
        let col = quote(&dc.sql_name);
        let (have, want) =
            (PgType::from_database(&dc.ty), PgType::from_schema_rs(&column.ty, &self.entities.custom_types));
        if have == want {
            return Ok(());
        }
        let cat = catalog_of(self.conn, &mut self.catalog, &self.d.name)?;
        let info = cat.column(&dc.sql_name).expect("the catalog has the column print-schema saw");
        for fk in composite_foreign_keys_on(cat, info.num) {
            self.refusals.push(format!(
                "cannot change the type of {shown}.{}: it is part of the composite foreign key {}, and migration generate does not express composite foreign keys",
                dc.sql_name,
                fk.describe()
            ));
        }
        let (old, new) = (&info.type_sql, want.sql());
        self.steps.types.push(Step {
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
        Ok(())
    }

    /// SET or DROP NOT NULL when the sides disagree.
    fn change_nullability(&mut self, dc: &ColumnDefinition, column: &Column) {
        if dc.ty.is_nullable == column.ty.is_nullable {
            return;
        }
        let (name, shown) = (&self.name, &self.shown);
        let col = quote(&dc.sql_name);
        let set = format!("ALTER TABLE {name} ALTER COLUMN {col} SET NOT NULL;");
        let unset = format!("ALTER TABLE {name} ALTER COLUMN {col} DROP NOT NULL;");
        let (summary, up, down) = if column.ty.is_nullable {
            (format!("make {shown}.{} nullable", dc.sql_name), unset, set)
        } else {
            (format!("make {shown}.{} NOT NULL", dc.sql_name), set, unset)
        };
        self.steps.nulls.push(Step { table: name.clone(), summary, up: vec![up], down: vec![down] });
    }

    /// Columns the database has and schema.rs lacks: one step that drops them all, whose down.sql
    /// adds them back (empty) with their constraints; refused for a column of a composite foreign
    /// key or one another table references.
    fn drop_columns(&mut self) -> Result<()> {
        let (name, shown, table) = (&self.name, &self.shown, self.table);
        let gone: Vec<&str> = self
            .d
            .columns
            .iter()
            .filter(|dc| table.column(&dc.sql_name).is_none())
            .map(|dc| dc.sql_name.as_str())
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let cat = catalog_of(self.conn, &mut self.catalog, &self.d.name)?;
        let columns: Vec<&catalog::Column> = gone.iter().filter_map(|c| cat.column(c)).collect();
        let nums: Vec<i32> = columns.iter().map(|c| c.num).collect();
        for column in &columns {
            for fk in composite_foreign_keys_on(cat, column.num) {
                self.refusals.push(format!(
                    "cannot drop column {shown}.{}: it is part of the composite foreign key {}, and migration generate does not express composite foreign keys",
                    column.name,
                    fk.describe()
                ));
            }
            for fk in cat.referenced_by.iter().filter(|fk| fk.ref_columns.contains(&column.num)) {
                self.refusals.push(format!(
                    "cannot drop column {shown}.{}: {} references it",
                    column.name,
                    fk.describe()
                ));
            }
        }
        let up = columns.iter().map(|c| format!("ALTER TABLE {name} DROP COLUMN {};", quote(&c.name))).collect();
        let mut down: Vec<String> =
            columns.iter().map(|c| format!("ALTER TABLE {name} ADD COLUMN {};", c.ddl())).collect();
        down.extend(cat.restore_sql(name, Some(&nums)));
        let summary = format!(
            "drop column(s) {shown}.{} (their data is lost: down.sql brings the columns back empty)",
            gone.join(", ")
        );
        self.steps.drops.push(Step { table: name.clone(), summary, up, down });
        Ok(())
    }
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
