//! Errors of job bookkeeping. Each names the file or folder, and says what the user can do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A file or folder cannot be read or written. The cause is part of the message (not a
    /// `source`), so an error chain prints it once.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Another process holds the output folder.
    #[error(
        "{} is in use by another fourd job ({holder}); wait for it to finish or write elsewhere",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },
    /// The folder holds results of a run started with other inputs or settings.
    #[error(
        "{} holds results of a run with other inputs:\n{}\n{hint}",
        path.display(),
        differences.join("\n")
    )]
    Mismatch {
        path: PathBuf,
        differences: Vec<String>,
        hint: String,
    },
    /// A manifest file that is not a manifest.
    #[error("{}: not a fourd job manifest ({msg}); move it away or write elsewhere", path.display())]
    BadManifest { path: PathBuf, msg: String },
}

impl JobError {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        JobError::Io {
            path: path.into(),
            cause,
        }
    }
}

pub type Result<T> = std::result::Result<T, JobError>;
