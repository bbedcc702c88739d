//! Benchmark tables: DSR-Bench's `benchmark.parquet` (`videoID`/`video`, `question`,
//! `options`/`candidates`, `answer`, `type`), VLMEvalKit's `DSRBench.tsv` ([`BenchmarkFormat`]:
//! `index`, `video` as a path under `--video-root`, `question`, `options` as a list literal,
//! `answer`, `task_type`; `docs/benchmark-formats.md` §4) or any parquet / JSONL / JSON / TSV
//! table through a column mapping; and 4DRL JSONL files (`Question`, `A`-`D`, `Correct`, `frame_paths` or `video_path`),
//! read by `fourd_records::rl` with its path rule. Options may be a list or a string holding a
//! (JSON or Python-literal) list; the reference `eval`s such strings, we parse them. Every row
//! becomes a [`McQuestion`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use fourd_records::{McQuestion, Media, PathRule};

use crate::error::{io, EvalError, Result};

/// A 4DRL line: it has `Correct` and its video as `frame_paths` or `video_path`.
fn is_rl_record(row: &serde_json::Map<String, Value>) -> bool {
    row.contains_key("Correct")
        && (row.contains_key("frame_paths") || row.contains_key("video_path"))
}

/// Which benchmark layout a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BenchmarkFormat {
    /// By the file: a 4DRL JSONL by its fields, `.tsv` as `DsrTsv`, anything else as `Dsr`.
    #[default]
    Auto,
    /// DSR-Bench's own table (`benchmark.parquet`); rows numbered in file order.
    Dsr,
    /// VLMEvalKit's `DSRBench.tsv`: rows numbered by its `index` column, `task_type` for the
    /// sub-task, `video` a path relative to the unpacked `raw_data/dsr-bench/` (`--video-root`).
    DsrTsv,
    /// VLM4D's `real_mc.json` / `synthetic_mc.json` ([`read_vlm4d`]).
    Vlm4d,
}

impl BenchmarkFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BenchmarkFormat::Auto => "auto",
            BenchmarkFormat::Dsr => "dsr",
            BenchmarkFormat::DsrTsv => "dsr-tsv",
            BenchmarkFormat::Vlm4d => "vlm4d",
        }
    }

    /// The format of `path` itself (`Auto` resolved by the extension).
    pub fn of(self, path: &Path) -> BenchmarkFormat {
        match self {
            BenchmarkFormat::Auto
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("tsv")) =>
            {
                BenchmarkFormat::DsrTsv
            }
            BenchmarkFormat::Auto => BenchmarkFormat::Dsr,
            f => f,
        }
    }

    /// The column names this format adds to `cols`.
    pub fn columns(self, path: &Path, mut cols: ColumnMap) -> ColumnMap {
        if self.of(path) == BenchmarkFormat::DsrTsv {
            cols.index.insert(0, "index".into());
            cols.task_type.insert(0, "task_type".into());
        }
        cols
    }
}

impl std::str::FromStr for BenchmarkFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(BenchmarkFormat::Auto),
            "dsr" => Ok(BenchmarkFormat::Dsr),
            "dsr-tsv" => Ok(BenchmarkFormat::DsrTsv),
            "vlm4d" => Ok(BenchmarkFormat::Vlm4d),
            _ => Err(format!(
                "unknown benchmark format {s:?} (expected auto, dsr, dsr-tsv or vlm4d; others \
                 are not read yet, see docs/benchmark-formats.md)"
            )),
        }
    }
}

/// Which columns hold what. Each entry lists accepted names, first match wins.
#[derive(Clone, Debug)]
pub struct ColumnMap {
    pub video: Vec<String>,
    pub question: Vec<String>,
    pub options: Vec<String>,
    pub answer: Vec<String>,
    pub task_type: Vec<String>,
    /// The row number results are keyed by (none: file order).
    pub index: Vec<String>,
}

impl Default for ColumnMap {
    /// DSR-Bench, with the reference's fallbacks.
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        ColumnMap {
            video: v(&["videoID", "video"]),
            question: v(&["question"]),
            options: v(&["options", "candidates"]),
            answer: v(&["answer"]),
            task_type: v(&["type"]),
            index: vec![],
        }
    }
}

/// Loads a benchmark table by extension: `.parquet`, `.jsonl`, `.json`, `.tsv`. 4DRL paths
/// resolve against the file's folder.
pub fn load(path: &Path, cols: &ColumnMap) -> Result<Vec<McQuestion>> {
    load_from(path, cols, None, BenchmarkFormat::Auto)
}

/// A VLM4D row: `choices` is an object of options by letter, `answer` one of their texts.
fn is_vlm4d_record(row: &serde_json::Map<String, Value>) -> bool {
    row.get("choices").is_some_and(Value::is_object) && row.contains_key("answer")
}

