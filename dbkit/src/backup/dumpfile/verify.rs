//! Checking a backup file whole and reading its SQL: our members inflated on several threads
//! (found by the sizes in their headers), any other gzip one member after the other, an
//! encrypted one as it is decrypted; every statement scanned, pg_dump's ends checked.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use flate2::read::MultiGzDecoder;
use flate2::{Crc, Status};

use super::ends::{Tail, check_header};
use super::open::{gzip_checked, open_checked, open_regular};
use super::{GZIP_HEADER, HEADER, MEMBER, MEMBER_MAX_SIZE, SIZE_AT, Summary};
use crate::backup::progress::Progress;
use crate::backup::scan::{FORBIDDEN_HINT, Forbidden};
use crate::backup::sealed;
use crate::backup::statement::{Event, Statements};
use crate::error::Hinted;

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
/// SQL in order (see [`scan`](crate::backup::scan)) while the next batch inflates. Two sets of buffers
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

/// Decompresses every member (each checks its CRC and length) and looks for pg_dump's header
/// and completion marker.
pub fn verify_stream(input: impl Read) -> Result<Summary> {
    verify_shown(input, &Progress::hidden())
}

/// [`verify_stream`], each piece of the dump shown to `shown` as it is checked.
pub(super) fn verify_shown(input: impl Read, shown: &Progress) -> Result<Summary> {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::super::compress::{MemberEncoder, compress};
    use super::super::pending::Pending;
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
