//! One table back from a backup (`db restore FILE --table SCHEMA.TABLE [--as NEW_NAME]`): its
//! definition, rows, owned sequences (their values set), indexes and constraints, and its
//! foreign keys to itself, loaded beside the live database's objects in one transaction.
//!
//! No second SQL parser: the statements are the ones the scanner cut and the classifier judged
//! ([`statement`](super::statement)), attributed by pg_dump's own shapes (`CREATE TABLE t (`,
//! `COPY t (`, `CREATE INDEX i ON t USING`, `ALTER TABLE ONLY t ADD CONSTRAINT c`, ...) with the
//! table's name as pg_dump writes it. What names the table in another shape (a trigger, a
//! policy, a grant, a foreign key to or from another table) is left out and named. Renamed with
//! `--as`, the table's indexes, index-backed constraints and sequences are renamed too: a name
//! that starts with `TABLE_` gets `NEW_NAME_` instead, any other `NEW_NAME_` before it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use regex::Regex;
use url::Url;

use super::dump::mib;
use super::dumpfile;
use super::load::Load;
use super::restore::RestoreOptions;
use super::sealed::Identities;
use super::statement::{self, Event, Kind, Statement, Statements};
use crate::context::Context;
use crate::error::escaped;
use crate::guard::Guard;
use crate::url::database_name;

/// The table to take back, and the name it comes back under.
#[derive(Clone, Debug)]
pub struct TableRestore {
    pub schema: String,
    pub name: String,
    /// `--as`: the new name, in the same schema (`None`: the table's own).
    pub new_name: Option<String>,
}

impl TableRestore {
    /// `SCHEMA.TABLE` (each part may be double-quoted, as in SQL), and `--as`'s name.
    pub fn parse(table: &str, new_name: Option<&str>) -> Result<TableRestore> {
        let parts = split_qualified(table).with_context(
            || hint!("`{}` is not SCHEMA.TABLE", escaped(table); "name the table with its schema: --table public.users (quote a part with capitals or dots: '\"My Schema\".users')"),
        )?;
        let new_name = new_name.map(str::to_string);
        if new_name.as_deref().is_some_and(|n| n.is_empty() || n.len() > 63 || n.contains('\0')) {
            bail!(hint!("--as names no table Postgres would take"; "give a name of 1 to 63 bytes"));
        }
        Ok(TableRestore { schema: parts.0, name: parts.1, new_name })
    }

    fn target_name(&self) -> &str {
        self.new_name.as_deref().unwrap_or(&self.name)
    }

    /// The table as restored, `schema.name`, escaped for messages.
    pub fn shown(&self) -> String {
        escaped(&format!("{}.{}", self.schema, self.target_name())).into_owned()
    }

    /// What an index, constraint or sequence of the table is called once restored.
    fn renamed(&self, old: &str) -> String {
        match &self.new_name {
            None => old.to_string(),
            Some(new) => match old.strip_prefix(&format!("{}_", self.name)) {
                Some(rest) => format!("{new}_{rest}"),
                None => format!("{new}_{old}"),
            },
        }
    }
}

/// [`restore_table`] of a backup file, or of an object in a bucket (`s3://BUCKET/PREFIX/NAME`,
/// downloaded into an unnamed temporary file first).
pub fn restore_table_from(
    cx: &Context,
    url: &Url,
    source: &str,
    table: &TableRestore,
    guard: &Guard,
    options: &RestoreOptions,
) -> Result<()> {
    if !super::bucket::is_remote(source) {
        let path = cx.user_path(Path::new(source));
        return restore_table(cx, url, &path, &escaped(&path.display().to_string()), table, guard, options);
    }
    let (prefix, name) = source.rsplit_once('/').filter(|(_, name)| !name.is_empty()).with_context(
        || hint!("`{}` names no object", escaped(source); "name the backup object: s3://BUCKET/PREFIX/railgun_backup_....sql.gz[.age]"),
    )?;
    let remote = super::bucket::Remote::open(cx, prefix)?;
    let copy = super::restore::download(&remote, name)?;
    restore_table(cx, url, &copy.path(), &escaped(source), table, guard, options)
}

