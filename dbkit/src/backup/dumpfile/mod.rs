//! The backup file: pg_dump's plain SQL as gzip members compressed side by side, written to an
//! unnamed file that gets its name only once complete, synced and verified.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context as _, Result, anyhow, bail};
use flate2::read::MultiGzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::manifest::{self, Manifest};
use super::progress::Progress;
use super::scan::{FORBIDDEN_HINT, Forbidden};
use super::sealed;
use super::statement::{Event, Statements};
use crate::error::Hinted;

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

/// Checks a backup file the way `db verify` does, with the fix for each way it can be wrong.
pub fn verify_file(path: &Path) -> Result<Summary> {
    open_verified(path).map(|(_, summary)| summary)
}

/// Opens the backup at `path` once, checks it whole from that open file, and hands the same
/// file back at its start: what is loaded is what was checked, whatever happens to the name
/// meanwhile (read its SQL with [`sql_reader`]).
pub fn open_verified(path: &Path) -> Result<(File, Summary)> {
    let mut file = open_checked(path)?;
    let checked = match member_index(&file)? {
        Some(members) => verify_members(&file, &members),
        // Not all ours (another gzip, or cut short): one member after the other, as gunzip does.
        None => verify_stream(&file),
    };
    let summary = checked.with_context(|| format!("{} is not a usable backup", path.display()))?;
    file.seek(SeekFrom::Start(0)).with_context(|| format!("rewind {}", path.display()))?;
    Ok((file, summary))
}

/// A backup file checked whole and open at its start, plain or encrypted: what is loaded is
/// what was checked.
pub struct Verified {
    file: File,
    keys: Option<sealed::Identities>,
    path: PathBuf,
}

impl Verified {
    /// Whether the file is encrypted.
    pub fn is_sealed(&self) -> bool {
        self.keys.is_some()
    }

    /// The same checked file again, from its start, for one more read; the two share the
    /// file's position: read one to its end before the other.
    pub fn rewound(&self) -> Result<Verified> {
        let mut file = self.file.try_clone().with_context(|| format!("reopen {}", self.path.display()))?;
        file.seek(SeekFrom::Start(0)).with_context(|| format!("rewind {}", self.path.display()))?;
        Ok(Verified { file, keys: self.keys.clone(), path: self.path.clone() })
    }

    /// The SQL, decrypted and decompressed as it is read (no plaintext on disk).
    pub fn sql(self) -> Result<Box<dyn Read + Send>> {
        Ok(match self.keys {
            None => Box::new(sql_reader(self.file)),
            Some(keys) => {
                let plain = keys.open(BufReader::with_capacity(256 << 10, self.file), &self.path)?;
                Box::new(MultiGzDecoder::new(BufReader::with_capacity(256 << 10, plain)))
            }
        })
    }
}

/// [`open_verified`] for a backup plain or encrypted: an encrypted one (age, by its first bytes)
/// is decrypted as it is read, with the identities `keys` gives (asked for only then), and
/// checked whole as [`verify_stream`] checks; a wrong key or a damaged or tampered file fails
/// here. Nothing is written to disk.
pub fn open_any(path: &Path, keys: impl FnOnce() -> Result<sealed::Identities>) -> Result<(Verified, Summary)> {
    let mut file = open_regular(path)?;
    if !sealed::is_sealed(&file)? {
        drop(file);
        let (file, summary) = open_verified(path)?;
        return Ok((Verified { file, keys: None, path: path.to_path_buf() }, summary));
    }
    let keys = keys()?;
    let plain = keys.open(BufReader::with_capacity(256 << 10, &file), path)?;
    let summary = verify_stream(plain).with_context(|| format!("{} is not a usable backup", path.display()))?;
    file.seek(SeekFrom::Start(0)).with_context(|| format!("rewind {}", path.display()))?;
    Ok((Verified { file, keys: Some(keys), path: path.to_path_buf() }, summary))
}

/// The SQL of an open backup, decompressed as it is read from where the file stands.
pub fn sql_reader(file: File) -> impl Read {
    MultiGzDecoder::new(BufReader::with_capacity(256 << 10, file))
}

/// Checks that the backup at `path` is complete, cheaply: the instant checks, then, for a file of
/// ours, only its last members (their CRCs, and pg_dump's completion marker); another gzip is
/// read whole; of an encrypted one, only its age header (the rest needs the key). For deciding
/// which files count as backups, not for trusting one's content.
pub fn check_complete(path: &Path) -> Result<()> {
    let file = open_regular(path)?;
    if sealed::is_sealed(&file)? {
        return sealed::check_header(file);
    }
    let file = gzip_checked(file, path)?;
    let Some(members) = member_index(&file)? else {
        return verify_stream(&file).map(|_| ());
    };
    let mut tail = Tail::default();
    for member in members.iter().rev().take(2).rev() {
        tail.push(&inflate_member(&file, *member)?);
    }
    tail.finish().map(|_| ())
}

