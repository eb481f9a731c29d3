//! `cargo xtask schema diagram`: an entity-relationship diagram of the live schema.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use dbkit::diesel_config::{DieselConfig, section};
use dbkit::schema::diagram::{self, Diagram};
use dbkit::schema::settings::{self, Filtering};

use crate::context::Context;

/// Draw the live schema: tables, columns with types, primary and foreign keys
///
/// Mermaid `erDiagram` (GitHub renders it in Markdown as it is, in a ```mermaid block),
/// Graphviz DOT, or SVG drawn by Graphviz's `dot`. The tables are those `schema generate`
/// prints: diesel.toml's [print_schema] (or --schema-key NAME's) schema and filter, which
/// --schema, --only-tables and --except-tables override. In Mermaid, a name it cannot take is
/// quoted (tables) or has `_` for the characters (columns, with the name as the comment); a
/// relationship is `|o` on the parent's side when the key may be null.
///
/// Examples:
///   cargo xtask schema diagram > docs/schema.mmd
///   cargo xtask schema diagram --format svg -o docs/schema.svg
///   cargo xtask schema diagram --only-tables users posts
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Draw {
    /// The diagram's language
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
    /// Write the diagram to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The diesel.toml key whose settings select the tables (`default` is [print_schema])
    #[arg(long, value_name = "NAME", default_value = dbkit::diesel_config::DEFAULT_KEY)]
    schema_key: String,
    /// The Postgres schema (default: the key's, else public)
    #[arg(short, long)]
    schema: Option<String>,
    /// Table names (regexes) for --only-tables / --except-tables
    #[arg(value_name = "TABLE_NAME")]
    table_names: Vec<String>,
    /// Only the tables from TABLE_NAME that match
    #[arg(long, requires = "table_names", conflicts_with = "except_tables")]
    only_tables: bool,
    /// All tables but those from TABLE_NAME that match
    #[arg(long, requires = "table_names")]
    except_tables: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Mermaid,
    Dot,
    Svg,
}

impl Draw {
    pub fn run(self, cx: &Context) -> Result<()> {
        let mut keys = settings::keys(&DieselConfig::load(cx)?)?;
        let Some(mut settings) = keys.remove(&self.schema_key) else {
            bail!(
                hint!("diesel.toml has no {}", section(&self.schema_key); "use one of its keys: {}", keys.keys().cloned().collect::<Vec<_>>().join(", "))
            );
        };
        if self.schema.is_some() {
            settings.schema = self.schema;
        }
        match (self.only_tables, self.except_tables) {
            (true, _) => settings.filter = Filtering::OnlyTables(settings::regexes(&self.table_names)?),
            (_, true) => settings.filter = Filtering::ExceptTables(settings::regexes(&self.table_names)?),
            _ if !self.table_names.is_empty() => {
                bail!(
                    hint!("table names were given without --only-tables or --except-tables"; "say which: --only-tables {} or --except-tables {0}", self.table_names.join(" "))
                )
            }
            _ => {}
        }
        let drawn = Diagram::read(&mut dbkit::connect::establish(&cx.database_url()?)?, &settings)?;
        let text = match self.format {
            Format::Mermaid => drawn.mermaid(),
            Format::Dot => drawn.dot(),
            Format::Svg => diagram::svg(&cx.sh, &drawn.dot())?,
        };
        match self.output {
            Some(file) => {
                let file = cx.user_path(&file);
                std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
                eprintln!("wrote {} ({} tables)", file.display(), drawn.tables.len());
            }
            None => print!("{text}"),
        }
        Ok(())
    }
}
