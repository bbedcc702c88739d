use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    // The cause is part of the message (not a `#[source]`), so error chains print it once.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Benchmark { path: PathBuf, msg: String },
    #[error("{} line {line}: {msg}", path.display())]
    Results {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Model(#[from] fourd_model::ModelError),
    #[error(transparent)]
    Record(#[from] fourd_records::RecordError),
    /// The results file: its lock, its manifest, a file beside it.
    #[error(transparent)]
    Job(#[from] fourd_job::JobError),
    #[error(transparent)]
    Video(#[from] fourd_video::VideoError),
    #[error("chart: {0}")]
    Chart(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn io(path: &std::path::Path, cause: std::io::Error) -> EvalError {
    EvalError::Io {
        path: path.to_path_buf(),
        cause,
    }
}
