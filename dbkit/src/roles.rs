//! `db roles`: the security checklist's two database users, made idempotently.

use anyhow::{Context as _, Result, bail};
use diesel::sql_types::{Array, Bool, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use crate::context::Context;
use crate::url::{database_name, redact};

/// The roles to make and the schema they work in.
#[derive(Debug, Clone)]
pub struct Options {
    /// The app's role: DML only.
    pub app_role: String,
    /// The migrations' role: DDL; it owns the schema's objects.
    pub migrator_role: String,
    /// The schema holding the app's tables.
    pub schema: String,
}

/// The app role's password: a setting, never a flag.
pub const APP_PASSWORD: &str = "RAILGUN_APP_DB_PASSWORD";
/// The migrator role's password: a setting, never a flag.
pub const MIGRATOR_PASSWORD: &str = "RAILGUN_MIGRATOR_DB_PASSWORD";
/// diesel's bookkeeping and the checksums beside it: the migrator's business, not the app's.
const MIGRATION_TABLES: [&str; 2] = ["__diesel_schema_migrations", crate::migration::checksum::TABLE];

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Creates (or updates) both roles on the database of `cx`, in one transaction, with their
/// passwords from [`APP_PASSWORD`] and [`MIGRATOR_PASSWORD`] (environment, else .env).
pub fn set_up(cx: &Context, options: &Options) -> Result<()> {
    for name in [&options.app_role, &options.migrator_role, &options.schema] {
        check_identifier(name)?;
    }
    if options.app_role == options.migrator_role {
        bail!(hint!("the app role and the migrator role must differ"; "pass different --app-role and --migrator-role"));
    }
    let app_password = password(cx, APP_PASSWORD)?;
    let migrator_password = password(cx, MIGRATOR_PASSWORD)?;
    let url = cx.database_url()?;
    let database = database_name(&url);
    let mut conn = crate::connect::establish(&url)?;
    let (app, migrator, schema) = (options.app_role.as_str(), options.migrator_role.as_str(), options.schema.as_str());
    conn.transaction(|conn| {
        ensure_role(conn, migrator, &migrator_password)?;
        ensure_role(conn, app, &app_password)?;
        // Non-superuser admins (managed Postgres) must be members to hand objects over.
        exec(conn, "GRANT %I TO CURRENT_USER", &[migrator])?;
        exec(conn, "GRANT CONNECT ON DATABASE %I TO %I, %I", &[&database, app, migrator])?;
        let moved = grant(conn, options)?;
        eprintln!(
            "roles ready on {}: {app} may read and write the rows of schema {schema}; {migrator} owns its objects and runs the DDL ({moved} handed over now)",
            redact(&url)
        );
        anyhow::Ok(())
    })
    .context("set up the roles (nothing was changed)")?;
    Ok(())
}

/// The schema's rights: the app's DML, the migrator's DDL and ownership (how many objects were
/// handed over), and the default privileges for what is created later.
fn grant(conn: &mut PgConnection, options: &Options) -> Result<usize> {
    let (app, migrator, schema) = (options.app_role.as_str(), options.migrator_role.as_str(), options.schema.as_str());
    exec(conn, "REVOKE CREATE ON SCHEMA %I FROM PUBLIC", &[schema])?;
    exec(conn, "REVOKE CREATE ON SCHEMA %I FROM %I", &[schema, app])?;
    exec(conn, "GRANT USAGE ON SCHEMA %I TO %I", &[schema, app])?;
    exec(conn, "GRANT USAGE, CREATE ON SCHEMA %I TO %I", &[schema, migrator])?;
    let moved = hand_over(conn, schema, migrator)?;
    exec(conn, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I", &[schema, app])?;
    exec(conn, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I", &[schema, app])?;
    for table in MIGRATION_TABLES {
        if table_exists(conn, schema, table)? {
            exec(conn, "REVOKE ALL ON %I.%I FROM %I", &[schema, table, app])?;
        }
    }
    // Tables the migrator (or this admin) creates later are the app's too.
    for owner in [migrator, "CURRENT_USER"] {
        let for_role = if owner == "CURRENT_USER" { "" } else { "FOR ROLE %I " };
        let mut args: Vec<&str> = if owner == "CURRENT_USER" { vec![] } else { vec![owner] };
        args.extend([schema, app]);
        exec(
            conn,
            &format!(
                "ALTER DEFAULT PRIVILEGES {for_role}IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I"
            ),
            &args,
        )?;
        exec(
            conn,
            &format!("ALTER DEFAULT PRIVILEGES {for_role}IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I"),
            &args,
        )?;
    }
    Ok(moved)
}

/// A role name or schema made only of lowercase letters, digits and `_`: no quoting surprises.
fn check_identifier(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!(
            hint!("`{name}` is not a plain identifier"; "use lowercase letters, digits and _ (at most 63), starting with a letter")
        );
    }
    Ok(())
}

fn password(cx: &Context, key: &str) -> Result<String> {
    match cx.setting(key)? {
        Some(password) if !password.is_empty() => Ok(password),
        _ => bail!(
            hint!("{key} is not set: the role's password comes from the environment, never the command line"; "export {key}=$(openssl rand -hex 24), or put it in .env / your secret store")
        ),
    }
}

/// Runs `template` after Postgres's own `format()` fills it: `%I` identifiers, `%L` literals.
fn exec(conn: &mut PgConnection, template: &str, args: &[&str]) -> Result<()> {
    let statement = diesel::sql_query("SELECT format($1, VARIADIC $2::text[]) AS value")
        .bind::<Text, _>(template)
        .bind::<Array<Text>, _>(args)
        .get_result::<Value>(conn)?
        .value;
    diesel::sql_query(&statement).execute(conn).with_context(|| template.replace("%L", "'****'"))?;
    Ok(())
}

/// Creates the role if missing; (re)sets its attributes and password either way.
fn ensure_role(conn: &mut PgConnection, role: &str, password: &str) -> Result<()> {
    let exists = diesel::select(
        diesel::dsl::sql::<Bool>("EXISTS (SELECT FROM pg_roles WHERE rolname = ").bind::<Text, _>(role).sql(")"),
    )
    .get_result::<bool>(conn)?;
    if !exists {
        exec(conn, "CREATE ROLE %I", &[role])?;
    }
    exec(
        conn,
        "ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L",
        &[role, &crate::secret::scram_verifier(role, password)?],
    )
}

fn table_exists(conn: &mut PgConnection, schema: &str, table: &str) -> Result<bool> {
    Ok(diesel::select(
        diesel::dsl::sql::<Bool>("to_regclass(format('%I.%I', ")
            .bind::<Text, _>(schema)
            .sql(", ")
            .bind::<Text, _>(table)
            .sql(")) IS NOT NULL"),
    )
    .get_result::<bool>(conn)?)
}

/// Gives the migrator the schema's tables, views, free-standing sequences and functions.
fn hand_over(conn: &mut PgConnection, schema: &str, migrator: &str) -> Result<usize> {
    let statements = diesel::sql_query(
        "SELECT format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                       WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                       n.nspname, c.relname, $2::text) AS value
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
            AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $2)
            AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                            AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e'))
         UNION ALL
         SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $2::text)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND p.prokind = 'f'
            AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = $2)
            AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                            AND d.objid = p.oid AND d.deptype = 'e')",
    )
    .bind::<Text, _>(schema)
    .bind::<Text, _>(migrator)
    .load::<Value>(conn)?;
    for Value { value } in &statements {
        diesel::sql_query(value).execute(conn).with_context(|| value.clone())?;
    }
    Ok(statements.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain() {
        for ok in ["railgun_app", "_x", "a1"] {
            assert!(check_identifier(ok).is_ok(), "{ok}");
        }
        for bad in ["", "App", "1a", "a-b", "a\"; DROP TABLE users; --", &"a".repeat(64)] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