/// The bytes of SQL in a backup file of ours, from its members' trailers (a read of a few
/// bytes per MiB); `None` for another gzip.
pub fn sql_size(file: &File) -> Option<u64> {
    let mut length = [0u8; 4];
    let mut sql = 0;
    for (at, size) in member_index(file).ok()?? {
        file.read_exact_at(&mut length, at + size as u64 - 4).ok()?;
        sql += u64::from(u32::from_le_bytes(length));
    }
    Some(sql)
}

/// Where each member is, from the sizes our headers carry; `None` unless every member has one
/// and they add up to the file exactly.
fn member_index(file: &File) -> Result<Option<Vec<(u64, usize)>>> {
    let len = file.metadata().context("read the backup's size")?.len();
    let mut members = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; GZIP_HEADER.len()];
    while at < len {
        if file.read_exact_at(&mut header, at).is_err() {
            return Ok(None);
        }
        let size = u32::from_le_bytes(header[SIZE_AT..SIZE_AT + 4].try_into().expect("4 bytes")) as usize;
        if header[..SIZE_AT] != GZIP_HEADER[..SIZE_AT] || size < GZIP_HEADER.len() + 8 || size > MEMBER_MAX_SIZE {
            return Ok(None);
        }
        members.push((at, size));
        at += size as u64;
    }
    Ok((at == len).then_some(members))
}

/// Inflates and checks the members on several threads, a batch at a time, and scans each batch's
/// SQL in order (see [`scan`](super::scan)) while the next batch inflates. Two sets of buffers
/// take turns: no member's memory is allocated twice.
fn verify_members(file: &File, members: &[(u64, usize)]) -> Result<Summary> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let batches: Vec<&[(u64, usize)]> = members.chunks(threads * 8).collect();
    let mut ready = vec![Vec::new(); threads * 8];
    let mut spare = vec![Vec::new(); threads * 8];
    inflate_batch(file, batches[0], &mut ready, threads)?;
    let mut scanner = Statements::new();
    let mut sql = 0;
    let mut tables = 0;
    let mut count = |event: Event<'_>| tables += u64::from(matches!(event, Event::CopyEnd));
    for (i, batch) in batches.iter().enumerate() {
        let next = batches.get(i + 1).copied();
        let (scanned, inflated) = std::thread::scope(|scope| {
            let inflating = next.map(|next| scope.spawn(|| inflate_batch(file, next, &mut spare, threads)));
            let scanned = ready[..batch.len()].iter().try_for_each(|member| {
                sql += member.len() as u64;
                scanner.feed(member, &mut count).map_err(forbidden)
            });
            let inflated = inflating.map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the backup check panicked"))));
            (scanned, inflated)
        });
        scanned?;
        inflated.transpose()?;
        std::mem::swap(&mut ready, &mut spare);
    }
    scanner.finish(&mut count).map_err(forbidden)?;
    // The header and the marker, from the first and the last member.
    let first = inflate_member(file, members[0])?;
    check_header(&first)?;
    let mut tail = Tail::default();
    for member in members.iter().rev().take(2).rev() {
        tail.push(&inflate_member(file, *member)?);
    }
    let manifest = tail.finish()?;
    let compressed = members.last().map_or(0, |(at, size)| at + *size as u64);
    Ok(Summary { compressed, sql, tables, extensions: scanner.extensions().to_vec(), manifest })
}

