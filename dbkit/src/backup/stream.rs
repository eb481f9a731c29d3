//! A copy whose rows go from server to server and never touch this machine's disk: the schema
//! by pg_dump (`--section=pre-data`, `--section=post-data`, in memory), the rows by
//! `COPY (SELECT <masked columns> FROM ONLY table) TO STDOUT` on the source piped into
//! `COPY table FROM STDIN` on the target, all from one snapshot of the source (a REPEATABLE
//! READ READ ONLY transaction whose snapshot pg_dump shares), and loaded in the restore's one
//! transaction with the restore's rights ([`Load`]): tables first, then the rows, then what
//! pg_dump puts after the data (primary keys, unique indexes, foreign keys, triggers), so every
//! constraint is checked on the masked rows as it is created.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use url::Url;

use super::copy::{self as copy_mod, excluded_schemas};
use super::dump::DumpOptions;
use super::load::{Load, Part};
use super::mask::{self, ForeignKey, Plan, Rules, Table, Unique, ident, literal};
use super::pgtools::PgTools;
use super::progress::{Progress, Task, Total};
use super::restore::{self, RestoreOptions};
use super::sampled;
use super::session::{CopyOut, Session};
use super::subset::{self, Choice, Subset};
use crate::context::Context;
use crate::guard::Guard;
use crate::url::{database_name, redact};

/// How a streamed copy goes about it.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Mask by `[mask]`'s rules.
    pub mask: bool,
    /// Copy personal-data columns that have no rule as they are (named on stderr).
    pub unmasked: bool,
    /// Which rows (all by default).
    pub subset: Subset,
}

/// Rows are sent to the target in chunks of about this size.
const CHUNK: usize = 256 << 10;

/// Copies `from` into `to` as `copy` does, row by row from server to server: with `options.mask`,
/// every column masked by `[mask]`'s rules on the source server (refused before any row moves
/// when a column looks personal and has no rule: see [`mask::plan`]); with a subset, only the
/// rows [`subset::choose`] takes. Returns the rows copied.
pub fn copy_streamed(
    cx: &Context,
    from: &str,
    to: &str,
    dump: &DumpOptions,
    guard: &Guard,
    restore_options: &RestoreOptions,
    options: &StreamOptions,
) -> Result<u64> {
    let (from, to) = copy_mod::check_pair(from, to)?;
    let mut source = Source::open(&from, "railgun-copy-source")?;
    let prepared = prepare(cx, &mut source, &from, dump, options)?;
    super::load::check_extensions(&to, &prepared.extensions, &restore_options.load.allowed_extensions)?;
    let kind = prepared.kind;
    let what = format!("replace the data in database `{}` with {kind} of {}", database_name(&to), redact(&from));
    guard.check(cx, &to, &what)?;
    restore::announce_safety(restore::prepare(cx, &to, restore_options.safety_dir.as_deref())?.as_deref());

    eprintln!("copying {kind} of {} into {}", redact(&from), redact(&to));
    let started = Instant::now();
    let shown = Progress::new(Task::Copy, expected(&from, &prepared.excluded, &prepared.plan, &options.subset));
    let copied = load_into(&mut source, &to, &prepared, &restore_options.load, &shown)?;
    let rows: u64 = copied.values().sum();
    // A subset's tables each say how many rows they took: the rule chose them without counting.
    let each = match options.subset.is_whole() {
        true => String::new(),
        false => {
            let counts: Vec<String> = copied.iter().map(|(table, rows)| format!("{table} {rows}")).collect();
            crate::error::escaped(&format!(" ({})", counts.join(", "))).into_owned()
        }
    };
    eprintln!(
        "copied {kind}: {} tables, {rows} rows{each} in {:.1}s; each table's count matches what the source sent",
        prepared.plan.tables.len(),
        started.elapsed().as_secs_f64()
    );
    let ran = crate::migration::run_pending(cx, &to)?;
    if ran > 0 {
        eprintln!("applied {ran} pending migration(s) on the copy");
    }
    Ok(rows)
}

/// What a streamed copy (or a masked backup) will move, decided before any row moves.
pub(crate) struct Prepared {
    pub plan: Plan,
    /// pg_dump's `--section=pre-data` and `post-data` of the snapshot, in memory.
    pub pre: Vec<u8>,
    pub post: Vec<u8>,
    /// The extensions `pre` creates.
    pub extensions: Vec<String>,
    pub choices: BTreeMap<String, Choice>,
    pub excluded: Vec<String>,
    /// `a masked copy`, `a masked subset`, `a subset`, `a copy`.
    pub kind: &'static str,
}

