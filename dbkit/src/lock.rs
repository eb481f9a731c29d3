//! The one cross-process lock: a file locked with the standard library's `File::lock` (flock on
//! Unix). The kernel releases it when its holder exits, however it exits, so a lock is never
//! left behind by a crash and never taken from a holder that is merely slow (an image build).

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context as _, Result};

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` (created if missing), waiting for its holder; `waiting` is called
    /// once when it has to wait (to say who is waited for).
    pub fn take(path: &Path, waiting: impl FnOnce()) -> Result<FileLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock().with_context(|| format!("lock {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_until_the_first_lets_go() {
        let path = std::env::temp_dir().join(format!("railgun-lock-test-{}", std::process::id()));
        let first = FileLock::take(&path, || panic!("nobody holds it yet")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let _second = FileLock::take(&path, || tx.send("waiting").unwrap()).unwrap();
            })
        };
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), "waiting");
        drop(first);
        waiter.join().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
