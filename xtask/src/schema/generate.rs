//! `cargo xtask schema generate`: the schema files from the live database, byte-identical to
//! what `diesel print-schema` prints for the same database and settings.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgAction, ArgMatches};
use dbkit::diesel_config::{DEFAULT_KEY, DieselConfig, section};
use dbkit::schema::print::output_schema;
use dbkit::schema::settings::{self, Settings};
use dbkit::schema::{check_all, pending_hint, print_files, rustfmt_dir, schema_files, write_if_changed};

use crate::context::Context;

/// Write the schema files (diesel.toml's print_schema file) from the live database, as diesel print-schema would
///
/// Reads [print_schema] and every [print_schema.NAME] from diesel.toml (one schema file each);
/// the flags (diesel print-schema's) override them. With several sections, --schema-key NAME
/// limits the command to those keys (`default` is [print_schema]), and the flags after each
/// --schema-key apply to that key alone.
///
/// Examples:
///   cargo xtask schema generate
///   cargo xtask schema generate --check
///   cargo xtask schema generate --stdout --with-docs --only-tables users
///   cargo xtask schema generate --schema-key app --with-docs --schema-key admin -o users
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Generate {
    /// Print the schemas on stdout (in key order, as diesel print-schema) instead of writing the files
    #[arg(long, conflicts_with = "check")]
    stdout: bool,
    /// Write nothing; fail if a file differs from what the database gives (for CI)
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    flags: KeyedFlags,
}

impl Generate {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let keys = settings::keys(&DieselConfig::load(cx)?)?;
        let several = keys.len() > 1;
        let keys = self.flags.resolve(cx, keys)?;
        let mut conn = dbkit::connect::establish(&url)?;
        if self.stdout {
            let texts: Vec<String> = keys
                .values()
                .map(|settings| output_schema(&mut conn, settings, &rustfmt_dir(cx)))
                .collect::<Result<_>>()?;
            print!("{}", texts.concat());
            return Ok(());
        }
        let files = schema_files(cx, keys, several, !self.flags.keyed.is_empty())?;
        let texts = print_files(cx, &mut conn, &files)?;
        if self.check {
            check_all(&files, &texts).map_err(|e| match pending_hint(cx, &mut conn) {
                Some(hint) => e.context(hint),
                None => e,
            })?;
            for file in &files {
                eprintln!("{} is up to date", file.path.display());
            }
            return Ok(());
        }
        for (file, text) in files.iter().zip(&texts) {
            write_if_changed(&file.path, text)?;
        }
        Ok(())
    }
}

/// diesel print-schema's flags, grouped as diesel_cli groups them: those after a
/// `--schema-key NAME` (up to the next one) are that key's.
#[derive(Debug, Default)]
pub struct KeyedFlags {
    /// The flags before the first --schema-key (boxed: clap's command enums stay small).
    leading: Box<PrintFlags>,
    /// Each --schema-key in command-line order, with its flags.
    keyed: Vec<(String, PrintFlags)>,
}

const SCHEMA_KEY: &str = "schema_key";

impl clap::Args for KeyedFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        PrintFlags::augment_args(cmd).arg(
            clap::Arg::new(SCHEMA_KEY)
                .long("schema-key")
                .value_name("NAME")
                .action(ArgAction::Append)
                .help("Only this diesel.toml key ([print_schema.NAME]; `default` for [print_schema]); the flags after it apply to it (repeat for several)"),
        )
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for KeyedFlags {
    /// Splits the flags at each --schema-key by their positions on the command line, as
    /// diesel_cli's `get_values_with_indices` does.
    fn from_arg_matches(m: &ArgMatches) -> Result<KeyedFlags, clap::Error> {
        let keys: Vec<(usize, String)> = indexed(m, SCHEMA_KEY, &(0..usize::MAX));
        let mut ends = keys.iter().map(|(i, _)| *i).skip(1).chain([usize::MAX]);
        let leading = Box::new(PrintFlags::within(m, 0..keys.first().map_or(usize::MAX, |(i, _)| *i)));
        let keyed = keys
            .iter()
            .map(|(start, key)| (key.clone(), PrintFlags::within(m, *start..ends.next().unwrap())))
            .collect();
        Ok(KeyedFlags { leading, keyed })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = KeyedFlags::from_arg_matches(m)?;
        Ok(())
    }
}

/// The values of `id` whose command-line positions are in `range`, with their positions.
fn indexed<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str, range: &Range<usize>) -> Vec<(usize, T)> {
    match (m.indices_of(id), m.get_many::<T>(id)) {
        (Some(indices), Some(values)) => indices.zip(values.cloned()).filter(|(i, _)| range.contains(i)).collect(),
        _ => Vec::new(),
    }
}