/// Inflates `batch` into `buffers` (one each, reused), on `threads` threads.
fn inflate_batch(file: &File, batch: &[(u64, usize)], buffers: &mut [Vec<u8>], threads: usize) -> Result<()> {
    let share = batch.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(share)
            .zip(buffers.chunks_mut(share))
            .map(|(part, buffers)| {
                scope.spawn(move || {
                    let mut compressed = Vec::new();
                    part.iter()
                        .zip(buffers)
                        .try_for_each(|(member, sql)| inflate_into(file, *member, &mut compressed, sql))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the backup check panicked"))))
    })
}

/// A line psql must not run, as the error that says so and what to do.
pub fn forbidden(line: Forbidden) -> anyhow::Error {
    anyhow::Error::new(Hinted::new(line.to_string(), FORBIDDEN_HINT))
}

/// One member's SQL, its CRC and length checked.
fn inflate_member(file: &File, member: (u64, usize)) -> Result<Vec<u8>> {
    let mut sql = Vec::new();
    inflate_into(file, member, &mut Vec::new(), &mut sql)?;
    Ok(sql)
}

/// [`inflate_member`] into `sql`, reading through `bytes`: both buffers are reused.
fn inflate_into(file: &File, (at, size): (u64, usize), bytes: &mut Vec<u8>, sql: &mut Vec<u8>) -> Result<()> {
    let corrupt = |what: &str| {
        anyhow!(hint!("corrupt: the gzip member at byte {at} {what}"; "the file was damaged; use another backup"))
    };
    bytes.resize(size, 0);
    file.read_exact_at(bytes, at).context("read the backup")?;
    let (body, trailer) = bytes[GZIP_HEADER.len()..].split_at(size - GZIP_HEADER.len() - 8);
    let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let length = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes")) as usize;
    if length > MEMBER {
        return Err(corrupt("claims an impossible length"));
    }
    sql.clear();
    sql.reserve(length + 1);
    let mut inflate = flate2::Decompress::new(false);
    let status = inflate.decompress_vec(body, sql, flate2::FlushDecompress::Finish);
    if !matches!(status, Ok(Status::StreamEnd)) || inflate.total_in() as usize != body.len() {
        return Err(corrupt("does not inflate"));
    }
    let mut check = Crc::new();
    check.update(sql);
    if sql.len() != length || check.sum() != crc {
        return Err(corrupt("fails its CRC or length check"));
    }
    Ok(())
}

/// The instant checks: the file exists, is a regular file, is not empty, and starts as gzip
/// does, with pg_dump's header.
pub fn check_file(path: &Path) -> Result<()> {
    open_checked(path).map(|_| ())
}

/// [`check_file`], returning the file it checked, at its start. A FIFO or a device is refused
/// before it is opened (opening a FIFO waits for a writer), and the open file is checked to be
/// a regular file still, in case the name changed in between.
pub fn open_checked(path: &Path) -> Result<File> {
    let file = open_regular(path)?;
    if sealed::is_sealed(&file)? {
        bail!(
            hint!("{} is an encrypted backup (age)", path.display(); "`cargo xtask db verify` and `db restore` decrypt it with the identity file {} names", sealed::IDENTITY_SETTING)
        );
    }
    gzip_checked(file, path)
}

/// The open `file` at `path` when it starts as gzip does, with pg_dump's header.
fn gzip_checked(mut file: File, path: &Path) -> Result<File> {
    let shown = path.display();
    let mut magic = [0u8; 2];
    let got = file.read_at(&mut magic, 0).with_context(|| format!("read {shown}"))?;
    if got < 2 || magic != [0x1f, 0x8b] {
        bail!(
            hint!("{shown} is not gzip, so not a backup of ours"; "backups are the railgun_backup_*.sql.gz files `cargo xtask db backup` writes; a plain .sql file goes to psql directly")
        );
    }
    // pg_dump's header opens the SQL: another gzip is refused now, not after a safety backup.
    let mut head = Vec::with_capacity(HEADER.len());
    let _ = MultiGzDecoder::new(&file).take(HEADER.len() as u64).read_to_end(&mut head);
    if head.len() == HEADER.len() && head != HEADER {
        bail!(
            hint!("{shown} is gzip, but not a pg_dump SQL dump (no `-- PostgreSQL database dump` header)"; "restore only files written by `cargo xtask db backup` or `pg_dump | gzip`")
        );
    }
    file.seek(SeekFrom::Start(0)).with_context(|| format!("rewind {shown}"))?;
    Ok(file)
}

/// The instant checks every backup passes, plain or encrypted: a regular file, not empty.
fn open_regular(path: &Path) -> Result<File> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let not_a_file = |kind: std::fs::FileType| {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        anyhow!(
            hint!("{shown} is {what}: not a backup file"; "name the backup file itself (railgun_backup_*.sql.gz), not a pipe or device; to restore from a stream, write it to a file first")
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            hint!("backup file {shown} does not exist"; "check the path; `cargo xtask db backup` writes to ./backups by default (ls backups/)")
        ),
        Err(e) => return Err(e).with_context(|| format!("read {shown}")),
    };
    if meta.is_dir() {
        bail!(
            hint!("{shown} is a directory, not a backup file"; "name one file in it, e.g. the newest: ls -t {shown}/railgun_backup_*.sql.gz | head -1")
        );
    }
    if !meta.is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    // O_NONBLOCK: should the name have become a FIFO since, the open does not wait for a writer
    // (it has no effect on a regular file's reads).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("open {shown}"))?;
    let meta = file.metadata().with_context(|| format!("read {shown}"))?;
    if !meta.is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    if meta.len() == 0 {
        bail!(
            hint!("{shown} is empty: not a backup"; "use another backup; an empty file is what an interrupted copy leaves")
        );
    }
    Ok(file)
}

/// Decompresses every member (each checks its CRC and length) and looks for pg_dump's header
/// and completion marker.
pub fn verify_stream(input: impl Read) -> Result<Summary> {
    verify_shown(input, &Progress::hidden())
}

/// [`verify_stream`], each piece of the dump shown to `shown` as it is checked.
fn verify_shown(input: impl Read, shown: &Progress) -> Result<Summary> {
    let counted = Counted { inner: input, count: 0 };
    let mut decoder = MultiGzDecoder::new(BufReader::with_capacity(256 << 10, counted));
    let mut buf = vec![0u8; 256 << 10];
    let (mut head, mut tail) = (Vec::with_capacity(HEADER.len()), Tail::default());
    let mut sql = 0u64;
    let mut scanner = Statements::new();
    let mut tables = 0;
    let mut count = |event: Event<'_>| {
        tables += u64::from(matches!(event, Event::CopyEnd));
        shown.saw(&event);
    };
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => bail!(
                hint!("truncated: the gzip stream ends early after {sql} bytes of SQL"; "the copy was cut short (full disk, interrupted transfer); use another backup")
            ),
            Err(e) => {
                bail!(hint!("corrupt: {e} (after {sql} bytes of SQL)"; "the file was damaged; use another backup"))
            }
        };
        let chunk = &buf[..n];
        if head.len() < HEADER.len() {
            head.extend_from_slice(&chunk[..chunk.len().min(HEADER.len() - head.len())]);
        }
        tail.push(chunk);
        sql += n as u64;
        if let Err(line) = scanner.feed(chunk, &mut count) {
            if !head.starts_with(HEADER) {
                break;
            }
            return Err(forbidden(line));
        }
    }
    check_header(&head)?;
    let manifest = tail.finish()?;
    scanner.finish(&mut count).map_err(forbidden)?;
    let compressed = decoder.into_inner().into_inner().count;
    Ok(Summary { compressed, sql, tables, extensions: scanner.extensions().to_vec(), manifest })
}

