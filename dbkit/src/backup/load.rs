//! Loading a dump into a database: one transaction, committed only by this process, with a role
//! that has no more rights than the data needs.
//!
//! - The loading session is this process's own libpq connection ([`Session`]): a killed xtask
//!   closes it and the server rolls back (it checks a vanished client every second, even while
//!   waiting for a lock). COMMIT is sent only once every statement's result was read back.
//! - Each statement is judged first ([`statement`](super::statement)) and sent alone.
//! - The session never runs as a superuser, nor as a member of `pg_read_server_files`,
//!   `pg_write_server_files` or `pg_execute_server_program`. Given a superuser's URL (a local
//!   server, CI), the restore loads as the database's restore owner, `railgun_owner_<database>`: a
//!   role of ours with no attributes and no memberships, which can log in only for the load (a
//!   random password, taken back once connected) and owns what the dump creates. The target is
//!   emptied inside the same transaction by a function the superuser lends for it (it drops the
//!   database's schemas, the provider's and ours aside, and puts `public` back as it was), so
//!   pg_dump's `--clean` prelude is left out: a backup restores the same into an empty database
//!   as over an existing one. Given any other role's URL (a managed provider's), it loads as that
//!   role, which then has only its own rights, and the dump's own `--clean` prelude empties what it
//!   replaces.
//! - Event triggers and `OWNER TO` are left out and said; SECURITY DEFINER functions are named,
//!   with the role whose rights they carry.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl};
use url::Url;

use super::dump::{MANAGED_SCHEMAS, Name, mib};
use super::dumpfile;
use super::progress::{Progress, Task, Total};
use super::session::{PgError, Session, code};
use super::statement::{self, EVENT_TRIGGER, Event, Kind, Statements};
use crate::url::database_name;

/// Server roles whose members read or write the server's files or run its programs.
const SERVER_ROLES: [&str; 3] = ["pg_read_server_files", "pg_write_server_files", "pg_execute_server_program"];

/// Who loads, and how the target is emptied.
enum Loader {
    /// The URL's own role (no superuser): the dump's `--clean` prelude empties the target.
    Itself,
    /// Our restore owner, with the superuser's functions (emptying the target, creating the
    /// extensions the user allowed) in `helper` (a schema).
    Owner { role: String, helper: String, admin: PgConnection },
}

/// How a load goes about what the backup holds.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// How long a statement waits for a lock another session holds.
    pub lock_timeout: Duration,
    /// Extensions that need a superuser, which the superuser creates for the load (see
    /// [`check_extensions`]).
    pub allowed_extensions: Vec<String>,
    /// Create the backup's event triggers (by the superuser, once the data is committed):
    /// they fire for every later DDL with the rights of whoever runs it.
    pub event_triggers: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { lock_timeout: Duration::from_secs(5), allowed_extensions: Vec::new(), event_triggers: false }
    }
}

/// A load under way: the target prepared, the loading session connected.
pub struct Load {
    session: Session,
    loader: Loader,
    key: String,
    options: LoadOptions,
    started: Instant,
    part: Part,
    tally: Tally,
    /// Loading beside what the database holds: the target is not emptied.
    beside: bool,
    /// Which statements run, and as what text ([`Load::pick`]); all, as they are, without one.
    pick: Option<Box<Pick>>,
    /// The COPY whose statement was not picked: its data goes by unsent.
    skipping_copy: bool,
}

/// Chooses a statement for the load: `None` leaves it out, `Some(text)` runs `text` in its place.
pub type Pick = dyn FnMut(&statement::Statement<'_>) -> Option<Vec<u8>> + Send;

/// What of a pg_dump output [`Load::feed_part`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// Its `--clean` statements only (nothing when the restore empties the target itself): a
    /// schema's post-data objects (foreign keys) go before its pre-data tables are dropped.
    CleanOnly,
}

impl Load {
    /// Prepares `url`'s database for a load and connects the loading session, named
    /// `railgun-restore-<key>` (so that a lock watch finds it).
    pub fn start(url: &Url, key: &str, options: &LoadOptions) -> Result<Load> {
        Load::start_into(url, key, options, None)
    }

    /// [`Load::start`] for a load beside the database's objects (one table back): nothing is
    /// emptied, and the restore owner (a superuser's URL) may create objects in `schema`.
    pub fn start_beside(url: &Url, key: &str, options: &LoadOptions, schema: &str) -> Result<Load> {
        Load::start_into(url, key, options, Some(schema))
    }

