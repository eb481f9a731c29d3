//! diesel_cli's `output_schema` for Postgres: read the database, render, rustfmt, patch.
//! One difference, on purpose: a table without a primary key is skipped with a warning where
//! diesel_cli refuses the whole schema.

use std::path::Path;

use anyhow::{Result, bail};
use diesel::PgConnection;
use xshell::{Shell, cmd};

use super::introspect::{self, ColumnType, TableData};
use super::names::rust_name_for_sql_name;
use super::render::{Definitions, schema_text};
use super::settings::{DocConfig, Settings};

/// SQL types diesel provides for Postgres (diesel_cli's `pg_diesel_types`, hidden aliases too):
/// every other column type gets a definition in `pub mod sql_types`.
const DIESEL_PG_TYPES: &[&str] = &[
    "Cidr",
    "Citext",
    "Inet",
    "Jsonb",
    "MacAddr",
    "MacAddr8",
    "Money",
    "Oid",
    "Range",
    "Timestamptz",
    "Uuid",
    "Json",
    "PgLsn",
    "Record",
    "Interval",
    "Int4range",
    "Int8range",
    "Daterange",
    "Numrange",
    "Tsrange",
    "Tstzrange",
    "Int4multirange",
    "Int8multirange",
    "Datemultirange",
    "Nummultirange",
    "Tsmultirange",
    "Tstzmultirange",
    "SmallSerial",
    "BigSerial",
    "Serial",
    "Bytea",
    "Bpchar",
    "Macaddr",
    "Macaddr8",
    "Bool",
    "Integer",
    "SmallInt",
    "BigInt",
    "Binary",
    "Text",
    "Double",
    "Float",
    "Numeric",
    "Timestamp",
    "Date",
    "Time",
    "Float4",
    "Smallint",
    "Int2",
    "Int4",
    "Int8",
    "Bigint",
    "Float8",
    "Decimal",
    "VarChar",
    "Varchar",
    "Char",
    "Tinytext",
    "Mediumtext",
    "Longtext",
    "Tinyblob",
    "Blob",
    "Mediumblob",
    "Longblob",
    "Varbinary",
    "Bit",
];

/// The schema file's text for the database behind `conn`. `cwd` is where rustfmt runs (it reads
/// the rustfmt.toml found from there, as it does for diesel_cli).
pub fn output_schema(conn: &mut PgConnection, settings: &Settings, cwd: &Path) -> Result<String> {
    let schema = settings.schema.as_deref();
    let mut names = introspect::load_table_names(conn, schema)?;
    names.retain(|t| !settings.filter.ignores(&t.sql_name));

    let primary_keys = introspect::primary_keys(conn, &names)?;
    names.retain(|name| {
        let has_key = primary_keys.contains_key(&name.sql_name);
        if !has_key {
            eprintln!(
                "warning: skipped table `{}`: it has no primary key, and diesel's table! needs one (diesel print-schema refuses the whole schema)\n  hint: add a primary key to `{0}`, or leave it out with --except-tables or [print_schema.filter]",
                name.full_sql_name()
            );
        }
        has_key
    });
    let mut comments = match settings.with_docs {
        DocConfig::NoDocComments => Default::default(),
        _ => introspect::table_comments(conn, &names)?,
    };
    let mut columns = introspect::load_columns(conn, &names, settings.column_sorting, settings)?;
    let tables: Vec<TableData> = names
        .iter()
        .map(|name| TableData {
            name: name.clone(),
            primary_key: primary_keys[&name.sql_name]
                .iter()
                .map(|k| rust_name_for_sql_name(k, Some(&name.rust_name)))
                .collect(),
            column_data: columns.remove(&name.sql_name).unwrap_or_default(),
            comment: comments.remove(&name.sql_name).flatten(),
        })
        .collect();
    let all_keys = introspect::load_foreign_keys(conn, schema)?;
    let foreign_keys = introspect::joinable_foreign_keys(&all_keys, &names, &primary_keys);

    let custom_types = settings.generate_missing_sql_type_definitions.then(|| custom_types(&tables, settings));
    let text = schema_text(&Definitions { tables: &tables, foreign_keys: &foreign_keys, custom_types, settings });
    let text = rustfmt(&text, cwd);
    match &settings.patch_file {
        Some(patch) => apply_patch(&text, patch),
        None => Ok(text),
    }
}

/// Per table, per column: the column's type when diesel does not provide it (and no
/// `except_custom_type_definitions` regex matches it).
fn custom_types(tables: &[TableData], settings: &Settings) -> Vec<Vec<Option<ColumnType>>> {
    tables
        .iter()
        .map(|t| {
            t.column_data
                .iter()
                .map(|c| {
                    Some(&c.ty)
                        .filter(|ty| !DIESEL_PG_TYPES.contains(&ty.rust_name.as_str()))
                        .filter(|ty| {
                            !settings.except_custom_type_definitions.iter().any(|rx| rx.is_match(&ty.rust_name))
                        })
                        .cloned()
                })
                .collect()
        })
        .collect()
}

/// rustfmt over stdin, as diesel_cli runs it; without rustfmt the text stays as is (diesel's fallback).
fn rustfmt(text: &str, cwd: &Path) -> String {
    let formatted = Shell::new().and_then(|sh| {
        sh.change_dir(cwd);
        cmd!(sh, "rustfmt").stdin(text).quiet().ignore_status().output()
    });
    match formatted {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).expect("rustfmt writes UTF-8"),
        Ok(out) => {
            eprintln!(
                "warning: rustfmt failed, the schema is left unformatted: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            text.to_owned()
        }
        Err(e) => {
            eprintln!(
                "warning: cannot run rustfmt ({e}), the schema is left unformatted\n  hint: rustup component add rustfmt"
            );
            text.to_owned()
        }
    }
}

/// Applies the unified diff `patch_file` to `text`, as diesel_cli does (with diffy: exact
/// context, no fuzz), so the result is the same byte for byte.
fn apply_patch(text: &str, patch_file: &Path) -> Result<String> {
    let diff = match std::fs::read_to_string(patch_file) {
        Ok(diff) => diff,
        Err(e) => bail!(
            hint!("read the patch file {}: {e}", patch_file.display(); "fix print_schema.patch_file in diesel.toml or --patch-file")
        ),
    };
    let regenerate = "regenerate the patch against the current output (`cargo xtask schema generate --stdout`)";
    let patch = diffy::Patch::from_str(&diff).map_err(|e| {
        anyhow::Error::new(crate::error::Hinted::new(
            format!("the patch file {} is not a unified diff: {e}", patch_file.display()),
            regenerate,
        ))
    })?;
    diffy::apply(text, &patch).map_err(|e| {
        anyhow::Error::new(crate::error::Hinted::new(
            format!("the patch file {} does not apply to the generated schema: {e}", patch_file.display()),
            regenerate,
        ))
    })
}
