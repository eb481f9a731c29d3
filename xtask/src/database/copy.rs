//! `cargo xtask db copy`: move a database from one provider to another, verified table by table.

use std::path::PathBuf;

use anyhow::Result;

use super::backup::DumpArgs;
use crate::context::Context;
use crate::guard::GuardArgs;

/// Move a database from one provider to another, verified table by table
///
/// The guide's "Migration from Supabase" as one command:
///   1. back up --from (kept in --dir, verified like `db backup`),
///   2. restore it into --to in one transaction (after a safety backup of --to), as
///      `db restore` does: with no more rights than the data needs,
///   3. compare every table of the copy with the source: row count and a checksum of the
///      rows' content (order-independent, collation-independent); any difference fails,
///   4. apply the migrations on disk that --to still lacks.
///
/// Managed Postgres: when --from has Supabase's own schemas (auth, storage, realtime, ...; see
/// --keep-managed-schemas) they are left out, with the extensions living in or owning them,
/// event triggers and publications; ownership and grants are left out too (--no-owner
/// --no-privileges), so `supabase_admin` and friends need not exist on the new server. Your
/// extensions (e.g. uuid-ossp in the `extensions` schema) are kept: the new server must offer them.
/// Put the app in maintenance mode first: writes during the copy show up as differences.
///
/// Example:
///   cargo xtask db copy --from "$SUPABASE_URL" --to "postgres://app:pw@new-host:5432/app?sslmode=require"
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Copy {
    /// The database to copy (or RAILGUN_COPY_FROM, which keeps the password out of `ps`)
    #[arg(long, value_name = "URL", env = "RAILGUN_COPY_FROM", hide_env_values = true)]
    from: String,
    /// The database to copy into: its data is replaced (or RAILGUN_COPY_TO)
    #[arg(long, value_name = "URL", env = "RAILGUN_COPY_TO", hide_env_values = true)]
    to: String,
    /// Where the source's backup is kept (and the target's safety backup)
    #[arg(long, value_name = "DIR", default_value = "backups")]
    dir: PathBuf,
    /// Do not back up the target before replacing its data
    #[arg(long)]
    no_safety_backup: bool,
    /// An extension the source has that needs a superuser (untrusted: dblink, postgis, ...),
    /// created by the target's superuser for the load (repeatable)
    #[arg(long, value_name = "NAME")]
    allow_extension: Vec<String>,
    /// Also create the source's event triggers on the target (left out by default: they fire
    /// for every later DDL with the rights of whoever runs it); needs a superuser's --to
    #[arg(long)]
    with_event_triggers: bool,
    #[command(flatten)]
    dump: DumpArgs,
    #[command(flatten)]
    guard: GuardArgs,
}

impl Copy {
    pub fn run(self, cx: &Context) -> Result<()> {
        let (dump, guard) = (self.dump.options(), self.guard.guard());
        let dir = cx.user_path(&self.dir);
        let restore = dbkit::backup::restore::RestoreOptions {
            safety_dir: (!self.no_safety_backup).then(|| dir.clone()),
            load: dbkit::backup::load::LoadOptions {
                allowed_extensions: self.allow_extension,
                event_triggers: self.with_event_triggers,
                ..Default::default()
            },
        };
        let path = dbkit::backup::copy::copy(cx, &self.from, &self.to, &dir, &dump, &guard, &restore)?;
        println!("{}", dbkit::error::escaped(&path.display().to_string()));
        Ok(())
    }
}
