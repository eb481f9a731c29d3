//! The restore's own connection: libpq in this process, one statement per message.
//!
//! No psql between the dump and the server: the connection lives and dies with this process (a
//! killed xtask closes it, and the server rolls the transaction back: COMMIT is ours to send),
//! and each statement goes alone through the extended protocol, where the server refuses a text
//! holding two statements: a statement the scanner cut differently from the server fails instead
//! of smuggling another one in.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;

use anyhow::{Context as _, Result, bail};
use pq_sys as pq;
use url::Url;

/// An error the server returned for a statement.
#[derive(Debug, Clone)]
pub struct PgError {
    /// The SQLSTATE (`42704`, `55P03`, ...); empty when the connection itself failed.
    pub code: String,
    pub message: String,
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end())
    }
}

impl std::error::Error for PgError {}

/// SQLSTATEs told apart (by the restore, and the dry run's scratch copy).
pub mod code {
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// `CREATE DATABASE ... TEMPLATE` while another session is connected to the template.
    pub const OBJECT_IN_USE: &str = "55006";
}

/// COPY data goes in messages of this size: the server parses a message only once it is
/// whole, so smaller ones let it work while the next arrives (psql sends 8 KiB ones).
const COPY_MESSAGE: usize = 64 << 10;

/// Where a `COPY ... TO STDOUT` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOut {
    /// More rows to come.
    More,
    /// The end, with the rows the server sent.
    Done(u64),
}

/// One libpq connection, finished when dropped.
pub struct Session {
    conn: *mut pq::PGconn,
}

// SAFETY: a PGconn may move between threads; a Session is used by one thread at a time.
unsafe impl Send for Session {}

impl Session {
    /// Connects to `url` (its password travels inside this process only).
    pub fn connect(url: &Url) -> Result<Session> {
        let conninfo = CString::new(crate::connect::with_connect_timeout(url).as_str())
            .context("a database URL with a NUL byte")?;
        // SAFETY: libpq's documented use; the connection is finished on every path (Drop).
        let session = Session { conn: unsafe { pq::PQconnectdb(conninfo.as_ptr()) } };
        if session.conn.is_null() {
            bail!("libpq could not allocate a connection");
        }
        // SAFETY: a live connection.
        if unsafe { pq::PQstatus(session.conn) } != pq::ConnStatusType::CONNECTION_OK {
            let message = crate::url::redact_str(session.error_message().trim());
            return Err(crate::connect::ConnectError {
                failure: crate::connect::Failure::classify(&message),
                target: crate::url::redact(url),
                message,
                attempts: 1,
            }
            .into());
        }
        // Notices (`... does not exist, skipping`) are the dump's business, not the terminal's.
        // SAFETY: a live connection and a processor that ignores its arguments.
        unsafe { pq::PQsetNoticeProcessor(session.conn, Some(ignore_notice), std::ptr::null_mut()) };
        Ok(session)
    }

    fn error_message(&self) -> String {
        // SAFETY: libpq returns a string owned by the connection, valid until the next call.
        unsafe { CStr::from_ptr(pq::PQerrorMessage(self.conn)) }.to_string_lossy().into_owned()
    }

