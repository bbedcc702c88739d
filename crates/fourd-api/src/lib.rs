//! HTTP clients for fourd's data pipeline.
//!
//! - [`ChatClient`]: an OpenAI-compatible chat-completions client (text and PNG image parts),
//!   used to name objects, rewrite questions and chains of thought, and ask a VLM for a second
//!   opinion.
//! - [`SegmentClient`]: a client of a small segmentation protocol (frames + text prompt -> one
//!   mask per frame), behind which SAM3 or any other segmenter can sit. See `docs/api.md`.
//!
//! Both are blocking (`ureq`), retry timeouts, connection errors, 429 and 5xx with exponential
//! backoff (honouring `Retry-After`), never retry other 4xx or malformed replies, and log each
//! retry at `warn` through `tracing`. The chat client can keep a response cache on disk.
//! [`testing`] has loopback mock servers for tests of code that uses these clients.

mod cache;
mod chat;
mod error;
mod http;
mod segment;
pub mod testing;

pub use chat::{ApiConfig, ChatClient, ChatContent, ChatMessage, ChatReply, API_KEY_ENV};
pub use error::ApiError;
pub use http::{MAX_BACKOFF, MAX_RETRY_AFTER};
pub use segment::{SegmentClient, SegmentConfig};

/// PNG bytes of an RGB image (for [`ChatContent::ImagePng`]).
pub fn png_from_rgb(img: &image::RgbImage) -> Result<Vec<u8>, image::ImageError> {
    segment::encode_png_rgb(img)
}