/// pg_dump's header, at the start of the SQL (`head`: its first bytes).
pub(super) fn check_header(head: &[u8]) -> Result<()> {
    if !head.starts_with(HEADER) {
        bail!(
            hint!("it is gzip, but not a pg_dump SQL dump (no `-- PostgreSQL database dump` header)"; "restore only files written by `cargo xtask db backup` or `pg_dump | gzip`")
        );
    }
    Ok(())
}

/// The end of a backup's SQL as it streams by: pg_dump's completion marker followed by nothing
/// but pg_dump's closing lines (`--`, blank lines, `\unrestrict KEY`), then, as the very last
/// line, the manifest `db backup` appends (see [`manifest`]), or nothing (a backup made before
/// manifests, or by `pg_dump | gzip`). Anything else there is refused.
#[derive(Default)]
pub struct Tail {
    bytes: Vec<u8>,
    /// Bytes before `bytes` went by.
    cut: bool,
}

/// The end kept: the longest manifest line and the KiB before it that holds the marker.
const TAIL_KEEP: usize = manifest::LINE_MAX + 2048;

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL_KEEP {
            self.bytes.clear();
            self.bytes.extend_from_slice(&chunk[chunk.len() - TAIL_KEEP..]);
            self.cut = true;
            return;
        }
        self.bytes.extend_from_slice(chunk);
        // Trimmed now and then, not at every chunk: each byte is moved about once.
        if self.bytes.len() > 2 * TAIL_KEEP {
            self.bytes.drain(..self.bytes.len() - TAIL_KEEP);
            self.cut = true;
        }
    }

    /// Checks the end as the type says; the manifest, when the backup has one.
    pub fn finish(&self) -> Result<Option<Manifest>> {
        let (body, json) = match self.bytes.strip_suffix(b"\n") {
            Some(text) => {
                let start = text.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
                if (start == 0 && self.cut) || text.len() - start > manifest::LINE_MAX {
                    bail!(
                        hint!("the backup's last line is longer than a manifest may be ({} KiB)", manifest::LINE_MAX >> 10; "this file is not what pg_dump or `cargo xtask db backup` wrote: do not restore it; take a new backup")
                    );
                }
                match text[start..].strip_prefix(manifest::LINE_PREFIX) {
                    Some(json) => (&self.bytes[..start], Some(json)),
                    None => (&self.bytes[..], None),
                }
            }
            None => (&self.bytes[..], None),
        };
        check_marker(&body[body.len().saturating_sub(1024)..])?;
        json.map(|json| {
            Manifest::parse(json).map_err(|e| {
                anyhow!(hint!("the backup's manifest (its last line) is malformed: {e:#}"; "this file is not what `cargo xtask db backup` wrote (edited or crafted): do not restore it; take a new backup"))
            })
        })
        .transpose()
    }
}

/// pg_dump's completion marker, near the end of the SQL (`tail`: its last KiB), followed only by
/// pg_dump's closing lines.
fn check_marker(tail: &[u8]) -> Result<()> {
    let Some(at) = tail.windows(MARKER.len()).rposition(|w| w == MARKER) else {
        bail!(
            hint!("truncated: pg_dump's completion marker `{}` is missing, so the dump stopped early", String::from_utf8_lossy(MARKER); "use another backup; this one was written by a pg_dump that did not finish")
        );
    };
    let after = &tail[at + MARKER.len()..];
    let closing = |line: &[u8]| line.is_empty() || line == b"--" || line.starts_with(b"\\unrestrict ");
    if !after.split(|&b| b == b'\n').all(closing) {
        bail!(
            hint!("the backup has text after pg_dump's completion marker that neither pg_dump nor `cargo xtask db backup` writes"; "this file was edited or crafted: do not restore it; take a new backup")
        );
    }
    Ok(())
}

/// Keeps the last `keep` bytes of what went by in `tail`.
pub(super) fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8], keep: usize) {
    if chunk.len() >= keep {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - keep..]);
    } else {
        tail.extend_from_slice(chunk);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
}

struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Compresses `input` into `file` as gzip members on worker threads, in order, and verifies the
/// file as it grows by reading it back from disk, shown to `progress` (bytes of SQL read and
/// written, tables checked).
pub fn compress(input: impl Read, file: &File, level: u32, progress: &Progress) -> Result<Summary> {
    compress_to(input, file, None, level, progress)
}

