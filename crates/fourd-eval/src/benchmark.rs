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

use fourd_records::{AnswerKind, McQuestion, Media, PathRule};

use crate::error::{io, EvalError, Result};
use crate::official::{python_float, Benchmark};

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
    /// VSI-Bench's `test-00000-of-00001.parquet` ([`read_vsibench`]).
    VsiBench,
    /// STI-Bench's `qa.parquet` ([`read_stibench`]).
    StiBench,
    /// Dyn-Bench's dataset folder (`multi_json/`, `frames/`; [`read_dynbench`]).
    DynBench,
}

impl BenchmarkFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BenchmarkFormat::Auto => "auto",
            BenchmarkFormat::Dsr => "dsr",
            BenchmarkFormat::DsrTsv => "dsr-tsv",
            BenchmarkFormat::Vlm4d => "vlm4d",
            BenchmarkFormat::VsiBench => "vsibench",
            BenchmarkFormat::StiBench => "stibench",
            BenchmarkFormat::DynBench => "dynbench",
        }
    }

    /// Whose scoring rule and table a concrete format's questions take.
    pub fn benchmark(self) -> Benchmark {
        match self {
            BenchmarkFormat::Auto | BenchmarkFormat::Dsr | BenchmarkFormat::DsrTsv => {
                Benchmark::Dsr
            }
            BenchmarkFormat::Vlm4d => Benchmark::Vlm4d,
            BenchmarkFormat::VsiBench => Benchmark::VsiBench,
            BenchmarkFormat::StiBench => Benchmark::StiBench,
            BenchmarkFormat::DynBench => Benchmark::DynBench,
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
            "vsibench" => Ok(BenchmarkFormat::VsiBench),
            "stibench" => Ok(BenchmarkFormat::StiBench),
            "dynbench" => Ok(BenchmarkFormat::DynBench),
            _ => Err(format!(
                "unknown benchmark format {s:?} (expected auto, dsr, dsr-tsv, vlm4d, vsibench, \
                 stibench or dynbench; see docs/eval.md)"
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
    Ok(load_from(path, cols, None, BenchmarkFormat::Auto)?.questions)
}

/// A benchmark's questions, and whose rules score them.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub benchmark: Benchmark,
    pub questions: Vec<McQuestion>,
}

/// A VLM4D row: `choices` is an object of options by letter, `answer` one of their texts.
fn is_vlm4d_record(row: &serde_json::Map<String, Value>) -> bool {
    row.get("choices").is_some_and(Value::is_object) && row.contains_key("answer")
}

/// A VSI-Bench row: `question_type` and `ground_truth`.
fn is_vsibench_record(row: &serde_json::Map<String, Value>) -> bool {
    row.contains_key("question_type") && row.contains_key("ground_truth")
}

/// An STI-Bench row: `Video` and `Candidates`.
fn is_stibench_record(row: &serde_json::Map<String, Value>) -> bool {
    row.contains_key("Video") && row.contains_key("Candidates")
}

/// `format` with `Auto` resolved for a file: by its first record's fields (VLM4D, VSI-Bench,
/// STI-Bench), else `.tsv` as VLMEvalKit's and anything else as DSR-Bench's.
fn resolve(
    format: BenchmarkFormat,
    path: &Path,
    first: Option<&serde_json::Map<String, Value>>,
) -> BenchmarkFormat {
    if format != BenchmarkFormat::Auto {
        return format;
    }
    match first {
        Some(r) if is_vlm4d_record(r) => BenchmarkFormat::Vlm4d,
        Some(r) if is_vsibench_record(r) => BenchmarkFormat::VsiBench,
        Some(r) if is_stibench_record(r) => BenchmarkFormat::StiBench,
        _ => format.of(path),
    }
}

/// [`load`], with 4DRL paths resolved against `data_root` when given, as `format` (`Auto`: a
/// folder is Dyn-Bench's; a file by its content and extension).
pub fn load_from(
    path: &Path,
    cols: &ColumnMap,
    data_root: Option<&Path>,
    format: BenchmarkFormat,
) -> Result<Loaded> {
    let loaded = |format: BenchmarkFormat, questions| Loaded {
        benchmark: format.benchmark(),
        questions,
    };
    match format {
        BenchmarkFormat::Auto | BenchmarkFormat::DynBench if path.is_dir() => {
            return Ok(loaded(BenchmarkFormat::DynBench, read_dynbench(path)?));
        }
        BenchmarkFormat::DynBench => {
            return Err(EvalError::Benchmark {
                path: path.to_path_buf(),
                msg: "--format dynbench reads a dataset folder (with multi_json/), not a file"
                    .into(),
            });
        }
        _ if path.is_dir() => {
            return Err(EvalError::Benchmark {
                path: path.to_path_buf(),
                msg: format!(
                    "is a folder; --format {} reads a file (a folder is read as Dyn-Bench's)",
                    format.as_str()
                ),
            });
        }
        _ => {}
    }
    let rows = read_rows(path)?;
    let format = resolve(format, path, rows.first());
    match format {
        BenchmarkFormat::Vlm4d => return Ok(loaded(format, read_vlm4d(path, &rows)?)),
        BenchmarkFormat::VsiBench => return Ok(loaded(format, read_vsibench(path, &rows)?)),
        BenchmarkFormat::StiBench => return Ok(loaded(format, read_stibench(path, &rows)?)),
        _ => {}
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
        return Ok(loaded(format, questions));
    }
    Ok(loaded(format, read_table(path, cols, &rows)?))
}

/// A DSR-style table through the column mapping `cols`.
fn read_table(
    path: &Path,
    cols: &ColumnMap,
    rows: &[serde_json::Map<String, Value>],
) -> Result<Vec<McQuestion>> {
    let err = benchmark_error(path);
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
            kind: fourd_records::AnswerKind::Choice,
            window: None,
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
    let err = benchmark_error(path);
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
            kind: fourd_records::AnswerKind::Choice,
            window: None,
            task_type: category.to_string(),
            media: Media::VideoId(relative),
        });
    }
    Ok(out)
}