/// Reads the source's catalog (and a sample of its text columns' values), plans the columns'
/// expressions, refuses what would leak (see [`mask::plan`]; a copy without `--mask` from a
/// source not on this machine: [`mask::check_unmasked_copy`]), dumps the schema in the source's
/// snapshot, chooses the subset's rows and gives the source the masking key.
pub(crate) fn prepare(
    cx: &Context,
    source: &mut Source,
    from: &Url,
    dump: &DumpOptions,
    options: &StreamOptions,
) -> Result<Prepared> {
    let remote = !crate::url::is_local(from);
    let rules = if options.mask || remote { Rules::load(cx)? } else { Rules::default() };
    let tools = PgTools::find(&cx.sh, &cx.project, from)?;
    let excluded = excluded_schemas(dump);
    let (mut tables, foreign_keys, uniques) = source.catalog(&excluded)?;
    if options.mask || remote {
        source.sample_values(&mut tables, &rules)?;
    }
    let plan = if options.mask {
        let plan = mask::plan(&rules, tables, &foreign_keys, &uniques, options.unmasked)?;
        announce_unmasked(&plan.unmasked);
        for note in &plan.notes {
            eprintln!("{}", crate::error::escaped(note));
        }
        plan
    } else {
        if remote {
            announce_unmasked(&mask::check_unmasked_copy(&rules, &tables, options.unmasked)?);
        }
        mask::plan(&Rules::default(), tables, &foreign_keys, &uniques, true)?
    };
    let mut args = dump.pg_dump_args(from)?;
    if args.iter().any(|a| a == "--schema=*") && options.mask {
        bail!(hint!("a masked copy of a database with a provider's schemas (auth, storage, ...) is not supported yet";
            "pass --keep-managed-schemas (their personal columns then need rules too), or copy without --mask"));
    }
    args.push(format!("--snapshot={}", source.snapshot));
    let pre = pg_dump(cx, &tools, from, &args, "pre-data")?;
    let post = pg_dump(cx, &tools, from, &args, "post-data")?;
    eprintln!("schema from pg_dump, in memory: {} before the rows, {} after", kib(pre.len()), kib(post.len()));
    let mut scanned = super::statement::Statements::new();
    scanned.feed(&pre, &mut |_| {}).map_err(super::dumpfile::forbidden)?;
    let _ = scanned.finish(&mut |_| {});
    let extensions = scanned.extensions().to_vec();
    let choices = match options.subset.is_whole() {
        true => BTreeMap::new(),
        false => {
            let tables: Vec<Table> = plan.tables.iter().map(|(table, _)| table.clone()).collect();
            subset::choose(&mut source.session, &options.subset, &tables, &foreign_keys)?
        }
    };
    if options.mask {
        let key = mask::key(cx)?;
        source.set_key(&key)?;
    }
    let kind = match (options.mask, options.subset.is_whole()) {
        (true, true) => "a masked copy",
        (true, false) => "a masked subset",
        (false, false) => "a subset",
        (false, true) => "a copy",
    };
    Ok(Prepared { plan, pre, post, extensions, choices, excluded, kind })
}

/// A copy without `--mask` (pg_dump's backup restored) from a source not on this machine: refused
/// before any row moves when a column looks personal (by name, type or sampled values) and
/// `[mask]` does not keep it, unless `unmasked` (then they are named). See [`mask::check_unmasked_copy`].
pub fn check_remote_source(cx: &Context, from: &Url, dump: &DumpOptions, unmasked: bool) -> Result<()> {
    let rules = Rules::load(cx)?;
    let mut source = Source::open(from, "railgun-copy-source")?;
    let (mut tables, _, _) = source.catalog(&excluded_schemas(dump))?;
    source.sample_values(&mut tables, &rules)?;
    announce_unmasked(&mask::check_unmasked_copy(&rules, &tables, unmasked)?);
    Ok(())
}

/// Names the personal-data columns copied as they are because `--unmasked` said so.
fn announce_unmasked(columns: &[String]) {
    if !columns.is_empty() {
        eprintln!(
            "copying {} personal-data column(s) unmasked, as --unmasked asked: {}",
            columns.len(),
            crate::error::escaped(&columns.join(", "))
        );
    }
}

