//! `schema sync` (DEV ONLY): drop the app's objects, then run every migration, so the database
//! is exactly what the migrations make; and `schema drop`, the first half alone.

use anyhow::{Context as _, Result};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use crate::context::Context;
use crate::diesel_config::DieselConfig;
use crate::guard::Guard;
use crate::migration::Locked;
use crate::migration::source::{self, shown};

/// What `sync` and `drop` act on, and how they ask before they do.
pub struct Options {
    /// Schemas of the app besides `public` and diesel.toml's (a schema other than public is
    /// dropped whole).
    pub schemas: Vec<String>,
    pub guard: Guard,
}

/// Lists the app's objects (stderr), asks, drops them and applies every migration under the
/// migration lock, then rewrites the schema files.
pub fn sync(cx: &Context, options: &Options) -> Result<()> {
    let guard = &options.guard;
    let url = cx.database_url()?;
    let what = "drop the app's objects and re-run every migration";
    guard.check_target(cx, &url, what)?;
    let migrations = source::load(&cx.migration_dir()?)?;
    let mut conn = crate::connect::establish(&url)?;
    let objects = app_objects(&mut conn, &app_schemas(cx, &options.schemas)?)?;
    eprintln!("schema sync: on {}", crate::url::redact(&url));
    print_objects(&objects);
    eprintln!("then run all {} migrations in {}", migrations.len(), shown(&cx.migration_dir()?));
    guard.check(cx, &url, what)?;
    drop(conn);
    // Under the migration lock, so no runner applies anything between the drop and the run.
    let mut session = Locked::acquire(&url)?;
    drop_objects(&mut session.conn, &objects)?;
    session.ensure_table()?;
    let ran = crate::migration::apply_pending(&mut session, &migrations)?;
    drop(session);
    eprintln!("dropped {} objects, applied {ran} migrations", objects.len());
    crate::schema::regenerate(cx, &url)
}

/// Lists the app's objects (stderr), asks and drops them: `migration run` starts from nothing.
pub fn drop_all(cx: &Context, options: &Options) -> Result<()> {
    let guard = &options.guard;
    let url = cx.database_url()?;
    let what = "drop every table of the app";
    guard.check_target(cx, &url, what)?;
    let mut conn = crate::connect::establish(&url)?;
    let objects = app_objects(&mut conn, &app_schemas(cx, &options.schemas)?)?;
    eprintln!("schema drop: on {}", crate::url::redact(&url));
    print_objects(&objects);
    if objects.is_empty() {
        return Ok(());
    }
    guard.check(cx, &url, what)?;
    drop_objects(&mut conn, &objects)?;
    eprintln!("dropped {} objects; `cargo xtask migration run` builds the schema again", objects.len());
    Ok(())
}

/// `public`, the schema of each of diesel.toml's print_schema keys, and `extra`, without repeats.
pub fn app_schemas(cx: &Context, extra: &[String]) -> Result<Vec<String>> {
    let mut schemas = vec!["public".to_string()];
    schemas.extend(DieselConfig::load(cx)?.print_schema.0.into_values().filter_map(|key| key.schema));
    schemas.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    schemas.retain(|s| seen.insert(s.clone()));
    Ok(schemas)
}

/// Something of the app's in the database.
#[derive(QueryableByName, Debug)]
pub struct Object {
    /// `schema`, `table`, `view`, `materialized view`, `foreign table`, `sequence`, `function`,
    /// `procedure`, `aggregate` or `type`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Qualified and quoted, with argument types for routines: what DROP takes.
    #[diesel(sql_type = Text)]
    pub name: String,
}

/// What Postgres's catalogs say the app has in `schemas`, in dropping order. Objects that
/// belong to an extension are left alone, as are sequences and types a table owns.
pub fn app_objects(conn: &mut PgConnection, schemas: &[String]) -> Result<Vec<Object>> {
    let query = "
WITH app AS (
    SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY ($1)
), ext AS (
    SELECT objid, classid FROM pg_depend WHERE deptype = 'e'
)
SELECT kind, name FROM (
    SELECT 0 AS rank, 'schema' AS kind, quote_ident(nspname) AS name FROM app WHERE nspname <> 'public'
    UNION ALL
    SELECT CASE c.relkind WHEN 'v' THEN 1 WHEN 'm' THEN 2 WHEN 'f' THEN 3 WHEN 'S' THEN 5 ELSE 4 END,
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                          WHEN 'S' THEN 'sequence' ELSE 'table' END,
           quote_ident(app.nspname) || '.' || quote_ident(c.relname)
    FROM pg_class c JOIN app ON app.oid = c.relnamespace
    WHERE app.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition
      AND c.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_class'::regclass)
      AND NOT (c.relkind = 'S' AND EXISTS (
          SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
            AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT 6, CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
           quote_ident(app.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')'
    FROM pg_proc p JOIN app ON app.oid = p.pronamespace
    WHERE app.nspname = 'public' AND p.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_proc'::regclass)
    UNION ALL
    SELECT 7, 'type', quote_ident(app.nspname) || '.' || quote_ident(t.typname)
    FROM pg_type t JOIN app ON app.oid = t.typnamespace
    WHERE app.nspname = 'public' AND t.typtype IN ('e', 'd', 'c', 'r')
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND t.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_type'::regclass)
) objects
ORDER BY rank, name";
    diesel::sql_query(query)
        .bind::<Array<Text>, _>(schemas)
        .load(conn)
        .context("list the app's objects (pg_class, pg_proc, pg_type)")
}

/// Lists `objects` on stderr, one a line.
pub fn print_objects(objects: &[Object]) {
    if objects.is_empty() {
        eprintln!("  nothing to drop: the app's schemas are empty");
    }
    for object in objects {
        eprintln!("  drop {} {}", object.kind, object.name);
    }
}

/// Drops `objects` in one transaction. CASCADE takes what depends on them; IF EXISTS skips what
/// an earlier CASCADE (or a table's own sequence) already took.
pub fn drop_objects(conn: &mut PgConnection, objects: &[Object]) -> Result<()> {
    let statements: String = objects
        .iter()
        .map(|o| {
            let kind = match o.kind.as_str() {
                "function" | "procedure" => "ROUTINE".to_string(),
                other => other.to_uppercase(),
            };
            format!("DROP {kind} IF EXISTS {} CASCADE;\n", o.name)
        })
        .collect();
    conn.transaction(|conn| conn.batch_execute(&statements)).context("drop the app's objects")
}
