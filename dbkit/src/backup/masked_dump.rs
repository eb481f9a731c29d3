//! `db backup --mask`: a backup whose rows are masked by `railgun.toml`'s `[mask]` rules before
//! they leave the server, so the unmasked rows never touch this machine's disk. It is the masked
//! copy's stream (see [`super::stream`]: one read-only snapshot, pg_dump's schema sections in
//! memory, `COPY (SELECT <masked columns> ...) TO STDOUT` per table) written as pg_dump's own
//! plain format into the backup's compressor: one script with pg_dump's header, `\restrict`
//! key, `--clean` prelude, `COPY ... FROM stdin` blocks, `setval`s and completion marker, so
//! `db verify` and `db restore` (and `gunzip | psql`) take it as they take any backup.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use url::Url;

use super::dump::{self, DumpOptions};
use super::mask::{Table, ident, literal};
use super::session::CopyOut;
use super::statement::{Event, Kind, Statements};
use super::stream::{self, Prepared, Source, StreamOptions};
use super::subset::Subset;
use crate::context::Context;

/// Backs up `url` masked into `dir` as [`dump::create`] names and verifies a backup; its path.
/// Refused before any row moves as a masked copy is (see [`super::mask::plan`]).
pub fn create(cx: &Context, url: &Url, dir: &Path, options: &DumpOptions, unmasked: bool) -> Result<PathBuf> {
    let mut source = Source::open(url, "railgun-masked-backup-source")?;
    let masking = StreamOptions { mask: true, unmasked, subset: Subset::default() };
    let prepared = stream::prepare(cx, &mut source, url, options, &masking)?;
    let parts = script(&prepared)?;
    eprintln!("backing up {} masked ({} tables)", crate::url::redact(url), prepared.plan.tables.len());
    let sql = MaskedSql { source: &mut source, prepared: &prepared, parts, buf: Vec::new(), at: 0, copying: None };
    dump::create_from(dir, dump::PREFIX, options, sql)
}

/// What the script is made of, in order.
enum Part {
    Text(Vec<u8>),
    /// A table's masked rows: pg_dump's comment and `COPY ... FROM stdin;`, then its data.
    Rows {
        table: String,
        header: Vec<u8>,
        select: String,
    },
    Sequences,
}

/// pg_dump's sections around the rows: the pre-data section with the post-data's `--clean`
/// statements before its own (a foreign key goes before the table it references), up to its
/// completion marker; then the tables' rows and the sequences; then the post-data section after
/// its `\restrict` line, its closing `\unrestrict` given the pre-data's key.
fn script(prepared: &Prepared) -> Result<VecDeque<Part>> {
    let (pre, post) = (prepared.pre.as_slice(), prepared.post.as_slice());
    let (post_clean, _) = clean_statements(post)?;
    let (_, first_clean) = clean_statements(pre)?;
    let marker = find(pre, b"\n--\n-- PostgreSQL database dump complete").map_or(pre.len(), |at| at + 1);
    let insert_at = first_clean.map_or(marker, |line| offset_of_line(pre, line)).min(marker);
    let mut parts = VecDeque::new();
    let mut head = pre[..insert_at].to_vec();
    head.extend_from_slice(&post_clean);
    head.extend_from_slice(&pre[insert_at..marker]);
    parts.push_back(Part::Text(head));
    for (table, expressions) in &prepared.plan.tables {
        if let Some(select) = stream::select_rows(table, expressions, &prepared.choices) {
            parts.push_back(Part::Rows {
                table: format!("{}.{}", table.schema, table.name),
                header: copy_header(table),
                select,
            });
        }
    }
    parts.push_back(Part::Sequences);
    let key = restrict_key(pre, "\\restrict ");
    let after_restrict = find(post, b"\n\\restrict ")
        .and_then(|at| post[at + 1..].iter().position(|b| *b == b'\n').map(|n| at + 1 + n + 1))
        .unwrap_or(0);
    let mut tail = post[after_restrict..].to_vec();
    if let (Some(key), Some(theirs)) = (key, restrict_key(post, "\\unrestrict ")) {
        let (from, to) = (format!("\\unrestrict {theirs}\n"), format!("\\unrestrict {key}\n"));
        let at = find(&tail, from.as_bytes())
            .ok_or_else(|| anyhow!("pg_dump's post-data section has no closing \\unrestrict"))?;
        tail.splice(at..at + from.len(), to.into_bytes());
    }
    parts.push_back(Part::Text(tail));
    Ok(parts)
}

