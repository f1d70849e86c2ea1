//! One writer per SQLite ledger: an exclusive lock on a file beside the database
//! (`ledger.db` → `ledger.db.lock`), taken by the daemon at start-up and held until it exits.
//!
//! The lock is the operating system's (`flock` on Linux), so it goes away with the process
//! however it ends — `kill -9` included — and a stale lock file never blocks a restart. The file
//! names the holder (pid, host, since) so a second daemon can say who has the ledger. Read-only
//! commands take no lock. A lock on a network file system is only as good as that file system's
//! locking; keep the ledger on a local disk.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the ledger {} is in use by another slawatch ({holder}); one daemon writes a ledger at a time",
        ledger.display()
    )]
    Held { ledger: PathBuf, holder: String },
    #[error("cannot lock {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
}

/// The lock file of a ledger database file.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the lock of `database` (its directory is created if missing), or says who holds it.
    pub fn acquire(database: &Path) -> Result<WriterLock, LockError> {
        let path = lock_path(database);
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    ledger: database.to_path_buf(),
                    holder: if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_string());
        let text = format!(
            "pid {} on host {host} since {}\n",
            std::process::id(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(WriterLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // The holder line goes with the lock, so nobody reads a stale one.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_ledger_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("slawatch-lock-{}", std::process::id()));
        let db = dir.join("ledger.db");
        let first = WriterLock::acquire(&db).unwrap();
        match WriterLock::acquire(&db) {
            Err(LockError::Held { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
                assert!(holder.contains("since"), "{holder}");
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(first);
        drop(WriterLock::acquire(&db).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