    /// Runs only the statements `pick` chooses, as the text it gives (see [`Pick`]).
    pub fn pick(&mut self, pick: Box<Pick>) {
        self.pick = Some(pick);
    }

    fn start_into(url: &Url, key: &str, options: &LoadOptions, beside: Option<&str>) -> Result<Load> {
        let started = Instant::now();
        let mut admin = crate::connect::establish(url)?;
        let me = who(&mut admin)?;
        let app = format!("railgun-restore-{}", &key[..8]);
        let (mut loader, mut load_url) = if me.superuser {
            let role = owner_role(&database_name(url));
            let password = crate::secret::random_hex(24)?;
            let helper = prepare_owner(&mut admin, &role, &password, &options.allowed_extensions)?;
            if let Some(schema) = beside {
                admin
                    .batch_execute(&format!("GRANT USAGE, CREATE ON SCHEMA {} TO {}", ident(schema), ident(&role)))
                    .with_context(|| {
                        format!("let the restore's role create in schema {}", crate::error::escaped(schema))
                    })?;
            }
            // The role and its password as parameters: a socket URL (`postgres:///db?host=/dir`) has no userinfo.
            let mut as_owner = url.clone();
            if as_owner.has_host() {
                let _ = as_owner.set_username("");
                let _ = as_owner.set_password(None);
            }
            let kept: Vec<(String, String)> =
                url.query_pairs().into_owned().filter(|(k, _)| k != "user" && k != "password").collect();
            as_owner.set_query(None);
            as_owner.query_pairs_mut().extend_pairs(kept).append_pair("user", &role).append_pair("password", &password);
            (Loader::Owner { role, helper, admin }, as_owner)
        } else {
            if let Some(role) = me.server_role {
                bail!(
                    hint!("{} is a member of {role}: a restore with its rights could read and write the server's files", me.name;
                    "restore with a role that is not (the database's owner), or with a superuser's URL: the restore then loads with a role of its own")
                );
            }
            (Loader::Itself, url.clone())
        };
        load_url.query_pairs_mut().append_pair("application_name", &app);
        let session = Session::connect(&load_url);
        if let Loader::Owner { role, admin, helper, .. } = &mut loader {
            // The password served its one login.
            let _ = admin.batch_execute(&format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", ident(role)));
            if session.is_err() {
                let _ = admin.batch_execute(&format!("REVOKE USAGE ON SCHEMA {} FROM {}", ident(helper), ident(role)));
            }
        }
        let session = session.context("connect the restore's session")?;
        let mut load = Load {
            session,
            loader,
            key: key.into(),
            options: options.clone(),
            started,
            part: Part::Whole,
            tally: Tally::default(),
            beside: beside.is_some(),
            pick: None,
            skipping_copy: false,
        };
        load.begin()?;
        Ok(load)
    }

    fn begin(&mut self) -> Result<()> {
        // A client that vanished is noticed within a second, even while waiting for a lock (Postgres 14+).
        let _ = self.session.exec(b"SET client_connection_check_interval = 1000");
        let prelude = [
            "BEGIN".to_string(),
            format!("SET LOCAL lock_timeout = '{}ms'", self.options.lock_timeout.as_millis()),
            "SET LOCAL standard_conforming_strings = on".into(),
            format!("SET LOCAL railgun.restore = '{}'", self.key),
        ];
        for statement in prelude {
            self.session.exec(statement.as_bytes()).map_err(|e| anyhow!("start the restore's transaction: {e}"))?;
        }
        if let Loader::Owner { helper, .. } = &self.loader
            && !self.beside
        {
            let clear = format!("SELECT {}.railgun_clear()", ident(helper));
            self.session.exec(clear.as_bytes()).map_err(|e| self.failure(e, None))?;
        }
        Ok(())
    }

    /// Loads the dump read from `sql` and commits once all of it went through and it was whole
    /// (pg_dump's header and completion marker; gzip's checksums are checked as it is read);
    /// what was left out is said on stderr. Its progress is shown, out of `expected` when known.
    pub fn feed(mut self, sql: impl Read + Send, expected: Total) -> Result<()> {
        let shown = Progress::new(Task::Restore, expected);
        let total = self.feed_part(sql, Part::Whole, &shown)?;
        shown.stage("committing");
        self.finish()?;
        shown.done();
        eprintln!("restored {} of SQL in {:.1}s", mib(total), self.started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Loads one pg_dump output read from `sql` (all of it, or only its `--clean` statements),
    /// whole (pg_dump's header and completion marker), without committing, shown to `shown`;
    /// its size.
    pub fn feed_part(&mut self, sql: impl Read + Send, part: Part, shown: &Progress) -> Result<u64> {
        let mut statements = Statements::new();
        let mut total = 0u64;
        let (mut head, mut tail) = (Vec::new(), dumpfile::Tail::default());
        self.part = part;
        // Decompression on a thread of its own, a few chunks ahead: the server, this thread and
        // the decompression work at once, as `gunzip | psql` would.
        std::thread::scope(|scope| {
            let (full, chunks) = std::sync::mpsc::sync_channel(READ_AHEAD);
            let (spare, empties) = std::sync::mpsc::channel();
            scope.spawn(move || read_ahead(sql, full, empties));
            for chunk in chunks {
                let chunk = chunk.map_err(|e| self.rolled_back(anyhow!(e).context("read the backup")))?;
                self.scan(&mut statements, Some(&chunk), shown)?;
                if head.len() < dumpfile::HEADER.len() {
                    head.extend_from_slice(&chunk[..chunk.len().min(dumpfile::HEADER.len() - head.len())]);
                }
                tail.push(&chunk);
                total += chunk.len() as u64;
                shown.set(total);
                let _ = spare.send(chunk);
            }
            anyhow::Ok(())
        })?;
        self.scan(&mut statements, None, shown)?;
        if let Err(e) = dumpfile::check_header(&head).and_then(|()| tail.finish().map(|_| ())) {
            return Err(self.rolled_back(e));
        }
        Ok(total)
    }

    /// Runs `sql` (a `COPY ... FROM stdin`) and sends it the data `next` hands over until it
    /// hands over `None`; the rows the server took.
    pub fn copy_in(&mut self, sql: &str, mut next: impl FnMut() -> Result<Option<Vec<u8>>>) -> Result<u64> {
        self.session.start_copy(sql.as_bytes()).map_err(|e| self.failure(e, None))?;
        while let Some(data) = next().map_err(|e| self.rolled_back(e))? {
            self.session.put(&data).map_err(|e| self.failure(e, None))?;
        }
        let rows = self.session.end_copy_counted().map_err(|e| self.failure(e, None))?;
        if !self.session.in_transaction() {
            return Err(self.rolled_back(anyhow!("the restore's transaction ended early")));
        }
        Ok(rows)
    }

    /// Runs one statement of ours in the load's transaction.
    pub fn exec(&mut self, sql: &str) -> Result<()> {
        self.session.exec(sql.as_bytes()).map_err(|e| self.failure(e, None))
    }

    /// Says what was left out, commits, then creates the event triggers when asked.
    pub fn finish(&mut self) -> Result<()> {
        let tally = std::mem::take(&mut self.tally);
        self.report(&tally)?;
        self.commit()?;
        if self.options.event_triggers {
            self.create_event_triggers(&tally.event_triggers)?;
        }
        Ok(())
    }

    /// The backup's event triggers, asked for: created by the superuser once the data is
    /// committed, each statement alone (the extended protocol refuses a text holding two).
    fn create_event_triggers(&mut self, statements: &[String]) -> Result<()> {
        use diesel::Connection;
        if statements.is_empty() {
            return Ok(());
        }
        let names = event_trigger_names(statements).join(", ");
        let Loader::Owner { admin, .. } = &mut self.loader else {
            bail!(hint!("the data is restored; its event triggers ({names}) are not: creating one needs a superuser";
                "restore with a superuser's URL, or have a superuser create them"));
        };
        admin
            .transaction(|conn| statements.iter().try_for_each(|sql| diesel::sql_query(sql).execute(conn).map(|_| ())))
            .map_err(|e| {
                anyhow!(hint!("the data is restored; its event triggers ({names}) are not: {e}"; "create them by hand, or restore again without --with-event-triggers"))
            })?;
        eprintln!(
            "created the backup's event trigger(s) as asked: {names}; they fire for every later DDL with the rights of whoever runs it"
        );
        Ok(())
    }

    /// Scans `chunk` (None: the end of the dump) and runs what it completes.
    fn scan(&mut self, statements: &mut Statements, chunk: Option<&[u8]>, shown: &Progress) -> Result<()> {
        let mut failed = None;
        let mut run = |event: Event<'_>| {
            shown.saw(&event);
            if failed.is_none()
                && let Err(e) = self.run(event)
            {
                failed = Some(e);
            }
        };
        let scanned = match chunk {
            Some(chunk) => statements.feed(chunk, &mut run),
            None => statements.finish(&mut run),
        };
        if let Some(e) = failed {
            return Err(e);
        }
        scanned.map_err(|line| self.rolled_back(dumpfile::forbidden(line)))
    }

    /// One piece of the dump.
    fn run(&mut self, event: Event<'_>) -> Result<()> {
        let picked;
        let event = match (event, &mut self.pick) {
            (Event::Statement(s), Some(pick)) => match pick(&s) {
                None => {
                    self.skipping_copy = s.kind == Kind::Copy;
                    return Ok(());
                }
                Some(text) => {
                    picked = text;
                    Event::Statement(statement::Statement { text: &picked, line: s.line, kind: s.kind })
                }
            },
            (Event::CopyData(_), _) if self.skipping_copy => return Ok(()),
            (Event::CopyEnd, _) if std::mem::take(&mut self.skipping_copy) => return Ok(()),
            (event, _) => event,
        };
        let outcome = match event {
            Event::Statement(s) if self.part == Part::CleanOnly && s.kind != Kind::Clean => Ok(()),
            Event::Statement(s) => {
                let owner = matches!(self.loader, Loader::Owner { .. });
                // Without pg_dump's comments before it: what the server shows in pg_stat_activity.
                let sql = statement::body(s.text);
                match &s.kind {
                    Kind::Extension(name) => match &self.loader {
                        Loader::Owner { helper, .. } if self.options.allowed_extensions.contains(name) => {
                            // Created by the superuser, as the user allowed: the statement's name and schema only.
                            let schema = extension_schema(sql).map_or("NULL".into(), |s| literal(&s));
                            let call = format!(
                                "SELECT {}.railgun_create_extension({}, {schema})",
                                ident(helper),
                                literal(name)
                            );
                            self.session.exec(call.as_bytes())
                        }
                        _ => self.session.exec(sql),
                    },
                    Kind::Run => self.session.exec(sql),
                    Kind::Clean if owner => Ok(()),
                    // pg_dump's `--clean` prelude fails on shapes it wrote itself (a partition's
                    // inherited constraint, an object in a schema that is not there yet): what it
                    // could not drop the later DROP of its parent drops, or a CREATE names.
                    Kind::Clean => self.in_savepoint(sql, CLEAN_TOLERATED).map(|_| ()),
                    Kind::Copy => self.session.start_copy(sql),
                    Kind::LockTimeout => Ok(()),
                    Kind::Skip(what) => {
                        if *what == EVENT_TRIGGER && !sql.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"DROP")) {
                            self.tally.event_triggers.push(String::from_utf8_lossy(sql).into_owned());
                        }
                        match self.tally.skipped.iter_mut().find(|(w, _)| w == what) {
                            Some((_, n)) => *n += 1,
                            None => self.tally.skipped.push((what, 1)),
                        }
                        Ok(())
                    }
                    Kind::Privilege => self.in_savepoint(sql, PRIVILEGE_TOLERATED).map(|refused| {
                        if let Some(e) = refused {
                            let first = String::from_utf8_lossy(sql).lines().next().unwrap_or_default().to_string();
                            self.tally
                                .left_out
                                .push(format!("{first} ({})", e.message.lines().next().unwrap_or_default()));
                        }
                    }),
                }
                .map_err(|e| self.failure(e, Some((s.line, s.text))))
            }
            Event::CopyData(data) => self.session.put(data).map_err(|e| self.failure(e, None)),
            Event::CopyEnd => self.session.end_copy().map_err(|e| self.failure(e, None)),
        };
        outcome?;
        if !self.session.in_transaction() {
            return Err(self.rolled_back(anyhow!("the restore's transaction ended early")));
        }
        Ok(())
    }