/// [`load`], with 4DRL paths resolved against `data_root` when given, as `format` (`Auto`: by
/// the file's content and extension).
pub fn load_from(
    path: &Path,
    cols: &ColumnMap,
    data_root: Option<&Path>,
    format: BenchmarkFormat,
) -> Result<Vec<McQuestion>> {
    let rows = read_rows(path)?;
    let vlm4d = rows.first().is_some_and(is_vlm4d_record);
    if format == BenchmarkFormat::Vlm4d || (format == BenchmarkFormat::Auto && vlm4d) {
        return read_vlm4d(path, &rows);
    }
    if rows.first().is_some_and(is_rl_record) {
        let rule = PathRule::for_file(path, data_root);
        let (questions, dropped) = fourd_records::rl::read_questions(path, &rule)?;
        if !dropped.is_empty() {
            tracing::warn!(
                "{}: {} record(s) without `Correct` or a video left out (first: {})",
                path.display(),
                dropped.len(),
                dropped[0]
            );
        }
        return Ok(questions);
    }
    let err = |msg: String| EvalError::Benchmark {
        path: path.to_path_buf(),
        msg,
    };
    let Some(first) = rows.first() else {
        return Ok(vec![]);
    };
    let pick = |names: &[String], what: &str, required: bool| -> Result<Option<String>> {
        match names.iter().find(|n| first.get(n.as_str()).is_some()) {
            Some(n) => Ok(Some(n.clone())),
            None if required => Err(err(format!(
                "no {what} column (looked for {})",
                names.join(", ")
            ))),
            None => Ok(None),
        }
    };
    let video = pick(&cols.video, "video", true)?.expect("required");
    let question = pick(&cols.question, "question", true)?.expect("required");
    let answer = pick(&cols.answer, "answer", true)?.expect("required");
    let options = pick(&cols.options, "options", false)?;
    let task_type = pick(&cols.task_type, "type", false)?;
    let index_col = pick(&cols.index, "index", false)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = std::collections::BTreeSet::new();
    for (row_number, row) in rows.iter().enumerate() {
        let s = |name: &str| value_to_string(row.get(name).unwrap_or(&Value::Null));
        let index = match &index_col {
            None => row_number,
            Some(c) => s(c).trim().parse::<usize>().map_err(|_| {
                err(format!(
                    "row {row_number}: {c} {:?} is not a row number",
                    s(c)
                ))
            })?,
        };
        if !seen.insert(index) {
            return Err(err(format!(
                "row {row_number}: index {index} appears twice"
            )));
        }
        let options = match &options {
            Some(c) => parse_options(row.get(c.as_str()).unwrap_or(&Value::Null)),
            None => vec![],
        };
        let gt = s(&answer)
            .trim()
            .chars()
            .next()
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default();
        out.push(McQuestion {
            index,
            id: format!("row {index}"),
            question: s(&question),
            options,
            answer: gt,
            task_type: task_type
                .as_deref()
                .map(|c| s(c).trim().to_lowercase())
                .unwrap_or_default(),
            media: Media::VideoId(s(&video).trim().to_string()),
        });
    }
    Ok(out)
}

/// VLM4D's base URL: a row's `video` with it removed is the file's path in a copy of the
/// Hugging Face dataset, which `--video-root` names (DSR_Suite's VLM4D script maps it so too).
pub const VLM4D_VIDEO_BASE: &str = "https://huggingface.co/datasets/shijiezhou/VLM4D/resolve/main/";

/// VLM4D (`docs/benchmark-formats.md` §1): `id` (`validation_<n>`, the row number), `video` (a
/// URL under [`VLM4D_VIDEO_BASE`]), `question`, `choices` (`{"A": text, ...}`, texts sometimes
/// integers) and `answer` (the right choice's *text*: its letter is the first choice equal to
/// it). The category is `acc_final_statistics.py`'s: real videos (`videos_real/`) are
/// exo-centric up to id 922 and ego-centric above; synthetic ones are "false positive" when the
/// answer is "no" or starts with "no ", else directional.
pub fn read_vlm4d(path: &Path, rows: &[serde_json::Map<String, Value>]) -> Result<Vec<McQuestion>> {
    let err = |msg: String| EvalError::Benchmark {
        path: path.to_path_buf(),
        msg,
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let field = |k: &str| row.get(k).map(value_to_string).unwrap_or_default();
        let id = field("id");
        let at = format!("record {i} ({id})");
        let index: usize = id
            .rsplit('_')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err(format!("{at}: id is not `validation_<number>`")))?;
        if !seen.insert(index) {
            return Err(err(format!("{at}: id number {index} appears twice (real_mc.json and synthetic_mc.json reuse ids: evaluate them one file at a time)")));
        }
        let choices = row
            .get("choices")
            .and_then(Value::as_object)
            .ok_or_else(|| err(format!("{at}: no `choices` object")))?;
        let answer = field("answer");
        let letter = choices
            .iter()
            .find(|(_, v)| value_to_string(v) == answer)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| err(format!("{at}: answer {answer:?} is none of the choices")))?;
        let video = field("video");
        let relative = video
            .strip_prefix(VLM4D_VIDEO_BASE)
            .unwrap_or(&video)
            .to_string();
        let category = if relative.contains("videos_real/") {
            if index <= 922 {
                "real_exo"
            } else {
                "real_ego"
            }
        } else {
            let a = answer.trim().to_lowercase();
            if a == "no" || a.starts_with("no ") {
                "synthetic_fp"
            } else {
                "synthetic_directional"
            }
        };
        out.push(McQuestion {
            index,
            id,
            question: field("question"),
            options: choices
                .iter()
                .map(|(k, v)| format!("{k}. {}", value_to_string(v)))
                .collect(),
            answer: letter,
            task_type: category.to_string(),
            media: Media::VideoId(relative),
        });
    }
    Ok(out)
}

