//! `cargo xtask db copy`: move a database from one provider to another, verified table by table.

use std::path::PathBuf;

use anyhow::Result;
use dbkit::backup::stream::StreamOptions;
use dbkit::backup::subset::Subset;

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
/// --mask: a copy safe for a laptop. The rows go from server to server, masked by the source
/// by the rules of railgun.toml's [mask] table; unmasked rows never touch this machine's disk
/// (no source backup is written). The schema comes from pg_dump (before and after the data),
/// the rows from `COPY (SELECT <masked columns> ...)`, all from one snapshot of the source, and
/// are loaded in one transaction as `db restore` loads: primary keys, unique indexes and foreign
/// keys are created after the rows, so each is checked on the masked data.
///   [mask]
///   "users.email" = "email"        # u<16 hex>@example.invalid, unique for distinct inputs
///   "users.name" = "name"          # made-up first and last names
///   "users.phone" = "phone"        # +1 555 and 7 digits
///   "users.bio" = "text"           # hex of the same length
///   "users.api_token" = "hash"     # 64 hex
///   "users.last_ip" = "null"
///   "users.country" = "keep"       # not personal: as it is
///   "users.plan" = { value = "free" }            # a constant
///   "shop.orders.note" = { sql = "left(note, 3)" }  # an expression over the row
/// Each rule but sql is a function of the value and RAILGUN_MASK_KEY (environment or .env;
/// made and saved in .env when missing, never printed): the same value masks the same in every
/// table and run, so joins and foreign keys on masked columns still match; NULL stays NULL.
/// Refused before any row moves: a column that looks personal (by name: email, phone, name,
/// address, city, zip, birth, ip, token, password, secret, ...; by type: inet) with no rule,
/// each named with a rule to add (--unmasked copies them as they are, and names them); a rule
/// for a column the source lacks; a rule that can give two rows one value in a unique index
/// (name, phone, text, a constant); a foreign key whose two sides are masked differently.
/// A text column whose name says nothing counts as personal when most of a sample of its values
/// (200 rows per table, read in the copy's snapshot) look like emails, phone numbers, IP
/// addresses or tokens (`"users.contact" = "email"   # its values look like emails`).
///
/// A source that is not on this machine (any host but localhost, a loopback address or a
/// socket): even without --mask, its columns that look personal and that [mask] does not
/// "keep" stop the copy before any row moves, each named with its rule; copy with --mask, or
/// pass --unmasked to bring them as they are (named on stderr).
///
/// --sample PERCENT, --where 'TABLE: CONDITION': a subset, streamed like --mask (with or
/// without it). Each table named by --where: the rows its condition picks. Else, with --sample,
/// each table a foreign key leaves or reaches takes about PERCENT % of its rows: when it has a
/// NOT NULL foreign key to a parent that does not reference it back and has at least
/// 100 x 100 / PERCENT rows (1000 at --sample 10), the rows whose parent row was chosen (the
/// orders of the sampled users; the parent with the most rows when several), else a PERCENT
/// sample (Bernoulli, the same rows for the same data). Every other table: all rows. Then every
/// row a chosen row references, followed to the parents until nothing new comes (cycles
/// included): every foreign key holds in the copy.
///
/// Example:
///   cargo xtask db copy --from "$SUPABASE_URL" --to "postgres://app:pw@new-host:5432/app?sslmode=require"
///   cargo xtask db copy --from "$PRODUCTION_URL" --to "$DATABASE_URL" --mask
///   cargo xtask db copy --from "$PRODUCTION_URL" --to "$DATABASE_URL" --mask --sample 10
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
    /// Mask the rows on the way by railgun.toml's [mask] rules (see above); no source backup is written
    #[arg(long)]
    mask: bool,
    /// Copy columns that look personal as they are (named on stderr): with --mask, those with no
    /// rule; without it, from a source not on this machine, those [mask] does not keep
    #[arg(long)]
    unmasked: bool,
    /// Copy about PERCENT % of each table that a foreign key leaves or reaches (a sample, or the
    /// rows of its parent's; see above), plus every row those reference, transitively; streamed
    /// like --mask
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    sample: Option<f64>,
    /// Copy only the rows of TABLE that CONDITION picks, plus every row they reference,
    /// transitively (repeatable; `schema.table` outside public); e.g. 'orders: created_at > now() - interval '30 days''
    #[arg(long = "where", value_name = "TABLE: CONDITION", value_parser = where_clause)]
    conditions: Vec<(String, String)>,
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
        let subset = Subset { sample: self.sample, conditions: self.conditions };
        if self.mask || !subset.is_whole() {
            let options = StreamOptions { mask: self.mask, unmasked: self.unmasked, subset };
            dbkit::backup::stream::copy_streamed(cx, &self.from, &self.to, &dump, &guard, &restore, &options)?;
            return Ok(());
        }
        let path = dbkit::backup::copy::copy(cx, &self.from, &self.to, &dir, &dump, &guard, &restore, self.unmasked)?;
        println!("{}", dbkit::error::escaped(&path.display().to_string()));
        Ok(())
    }
}

pub(crate) fn percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err("a percentage above 0 and at most 100".into()),
    }
}

fn where_clause(text: &str) -> Result<(String, String), String> {
    Subset::parse_where(text).map_err(|e| dbkit::error::describe(&e))
}
