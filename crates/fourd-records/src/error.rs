//! The one error type of this crate: every variant names the file, and the line where there is
//! one. The I/O cause is part of the message and deliberately not a `source`, so that a chain
//! printed with `{:#}` does not repeat it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file cannot be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A line is not the record the file should hold.
    #[error("{}:{line}: {msg}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// The file holds no record at all.
    #[error("{}: no records", path.display())]
    Empty { path: PathBuf },
}

impl RecordError {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

pub type Result<T> = std::result::Result<T, RecordError>;