/// Loads what `prepared` says into `to` in one transaction (the restore's [`Load`]): the
/// schema, the rows from the source, the sequences, then what comes after the rows. Each
/// table's rows (`schema.table`), as many as the source sent.
pub(crate) fn load_into(
    source: &mut Source,
    to: &Url,
    prepared: &Prepared,
    options: &super::load::LoadOptions,
    shown: &Progress,
) -> Result<BTreeMap<String, u64>> {
    let load_key = crate::secret::random_hex(16)?;
    let mut load = Load::start(to, &load_key, options)?;
    let schema = Progress::hidden();
    load.feed_part(prepared.post.as_slice(), Part::CleanOnly, &schema)?;
    load.feed_part(prepared.pre.as_slice(), Part::Whole, &schema)?;
    shown.stage("copying the rows");
    let rows = move_rows(source, &mut load, &prepared.plan, &prepared.choices, shown)?;
    for (sequence, value, called) in source.sequences(&prepared.excluded)? {
        load.exec(&format!("SELECT pg_catalog.setval({}, {value}, {called})", literal(&sequence)))?;
    }
    shown.stage("building indexes and constraints");
    load.feed_part(prepared.post.as_slice(), Part::Whole, &schema)?;
    shown.stage("committing");
    load.finish()?;
    shown.done();
    Ok(rows)
}

/// What a copy comes to: its tables, and for a whole copy their size on the source's disk.
fn expected(from: &Url, excluded: &[String], plan: &Plan, subset: &Subset) -> Total {
    let whole = if subset.is_whole() { Total::of_database(from, excluded) } else { Total::default() };
    Total { tables: Some(plan.tables.len() as u64), ..whole }
}

/// Each table's rows, masked by the source, into the load: read on a thread of its own while the
/// target takes the previous chunk, shown to `shown`. Fails on a table whose counts differ.
/// Each table's rows.
fn move_rows(
    source: &mut Source,
    load: &mut Load,
    plan: &Plan,
    choices: &BTreeMap<String, Choice>,
    shown: &Progress,
) -> Result<BTreeMap<String, u64>> {
    let mut moved = BTreeMap::new();
    for (table, expressions) in &plan.tables {
        let name = format!("{}.{}", ident(&table.schema), ident(&table.name));
        let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
        let Some(select) = select_rows(table, expressions, choices) else { continue };
        let insert = format!("COPY {name} ({}) FROM STDIN", columns.join(", "));
        let source = &mut *source;
        let (sent, taken) = std::thread::scope(|scope| -> Result<(u64, u64)> {
            let (chunks, received) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(4);
            let reader = scope.spawn(move || -> Result<u64> {
                source.session.start_copy_out(&select).map_err(|e| anyhow!(e)).context("select the masked rows")?;
                loop {
                    let mut chunk = Vec::with_capacity(CHUNK + (64 << 10));
                    let state = source.session.copy_out(&mut chunk, CHUNK).map_err(|e| anyhow!(e));
                    let state = match state {
                        Ok(state) => state,
                        Err(e) => {
                            let _ = chunks.send(Err(anyhow!("{e}")));
                            return Err(e.context("read the masked rows"));
                        }
                    };
                    if !chunk.is_empty() && chunks.send(Ok(chunk)).is_err() {
                        bail!("the target stopped taking rows");
                    }
                    if let CopyOut::Done(rows) = state {
                        return Ok(rows);
                    }
                }
            });
            let taken = load.copy_in(&insert, || {
                let next = received.recv().ok().transpose();
                if let Ok(Some(chunk)) = &next {
                    shown.add(chunk.len() as u64);
                }
                next
            });
            drop(received);
            let sent = reader.join().map_err(|_| anyhow!("the source's reader panicked"))?;
            // The target's refusal first: the reader then only saw that nobody took its rows.
            let taken = taken?;
            Ok((sent?, taken))
        })
        .with_context(|| format!("copy {}", crate::error::escaped(&format!("{}.{}", table.schema, table.name))))?;
        if sent != taken {
            bail!("{}.{}: the source sent {sent} rows, the target took {taken}", table.schema, table.name);
        }
        moved.insert(format!("{}.{}", table.schema, table.name), taken);
        shown.table_done();
    }
    Ok(moved)
}

/// `COPY (SELECT <the plan's expressions> FROM ONLY table <the subset's rows>) TO STDOUT`;
/// none for a table without columns.
pub(crate) fn select_rows(table: &Table, expressions: &[String], choices: &BTreeMap<String, Choice>) -> Option<String> {
    if table.columns.is_empty() {
        return None;
    }
    let name = format!("{}.{}", ident(&table.schema), ident(&table.name));
    let choice = choices.get(&format!("{}.{}", table.schema, table.name)).unwrap_or(&Choice::All);
    Some(format!("COPY ({}) TO STDOUT", choice.select(&expressions.join(", "), &name)))
}