/// [`compress`], and with `seal` the gzip is encrypted to those recipients on its way to `file`
/// ([`sealed`]): the plaintext never reaches the disk. Without the key to read the file back,
/// its gzip is checked as it is written (every member's CRC and length, pg_dump's header,
/// marker and statements), and the file is read back to compare with the bytes sealed.
pub fn compress_to(
    input: impl Read,
    file: &File,
    seal: Option<&[age::x25519::Recipient]>,
    level: u32,
    progress: &Progress,
) -> Result<Summary> {
    let Some(recipients) = seal else {
        return compress_core::<io::Sink>(input, Out::File(file), level, progress).map(|(summary, _)| summary);
    };
    let out = sealed::Tally::new(io::BufWriter::with_capacity(1 << 20, file));
    let (summary, out) = compress_core(input, Out::Stream(out, Some(recipients)), level, progress)?;
    let sealed::Tally { inner, bytes, crc } = out.context("the encrypted backup's writer")?;
    inner.into_inner().map_err(|e| explain_write(e.into_error()))?;
    file.sync_all().map_err(explain_write)?;
    sealed::read_back(file, bytes, crc.sum())?;
    Ok(summary)
}

/// [`compress_to`] into any writer (an upload): the gzip, encrypted to `seal` when given, goes
/// to `out`, and is checked as it goes (every member, pg_dump's header, statements and marker).
/// Returns `out` once all of it was written (and sealed).
pub fn compress_stream<W: Write + Send>(
    input: impl Read,
    out: W,
    seal: Option<&[age::x25519::Recipient]>,
    level: u32,
    progress: &Progress,
) -> Result<(Summary, W)> {
    let (summary, out) = compress_core(input, Out::Stream(out, seal), level, progress)?;
    Ok((summary, out.context("the backup's writer")?))
}

/// Where [`compress_core`] puts the members: a file read back from disk as it grows, or a
/// writer (sealed when recipients are given), checked through a pipe as it is written.
enum Out<'a, W> {
    File(&'a File),
    Stream(W, Option<&'a [age::x25519::Recipient]>),
}

/// A chunk of SQL for an encoder: its number, its buffer, and how much of the buffer is filled.
type Chunk = (u64, Vec<u8>, usize);
/// A gzip member for the writer: its number, its bytes.
type Member = (u64, Vec<u8>);

/// Compresses on `workers` encoder threads while this thread reads `input` and one thread writes
/// the members in order to `out`; another checks what was written as it grows.
fn compress_core<W: Write + Send>(
    input: impl Read,
    out: Out<'_, W>,
    level: u32,
    progress: &Progress,
) -> Result<(Summary, Option<W>)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let (work_tx, work_rx) = sync_channel::<Chunk>(workers);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Member>(workers);
    // Buffers go round instead of being allocated per member: fresh megabytes cost page faults.
    let (spare_in_tx, spare_in_rx) = sync_channel::<Vec<u8>>(3 * workers + 2);
    let (spare_out_tx, spare_out_rx) = sync_channel::<Vec<u8>>(3 * workers + 2);
    let spare_out_rx = Mutex::new(spare_out_rx);
    let growth = Growth::default();
    let written = AtomicU64::new(0);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (work_rx, done_tx, spare_in_tx) = (Arc::clone(&work_rx), done_tx.clone(), spare_in_tx.clone());
            let spare_out_rx = &spare_out_rx;
            scope.spawn(move || encode_members(level, work_rx, done_tx, spare_in_tx, spare_out_rx));
        }
        drop((work_rx, done_tx, spare_in_tx));
        let (writer, verifier) = match out {
            Out::File(file) => (
                scope.spawn(|| write_file(done_rx, &written, &spare_out_tx, file, &growth)),
                scope.spawn(|| verify_shown(Growing { file, growth: &growth, pos: 0 }, progress)),
            ),
            Out::Stream(out, seal) => {
                let (check, to_check) = io::pipe().context("make a pipe to check the backup")?;
                let written = &written;
                let spare_out_tx = &spare_out_tx;
                let writer = scope.spawn(move || {
                    stream_in_order(done_rx, written, spare_out_tx, out, seal, to_check).map(|(t, w)| (t, Some(w)))
                });
                (writer, scope.spawn(move || verify_shown(check, progress)))
            }
        };
        let read = read_chunks(input, &work_tx, &spare_in_rx, &written, progress);
        drop(work_tx);
        let wrote = writer.join().map_err(|_| anyhow!("the backup writer panicked"))?;
        let checked = verifier.join().map_err(|_| anyhow!("the backup verifier panicked"))?;
        settle(read, wrote, checked)
    })
}

