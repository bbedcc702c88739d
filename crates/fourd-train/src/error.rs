//! Errors of the trainer. Messages name the record, file or tensor at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // The cause is part of the message (not a `#[source]`), so error chains do not print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: line {line}: {msg}")]
    Record {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("configuration: {0}")]
    Config(String),
    /// A training file read in full whose every record was skipped: nothing to train on.
    #[error("all {count} record(s) of {path} were skipped, nothing to train on; first reasons:\n{reasons}")]
    NothingToTrain {
        path: PathBuf,
        count: usize,
        reasons: String,
    },
    #[error(transparent)]
    Model(#[from] fourd_model::ModelError),
    #[error(transparent)]
    Records(#[from] fourd_records::RecordError),
    /// The run folder: its lock, its manifest, a file in it.
    #[error(transparent)]
    Job(#[from] fourd_job::JobError),
    #[error(transparent)]
    Video(#[from] fourd_video::VideoError),
    /// A question's frames cannot be had (no file named, none listed).
    #[error("{0}")]
    Frames(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            cause: source,
        }
    }
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
