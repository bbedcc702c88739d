//! The records that pass between fourd's stages, in one place.
//!
//! Every stage that writes or reads one of these uses the types, readers, writers and rules
//! below, so that what one stage writes is exactly what the next one reads:
//!
//! - [`paths`]: the one path rule. Writers store image paths relative to the JSONL file's own
//!   folder; readers resolve them against that folder, or against `--data-root` for files written
//!   relative to something else.
//! - [`letters`]: the option letters and the balanced assignment of answer letters.
//! - [`prompt`]: the question text the model sees (question, blank line, `A. ...` lines) and the
//!   4DThinker think/answer instruction.
//! - [`question`]: a multiple-choice question about a video (a benchmark row, a 4DRL line).
//! - [`dift`] / [`rl`]: the two training files the data pipeline writes.
//! - [`answer`]: which option a model's reply chose.
//! - [`jsonl`]: reading JSON lines with errors naming the file and line, and their text for writers.

pub mod answer;
pub mod dift;
pub mod error;
pub mod jsonl;
pub mod letters;
pub mod paths;
pub mod prompt;
pub mod question;
pub mod rl;

pub use dift::DiftRecord;
pub use error::{RecordError, Result};
pub use paths::PathRule;
pub use question::{AnswerKind, McQuestion, Media};
pub use rl::RlRecord;