/// An error about the benchmark file `path`, from its message.
fn benchmark_error(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |msg| EvalError::Benchmark {
        path: path.to_path_buf(),
        msg,
    }
}

/// A row's field as text ("" when absent or null).
fn text_field(row: &serde_json::Map<String, Value>, key: &str) -> String {
    row.get(key).map(value_to_string).unwrap_or_default()
}

/// VSI-Bench (`docs/benchmark-formats.md` §2; HF `nyu-visionx/VSI-Bench`): `id` (the row
/// number results are keyed by), `dataset` and `scene_name` (the video is
/// `<video root>/<dataset>/<scene_name>.mp4`), `question_type` (the sub-task), `question`,
/// `options` (lettered lines; null for a numerical question) and `ground_truth` (a letter, or a
/// number as text).
pub fn read_vsibench(
    path: &Path,
    rows: &[serde_json::Map<String, Value>],
) -> Result<Vec<McQuestion>> {
    let err = benchmark_error(path);
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let field = |k: &str| text_field(row, k);
        let at = format!("row {i} (id {})", field("id"));
        let index: usize = field("id")
            .trim()
            .parse()
            .map_err(|_| err(format!("{at}: id is not a row number")))?;
        if !seen.insert(index) {
            return Err(err(format!("{at}: id {index} appears twice")));
        }
        let options = parse_options(row.get("options").unwrap_or(&Value::Null));
        let truth = field("ground_truth").trim().to_string();
        let kind = if options.is_empty() {
            if python_float(&truth).is_none() {
                return Err(err(format!(
                    "{at}: a question without options needs a number as ground_truth, not {truth:?}"
                )));
            }
            AnswerKind::Number
        } else {
            AnswerKind::Choice
        };
        let (dataset, scene) = (field("dataset"), field("scene_name"));
        if dataset.is_empty() || scene.is_empty() {
            return Err(err(format!("{at}: no dataset or scene_name")));
        }
        out.push(McQuestion {
            index,
            id: field("id"),
            question: field("question"),
            options,
            answer: truth,
            kind,
            window: None,
            task_type: field("question_type"),
            media: Media::VideoId(format!("{dataset}/{scene}")),
        });
    }
    Ok(out)
}

/// `str(x)` of a Python float: `15.0`, `2.5`.
fn python_float_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// STI-Bench (`docs/benchmark-formats.md` §3; `qa.parquet`): `Video` (a file under
/// `--video-root`), `ID` (per video), `Task` (the sub-task), `Question`, `Candidates` (options by
/// letter A-E, an object or a JSON string of one), `Answer` (a letter), `time_start` and
/// `time_end` (seconds). Rows are keyed by their position in the file. The question carries
/// the window as the official prompt does (`From {ts} seconds to {te} seconds. `), and only the
/// window's frames are shown.
pub fn read_stibench(
    path: &Path,
    rows: &[serde_json::Map<String, Value>],
) -> Result<Vec<McQuestion>> {
    let err = benchmark_error(path);
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let field = |k: &str| text_field(row, k);
        let id = format!("{}#{}", field("Video"), field("ID"));
        let at = format!("row {i} ({id})");
        let candidates = match row.get("Candidates") {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
            other => other.cloned(),
        };
        let Some(Value::Object(candidates)) = candidates else {
            return Err(err(format!("{at}: Candidates is not an object of options")));
        };
        // A letter whose option is null (a struct column with fewer than five options) is no
        // option.
        let options: Vec<String> = candidates
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}. {}", value_to_string(v)))
            .collect();
        let time = |k: &str| row.get(k).and_then(Value::as_f64);
        let window = match (time("time_start"), time("time_end")) {
            (Some(a), Some(b)) => {
                fourd_video::TimeRange::new(a, b).map_err(|m| err(format!("{at}: {m}")))?;
                Some((a, b))
            }
            (None, None) => None,
            _ => {
                return Err(err(format!(
                    "{at}: time_start without time_end, or the reverse"
                )))
            }
        };
        let question = match window {
            Some((a, b)) => format!(
                "From {} seconds to {} seconds. {}",
                python_float_text(a),
                python_float_text(b),
                field("Question")
            ),
            None => field("Question"),
        };
        out.push(McQuestion {
            index: i,
            id,
            question,
            options,
            answer: field("Answer").trim().to_uppercase(),
            kind: AnswerKind::Choice,
            window,
            task_type: field("Task"),
            media: Media::VideoId(field("Video")),
        });
    }
    Ok(out)
}

