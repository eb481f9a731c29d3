//! The backup file: pg_dump's plain SQL as gzip members compressed side by side, written to an
//! unnamed file that gets its name only once complete, synced and verified.
//!
//! This module holds the format both sides share (pg_dump's header and marker, the members' size,
//! our gzip header) and what a complete backup holds ([`Summary`]); the rest is in:
//! - `compress`: writing a backup, checked as it is written;
//! - `pending`: the unnamed file it is written to ([`Pending`]);
//! - `open`: the instant checks of a backup file;
//! - `verify`: checking one whole, and reading its SQL;
//! - `ends`: pg_dump's header and completion marker, and the manifest line after it ([`Tail`]).

mod compress;
mod ends;
mod open;
mod pending;
mod verify;

pub use compress::{compress, compress_stream, compress_to, explain_write};
pub use ends::Tail;
pub(super) use ends::{check_header, keep_tail};
pub use open::{check_file, open_checked};
pub use pending::Pending;
pub use verify::{
    Verified, check_complete, forbidden, open_any, open_verified, sql_reader, sql_size, verify_file, verify_stream,
};

use super::manifest::Manifest;

/// pg_dump's first line and its last words: a file without both is not a whole dump.
pub const HEADER: &[u8] = b"--\n-- PostgreSQL database dump\n";
pub const MARKER: &[u8] = b"-- PostgreSQL database dump complete";

/// Each member is compressed alone, so members compress in parallel; 1 MiB keeps the ratio
/// within a hair of one long stream while the dozen in flight stay far below 64 MiB.
const MEMBER: usize = 1 << 20;

/// The largest member of ours: MEMBER bytes of SQL that did not compress (deflate's stored
/// blocks add 5 bytes in 64 KiB), with its header and trailer. A file claiming larger members
/// is not ours: the check's buffers (two dozen members' worth) stay bounded on any input.
const MEMBER_MAX_SIZE: usize = MEMBER + MEMBER / 16;

/// No name, no time, unknown OS, and an extra field (RFC 1952 FEXTRA, as BGZF does) `RG` holding
/// the member's whole size, so a reader can find every member without inflating the ones
/// before it and check them in parallel. Other gzip readers skip the field.
const GZIP_HEADER: [u8; 20] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, b'R', b'G', 4, 0, 0, 0, 0, 0];
const SIZE_AT: usize = 16;

/// What a complete backup holds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Bytes of the file.
    pub compressed: u64,
    /// Bytes of SQL inside.
    pub sql: u64,
    /// Tables whose rows it holds (its `COPY`s).
    pub tables: u64,
    /// The extensions it creates.
    pub extensions: Vec<String>,
    /// Its manifest, when it has one (backups before manifests have none).
    pub manifest: Option<Manifest>,
}