impl KeyedFlags {
    /// The keys to print, each with diesel.toml's settings and its flags over them: with one
    /// key every flag is its (the names after --schema-key are not looked at, as diesel_cli
    /// does); with several, the --schema-key ones, in key order (all of them when no
    /// --schema-key is given, and then no flag may be).
    fn resolve(&self, cx: &Context, mut keys: BTreeMap<String, Settings>) -> Result<BTreeMap<String, Settings>> {
        // With one key, as diesel_cli 2.3 does, every flag is its, whatever --schema-key names
        // (diesel_cli's own suite prints `--schema-key user1 -o users1 --with-docs` so).
        if keys.len() == 1 {
            let settings = keys.get_mut(DEFAULT_KEY).expect("the default key is always there");
            for flags in [&*self.leading].into_iter().chain(self.keyed.iter().map(|(_, flags)| flags)) {
                flags.apply(cx, settings)?;
            }
            return Ok(keys);
        }
        if let Some((key, _)) = self.keyed.iter().find(|(key, _)| !keys.contains_key(key)) {
            bail!(
                hint!("diesel.toml has no {}", section(key); "use one of its keys: {}", keys.keys().cloned().collect::<Vec<_>>().join(", "))
            );
        }
        if !self.leading.is_empty() {
            bail!(
                hint!("diesel.toml has several print_schema keys ({}), and a flag applies to the --schema-key before it", keys.keys().cloned().collect::<Vec<_>>().join(", "); "put the flags after `--schema-key NAME` (`default` for [print_schema])")
            );
        }
        if self.keyed.is_empty() {
            return Ok(keys);
        }
        let mut selected = BTreeMap::new();
        for (key, flags) in &self.keyed {
            let settings = selected.entry(key.clone()).or_insert_with(|| keys.remove(key).expect("checked above"));
            flags.apply(cx, settings).map_err(|e| e.context(format!("the flags after --schema-key {key}")))?;
        }
        Ok(selected)
    }
}

/// diesel print-schema's flags, same names. Each can be given once per --schema-key, so each
/// is a list here; a flag that takes one value refuses a second for the same key.
#[derive(clap::Args, Debug, Default, PartialEq)]
pub struct PrintFlags {
    /// The name of the schema
    #[arg(short, long)]
    schema: Vec<String>,
    /// Table names (regexes) for --only-tables / --except-tables
    #[arg(value_name = "TABLE_NAME")]
    table_names: Vec<String>,
    /// Only include tables from TABLE_NAME that match
    #[arg(short, long, num_args = 0, default_missing_value = "true")]
    only_tables: Vec<bool>,
    /// Exclude tables from TABLE_NAME that match
    #[arg(short, long, num_args = 0, default_missing_value = "true")]
    except_tables: Vec<bool>,
    /// Render documentation comments for tables and columns
    #[arg(long, num_args = 0, default_missing_value = "true")]
    with_docs: Vec<bool>,
    /// Render documentation comments for tables and columns
    #[arg(long, value_name = "MODE", value_parser = ["database-comments-fallback-to-auto-generated-doc-comment", "only-database-comments", "no-doc-comments"])]
    with_docs_config: Vec<String>,
    /// Group tables in allow_tables_to_appear_in_same_query!()
    #[arg(long, value_name = "MODE", value_parser = ["fk_related_tables", "all_tables", "none"])]
    allow_tables_to_appear_in_same_query_config: Vec<String>,
    /// Sort order for table columns
    #[arg(long, value_name = "ORDER", value_parser = ["ordinal_position", "name"])]
    column_sorting: Vec<String>,
    /// A unified diff file to be applied to the final schema
    #[arg(long, value_name = "FILE")]
    patch_file: Vec<PathBuf>,
    /// A type to import in every table (repeat the flag for several)
    #[arg(long, value_name = "TYPE")]
    import_types: Vec<String>,
    /// Don't generate SQL type definitions for types diesel does not provide
    #[arg(long, num_args = 0, default_missing_value = "true")]
    no_generate_missing_sql_type_definitions: Vec<bool>,
    /// Regexes of custom types not to define
    #[arg(long, value_name = "REGEX", num_args = 1..)]
    except_custom_type_definitions: Vec<String>,
    /// A derive for every generated SqlType (repeat the flag for several)
    #[arg(long, value_name = "DERIVE")]
    custom_type_derives: Vec<String>,
    /// Regexes of domain names to type as custom types instead of their base type
    #[arg(long, value_name = "REGEX")]
    pg_domains_as_custom_types: Vec<String>,
}