/// Dyn-Bench's question files by their suffix, and the category each belongs to
/// (Thinking-in-Dynamics `utils/load_tasks.py`); the mask (grounding) files are not questions.
const DYNBENCH_QA: &[(&str, &str)] = &[
    ("cameraqa", "Camera-Object"),
    ("qa", "Inter-Object"),
    ("sceneqa", "Object-Scene"),
];
const DYNBENCH_MASKS: &[&str] = &["cameramask", "objmask", "scenemask"];

/// Dyn-Bench (`docs/benchmark-formats.md` §5; Thinking-in-Dynamics `utils/load_tasks.py`): a
/// dataset folder with `multi_json/<dataset>/<scene>_<suffix>.json` (a list of
/// `{question, options, answer}` for the QA suffixes) and `frames/<dataset>/<scene>/`. Datasets
/// and files are taken in sorted order, questions numbered in that order; a scene's frames are
/// the first of `frame_*.jpg`, `frame_*.png`, `*.jpg`, `*.png` that matches, sorted. Mask
/// files (segmentation answers) and `*frame_sampling*` files are left out.
pub fn read_dynbench(root: &Path) -> Result<Vec<McQuestion>> {
    let err = |path: &Path, msg: String| EvalError::Benchmark {
        path: path.to_path_buf(),
        msg,
    };
    let multi = root.join("multi_json");
    if !multi.is_dir() {
        return Err(err(
            root,
            "not a Dyn-Bench dataset folder (it has no multi_json/)".into(),
        ));
    }
    let mut out = Vec::new();
    let mut masks = 0usize;
    for dataset in sorted_entries(&multi, |p| p.is_dir())? {
        let dataset_name = file_name(&dataset);
        let files = sorted_entries(&dataset, |p| {
            p.extension().is_some_and(|e| e == "json") && p.is_file()
        })?;
        for file in files {
            let name = file_name(&file);
            let stem = name.trim_end_matches(".json");
            if name.contains("frame_sampling") {
                continue;
            }
            let Some((scene, suffix)) = stem.rsplit_once('_') else {
                continue;
            };
            if DYNBENCH_MASKS.contains(&suffix) {
                masks += 1;
                continue;
            }
            let Some(&(_, category)) = DYNBENCH_QA.iter().find(|(s, _)| *s == suffix) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
            let items: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text)
                .map_err(|e| err(&file, format!("expected a list of questions: {e}")))?;
            let frames = dynbench_frames(&root.join("frames").join(&dataset_name).join(scene))?;
            for (k, item) in items.iter().enumerate() {
                out.push(McQuestion {
                    index: out.len(),
                    id: format!("{dataset_name}/{stem}#{k}"),
                    question: text_field(item, "question"),
                    options: parse_options(item.get("options").unwrap_or(&Value::Null)),
                    answer: text_field(item, "answer").trim().to_uppercase(),
                    kind: AnswerKind::Choice,
                    window: None,
                    task_type: category.to_string(),
                    media: Media::Frames(frames.clone()),
                });
            }
        }
    }
    if masks > 0 {
        tracing::info!(
            "{}: {masks} mask (grounding) file(s) left out: fourd eval scores questions only",
            root.display()
        );
    }
    Ok(out)
}

/// A Dyn-Bench scene's frames: the first pattern of `frame_*.jpg`, `frame_*.png`, `*.jpg`,
/// `*.png` that matches, sorted (an empty list when the folder is missing: the question is then
/// skipped with its reason).
fn dynbench_frames(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let all = sorted_entries(dir, |p| p.is_file())?;
    let matching = |prefix: &str, ext: &str| -> Vec<PathBuf> {
        all.iter()
            .filter(|p| {
                let n = file_name(p);
                n.starts_with(prefix) && n.ends_with(ext)
            })
            .cloned()
            .collect()
    };
    Ok([
        ("frame_", ".jpg"),
        ("frame_", ".png"),
        ("", ".jpg"),
        ("", ".png"),
    ]
    .iter()
    .map(|(p, e)| matching(p, e))
    .find(|m| !m.is_empty())
    .unwrap_or_default())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The entries of `dir` that `keep` accepts, sorted by their path as text (Python's `sorted`).
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect();
    out.sort_by_key(|p| p.to_string_lossy().into_owned());
    Ok(out)
}

fn read_rows(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let err = benchmark_error(path);
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