/// One encoder thread: numbered chunks of SQL in, gzip members out, until either side hangs up.
/// Each chunk's buffer goes back to the reader; each member goes into a buffer the writer gave
/// back, when there is one.
fn encode_members(
    level: u32,
    work: Arc<Mutex<Receiver<Chunk>>>,
    done: SyncSender<Member>,
    spare_in: SyncSender<Vec<u8>>,
    spare_out: &Mutex<Receiver<Vec<u8>>>,
) {
    let mut encoder = MemberEncoder::new(level);
    loop {
        let next = work.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok((seq, chunk, filled)) = next else { break };
        let spare = spare_out.lock().ok().and_then(|rx| rx.try_recv().ok());
        let mut out = spare.unwrap_or_default();
        encoder.encode(&chunk[..filled], &mut out);
        let _ = spare_in.try_send(chunk);
        if done.send((seq, out)).is_err() {
            break;
        }
    }
}

/// The writer's side of [`Out::File`]: the members in order into `file`, synced, each write
/// announced to the verifier that reads the file back as it grows.
fn write_file<W>(
    done: Receiver<Member>,
    written: &AtomicU64,
    spare: &SyncSender<Vec<u8>>,
    file: &File,
    growth: &Growth,
) -> Result<(u64, Option<W>)> {
    let result = write_in_order(done, written, spare, |bytes, total| {
        (&*file).write_all(bytes).map_err(explain_write)?;
        growth.grow(total);
        Ok(())
    })
    .and_then(|total| file.sync_all().map_err(explain_write).map(|()| (total, None)));
    growth.finish(result.is_ok());
    result
}

/// Reads `input` in chunks of MEMBER bytes (the last one shorter) and hands them, numbered, to
/// the encoders, showing the progress; returns the bytes of SQL read. Stops early, without an
/// error of its own, when the writer stopped: its error says why.
fn read_chunks(
    mut input: impl Read,
    work: &SyncSender<Chunk>,
    spare: &Receiver<Vec<u8>>,
    written: &AtomicU64,
    progress: &Progress,
) -> Result<u64> {
    let mut sql = 0u64;
    let mut seq = 0u64;
    loop {
        let mut chunk = spare.try_recv().unwrap_or_else(|_| vec![0u8; MEMBER]);
        let mut filled = 0;
        while filled < MEMBER {
            match input.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read pg_dump's output"),
            }
        }
        if filled == 0 {
            return Ok(sql);
        }
        sql += filled as u64;
        if work.send((seq, chunk, filled)).is_err() {
            return Ok(sql); // the writer stopped: its error says why
        }
        seq += 1;
        progress.set(sql);
        progress.written(written.load(Ordering::Relaxed));
    }
}

/// What the reader, the writer and the check each said, as one result: the error that says why
/// when there is one, else the check's summary, which must count the bytes that went in and out.
fn settle<W>(
    read: Result<u64>,
    wrote: Result<(u64, Option<W>)>,
    checked: Result<Summary>,
) -> Result<(Summary, Option<W>)> {
    // The check stopped reading first (a statement refused): its error is the one to show.
    let checked = match (&wrote, checked) {
        (Err(e), Err(why)) if e.is::<CheckStopped>() => {
            return Err(why.context("the backup written does not read back whole"));
        }
        (_, checked) => checked,
    };
    let sql = read?;
    let (compressed, out) = wrote?;
    let summary = checked.context("the backup written does not read back whole")?;
    if summary.sql != sql || summary.compressed != compressed {
        bail!(
            "the backup reads back as {} bytes of SQL in {} bytes, but {sql} bytes went into {compressed}",
            summary.sql,
            summary.compressed
        );
    }
    Ok((summary, out))
}

/// The writer's side of [`Out::Stream`]: the members in order into `out` (through age when
/// `seal` is given) and into the pipe to the check.
fn stream_in_order<W: Write>(
    done: Receiver<Member>,
    written: &AtomicU64,
    spare: &SyncSender<Vec<u8>>,
    out: W,
    seal: Option<&[age::x25519::Recipient]>,
    mut to_check: io::PipeWriter,
) -> Result<(u64, W)> {
    let mut check = |bytes: &[u8]| to_check.write_all(bytes).map_err(|_| anyhow::Error::new(CheckStopped));
    match seal {
        Some(recipients) => {
            let mut sealing = sealed::seal(out, recipients)?;
            let total = write_in_order(done, written, spare, |bytes, _| {
                sealing.write_all(bytes).map_err(explain_write)?;
                check(bytes)
            })?;
            let mut out = sealing.finish().map_err(explain_write)?;
            out.flush().map_err(explain_write)?;
            Ok((total, out))
        }
        None => {
            let mut out = out;
            let total = write_in_order(done, written, spare, |bytes, _| {
                out.write_all(bytes).map_err(explain_write)?;
                check(bytes)
            })?;
            out.flush().map_err(explain_write)?;
            Ok((total, out))
        }
    }
}

/// Makes gzip members (RFC 1952: header, raw deflate, CRC-32, length) with one deflate state
/// reused for all of them.
struct MemberEncoder {
    deflate: Compress,
}