    /// Runs `sql` in a savepoint: an error of a `tolerated` kind is rolled back to it and
    /// returned as `Ok(Some(..))`; any other fails the load.
    fn in_savepoint(&mut self, sql: &[u8], tolerated: &[&str]) -> Result<Option<PgError>, PgError> {
        self.session.exec(b"SAVEPOINT railgun_tolerated")?;
        match self.session.exec(sql) {
            Ok(()) => self.session.exec(b"RELEASE SAVEPOINT railgun_tolerated").map(|()| None),
            Err(e) if tolerated.contains(&e.code.as_str()) => {
                self.session.exec(b"ROLLBACK TO SAVEPOINT railgun_tolerated")?;
                Ok(Some(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Says what was left out, and which functions run with another role's rights.
    fn report(&mut self, tally: &Tally) -> Result<()> {
        let Tally { skipped, left_out, event_triggers } = tally;
        for (what, n) in skipped {
            match *what {
                EVENT_TRIGGER if self.options.event_triggers => {}
                EVENT_TRIGGER => eprintln!(
                    "left out {n} statement(s) of event triggers ({}): they fire for every later DDL with the rights of whoever runs it; \
                     --with-event-triggers creates them, if you trust them",
                    event_trigger_names(event_triggers).join(", ")
                ),
                _ => eprintln!(
                    "left out {n} `OWNER TO` statement(s): what the backup creates belongs to the restoring role"
                ),
            }
        }
        for line in left_out.iter().take(20) {
            eprintln!("left out: {line}");
        }
        if left_out.len() > 20 {
            eprintln!("left out: ... and {} more privilege statement(s)", left_out.len() - 20);
        }
        let definers = self
            .session
            .query_column(
                "SELECT format('%s, with the rights of %s', p.oid::regprocedure, pg_get_userbyid(p.proowner))
                  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE p.prosecdef AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                    AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
                    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
                  ORDER BY 1",
            )
            .map_err(|e| self.failure(e, None))?;
        if !definers.is_empty() {
            eprintln!("SECURITY DEFINER functions ({}): each runs with its owner's rights:", definers.len());
            for definer in &definers {
                eprintln!("  {definer}");
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let mark = self.session.query_column("SELECT current_setting('railgun.restore', true)");
        if !matches!(&mark, Ok(rows) if rows.first() == Some(&self.key)) || !self.session.in_transaction() {
            return Err(self.rolled_back(anyhow!("the restore's transaction is not the one it began")));
        }
        self.session.exec(b"COMMIT").map_err(|e| self.failure(e, None))
    }

    /// The error for a statement the server refused, with its line and text.
    fn failure(&self, e: PgError, statement: Option<(u64, &[u8])>) -> anyhow::Error {
        let shown = statement.map(|(line, text)| show_statement(line, text)).unwrap_or_default();
        if e.code == code::LOCK_NOT_AVAILABLE {
            return anyhow!("{e}{shown}").context(LockTimeout(self.options.lock_timeout));
        }
        let hint = hint_for(&e);
        anyhow!(hint!("the restore failed and was rolled back: the database is as it was\n{e}{shown}"; "{hint}"))
    }

    fn rolled_back(&self, e: anyhow::Error) -> anyhow::Error {
        e.context("the restore was stopped and rolled back: the database is as it was")
    }
}

/// Takes back what the restore lent: the emptying function (it would go with the session).
impl Drop for Load {
    fn drop(&mut self) {
        if let Loader::Owner { helper, admin, role, .. } = &mut self.loader {
            let _ = admin.batch_execute(&format!(
                "DROP FUNCTION IF EXISTS pg_temp.railgun_clear(), pg_temp.railgun_create_extension(text, text);
                 REVOKE USAGE ON SCHEMA {} FROM {}",
                ident(helper),
                ident(role)
            ));
        }
    }
}

/// A privilege to a role this server lacks, or that the loading role may not give: left out, said.
const PRIVILEGE_TOLERATED: &[&str] = &[code::UNDEFINED_OBJECT, code::INSUFFICIENT_PRIVILEGE];

/// A `--clean` statement whose object is not there, or goes with its parent: passed over.
const CLEAN_TOLERATED: &[&str] = &[
    code::UNDEFINED_OBJECT,
    "42P16", // invalid_table_definition: cannot drop a partition's inherited constraint
    "3F000", // invalid_schema_name
    "42883", // undefined_function
    "42P01", // undefined_table
];

/// Chunks decompressed ahead of the load.
const READ_AHEAD: usize = 4;
const CHUNK: u64 = 1 << 20;

/// Reads `sql` into chunks for `full` (buffers come back through `empties`) until its end, an
/// error, or nobody listens any more.
fn read_ahead(mut sql: impl Read, full: SyncSender<std::io::Result<Vec<u8>>>, empties: Receiver<Vec<u8>>) {
    loop {
        let mut chunk = empties.try_recv().unwrap_or_default();
        chunk.clear();
        let read = (&mut sql).take(CHUNK).read_to_end(&mut chunk);
        let end = matches!(read, Ok(0) | Err(_));
        let sent = match read {
            Ok(0) => Ok(()),
            Ok(_) => full.send(Ok(chunk)),
            Err(e) => full.send(Err(e)),
        };
        if end || sent.is_err() {
            return;
        }
    }
}

/// What the load left out, said at its end.
#[derive(Default)]
struct Tally {
    /// Statements of a kind left out, and how many.
    skipped: Vec<(&'static str, u64)>,
    /// Privilege statements left out, each with the server's reason.
    left_out: Vec<String>,
    /// The event triggers' statements (but their DROPs), kept for `--with-event-triggers`.
    event_triggers: Vec<String>,
}

/// The event triggers `statements` name, once each.
fn event_trigger_names(statements: &[String]) -> Vec<String> {
    static NAME: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)EVENT\s+TRIGGER\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)"#).expect("a valid regex")
    });
    let mut names: Vec<String> = statements
        .iter()
        .filter_map(|sql| NAME.captures(sql).map(|c| crate::error::escaped(&c[1]).into_owned()))
        .collect();
    names.dedup();
    names
}

/// Marks a restore that failed on a lock: the caller adds who held it.
#[derive(Debug)]
pub struct LockTimeout(pub Duration);

impl std::fmt::Display for LockTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a lock wait longer than {}ms", self.0.as_millis())
    }
}

/// The fix for what the server said, by its SQLSTATE.
fn hint_for(e: &PgError) -> &'static str {
    match e.code.as_str() {
        "2BP01" => {
            "objects that are not in the backup depend on objects it replaces: restore into an empty database, or drop them first (cargo xtask schema drop)"
        }
        code::INSUFFICIENT_PRIVILEGE => {
            "the backup needs a right the restoring role lacks (an untrusted extension or language needs a superuser): create it in the database first as a superuser, then restore"
        }
        "42710" | "42P06" | "42P07" => {
            "the backup creates an object the database already has and the restore does not replace: restore into an empty database"
        }
        "3F000" | "42883" | "42P01" => {
            "the backup refers to a schema, function or table it does not create: was it taken with --exclude-schema, or from a server with other extensions?"
        }
        _ => "fix the cause above and run again; nothing was changed",
    }
}

/// The statement a failure names: its line in the backup's SQL and its first lines.
fn show_statement(line: u64, text: &[u8]) -> String {
    // `line` is where the statement's first word is: the comments before it are not shown.
    let body = String::from_utf8_lossy(statement::body(text)).into_owned();
    let shown: Vec<String> = body
        .lines()
        .take(12)
        .enumerate()
        .map(|(i, l)| {
            let mut l: String = l.chars().take(200).collect();
            if l.len() < body.lines().nth(i).map_or(0, str::len) {
                l.push_str("...");
            }
            format!("  {:>8} | {l}", line as usize + i)
        })
        .collect();
    format!("\nthe failing statement, at line {line} of the backup's SQL:\n{}", shown.join("\n"))
}

/// The role the restore loads with into database `db` on a server where the URL's role is a superuser.
pub fn owner_role(db: &str) -> String {
    let clean: String =
        db.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if clean.len() <= 40 {
        return format!("railgun_owner_{clean}");
    }
    let hash = crate::migration::checksum::of(db);
    format!("railgun_owner_{}_{}", &clean[..30], &hash[hash.len() - 8..])
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The schema a `CREATE EXTENSION ... WITH SCHEMA name` names, unquoted.
fn extension_schema(sql: &[u8]) -> Option<String> {
    static SCHEMA: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)\sSCHEMA\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)"#).expect("a valid regex")
    });
    let text = String::from_utf8_lossy(sql);
    let name = SCHEMA.captures(&text)?.get(1)?.as_str().to_string();
    Some(match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_lowercase(),
    })
}

