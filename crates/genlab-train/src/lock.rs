//! The run-directory lock: at most one process trains in a run directory at a time.
//!
//! [`RunLock::acquire`] takes an OS advisory lock (`flock` on Unix, `LockFileEx` on Windows,
//! through [`std::fs::File::try_lock`]) on [`LOCK_FILE`] inside the run directory and holds it
//! until the `RunLock` is dropped. The OS drops the lock with the process however it ends
//! (normal exit, panic, SIGKILL, OOM kill), so a lock never outlives its holder and a killed
//! run never blocks the next one. A second process fails at once with
//! [`Error::RunDirInUse`], which names the holder's process id and start time, read from the
//! file: the holder writes them there once it has the lock.
//!
//! The file's contents are only for that message; the lock is what counts. The file is never
//! deleted: deleting it would let a process that opened it just before the deletion lock the
//! unlinked file while another creates and locks a fresh one, both believing they hold the
//! directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// Who holds a lock, as written into the lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    /// Seconds since the Unix epoch.
    started_unix_s: u64,
    /// The same instant, `YYYY-MM-DD HH:MM:SS UTC`.
    started: String,
}

/// The lock of one run directory, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `run_dir` (which must exist) for this process, or fails at once with
    /// [`Error::RunDirInUse`] when another process (or another `RunLock` of this process)
    /// holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the run lock", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(Error::RunDirInUse {
                    dir: run_dir.to_path_buf(),
                    pid: holder.as_ref().map(|h| h.pid),
                    started: holder.map(|h| h.started),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let holder = Holder {
            pid: std::process::id(),
            started_unix_s: now,
            started: utc_text(now),
        };
        let text = serde_json::to_string(&holder).expect("Holder serialises") + "\n";
        // Replaces what a killed holder left behind.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| Error::io("write the run lock", &path, e))?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still locked here (the lock goes when `file` closes, after this): clearing the
        // holder keeps the file from naming a process that no longer trains there.
        let _ = self.file.set_len(0);
    }
}

/// The holder recorded in a locked file; `None` when it has not written itself yet or the OS
/// keeps the locked file unreadable (Windows locks are mandatory).
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// `YYYY-MM-DD HH:MM:SS UTC` of `secs` since the Unix epoch (proleptic Gregorian calendar;
/// days to date after Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn utc_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_matches_known_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @951782400`: the leap day of 2000 (a year divisible by 400).
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_text(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(utc_text(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder_and_dropping_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(first.path(), dir.path().join(LOCK_FILE));
        let err = RunLock::acquire(dir.path()).unwrap_err();
        let Error::RunDirInUse { pid, started, .. } = &err else {
            panic!("expected RunDirInUse, got {err:?}");
        };
        assert_eq!(*pid, Some(std::process::id()));
        assert!(started.as_deref().is_some_and(|s| s.ends_with(" UTC")));
        let msg = err.to_string();
        let want = format!(
            "run directory {} is in use by process {} (started ",
            dir.path().display(),
            std::process::id()
        );
        assert!(msg.starts_with(&want), "{msg}");
        assert!(
            msg.ends_with("; wait for it or choose another directory"),
            "{msg}"
        );
        assert!(!msg.contains("--"), "a library error names no flag: {msg}");
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("absent");
        let err = RunLock::acquire(&gone).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(LOCK_FILE), "{err}");
        assert!(!gone.exists());
    }
}