/// Restores one table of the backup at `path` into `url` beside what is there: refused when a
/// table of its (new) name exists, checked whole first, asked (`guard`), one transaction.
pub fn restore_table(
    cx: &Context,
    url: &Url,
    path: &Path,
    shown: &str,
    table: &TableRestore,
    guard: &Guard,
    options: &RestoreOptions,
) -> Result<()> {
    let (file, summary) = dumpfile::open_any(path, || Identities::from_setting(cx))
        .with_context(|| format!("{shown} is not a usable backup"))?;
    eprintln!("{shown} is whole: {} of SQL", mib(summary.sql));
    refuse_existing(url, table)?;
    let mut picker = Picker::new(table.clone());
    learn(&mut picker, file.rewound()?.sql()?)?;
    if !picker.has_table {
        bail!(hint!("{shown} has no table {}.{}", escaped(&table.schema), escaped(&table.name);
            "name a table the backup holds, with its schema (gunzip -c FILE | grep '^CREATE TABLE' lists them)"));
    }
    let what = format!("restore table {} of {shown} into database `{}`", table.shown(), database_name(url));
    guard.check(cx, url, &what)?;
    eprintln!("no safety backup: nothing existing is replaced ({} does not exist yet)", table.shown());
    let key = crate::secret::random_hex(16)?;
    let mut load = Load::start_beside(url, &key, &options.load, &table.schema)?;
    let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = notes.clone();
    load.pick(Box::new(move |s| {
        let (text, note) = picker.pick(s);
        if let (Some(note), Ok(mut notes)) = (note, shared.lock()) {
            notes.push(note);
        }
        text
    }));
    // The first pass left the shared position at the end.
    load.feed(file.rewound()?.sql()?, super::progress::Total::default())?;
    let notes = notes.lock().map(|n| n.clone()).unwrap_or_default();
    for note in &notes {
        eprintln!("left out: {note}");
    }
    if let Some(expected) =
        summary.manifest.and_then(|m| m.tables.into_iter().find(|t| t.schema == table.schema && t.name == table.name))
    {
        check_rows(url, table, expected.rows, &expected.checksum)?;
    }
    eprintln!("restored table {}", table.shown());
    Ok(())
}