    /// Sends one statement through the extended protocol (the server refuses a text holding
    /// several) and waits for its result.
    fn send(&mut self, sql: &[u8]) -> Result<*mut pq::PGresult, PgError> {
        let sql =
            CString::new(sql).map_err(|_| PgError { code: String::new(), message: "a NUL byte in SQL".into() })?;
        // SAFETY: a live connection and a NUL-terminated statement; no parameters.
        Ok(unsafe {
            pq::PQexecParams(
                self.conn,
                sql.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        })
    }

    /// Runs one statement with text parameters (`$1`, ...): a parameter never shows in the
    /// statement's text (pg_stat_activity, the server's statement log).
    pub fn exec_with(&mut self, sql: &str, params: &[&str]) -> Result<(), PgError> {
        let result = self.send_with(sql, params)?;
        self.finish_result(result, &[pq::ExecStatusType::PGRES_COMMAND_OK, pq::ExecStatusType::PGRES_TUPLES_OK])
    }

    fn send_with(&mut self, sql: &str, params: &[&str]) -> Result<*mut pq::PGresult, PgError> {
        let invalid = |what: &str| PgError { code: String::new(), message: format!("a NUL byte in {what}") };
        let sql = CString::new(sql).map_err(|_| invalid("SQL"))?;
        let params: Vec<CString> =
            params.iter().map(|p| CString::new(*p)).collect::<Result<_, _>>().map_err(|_| invalid("a parameter"))?;
        let values: Vec<*const c_char> = params.iter().map(|p| p.as_ptr()).collect();
        // SAFETY: a live connection, a NUL-terminated statement and `values.len()` NUL-terminated
        // text parameters that outlive the call.
        Ok(unsafe {
            pq::PQexecParams(
                self.conn,
                sql.as_ptr(),
                values.len() as c_int,
                std::ptr::null(),
                values.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        })
    }

    /// Runs one statement.
    pub fn exec(&mut self, sql: &[u8]) -> Result<(), PgError> {
        let result = self.send(sql)?;
        self.finish_result(result, &[pq::ExecStatusType::PGRES_COMMAND_OK, pq::ExecStatusType::PGRES_TUPLES_OK])
    }

    /// Runs one query and returns its rows' first column, as text.
    pub fn query_column(&mut self, sql: &str) -> Result<Vec<String>, PgError> {
        let result = self.send(sql.as_bytes())?;
        self.first_column(result)
    }

    /// [`query_column`](Session::query_column) with text parameters (`$1`, ...).
    pub fn query_column_with(&mut self, sql: &str, params: &[&str]) -> Result<Vec<String>, PgError> {
        let result = self.send_with(sql, params)?;
        self.first_column(result)
    }

    fn first_column(&mut self, result: *mut pq::PGresult) -> Result<Vec<String>, PgError> {
        // SAFETY: a result of this connection: read, then cleared once.
        unsafe {
            if result.is_null() || pq::PQresultStatus(result) != pq::ExecStatusType::PGRES_TUPLES_OK {
                return self.finish_result(result, &[]).map(|()| Vec::new());
            }
            let rows = (0..pq::PQntuples(result))
                .map(|row| CStr::from_ptr(pq::PQgetvalue(result, row, 0)).to_string_lossy().into_owned())
                .collect();
            pq::PQclear(result);
            Ok(rows)
        }
    }

    /// Starts `COPY ... FROM stdin`: send its data with [`put`](Session::put), then [`end_copy`](Session::end_copy).
    pub fn start_copy(&mut self, sql: &[u8]) -> Result<(), PgError> {
        let result = self.send(sql)?;
        self.finish_result(result, &[pq::ExecStatusType::PGRES_COPY_IN])
    }

    /// Sends COPY data (whole lines or not: the server joins them).
    pub fn put(&mut self, data: &[u8]) -> Result<(), PgError> {
        for part in data.chunks(COPY_MESSAGE) {
            // SAFETY: a live connection in COPY IN state; the buffer outlives the call (libpq copies it).
            let sent = unsafe { pq::PQputCopyData(self.conn, part.as_ptr() as *const c_char, part.len() as c_int) };
            if sent != 1 {
                return Err(self.connection_error());
            }
        }
        Ok(())
    }

    /// Ends the COPY's data; the server's verdict on it.
    pub fn end_copy(&mut self) -> Result<(), PgError> {
        self.end_copy_counted().map(|_| ())
    }

    /// [`end_copy`](Session::end_copy), with the rows the server took.
    pub fn end_copy_counted(&mut self) -> Result<u64, PgError> {
        // SAFETY: a live connection in COPY IN state.
        if unsafe { pq::PQputCopyEnd(self.conn, std::ptr::null()) } != 1 {
            return Err(self.connection_error());
        }
        // SAFETY: as in exec.
        let result = unsafe { pq::PQgetResult(self.conn) };
        self.finish_counted(result)
    }

    /// Starts `COPY ... TO STDOUT`: read its data with [`copy_out`](Session::copy_out).
    pub fn start_copy_out(&mut self, sql: &str) -> Result<(), PgError> {
        let result = self.send(sql.as_bytes())?;
        self.finish_result(result, &[pq::ExecStatusType::PGRES_COPY_OUT])
    }

    /// Appends the COPY's next rows to `buf` until it holds at least `limit` bytes; at the
    /// COPY's end, the rows it sent.
    pub fn copy_out(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<CopyOut, PgError> {
        while buf.len() < limit {
            let mut data: *mut c_char = std::ptr::null_mut();
            // SAFETY: a live connection in COPY OUT state; a row libpq hands over is ours to free.
            let n = unsafe { pq::PQgetCopyData(self.conn, &mut data, 0) };
            if n > 0 {
                // SAFETY: libpq wrote `n` bytes at `data`, freed once here after copying them.
                unsafe {
                    buf.extend_from_slice(std::slice::from_raw_parts(data as *const u8, n as usize));
                    pq::PQfreemem(data.cast());
                }
            } else if n == -1 {
                // SAFETY: as in exec.
                let result = unsafe { pq::PQgetResult(self.conn) };
                return self.finish_counted(result).map(CopyOut::Done);
            } else {
                return Err(self.connection_error());
            }
        }
        Ok(CopyOut::More)
    }

    /// [`finish_result`](Session::finish_result) of a COPY, with its row count.
    fn finish_counted(&mut self, result: *mut pq::PGresult) -> Result<u64, PgError> {
        // SAFETY: a result of this connection, read before finish_result clears it.
        let rows = (!result.is_null())
            .then(|| unsafe { CStr::from_ptr(pq::PQcmdTuples(result)) }.to_string_lossy().parse::<u64>().ok())
            .flatten()
            .unwrap_or(0);
        self.finish_result(result, &[pq::ExecStatusType::PGRES_COMMAND_OK]).map(|()| rows)
    }

    /// True while the session is inside a transaction block (not failed, not ended; a COPY
    /// under way counts).
    pub fn in_transaction(&self) -> bool {
        use pq::PGTransactionStatusType::{PQTRANS_ACTIVE, PQTRANS_INTRANS};
        // SAFETY: a live connection.
        matches!(unsafe { pq::PQtransactionStatus(self.conn) }, PQTRANS_INTRANS | PQTRANS_ACTIVE)
    }

    fn connection_error(&self) -> PgError {
        PgError { code: String::new(), message: crate::url::redact_str(self.error_message().trim()) }
    }

    /// Checks `result` against the statuses that mean success, clears it, and drains any
    /// further result (there is none for one statement, but libpq wants the NULL read).
    fn finish_result(&mut self, result: *mut pq::PGresult, ok: &[pq::ExecStatusType]) -> Result<(), PgError> {
        if result.is_null() {
            return Err(self.connection_error());
        }
        // SAFETY: a result of this connection, read and then cleared exactly once.
        unsafe {
            let status = pq::PQresultStatus(result);
            let outcome = if ok.contains(&status) {
                Ok(())
            } else {
                let field = |code: u8| {
                    let value = pq::PQresultErrorField(result, c_int::from(code));
                    (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
                };
                let message = CStr::from_ptr(pq::PQresultErrorMessage(result)).to_string_lossy().into_owned();
                let message = if message.is_empty() { self.error_message() } else { message };
                Err(PgError {
                    code: field(pq::PG_DIAG_SQLSTATE).unwrap_or_default(),
                    message: crate::url::redact_str(message.trim()),
                })
            };
            // In a COPY, libpq would hand the same state back without end: the COPY ends it.
            if !matches!(status, pq::ExecStatusType::PGRES_COPY_IN | pq::ExecStatusType::PGRES_COPY_OUT) {
                pq::PQclear(result);
                loop {
                    let more = pq::PQgetResult(self.conn);
                    if more.is_null() {
                        break;
                    }
                    pq::PQclear(more);
                }
            } else {
                pq::PQclear(result);
            }
            outcome
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the connection was made by PQconnectdb and is finished once.
        unsafe { pq::PQfinish(self.conn) };
    }
}

unsafe extern "C" fn ignore_notice(_arg: *mut c_void, _message: *const c_char) {}