/// No name, no time, unknown OS, and an extra field (RFC 1952 FEXTRA, as BGZF does) `RG` holding
/// the member's whole size, so a reader can find every member without inflating the ones
/// before it and check them in parallel. Other gzip readers skip the field.
const GZIP_HEADER: [u8; 20] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, b'R', b'G', 4, 0, 0, 0, 0, 0];
const SIZE_AT: usize = 16;

impl MemberEncoder {
    fn new(level: u32) -> MemberEncoder {
        MemberEncoder { deflate: Compress::new(Compression::new(level), false) }
    }

    fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&GZIP_HEADER);
        self.deflate.reset();
        loop {
            let consumed = self.deflate.total_in() as usize;
            out.reserve(chunk.len() / 2 + 4096);
            let status = self
                .deflate
                .compress_vec(&chunk[consumed..], out, FlushCompress::Finish)
                .expect("deflate into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(chunk);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        let size = out.len() as u32;
        out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&size.to_le_bytes());
    }
}

/// The check of a backup being encrypted stopped reading: its own error says why.
#[derive(Debug)]
struct CheckStopped;

impl std::fmt::Display for CheckStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backup's check stopped reading")
    }
}

impl std::error::Error for CheckStopped {}

/// Hands the compressed members to `put(bytes, total_so_far)` in their order.
fn write_in_order(
    done: Receiver<Member>,
    written: &AtomicU64,
    spare: &SyncSender<Vec<u8>>,
    mut put: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<u64> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut total = 0u64;
    for (seq, bytes) in done {
        waiting.insert(seq, bytes);
        while let Some(bytes) = waiting.remove(&next) {
            total += bytes.len() as u64;
            put(&bytes, total)?;
            written.store(total, Ordering::Relaxed);
            let _ = spare.try_send(bytes);
            next += 1;
        }
    }
    if !waiting.is_empty() {
        bail!("a compressed chunk went missing");
    }
    Ok(total)
}

/// Write errors, with what to do about the common ones.
pub fn explain_write(e: io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => anyhow!(
            hint!("no space left for the backup ({e})"; "free some space, or write the backup elsewhere: cargo xtask db backup DIR")
        ),
        _ => anyhow!("write the backup: {e}"),
    }
}

/// How far the file has been written, for the verifier that follows the writer.
#[derive(Default)]
struct Growth {
    state: Mutex<(u64, Option<bool>)>,
    changed: Condvar,
}

impl Growth {
    fn grow(&self, len: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = len;
            self.changed.notify_all();
        }
    }
    fn finish(&self, ok: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.1 = Some(ok);
            self.changed.notify_all();
        }
    }
}

/// Reads `file` from disk up to where the writer is, waiting for more until it finishes.
struct Growing<'a> {
    file: &'a File,
    growth: &'a Growth,
    pos: u64,
}