/// Checks, before anything runs, that the extensions a backup creates can be created here:
/// available on the server, and trusted (any database owner may create one) unless it needs a
/// superuser and the user allowed it (`allowed`; only when the URL's role is a superuser, who
/// then creates it for the load).
pub fn check_extensions(url: &Url, wanted: &[String], allowed: &[String]) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    #[derive(diesel::QueryableByName)]
    struct Available {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        needs_superuser: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        installed: bool,
    }
    let mut conn = crate::connect::establish(url)?;
    let me = who(&mut conn)?;
    let available: Vec<Available> = diesel::sql_query(
        "SELECT a.name::text AS name, (v.superuser AND NOT v.trusted) AS needs_superuser,
                EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = a.name) AS installed
         FROM pg_available_extensions a
         JOIN pg_available_extension_versions v ON v.name = a.name AND v.version = a.default_version
         WHERE a.name = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(wanted)
    .load(&mut conn)
    .context("look up the backup's extensions on the server")?;
    let missing: Vec<&str> =
        wanted.iter().filter(|w| !available.iter().any(|a| &a.name == *w)).map(String::as_str).collect();
    if !missing.is_empty() {
        bail!(hint!("the backup creates extension(s) this server does not have: {}", missing.join(", ");
            "install them on the server (their package, e.g. postgresql-contrib or postgis), or restore into a server that has them; nothing was changed"));
    }
    let privileged = available.iter().filter(|a| a.needs_superuser);
    if me.superuser {
        let refused: Vec<&str> = privileged.filter(|a| !allowed.contains(&a.name)).map(|a| a.name.as_str()).collect();
        if !refused.is_empty() {
            let flags: Vec<String> = refused.iter().map(|n| format!("--allow-extension {n}")).collect();
            bail!(
                hint!("the backup creates extension(s) that need a superuser: {}; the restore loads without one", refused.join(", ");
                "if you trust them, allow each: {} (the superuser then creates that extension, and nothing else of the backup runs with its rights); nothing was changed", flags.join(" "))
            );
        }
    } else {
        let refused: Vec<&str> = privileged.filter(|a| !a.installed).map(|a| a.name.as_str()).collect();
        if !refused.is_empty() {
            bail!(
                hint!("the backup creates extension(s) that need a superuser, and {} is not one: {}", me.name, refused.join(", ");
                "have a superuser (the provider's dashboard) create them in this database first, then restore; nothing was changed")
            );
        }
    }
    Ok(())
}

