//! `db audit`: the guide's security checklist, checked against a live database.

use anyhow::Result;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use url::Url;

use crate::checks::{Checks, Outcome, fail};
use crate::url::{is_local, sslmode};

/// Whose rights and which tables the audit judges.
#[derive(Debug, Clone)]
pub struct Options {
    /// The app's least-privilege role.
    pub app_role: String,
    /// The schema holding the app's tables.
    pub schema: String,
}

/// Runs every check over `conn`, the connection `url` made: ssl, superuser, app role, rls,
/// secrets.
pub fn audit(conn: &mut PgConnection, url: &Url, options: &Options) -> Result<Checks> {
    let mut checks = Checks::default();
    checks.push("ssl", ssl(conn, url)?);
    checks.push("superuser", superuser_use(conn)?);
    checks.push("app role", app_role(conn, &options.app_role, &options.schema)?);
    checks.push("rls", row_level_security(conn, &options.schema, &options.app_role)?);
    checks.push("secrets", plaintext_secrets(conn, &options.schema)?);
    Ok(checks)
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct RoleInfo {
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    powerful: bool,
    #[diesel(sql_type = Nullable<Text>)]
    owns: Option<String>,
}

/// Column names that hold a secret...
const SECRET_NAMES: &str = "(password|passwd|passphrase|token|secret|api_?key|private_?key)";
/// ...unless the name says it is a hash, ciphertext, or about the secret rather than the secret.
const SAFE_NAMES: &str = "(hash|digest|encrypted|cipher|_enc$|prefix|_at$|_id$|_ref$|expir|type|kind|count)";

fn names(conn: &mut PgConnection, query: &str, binds: &[&str]) -> Result<Vec<String>> {
    let rows = match binds {
        [] => diesel::sql_query(query).load::<Name>(conn)?,
        [a] => diesel::sql_query(query).bind::<Text, _>(*a).load::<Name>(conn)?,
        [a, b, ..] => diesel::sql_query(query).bind::<Text, _>(*a).bind::<Text, _>(*b).load::<Name>(conn)?,
    };
    Ok(rows.into_iter().map(|r| r.name).collect())
}

fn ssl(conn: &mut PgConnection, url: &Url) -> Result<Outcome> {
    let fix = "enable SSL enforcement (Supabase: Project Settings → Database → SSL; self-hosted: ssl = on and only hostssl lines in pg_hba.conf), and add ?sslmode=require to DATABASE_URL";
    let server_ssl = names(conn, "SELECT current_setting('ssl') AS name", &[])?;
    if server_ssl.first().map(String::as_str) != Some("on") {
        return Ok(fail("the server has ssl = off: connections travel in plain text", fix));
    }
    // Readable by superusers only; elsewhere this connection's own encryption must tell.
    let plain_rules = diesel::sql_query(
        "SELECT format('line %s: %s %s', line_number, type, coalesce(address, 'all')) AS name FROM pg_hba_file_rules
          WHERE error IS NULL AND type IN ('host', 'hostnossl')
            AND coalesce(address, '') NOT IN ('127.0.0.1', '::1', 'samehost')",
    )
    .load::<Name>(conn);
    if let Ok(rules) = plain_rules {
        if !rules.is_empty() {
            let lines: Vec<String> = rules.into_iter().map(|r| r.name).collect();
            return Ok(fail(format!("pg_hba.conf accepts unencrypted connections ({})", lines.join("; ")), fix));
        }
        return Ok(Outcome::Pass("ssl = on and pg_hba.conf accepts remote connections over SSL only".into()));
    }
    let encrypted = diesel::select(diesel::dsl::sql::<Bool>(
        "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
    ))
    .get_result::<bool>(conn)?;
    let mode = sslmode(url).unwrap_or_default();
    let required = matches!(mode.as_str(), "require" | "verify-ca" | "verify-full");
    Ok(match (encrypted, required || is_local(url)) {
        (true, true) => Outcome::Pass(format!("ssl = on, this connection is encrypted (sslmode={mode})")),
        (true, false) => fail(format!("encrypted now, but sslmode={mode} lets a client fall back to plain text"), fix),
        (false, _) => fail("this connection is not encrypted", fix),
    })
}

fn superuser_use(conn: &mut PgConnection) -> Result<Outcome> {
    let me = names(
        conn,
        "SELECT format('%s%s', current_user, CASE WHEN rolsuper THEN ' superuser' ELSE '' END) AS name FROM pg_roles WHERE rolname = current_user",
        &[],
    )?;
    let me = me.into_iter().next().unwrap_or_default();
    Ok(match me.strip_suffix(" superuser") {
        Some(user) => fail(
            format!(
                "DATABASE_URL connects as superuser `{user}` (service_role-style): whoever holds it can do anything"
            ),
            "give the app the least-privilege role (`cargo xtask db roles`, then DATABASE_URL=postgres://railgun_app:...), and keep the superuser for admin work, server-side only",
        ),
        None => Outcome::Pass(format!("DATABASE_URL connects as `{me}`, not a superuser")),
    })
}

fn app_role(conn: &mut PgConnection, role: &str, schema: &str) -> Result<Outcome> {
    let info = diesel::sql_query(
        "SELECT r.rolsuper AS superuser, (r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls OR r.rolreplication) AS powerful,
                (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND n.nspname = $2 AND c.relkind IN ('r', 'p', 'v', 'm')) AS owns
           FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind::<Text, _>(role)
    .bind::<Text, _>(schema)
    .load::<RoleInfo>(conn)?;
    let fix = format!("cargo xtask db roles --app-role {role} (DML only; the migrator role owns the tables)");
    let Some(info) = info.into_iter().next() else {
        return Ok(fail(format!("there is no role `{role}`: the app must be using a more powerful one"), fix));
    };
    let reached = reached_through_membership(conn, role, schema)?;
    Ok(if info.superuser {
        fail(format!("`{role}` is a superuser"), format!("ALTER ROLE {role} NOSUPERUSER; then {fix}"))
    } else if info.powerful {
        fail(format!("`{role}` may create roles or databases, bypass RLS or replicate"), fix)
    } else if let Some(first) = reached.first() {
        let all: Vec<String> = reached.iter().map(|r| format!("{} ({})", r.what, r.path)).collect();
        fail(
            format!(
                "`{role}` can take on the rights of {} through role membership (SET ROLE, or inherited)",
                all.join("; ")
            ),
            format!("REVOKE {} FROM {role}; (the app role should be a member of no role); then {fix}", first.granted),
        )
    } else if let Some(owned) = info.owns {
        fail(format!("`{role}` owns tables and so may alter or drop them: {owned}"), fix)
    } else {
        Outcome::Pass(format!("`{role}` is not a superuser, owns no table and can become no role that is or does"))
    })
}

/// A role that `role` can become through a chain of memberships and that is dangerous.
#[derive(QueryableByName)]
struct Reached {
    /// `app > admins > postgres`
    #[diesel(sql_type = Text)]
    path: String,
    /// The role granted to `role` itself, where the chain starts: what to revoke.
    #[diesel(sql_type = Text)]
    granted: String,
    /// `superuser postgres`, `pg_read_server_files`, `owner of the tables a, b`
    #[diesel(sql_type = Text)]
    what: String,
}

/// The roles `role` is a member of, directly or through any chain of pg_auth_members, that are
/// superusers, hand out the server's files or programs (pg_read_server_files,
/// pg_write_server_files, pg_execute_server_program), or own tables in `schema`: a member can
/// `SET ROLE` to them (or inherits their rights), so it has what they have. Every membership
/// counts, whatever its INHERIT and SET options: an audit errs on the side of failing.
fn reached_through_membership(conn: &mut PgConnection, role: &str, schema: &str) -> Result<Vec<Reached>> {
    let rows = diesel::sql_query(
        "WITH RECURSIVE reach(oid, path, granted) AS (
             SELECT g.oid, ARRAY[r.rolname::text, g.rolname::text], g.rolname::text
               FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid
              WHERE r.rolname = $1
           UNION ALL
             SELECT g.oid, reach.path || g.rolname::text, reach.granted
               FROM reach JOIN pg_auth_members m ON m.member = reach.oid JOIN pg_roles g ON g.oid = m.roleid
              WHERE g.rolname::text <> ALL (reach.path)
         ), dangerous AS (
             SELECT DISTINCT ON (g.oid) array_to_string(reach.path, ' > ') AS path, reach.granted,
                    CASE WHEN g.rolsuper THEN format('superuser %s', g.rolname)
                         WHEN g.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
                              THEN g.rolname::text
                         ELSE format('%s, owner of the tables %s', g.rolname, (
                              SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
                                JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE c.relowner = g.oid AND n.nspname = $2 AND c.relkind IN ('r', 'p', 'v', 'm')))
                    END AS what
               FROM reach JOIN pg_roles g ON g.oid = reach.oid
              WHERE g.rolsuper
                 OR g.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
                 OR EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.relowner = g.oid AND n.nspname = $2 AND c.relkind IN ('r', 'p', 'v', 'm'))
              ORDER BY g.oid, cardinality(reach.path)
         )
         SELECT path, granted, what FROM dangerous ORDER BY path",
    )
    .bind::<Text, _>(role)
    .bind::<Text, _>(schema)
    .load(conn)?;
    Ok(rows)
}