fn read_rows(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let err = |msg: String| EvalError::Benchmark {
        path: path.to_path_buf(),
        msg,
    };
    let as_obj = |v: Value, at: String| -> Result<serde_json::Map<String, Value>> {
        match v {
            Value::Object(m) => Ok(m),
            _ => Err(err(format!("{at}: expected an object"))),
        }
    };
    match ext.as_str() {
        "parquet" => {
            let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
            let reader = parquet::file::serialized_reader::SerializedFileReader::try_from(f)
                .map_err(|e| err(format!("not a readable parquet file: {e}")))?;
            let mut rows = Vec::new();
            for (i, r) in reader.into_iter().enumerate() {
                let r = r.map_err(|e| err(format!("row {i}: {e}")))?;
                rows.push(as_obj(r.to_json_value(), format!("row {i}"))?);
            }
            Ok(rows)
        }
        "jsonl" => {
            let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    let v: Value =
                        serde_json::from_str(l).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
                    as_obj(v, format!("line {}", i + 1))
                })
                .collect()
        }
        "tsv" => {
            // pandas' `to_csv(sep="\t")`, as VLMEvalKit's TSVs are written: a header line, fields
            // quoted with `"` when they hold a tab, a quote or a line break.
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(b'\t')
                .from_path(path)
                .map_err(|e| err(format!("not a readable TSV file: {e}")))?;
            let header = reader
                .headers()
                .map_err(|e| err(format!("header: {e}")))?
                .clone();
            reader
                .records()
                .enumerate()
                .map(|(i, r)| {
                    let r = r.map_err(|e| err(format!("row {i}: {e}")))?;
                    Ok(header
                        .iter()
                        .zip(r.iter())
                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                        .collect())
                })
                .collect()
        }
        "json" => {
            let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
            let items: Vec<Value> = match v {
                Value::Array(a) => a,
                Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                _ => {
                    return Err(err(
                        "expected a list of records or an object of records".into()
                    ))
                }
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| as_obj(v, format!("record {i}")))
                .collect()
        }
        _ => Err(err(
            "unknown benchmark format (expected .parquet, .jsonl, .json or .tsv)".into(),
        )),
    }
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Options as a list of strings, from a list value or a string holding a list.
pub fn parse_options(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(value_to_string).collect(),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(t) {
                return a.iter().map(value_to_string).collect();
            }
            parse_python_list(t).unwrap_or_default()
        }
        _ => vec![],
    }
}

/// A Python literal list of strings: `['A. x', "B. y"]`. Anything else gives `None`.
fn parse_python_list(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(q) = chars.next() else { break };
        if q != '\'' && q != '"' {
            return None;
        }
        let mut item = String::new();
        loop {
            match chars.next()? {
                '\\' => {
                    let c = chars.next()?;
                    item.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c if c == q => break,
                c => item.push(c),
            }
        }
        out.push(item);
    }
    Some(out)
}

/// `<video_root>/<video_id>.<ext>`.
/// `root/<video id>.<ext>`; a video column that holds a file name or relative path with its
/// extension already (VLMEvalKit's `videos/x.mp4`) is joined to `root` as it is.
pub fn video_path(root: &Path, video_id: &str, ext: &str) -> PathBuf {
    let has_ext = Path::new(video_id)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    if has_ext {
        root.join(video_id)
    } else {
        root.join(format!("{video_id}.{ext}"))
    }
}

/// Extensions that mark a video column's value as a file name.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "webm", "avi", "mov"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_from_lists_and_strings() {
        assert_eq!(
            parse_options(&json!(["A. x", "B. y"])),
            vec!["A. x", "B. y"]
        );
        assert_eq!(
            parse_options(&json!("[\"A. x\", \"B. y\"]")),
            vec!["A. x", "B. y"]
        );
        assert_eq!(
            parse_options(&json!("['A. it\\'s', \"B. y\"]")),
            vec!["A. it's", "B. y"]
        );
        assert!(parse_options(&json!("__import__('os')")).is_empty());
        assert!(parse_options(&Value::Null).is_empty());
    }
}