struct Me {
    name: String,
    superuser: bool,
    server_role: Option<String>,
}

fn who(admin: &mut PgConnection) -> Result<Me> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        superuser: bool,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        server_role: Option<String>,
    }
    let roles = SERVER_ROLES.map(|r| format!("'{r}'")).join(", ");
    let row: Row = diesel::sql_query(format!(
        "SELECT current_user::text AS name, r.rolsuper AS superuser,
                (SELECT s FROM unnest(ARRAY[{roles}]) s WHERE pg_has_role(current_user, s, 'MEMBER') LIMIT 1) AS server_role
         FROM pg_roles r WHERE r.rolname = current_user"
    ))
    .get_result(admin)
    .context("ask the server who the URL's role is")?;
    Ok(Me { name: row.name, superuser: row.superuser, server_role: row.server_role })
}

/// Makes `role` ready to load (no attributes, no memberships, a login for now) and lends it the
/// emptying function in schema `helper`.
/// Returns the schema the function is in.
fn prepare_owner(admin: &mut PgConnection, role: &str, password: &str, allowed: &[String]) -> Result<String> {
    #[derive(diesel::QueryableByName)]
    struct Power {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        powerful: bool,
    }
    // One restore into a database at a time: the login and the emptying function are the database's.
    diesel::sql_query("SELECT pg_advisory_lock(hashtext('railgun restore ' || current_database()))")
        .execute(admin)
        .context("wait for another restore into this database")?;
    let role_q = ident(role);
    // Hashed here: the server, its logs (log_statement = ddl) never see the password itself.
    let verifier = crate::secret::scram_verifier(role, password)?;
    // One transaction under a lock every restore takes for this: another restore's cleanup
    // of stale owners never sees this role between its check and its login.
    admin.batch_execute("BEGIN").context("prepare the restore's role")?;
    let prepared = (|| -> Result<()> {
        admin
            .batch_execute(
                r#"SELECT pg_advisory_xact_lock(hashtext('railgun restore owners'));
                -- The restore owners of databases since dropped: they own nothing and hold no grant any more.
                DO $railgun$ DECLARE r record; BEGIN
                    FOR r IN SELECT rolname FROM pg_roles a
                             WHERE rolname LIKE 'railgun\_owner\_%' AND NOT rolcanlogin
                               AND NOT EXISTS (SELECT 1 FROM pg_shdepend d
                                               WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = a.oid)
                    LOOP
                        BEGIN EXECUTE format('DROP ROLE %I', r.rolname); EXCEPTION WHEN OTHERS THEN NULL; END;
                    END LOOP;
                END $railgun$;"#,
            )
            .context("drop the restore owners of databases since dropped")?;
        let power: Vec<Power> = diesel::sql_query(
            "SELECT (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
                     OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid)) AS powerful
             FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind::<diesel::sql_types::Text, _>(role)
        .load(admin)
        .context("look for the restore's role")?;
        match power.first() {
            Some(p) if p.powerful => bail!(
                hint!("the role {role} exists with more rights than loading data needs (an attribute or a membership)";
                "the restore loads as that role: drop it (DROP ROLE {role_q}) or take back what was granted to it, then restore again")
            ),
            Some(_) => Ok(()),
            None => admin
                .batch_execute(&format!(
                    "CREATE ROLE {role_q} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
                ))
                .with_context(|| format!("create the restore's role {role}")),
        }
    })()
    .and_then(|()| prepare_owner_rest(admin, &role_q, &verifier, allowed));
    let finished = match prepared {
        Ok(()) => admin.batch_execute("COMMIT").context("prepare the restore's role"),
        Err(e) => {
            let _ = admin.batch_execute("ROLLBACK");
            Err(e)
        }
    };
    finished?;
    let helper: Name = diesel::sql_query("SELECT pg_my_temp_schema()::regnamespace::text AS name")
        .get_result(admin)
        .context("find the emptying function")?;
    Ok(helper.name)
}

