//! JSON lines: one record per line, blank lines ignored. A line that does not parse is an error
//! naming the file and line: a file that does not parse is a wrong file, not a bad record.

use std::io::Write;
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

/// The records as JSON lines.
pub fn to_string<T: Serialize>(records: &[T]) -> String {
    let mut out = String::new();
    for r in records {
        // Records are plain structs of strings and lists: serialising cannot fail.
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Writes the records to `path` atomically (a temporary file beside it, then a rename), so a
/// reader never sees half a file and a failed write leaves the old file in place.
pub fn write<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let tmp = path.with_extension(format!("jsonl.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(to_string(records).as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RecordError::io(path, e)
    })
}
