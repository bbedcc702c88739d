use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Benchmark { path: PathBuf, msg: String },
    #[error("{path} line {line}: {msg}")]
    Results {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Model(#[from] fourd_model::ModelError),
    #[error("chart: {0}")]
    Chart(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> EvalError {
    EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}
