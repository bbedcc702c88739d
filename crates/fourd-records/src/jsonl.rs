//! JSON lines: one record per line, blank lines ignored. A line that does not parse is an error
//! naming the file and line: a file that does not parse is a wrong file, not a bad record.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{RecordError, Result};

/// Every record of `path` with its 1-based line number. `what` names the record in errors
/// ("a DIFT record").
pub fn read<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<(usize, T)>> {
    let text = std::fs::read_to_string(path).map_err(|e| RecordError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|r| (i + 1, r))
                .map_err(|e| RecordError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    msg: format!("not {what}: {e}"),
                })
        })
        .collect()
}

/// The records as JSON lines (writers write them whole, through a temporary file).
pub fn to_string<T: Serialize>(records: &[T]) -> String {
    let mut out = String::new();
    for r in records {
        // Records are plain structs of strings and lists: serialising cannot fail.
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}
