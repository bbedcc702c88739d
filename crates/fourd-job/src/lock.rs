//! One writer per output folder: an advisory lock on a file in it (`flock` on Unix), held while
//! the job runs. The kernel releases it when the process ends in any way, `kill -9` included,
//! so a crashed job never leaves a folder locked. The lock file names the holder, so a second
//! job can say who is in the way.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{JobError, Result};

/// Name of the lock file of an output folder.
pub const LOCK_FILE: &str = ".fourd.lock";

/// Held for as long as the job writes into the folder; dropping it releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Locks the folder `dir` (created if missing) for the job described by `job` (e.g.
    /// `fourd eval`), or fails at once naming the process that holds it.
    pub fn folder(dir: &Path, job: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| JobError::io(dir, e))?;
        Self::at(&dir.join(LOCK_FILE), dir, job)
    }

    /// Locks with the lock file `path`, for one output file among several in a folder (the
    /// shards of an evaluation share a folder; each locks its own file). `what` is the folder
    /// or file named in the error.
    pub fn at(path: &Path, what: &Path, job: &str) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| JobError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(JobError::Locked {
                    path: what.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not said who it is yet".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(JobError::io(path, e)),
        }
        let me = format!("pid {}, {job}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| JobError::io(path, e))?;
        Ok(OutputLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // The holder's name goes; the file stays (removing it would race with a job that
        // opened it and waits to lock it).
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid_until_the_first_is_done() {
        let dir = std::env::temp_dir().join(format!("fourd-job-lock-{}", std::process::id()));
        let first = OutputLock::folder(&dir, "fourd eval").unwrap();
        let e = OutputLock::folder(&dir, "fourd eval")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("fourd eval"),
            "{e}"
        );
        assert!(e.contains(&dir.display().to_string()), "{e}");
        drop(first);
        OutputLock::folder(&dir, "fourd eval").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