fn refuse_existing(url: &Url, table: &TableRestore) -> Result<()> {
    let mut session = super::session::Session::connect(url)?;
    let found = session
        .query_column_with(
            "SELECT (to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL)::text",
            &[&table.schema, table.target_name()],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("look for the table in the database")?;
    if found.first().map(String::as_str) == Some("true") {
        bail!(hint!("{} already exists in the database: restoring it would replace it", table.shown();
            "restore it beside under another name: --as {}_restored (then compare, and swap by hand)", table.target_name()));
    }
    Ok(())
}

/// The restored table's rows against the backup's manifest (the same count and checksum).
fn check_rows(url: &Url, table: &TableRestore, rows: i64, checksum: &str) -> Result<()> {
    let mut session = super::session::Session::connect(url)?;
    for sql in super::manifest::SETTINGS {
        session.exec(sql.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let sum = session
        .query_column(&super::manifest::checksum_sql(&table.schema, table.target_name()))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("sum the restored table")?;
    let (found, found_sum) = super::manifest::parse_sum(sum.first().map_or("", String::as_str))?;
    if (found, found_sum.as_str()) != (rows, checksum) {
        bail!(
            hint!("{}: {found} rows restored, the backup's manifest says {rows} (or the content differs)", table.shown();
            "the table was committed as restored: look into it, drop it and try another backup")
        );
    }
    eprintln!("{}: {rows} rows, as the backup's manifest says (count and checksum)", table.shown());
    Ok(())
}

/// The first pass: which sequences the table owns (they come before the statement that says so).
fn learn(picker: &mut Picker, sql: Box<dyn std::io::Read + Send>) -> Result<()> {
    let mut statements = Statements::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, sql);
    loop {
        let chunk = std::io::BufRead::fill_buf(&mut reader).context("read the backup")?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        statements.feed(chunk, &mut |e| picker.learn(&e)).map_err(dumpfile::forbidden)?;
        std::io::BufRead::consume(&mut reader, n);
    }
    statements.finish(&mut |e| picker.learn(&e)).map_err(dumpfile::forbidden)
}

/// Decides, statement by statement, what belongs to the table, and renames it.
struct Picker {
    table: TableRestore,
    shapes: Shapes,
    /// The sequences the table owns, as pg_dump writes their names.
    owned: HashSet<String>,
    has_table: bool,
}

/// pg_dump's statements about a table, with the table's name as pg_dump may write it.
struct Shapes {
    create: Regex,
    identity: Regex,
    owned_by: Regex,
    default: Regex,
    copy: Regex,
    insert: Regex,
    constraint: Regex,
    references: Regex,
    index: Regex,
    comment: Regex,
    mentions: Regex,
    create_sequence: Regex,
    setval: Regex,
}

/// A name as pg_dump writes it: bare, or double-quoted with `""` inside.
const NAME: &str = r#"(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)"#;

impl Shapes {
    fn new(schema: &str, name: &str) -> Shapes {
        let t = format!("(?P<t>{}\\.{})", written(schema), written(name));
        let q = format!("{NAME}\\.{NAME}");
        let re = |pattern: String| Regex::new(&pattern).expect("a valid regex");
        Shapes {
            create: re(format!(r"^CREATE (?:UNLOGGED )?TABLE {t} \(")),
            identity: re(format!(
                r"^ALTER TABLE {t} ALTER COLUMN {NAME} ADD GENERATED (?:ALWAYS|BY DEFAULT) AS IDENTITY \(\s+SEQUENCE NAME (?P<s>{q})\s"
            )),
            owned_by: re(format!(r"^ALTER SEQUENCE (?P<s>{q}) OWNED BY {t}\.{NAME};$")),
            default: re(format!(r"^ALTER TABLE ONLY {t} ALTER COLUMN {NAME} SET DEFAULT ")),
            copy: re(format!(r"^COPY {t} \(")),
            insert: re(format!(r"^INSERT INTO {t} ")),
            constraint: re(format!(r"^ALTER TABLE ONLY {t}\s+ADD CONSTRAINT (?P<c>{NAME}) ")),
            references: re(format!(r" REFERENCES (?P<r>{q})\(")),
            index: re(format!(r"^CREATE (?:UNIQUE )?INDEX (?P<i>{NAME}) ON (?:ONLY )?{t} USING ")),
            comment: re(format!(r"^COMMENT ON (?:TABLE|COLUMN) {t}(?:\.{NAME})? IS ")),
            mentions: re(format!(r"(?:^|[^A-Za-z0-9_$.]){t}(?:[^A-Za-z0-9_$]|$)")),
            create_sequence: re(format!(r"^CREATE SEQUENCE (?P<s>{q})\s")),
            setval: re(r"^SELECT pg_catalog\.setval\('(?P<s>(?:[^']|'')+)', ".to_string()),
        }
    }
}

impl Picker {
    fn new(table: TableRestore) -> Picker {
        let shapes = Shapes::new(&table.schema, &table.name);
        Picker { table, shapes, owned: HashSet::new(), has_table: false }
    }

    fn learn(&mut self, event: &Event<'_>) {
        let Event::Statement(s) = event else { return };
        let body = String::from_utf8_lossy(statement::body(s.text));
        if self.shapes.create.is_match(&body) {
            self.has_table = true;
        }
        for shape in [&self.shapes.owned_by, &self.shapes.identity] {
            if let Some(c) = shape.captures(&body) {
                self.owned.insert(c["s"].to_string());
            }
        }
    }

    /// The statement's text for the load, or `None`; and what to say when it is left out.
    fn pick(&mut self, s: &Statement<'_>) -> (Option<Vec<u8>>, Option<String>) {
        let body = String::from_utf8_lossy(statement::body(s.text)).into_owned();
        match &s.kind {
            // pg_dump's settings, as a whole restore runs them.
            Kind::Run | Kind::LockTimeout
                if body.starts_with("SET ") || body.starts_with("SELECT pg_catalog.set_config(") =>
            {
                return (Some(body.into_bytes()), None);
            }
            Kind::Run | Kind::Copy => {}
            // pg_dump's `--clean` prelude: nothing is replaced, so nothing is dropped.
            Kind::Clean => return (None, None),
            _ => return (None, self.mentioned(&body, s.line)),
        }
        match self.rewrite(&body) {
            Ok(Some(text)) => (Some(text.into_bytes()), None),
            Ok(None) => (None, self.mentioned(&body, s.line)),
            Err(why) => (None, Some(format!("line {}: {why}", s.line))),
        }
    }

    /// A statement that names the table and was not taken: said, with its line and first words.
    fn mentioned(&self, body: &str, line: u64) -> Option<String> {
        self.shapes.mentions.is_match(body).then(|| {
            let words: Vec<&str> = body.split_whitespace().collect();
            let first: String = words.join(" ").chars().take(160).collect();
            format!("line {line}: {} (not one of the table's own statements)", escaped(&first))
        })
    }

    /// The statement renamed, when it is one of the table's; `Err` for one of its statements
    /// this restore cannot take (a foreign key to another table, a partitioned table).
    fn rewrite(&self, body: &str) -> Result<Option<String>, String> {
        let sh = &self.shapes;
        let table = self.table_written();
        if let Some(c) = sh.create.captures(body) {
            if body.contains(" PARTITION OF ") || body.contains("\nPARTITION BY ") || body.contains("\nINHERITS (") {
                return Err(format!(
                    "{} is partitioned or inherits: --table restores plain tables only",
                    self.table.shown()
                ));
            }
            return Ok(Some(splice(body, &[(c.name("t"), table)])));
        }
        if let Some(c) = sh.identity.captures(body) {
            return Ok(Some(splice(body, &[(c.name("t"), table), (c.name("s"), self.sequence(&c["s"]))])));
        }
        if let Some(c) = sh.owned_by.captures(body) {
            return Ok(Some(splice(body, &[(c.name("s"), self.sequence(&c["s"])), (c.name("t"), table)])));
        }
        if let Some(c) = sh.create_sequence.captures(body) {
            return Ok(self.owned.contains(&c["s"]).then(|| splice(body, &[(c.name("s"), self.sequence(&c["s"]))])));
        }
        if let Some(c) = sh.setval.captures(body) {
            let written = c["s"].replace("''", "'");
            let literal = self.sequence(&written).replace('\'', "''");
            return Ok(self.owned.contains(&written).then(|| splice(body, &[(c.name("s"), literal)])));
        }
        if let Some(c) = sh.default.captures(body) {
            let mut text = splice(body, &[(c.name("t"), table)]);
            for sequence in &self.owned {
                let (from, to) = (sequence.replace('\'', "''"), self.sequence(sequence).replace('\'', "''"));
                text = text.replace(&format!("nextval('{from}'::regclass)"), &format!("nextval('{to}'::regclass)"));
            }
            return Ok(Some(text));
        }
        for shape in [&sh.copy, &sh.insert, &sh.comment] {
            if let Some(c) = shape.captures(body) {
                let spans: Vec<_> = c.iter().skip(1).flatten().map(|m| (Some(m), table.clone())).collect();
                return Ok(Some(splice(body, &spans)));
            }
        }
        if let Some(c) = sh.index.captures(body) {
            return Ok(Some(splice(body, &[(c.name("i"), self.object(&c["i"])), (c.name("t"), table)])));
        }
        if let Some(c) = sh.constraint.captures(body) {
            let mut spans = vec![(c.name("c"), self.object(&c["c"])), (c.name("t"), table.clone())];
            if let Some(r) = sh.references.captures(body) {
                if !sh.mentions.is_match(&format!(" {}", &r["r"])) {
                    return Err(format!("foreign key {} to {} (another table)", escaped(&c["c"]), escaped(&r["r"])));
                }
                spans.push((r.name("r"), table));
            }
            return Ok(Some(splice(body, &spans)));
        }
        Ok(None)
    }

    /// The restored table's name as SQL.
    fn table_written(&self) -> String {
        format!("{}.{}", written_ident(&self.table.schema), quote(self.table.target_name()))
    }

    /// An index or constraint renamed (see [`TableRestore::renamed`]).
    fn object(&self, written: &str) -> String {
        quote(&self.table.renamed(&unquote(written)))
    }

    /// A sequence the table owns, renamed, schema-qualified as it was.
    fn sequence(&self, written: &str) -> String {
        match split_qualified(written) {
            Some((schema, name)) => format!("{}.{}", written_ident(&schema), quote(&self.table.renamed(&name))),
            None => written.to_string(),
        }
    }
}

/// `text` with each captured span replaced, spans in any order, none overlapping.
fn splice(text: &str, spans: &[(Option<regex::Match<'_>>, String)]) -> String {
    let mut spans: Vec<(usize, usize, &str)> =
        spans.iter().filter_map(|(m, with)| m.map(|m| (m.start(), m.end(), with.as_str()))).collect();
    spans.sort();
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (start, end, with) in spans {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(with);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// A regex for `name` as pg_dump may write it: bare (when it can be) or quoted.
fn written(name: &str) -> String {
    let quoted = regex::escape(&quote(name));
    if is_bare(name) { format!("(?:{}|{quoted})", regex::escape(name)) } else { quoted }
}

fn is_bare(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

fn written_ident(name: &str) -> String {
    if is_bare(name) { name.to_string() } else { quote(name) }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn unquote(written: &str) -> String {
    match written.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => written.to_lowercase(),
    }
}

/// `schema.name`, either part bare or double-quoted; `None` when it is not two parts.
fn split_qualified(text: &str) -> Option<(String, String)> {
    let part = Regex::new(&format!("^({NAME})\\.({NAME})$")).ok()?;
    let c = part.captures(text.trim())?;
    let (schema, name) = (unquote(&c[1]), unquote(&c[2]));
    Some((schema, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(new: Option<&str>) -> Picker {
        let mut p = Picker::new(TableRestore::parse("public.kid", new).unwrap());
        p.owned.insert("public.kid_id_seq".into());
        p
    }

    #[test]
    fn the_tables_statements_are_renamed_and_others_left_out() {
        let p = picker(Some("kid_back"));
        let cases = [
            (
                "CREATE TABLE public.kid (\n    id integer NOT NULL\n);",
                Some("CREATE TABLE public.\"kid_back\" (\n    id integer NOT NULL\n);"),
            ),
            (
                "CREATE INDEX uq_kid ON public.kid USING btree (p);",
                Some("CREATE INDEX \"kid_back_uq_kid\" ON public.\"kid_back\" USING btree (p);"),
            ),
            (
                "ALTER TABLE ONLY public.kid\n    ADD CONSTRAINT kid_pkey PRIMARY KEY (id);",
                Some("ALTER TABLE ONLY public.\"kid_back\"\n    ADD CONSTRAINT \"kid_back_pkey\" PRIMARY KEY (id);"),
            ),
            (
                "ALTER TABLE ONLY public.kid\n    ADD CONSTRAINT kid_self_fkey FOREIGN KEY (self) REFERENCES public.kid(id);",
                Some(
                    "ALTER TABLE ONLY public.\"kid_back\"\n    ADD CONSTRAINT \"kid_back_self_fkey\" FOREIGN KEY (self) REFERENCES public.\"kid_back\"(id);",
                ),
            ),
            (
                "SELECT pg_catalog.setval('public.kid_id_seq', 5, true);",
                Some("SELECT pg_catalog.setval('public.\"kid_back_id_seq\"', 5, true);"),
            ),
            ("SELECT pg_catalog.setval('public.other_id_seq', 5, true);", None),
            ("COPY public.kid (id, note) FROM stdin;", Some("COPY public.\"kid_back\" (id, note) FROM stdin;")),
            ("COPY public.kids (id) FROM stdin;", None),
            ("CREATE TABLE public.kid_log (\n    id integer\n);", None),
        ];
        for (sql, want) in cases {
            assert_eq!(p.rewrite(sql).unwrap().as_deref(), want, "{sql}");
        }
        let fk =
            "ALTER TABLE ONLY public.kid\n    ADD CONSTRAINT kid_p_fkey FOREIGN KEY (p) REFERENCES public.parent(id);";
        assert!(p.rewrite(fk).unwrap_err().contains("kid_p_fkey"));
        assert!(
            p.mentioned("CREATE TRIGGER t BEFORE INSERT ON public.kid FOR EACH ROW EXECUTE FUNCTION f();", 3).is_some()
        );
        assert!(p.mentioned("CREATE TABLE public.kids (id int);", 3).is_none());
    }

    #[test]
    fn names_split_and_rename() {
        let t = TableRestore::parse("\"Odd Schema\".\"T\"", Some("t2")).unwrap();
        assert_eq!((t.schema.as_str(), t.name.as_str()), ("Odd Schema", "T"));
        assert_eq!(t.renamed("T_pkey"), "t2_pkey");
        assert_eq!(t.renamed("idx"), "t2_idx");
        assert!(TableRestore::parse("users", None).is_err());
    }
}
