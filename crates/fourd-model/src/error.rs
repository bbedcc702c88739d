//! One error type for the model library. Every message names the file, field or tensor at fault.

use std::path::PathBuf;

/// The causes of `Io` and `Json` are part of their messages and deliberately not a `source`:
/// an error chain (`anyhow`'s `{:#}`) would print them twice.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{file}: field `{field}`: {msg}")]
    Config {
        file: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{path}: not a readable safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("image {path}: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("input: {0}")]
    Input(String),
    #[error("unknown dtype `{0}` (expected one of f32, bf16, f16)")]
    UnknownDType(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            cause,
        }
    }
    pub(crate) fn config(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        ModelError::Config {
            file: file.into(),
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn input(msg: impl Into<String>) -> Self {
        ModelError::Input(msg.into())
    }
}

/// Reads a JSON file, naming the file on any failure.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|cause| ModelError::Json {
        path: path.to_path_buf(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cause that the message prints must not also be the `source`: an error chain
    /// (`anyhow`'s `{:#}`) would print it twice ("tokenizer file not found: tokenizer file not
    /// found").
    #[test]
    fn causes_are_printed_once() {
        let e = ModelError::io(
            "/m/tokenizer.json",
            std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
        );
        assert_eq!(e.to_string(), "/m/tokenizer.json: tokenizer file not found");
        assert!(std::error::Error::source(&e).is_none());
        let e = ModelError::Json {
            path: "/m/config.json".into(),
            cause: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
        };
        assert!(
            e.to_string()
                .starts_with("/m/config.json: invalid JSON: EOF"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
