//! Writing a backup: the SQL read in chunks, compressed into gzip members on worker threads,
//! written in order (encrypted on the way when asked) to a file or any writer, and checked as it
//! is written: a file is read back from disk as it grows, a stream through a pipe.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context as _, Result, anyhow, bail};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::verify::verify_shown;
use super::{GZIP_HEADER, MEMBER, SIZE_AT, Summary};
use crate::backup::progress::Progress;
use crate::backup::sealed;

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
pub(super) struct MemberEncoder {
    deflate: Compress,
}

impl MemberEncoder {
    pub(super) fn new(level: u32) -> MemberEncoder {
        MemberEncoder { deflate: Compress::new(Compression::new(level), false) }
    }

    pub(super) fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
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