fn row_level_security(conn: &mut PgConnection, schema: &str, app_role: &str) -> Result<Outcome> {
    let open = names(
        conn,
        "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
            AND c.relname NOT IN ('__diesel_schema_migrations', '__railgun_migration_checksums') ORDER BY 1",
        &[schema],
    )?;
    Ok(if open.is_empty() {
        Outcome::Pass("every table has row level security on".into())
    } else {
        let first = &open[0];
        fail(
            format!("{} table(s) without row level security: {}", open.len(), open.join(", ")),
            format!(
                "ALTER TABLE {first} ENABLE ROW LEVEL SECURITY; CREATE POLICY {first}_app ON {first} TO {app_role} USING (true); (a basic policy first, tighter ones later)"
            ),
        )
    })
}

fn plaintext_secrets(conn: &mut PgConnection, schema: &str) -> Result<Outcome> {
    let columns = names(
        conn,
        &format!(
            "SELECT format('%s.%s', table_name, column_name) AS name FROM information_schema.columns
              WHERE table_schema = $1 AND column_name ~* '{SECRET_NAMES}' AND column_name !~* '{SAFE_NAMES}'
              ORDER BY 1"
        ),
        &[schema],
    )?;
    Ok(if columns.is_empty() {
        Outcome::Pass("no column looks like a plaintext password, token or secret".into())
    } else {
        fail(
            format!("column(s) that look like plaintext secrets: {}", columns.join(", ")),
            "store an argon2 hash instead (e.g. password_hash, token_hash), or encrypt client-side; never the secret itself",
        )
    })
}