/// The `--clean` statements of a pg_dump section, each ending in `;` and a newline, and the line
/// the first of them starts on.
fn clean_statements(section: &[u8]) -> Result<(Vec<u8>, Option<u64>)> {
    let mut statements = Statements::new();
    let (mut clean, mut first) = (Vec::new(), None);
    let mut take = |event: Event<'_>| {
        if let Event::Statement(s) = event
            && s.kind == Kind::Clean
        {
            first.get_or_insert(s.line);
            let body = super::statement::body(s.text);
            clean.extend_from_slice(body.trim_ascii());
            if !body.trim_ascii().ends_with(b";") {
                clean.push(b';');
            }
            clean.push(b'\n');
        }
    };
    statements.feed(section, &mut take).map_err(super::dumpfile::forbidden)?;
    statements.finish(&mut take).map_err(super::dumpfile::forbidden)?;
    Ok((clean, first))
}

/// pg_dump's comment and COPY line before a table's data.
fn copy_header(table: &Table) -> Vec<u8> {
    let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let shown = |name: &str| name.replace(['\n', '\r'], " ");
    format!(
        "\n--\n-- Data for Name: {}; Type: TABLE DATA; Schema: {}; Owner: -\n--\n\nCOPY {}.{} ({}) FROM stdin;\n",
        shown(&table.name),
        shown(&table.schema),
        ident(&table.schema),
        ident(&table.name),
        columns.join(", ")
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The byte where 1-based `line` of `text` starts.
fn offset_of_line(text: &[u8], line: u64) -> usize {
    if line <= 1 {
        return 0;
    }
    text.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(line as usize - 2).map_or(text.len(), |(at, _)| at + 1)
}

/// The key of the line starting with `command` (`\restrict `), if the section has one.
fn restrict_key(section: &[u8], command: &str) -> Option<String> {
    let text = String::from_utf8_lossy(section);
    text.lines().find_map(|line| line.strip_prefix(command)).map(|key| key.trim().to_string())
}

/// The script as the compressor reads it: the parts in order, each table's rows read from the
/// source's `COPY` as they are asked for.
struct MaskedSql<'a> {
    source: &'a mut Source,
    prepared: &'a Prepared,
    parts: VecDeque<Part>,
    buf: Vec<u8>,
    at: usize,
    /// The table whose rows are being read.
    copying: Option<String>,
}

impl MaskedSql<'_> {
    /// The next bytes of the script into `buf`; false at its end.
    fn refill(&mut self) -> Result<bool> {
        self.buf.clear();
        self.at = 0;
        if let Some(table) = &self.copying {
            let state = self.source.session.copy_out(&mut self.buf, 256 << 10).map_err(|e| anyhow!(e));
            let state =
                state.map_err(|e| e.context(format!("read the masked rows of {}", crate::error::escaped(table))))?;
            if let CopyOut::Done(_) = state {
                self.buf.extend_from_slice(b"\\.\n\n");
                self.copying = None;
            }
            return Ok(true);
        }
        match self.parts.pop_front() {
            None => Ok(false),
            Some(Part::Text(text)) => {
                self.buf = text;
                Ok(true)
            }
            Some(Part::Rows { table, header, select }) => {
                self.source
                    .session
                    .start_copy_out(&select)
                    .map_err(|e| anyhow!(e))
                    .map_err(|e| e.context(format!("select the masked rows of {}", crate::error::escaped(&table))))?;
                self.buf = header;
                self.copying = Some(table);
                Ok(true)
            }
            Some(Part::Sequences) => {
                for (sequence, value, called) in self.source.sequences(&self.prepared.excluded)? {
                    let line = format!("SELECT pg_catalog.setval({}, {value}, {called});\n", literal(&sequence));
                    self.buf.extend_from_slice(line.as_bytes());
                }
                self.buf.extend_from_slice(b"\n");
                Ok(true)
            }
        }
    }
}

impl Read for MaskedSql<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            if !self.refill().map_err(|e| io::Error::other(format!("{e:#}")))? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