impl Read for Growing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = {
            let mut state = self.growth.state.lock().map_err(|_| io::Error::other("writer panicked"))?;
            while state.0 <= self.pos && state.1.is_none() {
                state = self.growth.changed.wait(state).map_err(|_| io::Error::other("writer panicked"))?;
            }
            if state.1 == Some(false) {
                return Err(io::Error::other("the writer failed"));
            }
            state.0 - self.pos
        };
        if available == 0 {
            return Ok(0);
        }
        let want = buf.len().min(available as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A file in `dir` with no name until [`Pending::persist`]: if anything fails or the process
/// dies, no file with a backup's name (or any name) is left behind.
pub struct Pending {
    pub file: File,
    dir: PathBuf,
    /// Where the file is when the filesystem has no unnamed files (O_TMPFILE): a hidden name.
    temp: Option<PathBuf>,
}

impl Pending {
    pub fn create(dir: &Path, name: &str) -> Result<Pending> {
        let unnamed = OpenOptions::new().read(true).write(true).mode(0o600).custom_flags(libc::O_TMPFILE).open(dir);
        match unnamed {
            Ok(file) => return Ok(Pending { file, dir: dir.to_path_buf(), temp: None }),
            Err(e) if !matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                return Err(explain_dir(dir, e));
            }
            Err(_) => {}
        }
        let temp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| explain_dir(dir, e))?;
        Ok(Pending { file, dir: dir.to_path_buf(), temp: Some(temp) })
    }

    /// Gives the file the first of `names` that is free, never replacing an existing file
    /// (the link that names it fails on an existing name: no check-then-act race with another
    /// backup), and syncs the directory.
    pub fn persist(mut self, names: impl IntoIterator<Item = String>) -> Result<PathBuf> {
        let mut taken = None;
        for name in names {
            let path = self.dir.join(name);
            match self.link(&path) {
                Ok(()) => {
                    if let Some(temp) = self.temp.take() {
                        std::fs::remove_file(&temp).with_context(|| format!("remove {}", temp.display()))?;
                    }
                    File::open(&self.dir)
                        .and_then(|d| d.sync_all())
                        .with_context(|| format!("sync directory {}", self.dir.display()))?;
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => taken = Some(path),
                Err(e) => return Err(e).with_context(|| format!("name the backup {}", path.display())),
            }
        }
        let path = taken.context("no name to give the backup")?;
        bail!(
            hint!("{} already exists, and backups are never overwritten", path.display(); "wait a second and run again, or move the existing file away")
        )
    }

    /// Links the file at `path`; fails with `AlreadyExists` when the name is taken.
    fn link(&self, path: &Path) -> io::Result<()> {
        match &self.temp {
            None => {
                use std::os::fd::AsRawFd;
                use std::os::unix::ffi::OsStrExt;
                let from = std::ffi::CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
                let to = std::ffi::CString::new(path.as_os_str().as_bytes())?;
                // SAFETY: both are valid NUL-terminated paths; linkat only reads them.
                let rc = unsafe {
                    libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
                };
                if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
            }
            // A hard link never replaces an existing file, unlike rename.
            Some(temp) => std::fs::hard_link(temp, path),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn explain_dir(dir: &Path, e: io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => anyhow!(
            hint!("cannot write to {}: {e}", dir.display(); "choose a writable directory (cargo xtask db backup DIR) or fix its permissions")
        ),
        Some(libc::ENOSPC | libc::EDQUOT) => explain_write(e),
        _ => anyhow!("create a file in {}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use flate2::write::GzEncoder;

    use super::*;

    fn dump(body: &str) -> Vec<u8> {
        format!("--\n-- PostgreSQL database dump\n--\n{body}\n--\n-- PostgreSQL database dump complete\n--\n\n")
            .into_bytes()
    }

    #[test]
    fn members_round_trip_and_verify() {
        let dir = std::env::temp_dir().join(format!("railgun-dumpfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sql = dump(&"INSERT INTO t VALUES (1, 'abc');\n".repeat(400_000));
        let pending = Pending::create(&dir, "x.sql.gz").unwrap();
        let summary = compress(&sql[..], &pending.file, 6, &Progress::hidden()).unwrap();
        assert_eq!(summary.sql, sql.len() as u64);
        let path = pending.persist(["x.sql.gz".to_string()]).unwrap();
        let again = Pending::create(&dir, "x.sql.gz").unwrap();
        assert!(again.persist(["x.sql.gz".to_string()]).is_err(), "overwrote");
        let mut back = Vec::new();
        sql_reader(File::open(&path).unwrap()).read_to_end(&mut back).unwrap();
        assert_eq!(back, sql);
        verify_file(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let members = member_index(&File::open(&path).unwrap()).unwrap().expect("our members are indexed");
        assert!(members.len() > 3, "{members:?}");
        let mut damaged = bytes.clone();
        damaged[members[2].0 as usize + GZIP_HEADER.len() + 100] ^= 0x10;
        let bad = dir.join("bad.sql.gz");
        std::fs::write(&bad, &damaged).unwrap();
        assert!(format!("{:#}", verify_file(&bad).unwrap_err()).contains("corrupt"));
        let cut = dir.join("cut.sql.gz");
        std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
        assert!(format!("{:#}", verify_file(&cut).unwrap_err()).contains("truncated"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_verified_file_is_the_one_read_though_its_name_changes() {
        let dir = std::env::temp_dir().join(format!("railgun-dumpfile-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gzip = |sql: &[u8]| {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(sql).unwrap();
            encoder.finish().unwrap()
        };
        let sql = dump(&"INSERT INTO t VALUES (1, 'abc');\n".repeat(1000));
        let path = dir.join("railgun_backup_20200101_000000.sql.gz");
        std::fs::write(&path, gzip(&sql)).unwrap();
        let (file, summary) = open_verified(&path).unwrap();
        assert_eq!(summary.sql, sql.len() as u64);
        // Swapped for a truncated dump between the check and the load.
        let swapped = dir.join("swapped.sql.gz");
        std::fs::write(&swapped, gzip(&sql[..sql.len() / 2])).unwrap();
        std::fs::rename(&swapped, &path).unwrap();
        assert!(verify_file(&path).is_err(), "the file now at the name is truncated");
        let mut back = Vec::new();
        sql_reader(file).read_to_end(&mut back).unwrap();
        assert_eq!(back, sql, "the handle reads the file that was verified");

        // A FIFO is refused at once (opening it would wait for a writer), as is a device.
        let fifo = dir.join("fifo.sql.gz");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for (special, says) in [(fifo.as_path(), "is a FIFO"), (Path::new("/dev/zero"), "is a device")] {
            let err = format!("{:#}", open_verified(special).unwrap_err());
            assert!(err.contains(says), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_member_larger_than_ours_is_refused_before_it_is_inflated() {
        let dir = std::env::temp_dir().join(format!("railgun-dumpfile-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut member = Vec::new();
        MemberEncoder::new(1).encode(&dump(&"x".repeat(2 * MEMBER)), &mut member);
        let path = dir.join("big.sql.gz");
        std::fs::write(&path, &member).unwrap();
        let err = format!("{:#}", verify_file(&path).unwrap_err());
        assert!(err.contains("impossible length"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unfinished_dump_is_refused() {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE t ();\n").unwrap();
        let err = verify_stream(&encoder.finish().unwrap()[..]).unwrap_err();
        assert!(err.to_string().contains("completion marker"), "{err}");
    }
}
