//! The one error type of this crate.
//!
//! Every variant that comes from a request names the URL it went to; replies that cannot be used
//! name the field that was wrong (`choices[0].message.content`, `masks[2].width`, ...).

use std::path::PathBuf;
use std::time::Duration;

/// Errors from [`crate::ChatClient`] and [`crate::SegmentClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The configuration cannot be used (bad base URL, unusable cache folder, ...).
    #[error("invalid API configuration: {0}")]
    Config(String),

    /// What the caller asked to send cannot be sent (an image that is not a PNG, a frame that
    /// cannot be encoded, ...). Nothing was sent.
    #[error("invalid request to {url}: {problem}")]
    InvalidInput { url: String, problem: String },

    /// The server answered with an HTTP status that is an error. 429 and 5xx are retried first;
    /// `attempts` says how many requests were made in all.
    #[error("{url} answered HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },

    /// No complete reply within the configured timeout, on every attempt.
    #[error("{url} did not answer within {timeout:?} ({attempts} attempt(s))")]
    Timeout {
        url: String,
        timeout: Duration,
        attempts: u32,
    },

    /// The connection failed or broke (refused, reset, DNS, TLS, broken HTTP), on every attempt
    /// for the retryable kinds.
    #[error("request to {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },

    /// The reply body is not JSON. Never retried. The parser's message is part of the text
    /// (not a `source`), so an error chain prints it once.
    #[error("reply from {url} is not valid JSON ({cause}); body starts with: {snippet}")]
    MalformedJson {
        url: String,
        cause: serde_json::Error,
        snippet: String,
    },

    /// The reply is JSON but a field is missing, of the wrong type, or inconsistent with the
    /// request (mask count, index or size). Never retried.
    #[error("reply from {url} is malformed: `{field}` {problem}")]
    MalformedReply {
        url: String,
        field: String,
        problem: String,
    },

    /// The response cache could not be written or read in a way that matters. The cause is
    /// part of the text (not a `source`), so an error chain prints it once.
    #[error("response cache {path}: {cause}")]
    Cache {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl ApiError {
    /// The URL the failed request went to, when there was one.
    pub fn url(&self) -> Option<&str> {
        match self {
            ApiError::InvalidInput { url, .. }
            | ApiError::Status { url, .. }
            | ApiError::Timeout { url, .. }
            | ApiError::Transport { url, .. }
            | ApiError::MalformedJson { url, .. }
            | ApiError::MalformedReply { url, .. } => Some(url),
            ApiError::Config(_) | ApiError::Cache { .. } => None,
        }
    }

    /// The HTTP status of a [`ApiError::Status`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request could succeed later (timeouts, connection errors, 429, 5xx).
    /// The clients have already retried these `max_retries` times when they return them.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// First `max` characters of a reply body, for error messages.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push_str("...");
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cause that the message prints must not also be the `source`: an error chain
    /// (`anyhow`'s `{:#}`) would print it twice.
    #[test]
    fn causes_are_printed_once() {
        let e = ApiError::Cache {
            path: "/cache".into(),
            cause: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        };
        assert_eq!(e.to_string(), "response cache /cache: denied");
        assert!(std::error::Error::source(&e).is_none());
        let e = ApiError::MalformedJson {
            url: "http://x/v1".into(),
            cause: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
            snippet: "{".into(),
        };
        assert!(
            e.to_string()
                .starts_with("reply from http://x/v1 is not valid JSON (EOF"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
