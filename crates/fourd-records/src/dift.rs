//! The DIFT training record (`dift.jsonl`, the reference's format):
//!
//! - `id` (optional): any JSON value;
//! - `text_input`: the question, a blank line, `A. ...` to `D. ...` (see [`crate::prompt`]);
//! - `text_output`: `<think>...</think>` then `<answer>...</answer>`; the k-th `<output_image>`
//!   tag stands for the k-th `image_output` image;
//! - `image_input`: the clip's frames, shown as one video;
//! - `image_output`: the helper images (imagery), in tag order.
//!
//! Paths follow [`crate::paths`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{RecordError, Result};

/// The placeholder of a helper image inside `text_output`.
pub const OUTPUT_IMAGE_TAG: &str = "<output_image>";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiftRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    pub text_input: String,
    pub text_output: String,
    #[serde(default)]
    pub image_input: Vec<String>,
    #[serde(default)]
    pub image_output: Vec<String>,
}

impl DiftRecord {
    /// The record's id as text, or its line number when it has none.
    pub fn display_id(&self, line: usize) -> String {
        display_id(self.id.as_ref(), line)
    }
}

/// An id field as text: a string as it is, another value as JSON, none as `line N`.
pub fn display_id(id: Option<&serde_json::Value>, line: usize) -> String {
    match id {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => format!("line {line}"),
    }
}

/// Every record of a DIFT file with its line number; a file without records is an error.
pub fn read_file(path: &Path) -> Result<Vec<(usize, DiftRecord)>> {
    let records = crate::jsonl::read(path, "a DIFT record")?;
    if records.is_empty() {
        return Err(RecordError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}
