//! A database's schema as a comparable value: every object a migration can make (schemas,
//! tables and their columns, constraints, indexes, sequences, views, functions, triggers, enums,
//! domains, composite types, comments, grants, row-level security policies, extensions), each
//! under a key that names it (`index public.users_status_idx`) with its definition as Postgres
//! prints it (`pg_get_indexdef`, `pg_get_constraintdef`, ...). Two catalogs are compared key by
//! key: what one has and the other lacks, and what differs. Postgres's own catalogs and the
//! migration bookkeeping (`__diesel_schema_migrations`, `__railgun_migration_checksums`) are left
//! out, as are objects that belong to an extension. Privileges are compared as they act: none
//! recorded is the owner's defaults (`acldefault`), so a GRANT undone by its REVOKE is no change.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use diesel::sql_types::Text;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

/// Every object of a database by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog(pub BTreeMap<String, String>);

/// How one object differs between two catalogs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The second catalog has it, the first does not.
    Extra { object: String, definition: String },
    /// The first catalog has it, the second does not.
    Missing { object: String, definition: String },
    /// Both have it, defined differently.
    Changed { object: String, was: String, now: String },
}

impl Difference {
    pub fn object(&self) -> &str {
        match self {
            Difference::Extra { object, .. }
            | Difference::Missing { object, .. }
            | Difference::Changed { object, .. } => object,
        }
    }
}

impl Catalog {
    /// The catalog of the database `conn` is connected to (one query).
    pub fn read(conn: &mut PgConnection) -> Result<Catalog> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            key: String,
            #[diesel(sql_type = Text)]
            value: String,
        }
        let rows: Vec<Row> = diesel::sql_query(query()).load(conn).context("read the database's catalog")?;
        let mut map = BTreeMap::new();
        for row in rows {
            // Two objects with one key (overloads print their arguments, so none expected):
            // keep both definitions rather than lose one.
            map.entry(row.key)
                .and_modify(|v: &mut String| v.push_str(&format!("\n{}", row.value)))
                .or_insert(row.value);
        }
        Ok(Catalog(map))
    }

    /// What `after` has that this lacks, what it lacks that this has, and what differs, by key.
    pub fn diff(&self, after: &Catalog) -> Vec<Difference> {
        let mut out = Vec::new();
        for (key, was) in &self.0 {
            match after.0.get(key) {
                None => out.push(Difference::Missing { object: key.clone(), definition: was.clone() }),
                Some(now) if now != was => {
                    out.push(Difference::Changed { object: key.clone(), was: was.clone(), now: now.clone() })
                }
                Some(_) => {}
            }
        }
        for (key, now) in &after.0 {
            if !self.0.contains_key(key) {
                out.push(Difference::Extra { object: key.clone(), definition: now.clone() });
            }
        }
        out.sort_by(|a, b| a.object().cmp(b.object()));
        out
    }
}

/// The catalog query, with each privilege list written as [`ACL`] writes it.
fn query() -> String {
    let mut query = QUERY.to_string();
    for (acl, owner) in [
        ("nspacl", "nspowner"),
        ("relacl", "relowner"),
        ("coalesce(p.proacl, acldefault('f', p.proowner))", "p.proowner"),
    ] {
        let pattern = format!("{{acl({acl}, {owner})}}");
        query = query.replace(&pattern, &ACL.replace("$ACL", acl).replace("$OWNER", owner));
    }
    query
}

/// A privilege list as it acts, whoever owns the object: `owner:SELECT, public:USAGE, app:INSERT*`
/// (`*`: with grant option), in order; grantors left out. A database made by another role than
/// the one the migrations ran as compares equal when the privileges do.
const ACL: &str = "(SELECT coalesce(string_agg(who || ':' || e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END, ', ' ORDER BY who, e.privilege_type), '')
    FROM aclexplode($ACL) e,
    LATERAL (SELECT CASE WHEN e.grantee = $OWNER THEN 'owner' WHEN e.grantee = 0 THEN 'public'
                         ELSE quote_ident(pg_get_userbyid(e.grantee)) END AS who) w)";

/// The catalog as (key, value) rows. `rel` is every relation of the user's schemas but the
/// bookkeeping and extensions' own; each part below keys one kind of object.
const QUERY: &str = r#"
WITH ns AS (
    SELECT oid, nspname, nspowner, coalesce(nspacl, acldefault('n', nspowner)) AS nspacl FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%'
),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
rel AS (
    SELECT c.oid, c.relname, c.relkind, n.nspname, c.relowner,
           coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)) AS relacl,
           c.relrowsecurity, c.relforcerowsecurity,
           c.relpersistence, c.relispartition, c.relpartbound,
           quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
    FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
      AND c.relname NOT IN ('__diesel_schema_migrations', '__railgun_migration_checksums')
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
)
SELECT 'schema ' || quote_ident(nspname) AS key,
       {acl(nspacl, nspowner)} AS value
