//! The instant checks of a backup file, before anything is read past its first bytes: it is
//! there, a regular file (not a FIFO, a device or a directory), not empty, and gzip that opens
//! with pg_dump's header (or encrypted, which only a key can check further).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use flate2::read::MultiGzDecoder;

use super::HEADER;
use crate::backup::sealed;

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
pub(super) fn gzip_checked(mut file: File, path: &Path) -> Result<File> {
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
pub(super) fn open_regular(path: &Path) -> Result<File> {
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