impl PrintFlags {
    /// The flags whose command-line positions are in `range`.
    fn within(m: &ArgMatches, range: Range<usize>) -> PrintFlags {
        fn values<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str, range: &Range<usize>) -> Vec<T> {
            indexed(m, id, range).into_iter().map(|(_, value)| value).collect()
        }
        PrintFlags {
            schema: values(m, "schema", &range),
            table_names: values(m, "table_names", &range),
            only_tables: values(m, "only_tables", &range),
            except_tables: values(m, "except_tables", &range),
            with_docs: values(m, "with_docs", &range),
            with_docs_config: values(m, "with_docs_config", &range),
            allow_tables_to_appear_in_same_query_config: values(
                m,
                "allow_tables_to_appear_in_same_query_config",
                &range,
            ),
            column_sorting: values(m, "column_sorting", &range),
            patch_file: values(m, "patch_file", &range),
            import_types: values(m, "import_types", &range),
            no_generate_missing_sql_type_definitions: values(m, "no_generate_missing_sql_type_definitions", &range),
            except_custom_type_definitions: values(m, "except_custom_type_definitions", &range),
            custom_type_derives: values(m, "custom_type_derives", &range),
            pg_domains_as_custom_types: values(m, "pg_domains_as_custom_types", &range),
        }
    }

    fn is_empty(&self) -> bool {
        *self == PrintFlags::default()
    }

    /// The flags over one key's settings, as diesel_cli's `update_config` and `set_filter` do.
    /// Refused where diesel_cli quietly prints something else: --only-tables or
    /// --except-tables without table names, both at once, a one-value flag given twice. For one
    /// of several keys, --pg-domains-as-custom-types and --except-custom-type-definitions apply
    /// (diesel_cli 2.3 drops the first there and fails on the second).
    fn apply(&self, cx: &Context, s: &mut Settings) -> Result<()> {
        let flags = self;
        match (flags.only_tables.contains(&true), flags.except_tables.contains(&true)) {
            (true, true) => bail!("--only-tables and --except-tables exclude each other: give one"),
            (true, false) | (false, true) if flags.table_names.is_empty() => {
                bail!(
                    hint!("--only-tables and --except-tables filter by TABLE_NAMEs, and none was given"; "name the tables (regexes) after the flag, e.g. --only-tables users posts")
                )
            }
            (true, false) => s.filter = settings::Filtering::OnlyTables(settings::regexes(&flags.table_names)?),
            (false, true) => s.filter = settings::Filtering::ExceptTables(settings::regexes(&flags.table_names)?),
            (false, false) => {}
        }
        if let Some(schema) = one(&flags.schema, "schema")? {
            s.schema = Some(schema.clone());
        }
        if flags.with_docs.contains(&true) {
            s.with_docs = settings::DocConfig::DatabaseCommentsFallbackToAutoGeneratedDocComment;
        }
        if let Some(mode) = one(&flags.with_docs_config, "with-docs-config")? {
            s.with_docs = settings::doc_config(mode)?;
        }
        if let Some(mode) =
            one(&flags.allow_tables_to_appear_in_same_query_config, "allow-tables-to-appear-in-same-query-config")?
        {
            s.allow_tables = settings::allow_tables(mode)?;
        }
        if let Some(sorting) = one(&flags.column_sorting, "column-sorting")? {
            s.column_sorting = settings::column_sorting(sorting)?;
        }
        if let Some(patch) = one(&flags.patch_file, "patch-file")? {
            s.patch_file = Some(cx.user_path(patch));
        }
        if !flags.import_types.is_empty() {
            s.import_types = Some(flags.import_types.clone());
        }
        if !flags.except_custom_type_definitions.is_empty() {
            s.except_custom_type_definitions = settings::regexes(&flags.except_custom_type_definitions)?;
        }
        if flags.no_generate_missing_sql_type_definitions.contains(&true) {
            s.generate_missing_sql_type_definitions = false;
        }
        if !flags.custom_type_derives.is_empty() {
            s.custom_type_derives = settings::with_sql_type(flags.custom_type_derives.clone());
        }
        if !flags.pg_domains_as_custom_types.is_empty() {
            s.pg_domains_as_custom_types = settings::regexes(&flags.pg_domains_as_custom_types)?;
        }
        Ok(())
    }
}

/// The value of a flag that takes one per key.
fn one<'a, T>(values: &'a [T], flag: &str) -> Result<Option<&'a T>> {
    match values {
        [] => Ok(None),
        [value] => Ok(Some(value)),
        _ => bail!(
            hint!("--{flag} is given {} times for one key", values.len(); "give it once (after each --schema-key, for several keys)")
        ),
    }
}