FROM ns WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass AND ext.objid = ns.oid)
UNION ALL
SELECT CASE relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table '
                    WHEN 'c' THEN 'type ' ELSE 'table ' END || qualified,
       concat_ws(' ',
           CASE WHEN relkind = 'p' THEN 'partitioned by ' || pg_get_partkeydef(oid) END,
           CASE WHEN relispartition THEN 'partition of '
               || (SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = rel.oid) || ' '
               || pg_get_expr(relpartbound, oid) END,
           CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(oid) END,
           CASE WHEN relrowsecurity THEN 'row level security' END,
           CASE WHEN relforcerowsecurity THEN 'forced' END,
           CASE WHEN relpersistence = 'u' THEN 'unlogged' END)
FROM rel WHERE relkind <> 'S'
UNION ALL
SELECT 'grants on ' || qualified, {acl(relacl, relowner)}
FROM rel WHERE relkind <> 'c'
UNION ALL
SELECT 'column ' || r.qualified || '.' || quote_ident(a.attname),
       concat_ws(' ',
           format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.attnotnull THEN 'not null' END,
           CASE a.attidentity WHEN 'a' THEN 'generated always as identity'
                              WHEN 'd' THEN 'generated by default as identity' END,
           CASE WHEN a.attgenerated = 's' THEN 'generated always as (' || pg_get_expr(d.adbin, d.adrelid) || ') stored'
                WHEN d.adbin IS NOT NULL THEN 'default ' || pg_get_expr(d.adbin, d.adrelid) END,
           CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                THEN 'collate ' || (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END,
           'position ' || row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum))
FROM rel r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE r.relkind <> 'S'
UNION ALL
SELECT 'constraint ' || r.qualified || '.' || quote_ident(c.conname), pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN rel r ON r.oid = c.conrelid
UNION ALL
SELECT 'index ' || quote_ident(r.nspname) || '.' || quote_ident(i.relname), pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN rel r ON r.oid = x.indrelid
UNION ALL
SELECT 'sequence ' || r.qualified,
       concat_ws(' ', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
                 'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, CASE WHEN s.seqcycle THEN 'cycle' END,
                 (SELECT 'owned by ' || o.refobjid::regclass::text || '.' || quote_ident(att.attname)
                  FROM pg_depend o JOIN pg_attribute att ON att.attrelid = o.refobjid AND att.attnum = o.refobjsubid
                  WHERE o.classid = 'pg_class'::regclass AND o.objid = r.oid AND o.deptype IN ('a', 'i')
                    AND o.refclassid = 'pg_class'::regclass LIMIT 1))
FROM pg_sequence s JOIN rel r ON r.oid = s.seqrelid
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate ' ELSE 'function ' END
           || quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       CASE WHEN p.prokind = 'a' THEN pg_get_function_result(p.oid) ELSE pg_get_functiondef(p.oid) END
           || ' grants ' || {acl(coalesce(p.proacl, acldefault('f', p.proowner)), p.proowner)}
FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
UNION ALL
SELECT 'trigger ' || r.qualified || '.' || quote_ident(t.tgname), pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL
SELECT 'enum ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
WHERE t.typtype = 'e' AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)
UNION ALL
SELECT 'domain ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       concat_ws(' ', format_type(t.typbasetype, t.typtypmod), CASE WHEN t.typnotnull THEN 'not null' END,
                 'default ' || t.typdefault,
                 (SELECT string_agg(quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid), ' ' ORDER BY c.conname)
                  FROM pg_constraint c WHERE c.contypid = t.oid))
FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
WHERE t.typtype = 'd' AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)
UNION ALL
SELECT 'policy ' || quote_ident(schemaname) || '.' || quote_ident(tablename) || '.' || quote_ident(policyname),
       concat_ws(' ', permissive, cmd, 'to', array_to_string(roles, ','), 'using', qual, 'with check', with_check)
FROM pg_policies WHERE schemaname IN (SELECT nspname FROM ns)
UNION ALL
SELECT 'extension ' || quote_ident(extname), (SELECT nspname FROM pg_namespace WHERE oid = extnamespace)
FROM pg_extension WHERE extname <> 'plpgsql'
UNION ALL
SELECT 'comment on ' || o.type || ' ' || o.identity, d.description
FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
WHERE (o.schema IN (SELECT nspname FROM ns) OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM ns)))
  AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = d.classoid AND ext.objid = d.objoid)
  AND o.identity NOT LIKE '%.\_\_diesel\_schema\_migrations%' AND o.identity NOT LIKE '%.\_\_railgun\_migration\_checksums%'
"#;