/// pg_dump's `section` of the source (schema only), in memory.
fn pg_dump(cx: &Context, tools: &PgTools, url: &Url, args: &[String], section: &str) -> Result<Vec<u8>> {
    let mut args = args.to_vec();
    args.push(format!("--section={section}"));
    tools.pg_dump_output(&cx.sh, url, &args, &format!("--section={section}; nothing was copied"))
}

/// The source's session: one REPEATABLE READ READ ONLY transaction, its snapshot exported for
/// pg_dump (`--snapshot=`), so that what this session reads is what pg_dump dumps.
pub(crate) struct Source {
    pub(crate) session: Session,
    pub(crate) snapshot: String,
}

impl Source {
    /// Opens the session as `application_name` `app` and begins the read-only transaction,
    /// checked: `transaction_read_only` is on.
    pub(crate) fn open(url: &Url, app: &str) -> Result<Source> {
        let mut named = url.clone();
        named.query_pairs_mut().append_pair("application_name", app);
        let mut session = Session::connect(&named).context("connect to the source")?;
        // The rows' text as pg_dump writes it, whatever the server's settings; row security
        // off: a table the role may read only in part fails instead of copying a part.
        for sql in [
            "SET client_encoding = 'UTF8'",
            "SET datestyle = 'ISO'",
            "SET intervalstyle = 'postgres'",
            "SET extra_float_digits = 3",
            "SET row_security = off",
            // Ended within a second of our going, even while waiting for a lock (Postgres 14+).
            "SELECT set_config('client_connection_check_interval', '1000', false) \
             WHERE current_setting('server_version_num')::int >= 140000",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        ] {
            session
                .exec(sql.as_bytes())
                .map_err(|e| anyhow!(e))
                .with_context(|| format!("prepare the source: {sql}"))?;
        }
        let read_only = session.query_column("SHOW transaction_read_only").map_err(|e| anyhow!(e));
        if read_only.context("ask the source whether the transaction is read-only")?.first().map(String::as_str)
            != Some("on")
        {
            bail!(
                hint!("the source's transaction is not read-only (transaction_read_only is not on); nothing was read";
                "the source (or a pooler in front of it) ignored BEGIN ... READ ONLY: connect to the server directly")
            );
        }
        let snapshot = session
            .query_column("SELECT pg_export_snapshot()")
            .map_err(|e| anyhow!(e))
            .context("export the source's snapshot")?
            .pop()
            .context("the source exported no snapshot")?;
        Ok(Source { session, snapshot })
    }

    /// The key, for this transaction only, as a parameter: never in a statement's text.
    fn set_key(&mut self, key: &str) -> Result<()> {
        self.session
            .exec_with(&format!("SELECT set_config('{}', $1, true)", mask::KEY_GUC), &[key])
            .map_err(|e| anyhow!(e))
            .context("give the source the masking key")
    }

