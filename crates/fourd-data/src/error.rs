//! Errors of the data pipeline. Every variant names the file (and where useful the field) at
//! fault, so a failed clip's reason in the manifest is enough to find the problem.

use std::path::PathBuf;

/// Everything that can go wrong in `fourd_data`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read, written, created or renamed. The cause is part of
    /// the message (not a `source`), so an error chain prints it once.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A required annotation file is absent.
    #[error("missing {}", path.display())]
    Missing { path: PathBuf },
    /// A file exists but its content is wrong; `what` says which field or entry and how.
    #[error("{}: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
    /// Two inputs of one clip disagree (frame counts, mask size vs. frame size, ...).
    #[error("{}: {what}", path.display())]
    Inconsistent { path: PathBuf, what: String },
    /// The clip is valid but outside what the pipeline takes (e.g. more than `--max-frames`).
    #[error("skipped: {0}")]
    Skipped(String),
    /// Decoding the clip's video failed.
    #[error(transparent)]
    Video(#[from] fourd_video::VideoError),
    /// An image could not be decoded or encoded.
    #[error("{}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
    /// A segmentation backend failed.
    #[error("segmenter {backend}: {msg}")]
    Segmenter { backend: String, msg: String },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An HTTP API call failed (segmentation service, chat model).
    #[error("API: {0}")]
    Api(String),
    /// A record file could not be read or written.
    #[error(transparent)]
    Records(#[from] fourd_records::RecordError),
    /// The output folder: its lock or its manifest.
    #[error(transparent)]
    Job(#[from] fourd_job::JobError),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause,
        }
    }
    /// An error opening or reading `path`: [`DataError::Missing`] when it does not exist.
    pub(crate) fn open(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path: path.into() }
        } else {
            DataError::io(path, source)
        }
    }
    pub(crate) fn malformed(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.into(),
            what: what.into(),
        }
    }
    pub(crate) fn inconsistent(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Inconsistent {
            path: path.into(),
            what: what.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
