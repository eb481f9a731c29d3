//! The file a backup is written to: unnamed until it is complete ([`Pending::persist`]), so no
//! half-written file ever has a backup's name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};

use super::compress::explain_write;

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
