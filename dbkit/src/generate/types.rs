//! Column types on both sides in one form: schema.rs's diesel names (`Int4`, `Integer`,
//! `Varchar`, `Mood`) and the catalog's type names (`int4`, `varchar`, `mood`) become the same
//! `PgType`, which compares, and prints as SQL.

use super::parse::{CustomType, Type};
use crate::schema::introspect::ColumnType;

/// A Postgres column type: `schema` is `None` for built-in (pg_catalog) and `public` types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub schema: Option<String>,
    /// The catalog's name of the element type (`int4`, `varchar`, `mood`).
    pub name: String,
    pub is_array: bool,
    pub max_length: Option<u64>,
}

/// diesel's names for built-in types, lowercased, and the catalog's names for them.
const DIESEL_NAMES: &[(&str, &str)] = &[
    ("smallint", "int2"),
    ("smallserial", "int2"),
    ("integer", "int4"),
    ("serial", "int4"),
    ("bigint", "int8"),
    ("bigserial", "int8"),
    ("float", "float4"),
    ("double", "float8"),
    ("decimal", "numeric"),
    ("binary", "bytea"),
    ("blob", "bytea"),
    ("pglsn", "pg_lsn"),
];

fn normal_schema(schema: Option<&str>) -> Option<String> {
    schema.filter(|s| !matches!(*s, "public" | "pg_catalog")).map(str::to_owned)
}

impl PgType {
    /// schema.rs's type: a `sql_types` struct by its `postgres_type`, else a diesel type name.
    pub fn from_schema_rs(ty: &Type, custom: &[CustomType]) -> PgType {
        let (schema, name) = match custom.iter().find(|c| c.rust_name == ty.name) {
            Some(c) => (normal_schema(c.schema.as_deref()), c.sql_name.clone()),
            None => {
                let lower = ty.name.to_lowercase();
                let name =
                    DIESEL_NAMES.iter().find(|(d, _)| *d == lower).map_or(lower.clone(), |(_, pg)| pg.to_string());
                (None, name)
            }
        };
        PgType { schema, name, is_array: ty.is_array, max_length: ty.max_length }
    }

    /// The database's type, as print-schema reads it.
    pub fn from_database(ty: &ColumnType) -> PgType {
        PgType {
            schema: normal_schema(ty.schema.as_deref()),
            name: ty.sql_name.clone(),
            is_array: ty.is_array,
            max_length: ty.max_length,
        }
    }

    /// The type in DDL: `integer`, `varchar(20)`, `"billing"."currency"[]`.
    pub fn sql(&self) -> String {
        let builtin = match self.name.as_str() {
            "int2" => Some("smallint"),
            "int4" => Some("integer"),
            "int8" => Some("bigint"),
            "float4" => Some("real"),
            "float8" => Some("double precision"),
            "bool" => Some("boolean"),
            "bpchar" if self.max_length.is_some() => Some("char"),
            _ => None,
        };
        let mut out = match (&self.schema, builtin) {
            (None, Some(name)) => name.to_owned(),
            (None, None) if is_plain(&self.name) => self.name.clone(),
            (None, None) => quote(&self.name),
            (Some(schema), _) => format!("{}.{}", quote(schema), quote(&self.name)),
        };
        if let Some(n) = self.max_length {
            out.push_str(&format!("({n})"));
        }
        if self.is_array {
            out.push_str("[]");
        }
        out
    }
}

/// Names that need no quotes as a type (`"char"` and custom mixed-case names do).
fn is_plain(name: &str) -> bool {
    name != "char"
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A quoted SQL identifier.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A quoted SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, is_array: bool, max_length: Option<u64>) -> Type {
        Type { name: name.into(), is_array, is_nullable: false, max_length }
    }

    #[test]
    fn diesel_names_meet_catalog_names() {
        let custom =
            [CustomType { rust_name: "Currency".into(), sql_name: "currency".into(), schema: Some("billing".into()) }];
        assert_eq!(PgType::from_schema_rs(&ty("Integer", false, None), &custom).name, "int4");
        assert_eq!(PgType::from_schema_rs(&ty("Int4", false, None), &custom).sql(), "integer");
        assert_eq!(PgType::from_schema_rs(&ty("Varchar", false, Some(20)), &custom).sql(), "varchar(20)");
        assert_eq!(PgType::from_schema_rs(&ty("Bpchar", false, Some(3)), &custom).sql(), "char(3)");
        assert_eq!(PgType::from_schema_rs(&ty("Currency", true, None), &custom).sql(), "\"billing\".\"currency\"[]");
        assert_eq!(PgType::from_schema_rs(&ty("Char", false, None), &custom).sql(), "\"char\"");
        assert_eq!(PgType::from_schema_rs(&ty("Timestamptz", false, None), &custom).sql(), "timestamptz");
    }
}