    pub(crate) fn json<T: DeserializeOwned>(&mut self, sql: &str, what: &str) -> Result<T> {
        let text = self
            .session
            .query_column(&format!("SELECT coalesce(json_agg(x), '[]')::text FROM ({sql}) x"))
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("list the source's {what}"))?
            .pop()
            .unwrap_or_default();
        serde_json::from_str(&text).with_context(|| format!("read the source's {what}"))
    }

    /// The tables whose rows pg_dump would copy (ordinary tables outside `excluded` and
    /// extensions; a partitioned table's rows are its partitions'), their foreign keys and
    /// unique indexes.
    pub(crate) fn catalog(&mut self, excluded: &[String]) -> Result<(Vec<Table>, Vec<ForeignKey>, Vec<Unique>)> {
        let ours = own_relations(excluded);
        let tables = self.json(
            &format!(
                "SELECT n.nspname AS schema, c.relname AS name,
                        (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', t.typname) ORDER BY a.attnum), '[]')
                         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND {ours}
                 ORDER BY 1, 2"
            ),
            "tables",
        )?;
        let columns = |rel: &str, keys: &str| {
            format!(
                "(SELECT json_agg(a.attname ORDER BY k.i) FROM unnest({keys}) WITH ORDINALITY k(num, i)
                  JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num)"
            )
        };
        let foreign_keys = self.json(
            &format!(
                "SELECT con.conname AS name,
                        json_build_array(n.nspname, c.relname) AS child, {} AS child_columns,
                        json_build_array(pn.nspname, p.relname) AS parent, {} AS parent_columns,
                        (SELECT bool_and(a.attnotnull) FROM unnest(con.conkey) k(num)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num) AS required
                 FROM pg_constraint con
                 JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
                 WHERE con.contype = 'f' AND {ours}",
                columns("con.conrelid", "con.conkey"),
                columns("con.confrelid", "con.confkey")
            ),
            "foreign keys",
        )?;
        // An index's columns, those its expressions use included: what it depends on.
        let uniques = self.json(
            &format!(
                "SELECT i.relname AS name, json_build_array(n.nspname, c.relname) AS table,
                        (SELECT coalesce(json_agg(DISTINCT a.attname), '[]') FROM pg_depend d
                         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = x.indexrelid
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid > 0) AS columns
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE x.indisunique AND {ours}"
            ),
            "unique indexes",
        )?;
        Ok((tables, foreign_keys, uniques))
    }

    /// Marks the text columns that have no rule and whose names say nothing, but whose values
    /// (the first [`sampled::SAMPLE`] rows of each table, in the snapshot) mostly look personal.
    pub(crate) fn sample_values(&mut self, tables: &mut [Table], rules: &Rules) -> Result<()> {
        for table in tables.iter_mut() {
            let (schema, name) = (table.schema.clone(), table.name.clone());
            let candidates: Vec<usize> = (0..table.columns.len())
                .filter(|&i| {
                    let column = &table.columns[i];
                    sampled::is_text_type(&column.type_name)
                        && rules.get(&schema, &name, &column.name).is_none()
                        && mask::personal(&column.name, &column.type_name).is_none()
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let list: Vec<String> = candidates.iter().map(|&i| ident(&table.columns[i].name)).collect();
            let sql = format!(
                "SELECT coalesce(json_agg(json_build_array({})), '[]')::text FROM (SELECT * FROM ONLY {}.{} LIMIT {}) x",
                list.iter().map(|c| format!("x.{c}::text")).collect::<Vec<_>>().join(", "),
                ident(&schema),
                ident(&name),
                sampled::SAMPLE
            );
            let text = self
                .session
                .query_column(&sql)
                .map_err(|e| anyhow!(e))
                .with_context(|| {
                    format!("sample the values of {}", crate::error::escaped(&format!("{schema}.{name}")))
                })?
                .pop()
                .unwrap_or_default();
            let rows: Vec<Vec<Option<String>>> = serde_json::from_str(&text).context("read the sampled values")?;
            for (at, &i) in candidates.iter().enumerate() {
                let values = rows.iter().filter_map(|row| row.get(at).and_then(|v| v.as_deref()));
                table.columns[i].looks_like = sampled::classify(values);
            }
        }
        Ok(())
    }

    /// Each sequence's state, as pg_dump's data section sets it: (name, last_value, is_called).
    pub(crate) fn sequences(&mut self, excluded: &[String]) -> Result<Vec<(String, i64, bool)>> {
        #[derive(serde::Deserialize)]
        struct Sequence {
            name: String,
        }
        let sequences: Vec<Sequence> = self.json(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) AS name
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'S' AND {}",
                own_relations(excluded)
            ),
            "sequences",
        )?;
        let mut states = Vec::new();
        for sequence in sequences {
            let state = self
                .session
                .query_column(&format!("SELECT last_value || ' ' || is_called FROM {}", sequence.name))
                .map_err(|e| anyhow!(e))
                .with_context(|| format!("read sequence {}", crate::error::escaped(&sequence.name)))?
                .pop()
                .unwrap_or_default();
            let (value, called) = state.split_once(' ').context("a sequence's state")?;
            states.push((sequence.name, value.parse().context("a sequence's value")?, called == "true"));
        }
        Ok(states)
    }
}

/// The condition on `c` (a relation) and `n` (its schema) for relations pg_dump copies: outside
/// the system, the `excluded` schema patterns and extensions.
pub(super) fn own_relations(excluded: &[String]) -> String {
    let patterns = excluded.iter().map(|p| literal(p)).collect::<Vec<_>>().join(", ");
    format!(
        "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
         AND NOT (n.nspname ~ ANY (ARRAY[{patterns}]::text[]))
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                         AND d.objid = c.oid AND d.deptype = 'e')"
    )
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