/// The role's login, its grants and the superuser's functions it may call (in this session's
/// temporary schema: they go with the session, a killed restore leaves nothing).
fn prepare_owner_rest(admin: &mut PgConnection, role_q: &str, verifier: &str, allowed: &[String]) -> Result<()> {
    let managed = MANAGED_SCHEMAS.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let allowed = allowed.iter().map(|a| literal(a)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        r#"ALTER ROLE {role_q} LOGIN PASSWORD '{verifier}';
        DO $railgun$ BEGIN EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO {role_q}', current_database()); END $railgun$;
        CREATE FUNCTION pg_temp.railgun_clear() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $clear$
        DECLARE
            s record;
            public_owner oid;
            public_acl aclitem[];
            public_comment text;
        BEGIN
            FOR s IN SELECT nspname FROM pg_namespace
                     WHERE nspname NOT IN ('public', 'information_schema', {managed}) AND nspname !~ '^pg_'
            LOOP
                EXECUTE format('DROP SCHEMA %I CASCADE', s.nspname);
            END LOOP;
            SELECT nspowner, nspacl, obj_description(oid, 'pg_namespace') INTO public_owner, public_acl, public_comment
                FROM pg_namespace WHERE nspname = 'public';
            IF FOUND THEN
                DROP SCHEMA public CASCADE;
                CREATE SCHEMA public;
                EXECUTE format('ALTER SCHEMA public OWNER TO %I', pg_get_userbyid(public_owner));
                UPDATE pg_namespace SET nspacl = public_acl WHERE nspname = 'public';
                EXECUTE format('COMMENT ON SCHEMA public IS %L', public_comment);
            END IF;
            FOR s IN SELECT oid FROM pg_largeobject_metadata LOOP
                PERFORM lo_unlink(s.oid);
            END LOOP;
        END $clear$;
        CREATE FUNCTION pg_temp.railgun_create_extension(name text, schema text) RETURNS void LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $create$
        BEGIN
            IF NOT name = ANY (ARRAY[{allowed}]::text[]) THEN
                RAISE EXCEPTION 'extension % was not allowed (--allow-extension)', name;
            END IF;
            IF schema IS NULL THEN
                EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I', name);
            ELSE
                EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I WITH SCHEMA %I', name, schema);
            END IF;
        END $create$;
        REVOKE ALL ON FUNCTION pg_temp.railgun_clear(), pg_temp.railgun_create_extension(text, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION pg_temp.railgun_clear(), pg_temp.railgun_create_extension(text, text) TO {role_q};
        DO $railgun$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %s TO {role_q}', pg_my_temp_schema()::regnamespace); END $railgun$;
        DO $railgun$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN GRANT USAGE, CREATE ON SCHEMA public TO {role_q}; END IF; END $railgun$;"#
    );
    admin.batch_execute(&sql).context("prepare the restore's role and the emptying function")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_roles_fit_a_name() {
        assert_eq!(owner_role("railgun"), "railgun_owner_railgun");
        assert_eq!(owner_role("My-DB"), "railgun_owner_my_db");
        let long = owner_role(&"x".repeat(80));
        assert!(long.len() <= 63 && long.starts_with("railgun_owner_xxx"), "{long}");
        assert_ne!(owner_role(&"x".repeat(80)), owner_role(&"x".repeat(81)));
    }
}
