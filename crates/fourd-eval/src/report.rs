//! Result files in the reference's schema: per-sample JSONL, `_summary.json` (overall and 13
//! sub-task accuracies, macro average), plus a Markdown table and a PNG bar chart. Skipped samples
//! (missing or undecodable video, no options) are listed with their reason in `_skipped.jsonl`.
//!
//! Scores are always derived from the stored replies (`raw`): the sample lines' `pred`, `answer`,
//! `gt` and `hit` follow the run's [`Scoring`] mode, and the summary, table and chart also give
//! the other mode, named, so a run reads both against our extraction and against the one the
//! reference published with. [`rescore`] redoes every file from the replies alone, without a
//! model, in either mode; it also reads the reference's own per-sample files.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, EvalError, Result};
use crate::judge::JudgeVerdict;
use crate::official::{self, Benchmark};
use fourd_records::answer::{options_in_question, Scoring};
use fourd_records::AnswerKind;

/// The 13 DSR-Bench sub-tasks: parquet `type` key and the paper's column name, in order.
pub const SUBTASKS: &[(&str, &str)] = &[
    ("abs_dis", "Abs Dis"),
    ("abs_dir", "Abs Dir"),
    ("abs_ori", "Abs Ori"),
    ("abs_spd", "Abs Spd"),
    ("abs_spd_comp", "Abs Spd Comp"),
    ("abs_dir_pred", "Abs Dir Pred"),
    ("rel_dis", "Rel Dis"),
    ("rel_dir", "Rel Dir"),
    ("rel_ori", "Rel Ori"),
    ("rel_spd", "Rel Spd"),
    ("rel_spd_comp", "Rel Spd Comp"),
    ("rel_dir_pred", "Rel Dir Pred"),
    ("non_temp", "Non-Temp Based"),
];

/// How a results table's column counts its sub-task keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Every sample of every key together (a micro average; a single key's column).
    Pool,
    /// The unweighted mean of each key's own figure (VSI-Bench's relative direction, whose three
    /// difficulty levels count equally).
    MeanOfKeys,
}

/// One column of a results table: its name, the `subtask_type` keys it counts, and how.
pub type Column = (&'static str, &'static [&'static str], Combine);

/// How a benchmark's results are tabulated: named columns over the samples' `subtask_type`, and
/// the table's average column.
#[derive(Debug, PartialEq)]
pub struct CategoryTable {
    pub columns: &'static [Column],
    /// `Some("Avg")`: the unweighted mean of the non-empty categories (columns of one key, or
    /// [`Combine::MeanOfKeys`]); pooled columns of several keys summarise others and are left
    /// out. DSR-Bench's paper average, VSI-Bench's overall, Dyn-Bench's overall. `None`: no such
    /// column (VLM4D and STI-Bench report micro averages, the table's Overall).
    pub average: Option<&'static str>,
}

/// A column of one key.
macro_rules! one {
    ($name:literal, $key:literal) => {
        ($name, &[$key], Combine::Pool)
    };
}

/// DSR-Bench: the 13 sub-tasks, then their macro average ([`SUBTASKS`]).
pub const DSR_TABLE: CategoryTable = CategoryTable {
    columns: &[
        one!("Abs Dis", "abs_dis"),
        one!("Abs Dir", "abs_dir"),
        one!("Abs Ori", "abs_ori"),
        one!("Abs Spd", "abs_spd"),
        one!("Abs Spd Comp", "abs_spd_comp"),
        one!("Abs Dir Pred", "abs_dir_pred"),
        one!("Rel Dis", "rel_dis"),
        one!("Rel Dir", "rel_dir"),
        one!("Rel Ori", "rel_ori"),
        one!("Rel Spd", "rel_spd"),
        one!("Rel Spd Comp", "rel_spd_comp"),
        one!("Rel Dir Pred", "rel_dir_pred"),
        one!("Non-Temp Based", "non_temp"),
    ],
    average: Some("Avg"),
};

/// VLM4D's `acc_final_statistics.py` columns, every one a micro average
/// (`docs/benchmark-formats.md` §1).
pub const VLM4D_TABLE: CategoryTable = CategoryTable {
    columns: &[
        one!("Real Ego-centric", "real_ego"),
        one!("Real Exo-centric", "real_exo"),
        ("Real Overall", &["real_ego", "real_exo"], Combine::Pool),
        one!("Synthetic Directional", "synthetic_directional"),
        one!("Synthetic FP", "synthetic_fp"),
        (
            "Synthetic Overall",
            &["synthetic_directional", "synthetic_fp"],
            Combine::Pool,
        ),
    ],
    average: None,
};

/// VSI-Bench's table (thinking-in-space `vsibench_aggregate_results`): numerical-answer tasks
/// (mean relative accuracy), then multiple-choice tasks (accuracy), the three relative-direction
/// levels averaged unweighted, and the unweighted mean of the eight as the average.
pub const VSIBENCH_TABLE: CategoryTable = CategoryTable {
    columns: &[
        one!("Obj. Count", "object_counting"),
        one!("Abs. Dist.", "object_abs_distance"),
        one!("Obj. Size", "object_size_estimation"),
        one!("Room Size", "room_size_estimation"),
        one!("Rel. Dist.", "object_rel_distance"),
        (
            "Rel. Dir.",
            &[
                "object_rel_direction_easy",
                "object_rel_direction_medium",
                "object_rel_direction_hard",
            ],
            Combine::MeanOfKeys,
        ),
        one!("Route Plan", "route_planning"),
        one!("Appr. Order", "obj_appearance_order"),
    ],
    average: Some("Avg"),
};

/// STI-Bench's eight tasks in the paper's order (static, then dynamic understanding); its
/// scripts report the micro average, the table's Overall.
pub const STIBENCH_TABLE: CategoryTable = CategoryTable {
    columns: &[
        one!("Dim. Meas.", "Dimensional Measurement"),
        one!("Spatial Relation", "Spatial Relation"),
        one!("3D Video Grounding", "3D Video Grounding"),
        one!("Disp. & P.L.", "Displacement & Path Length"),
        one!("Speed & Acc.", "Speed & Acceleration"),
        one!("Ego Orient.", "Ego-Centric Orientation"),
        one!("Traj. Desc.", "Trajectory Description"),
        one!("Pose Est.", "Pose Estimation"),
    ],
    average: None,
};

/// Dyn-Bench's QA categories (Thinking-in-Dynamics `eval.py`); its overall is their unweighted
/// mean, the table's average.
pub const DYNBENCH_TABLE: CategoryTable = CategoryTable {
    columns: &[
        one!("Inter-Object", "Inter-Object"),
        one!("Camera-Object", "Camera-Object"),
        one!("Object-Scene", "Object-Scene"),
    ],
    average: Some("Avg"),
};

/// The results table of `benchmark`.
pub fn table_of(benchmark: Benchmark) -> &'static CategoryTable {
    match benchmark {
        Benchmark::Dsr => &DSR_TABLE,
        Benchmark::Vlm4d => &VLM4D_TABLE,
        Benchmark::VsiBench => &VSIBENCH_TABLE,
        Benchmark::StiBench => &STIBENCH_TABLE,
        Benchmark::DynBench => &DYNBENCH_TABLE,
    }
}

/// The table for these samples: their benchmark's (DSR-Bench's when there are none).
pub fn category_table(results: &[SampleResult]) -> &'static CategoryTable {
    table_of(results.first().map(|r| r.benchmark).unwrap_or_default())
}

impl CategoryTable {
    /// Column names, the average's last.
    pub fn names(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|(c, _, _)| c.to_string())
            .chain(self.average.map(str::to_string))
            .collect()
    }
}

/// One evaluated sample (a JSONL line), field for field as the reference writes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleResult {
    pub index: usize,
    pub video_id: String,
    pub video_path: String,
    pub question: String,
    pub gt: String,
    pub pred: String,
    pub answer: String,
    pub raw: String,
    pub hit: u8,
    pub subtask_type: String,
    /// The benchmark whose rule scores the sample and whose table counts it. Not written for
    /// DSR-Bench, so its lines keep the reference's schema (and the reference's own files read).
    #[serde(default, skip_serializing_if = "Benchmark::is_dsr")]
    pub benchmark: Benchmark,
    /// `number` for a numerical question (not written for a choice).
    #[serde(default, skip_serializing_if = "AnswerKind::is_choice")]
    pub kind: AnswerKind,
    /// A numerical answer's score in [0, 1] (its mean relative accuracy; `hit` is 1 only when it
    /// is 1). Absent for a choice, whose score is `hit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The frames the model saw, for a question about part of the video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<FramesUsed>,
    /// An LLM judge's verdict on the reply (`fourd eval judge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeVerdict>,
}

impl SampleResult {
    /// The sample's score in [0, 1]: [`Self::score`], else `hit`.
    pub fn value(&self) -> f64 {
        self.score.unwrap_or(f64::from(self.hit))
    }
}

/// Which frames of a video answered a question about part of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FramesUsed {
    /// The question's window, seconds from the video's start.
    pub window: [f64; 2],
    /// Source frame indices (presentation order, from 0).
    pub indices: Vec<usize>,
    /// Their presentation times in seconds.
    pub times: Vec<f64>,
}

/// A sample that could not be evaluated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub index: usize,
    pub video_id: String,
    pub subtask_type: String,
    pub reason: String,
}

/// Paths of one evaluation's files, from the per-sample JSONL path.
#[derive(Clone, Debug)]
pub struct ResultFiles {
    pub samples: PathBuf,
    pub skipped: PathBuf,
    pub summary: PathBuf,
    pub table: PathBuf,
    pub chart: PathBuf,
    /// What the run was started with (`fourd_job::JobManifest`).
    pub job: PathBuf,
    /// Held while a job writes these files.
    pub lock: PathBuf,
}

impl ResultFiles {
    pub fn new(samples: &Path) -> Self {
        let stem = samples.with_extension("");
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
        ResultFiles {
            samples: samples.with_extension("jsonl"),
            skipped: with("_skipped.jsonl"),
            summary: with("_summary.json"),
            table: with("_summary.md"),
            chart: with("_subtasks.png"),
            job: with("_job.json"),
            lock: with(".lock"),
        }
    }
}

/// Reads a JSONL file of `T`; a missing file is empty. A torn last line (a crash mid-write) is
/// dropped with a warning; a bad line elsewhere is an error naming the line.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(
                    "{}: ignoring an incomplete last line (interrupted write)",
                    path.display()
                );
            }
            Err(e) => {
                return Err(EvalError::Results {
                    path: path.to_path_buf(),
                    line: i + 1,
                    msg: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Appends one JSON line and flushes it to disk, so a crash loses at most the line being written.
pub struct JsonlAppender {
    file: std::fs::File,
    path: PathBuf,
}

impl JsonlAppender {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        // Drop a torn last line left by a crash before appending after it.
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                std::fs::write(path, &text[..keep]).map_err(|e| io(path, e))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(JsonlAppender {
            file,
            path: path.to_path_buf(),
        })
    }
    pub fn append<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let mut line = serde_json::to_string(v).map_err(|e| EvalError::Input(e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| io(&self.path, e))?;
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }
}

/// A skipped sample as the summary lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SkippedSample {
    pub index: usize,
    pub video_id: String,
    pub reason: String,
}

/// The accuracies of one scoring mode (`_summary.json`'s `by_scoring`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModeScores {
    pub correct: usize,
    pub accuracy: f64,
    pub subtask_accuracy: BTreeMap<String, Option<f64>>,
    pub subtask_macro_avg: f64,
}

/// `_summary.json`: the reference's schema, plus `skipped_samples` (index and reason), the
/// scoring mode of the top-level figures (`scoring`) and every mode's figures (`by_scoring`).
/// Sub-task maps are keyed by the paper's column names; an accuracy is `null` for a sub-task with
/// no sample.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalSummary {
    pub total: usize,
    pub eval_count: usize,
    pub skipped: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub subtask_accuracy: BTreeMap<String, Option<f64>>,
    pub subtask_correct: BTreeMap<String, usize>,
    pub subtask_total: BTreeMap<String, usize>,
    pub subtask_macro_avg: f64,
    pub subtask_columns_order: Vec<String>,
    pub skipped_samples: Vec<SkippedSample>,
    #[serde(default)]
    pub scoring: Scoring,
    #[serde(default)]
    pub by_scoring: BTreeMap<Scoring, ModeScores>,
    /// Whose rules and table these are.
    #[serde(default)]
    pub benchmark: Benchmark,
}

/// Scores `r` again from its reply under `scoring`, by its benchmark's rule
/// ([`official::score`]): `gt` as the rule reads the truth, `pred` and `answer` from `raw`
/// (options read back from `question`), `hit`, and `score` for a number.
pub fn score_sample(r: &mut SampleResult, scoring: Scoring) {
    if scoring == Scoring::Judge {
        // The judge's verdict, not a rule over the reply.
        let verdict = r.judge.as_ref();
        r.gt = r.gt.trim().to_string();
        r.pred = verdict
            .map(|v| v.extracted_answer.clone())
            .unwrap_or_default();
        r.answer = r.pred.clone();
        r.hit = u8::from(verdict.is_some_and(|v| v.correct));
        r.score = None;
        return;
    }
    let options = options_in_question(&r.question);
    let s = official::score(r.benchmark, scoring, r.kind, &r.raw, &r.gt, &options);
    r.gt = s.truth;
    r.pred = s.pred.clone();
    r.answer = s.pred;
    r.hit = u8::from(s.score >= 1.0);
    r.score = (r.kind == AnswerKind::Number).then_some(s.score);
}

/// The summary of `results` (scored under `scoring`) and skipped samples out of `total` rows,
/// with every mode's figures in `by_scoring`.
pub fn summarize_scored(
    total: usize,
    results: &[SampleResult],
    skipped: &[Skipped],
    scoring: Scoring,
) -> EvalSummary {
    let mut summary = summarize(total, results, skipped);
    summary.scoring = scoring;
    let judged = !results.is_empty() && results.iter().all(|r| r.judge.is_some());
    for mode in Scoring::ALL {
        if mode == Scoring::Judge && !judged {
            continue;
        }
        let mut rescored = results.to_vec();
        rescored.iter_mut().for_each(|r| score_sample(r, mode));
        let s = summarize(total, &rescored, skipped);
        summary.by_scoring.insert(
            mode,
            ModeScores {
                correct: s.correct,
                accuracy: s.accuracy,
                subtask_accuracy: s.subtask_accuracy,
                subtask_macro_avg: s.subtask_macro_avg,
            },
        );
    }
    summary
}

/// The summary of scored and skipped samples out of `total` rows, from their `hit` as stored,
/// tabulated by [`category_table`].
pub fn summarize(total: usize, results: &[SampleResult], skipped: &[Skipped]) -> EvalSummary {
    let table = category_table(results);
    let eval_count = results.len();
    let correct: usize = results.iter().map(|r| r.hit as usize).sum();
    // Per key: samples, hits, sum of scores.
    let mut per: HashMap<&str, (usize, usize, f64)> = HashMap::new();
    for r in results {
        let e = per.entry(r.subtask_type.as_str()).or_default();
        e.0 += 1;
        e.1 += r.hit as usize;
        e.2 += r.value();
    }
    let mut summary = EvalSummary {
        total,
        eval_count,
        skipped: skipped.len(),
        correct,
        accuracy: if eval_count > 0 {
            results.iter().map(SampleResult::value).sum::<f64>() / eval_count as f64
        } else {
            0.0
        },
        subtask_accuracy: BTreeMap::new(),
        subtask_correct: BTreeMap::new(),
        subtask_total: BTreeMap::new(),
        subtask_macro_avg: 0.0,
        subtask_columns_order: table.names(),
        skipped_samples: skipped
            .iter()
            .map(|s| SkippedSample {
                index: s.index,
                video_id: s.video_id.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        scoring: Scoring::default(),
        by_scoring: BTreeMap::new(),
        benchmark: results.first().map(|r| r.benchmark).unwrap_or_default(),
    };
    let mut categories = Vec::new();
    for &(col, keys, combine) in table.columns {
        let found: Vec<&(usize, usize, f64)> = keys.iter().filter_map(|k| per.get(k)).collect();
        let n: usize = found.iter().map(|f| f.0).sum();
        let c: usize = found.iter().map(|f| f.1).sum();
        let a = match combine {
            _ if n == 0 => None,
            Combine::Pool => Some(found.iter().map(|f| f.2).sum::<f64>() / n as f64),
            Combine::MeanOfKeys => {
                Some(found.iter().map(|f| f.2 / f.0 as f64).sum::<f64>() / found.len() as f64)
            }
        };
        if keys.len() == 1 || combine == Combine::MeanOfKeys {
            categories.extend(a);
        }
        summary.subtask_accuracy.insert(col.to_string(), a);
        summary.subtask_correct.insert(col.to_string(), c);
        summary.subtask_total.insert(col.to_string(), n);
    }
    if !categories.is_empty() {
        summary.subtask_macro_avg = categories.iter().sum::<f64>() / categories.len() as f64;
    }
    summary
}

impl EvalSummary {
    /// The accuracy of the sub-task shown in column `col`, when it has samples.
    pub fn subtask(&self, col: &str) -> Option<f64> {
        self.subtask_accuracy.get(col).copied().flatten()
    }
}

/// What each scoring mode is on `benchmark`, for people reading a table.
fn scoring_note(mode: Scoring, benchmark: Benchmark) -> &'static str {
    match mode {
        Scoring::Strict => {
            "ours: a standalone option letter or the text of one option; for a number, the answer's first number"
        }
        Scoring::Reference => benchmark.reference_rule(),
        Scoring::Judge => {
            "an LLM judge's verdicts (fourd eval judge; VLM4D's official scoring, with o4-mini in the paper)"
        }
    }
}

/// The sub-task table as Markdown: one row per scoring mode (the run's first), percentages with
/// two decimals, N/A for empty categories.
pub fn markdown_table(summary: &EvalSummary, title: &str) -> String {
    let mut head = String::from("| scoring | Overall |");
    let mut sep = String::from("| --- | ---: |");
    for col in &summary.subtask_columns_order {
        head += &format!(" {col} |");
        sep += " ---: |";
    }
    let pct = |a: Option<f64>| a.map_or(" N/A |".to_string(), |a| format!(" {:.2} |", a * 100.0));
    // A column's value in one mode's figures: the macro average under "Avg".
    let cell = |accs: &BTreeMap<String, Option<f64>>, macro_avg: f64, col: &str| {
        if col == "Avg" {
            pct(Some(macro_avg))
        } else {
            pct(accs.get(col).copied().flatten())
        }
    };
    let mut modes: Vec<Scoring> = vec![summary.scoring];
    modes.extend(Scoring::ALL.iter().filter(|m| **m != summary.scoring));
    let mut rows = String::new();
    let mut notes = String::new();
    for mode in modes {
        let Some(m) = summary.by_scoring.get(&mode) else {
            continue;
        };
        rows += &format!("| {mode} |{}", pct(Some(m.accuracy)));
        for col in &summary.subtask_columns_order {
            rows += &cell(&m.subtask_accuracy, m.subtask_macro_avg, col);
        }
        rows.push('\n');
        notes += &format!("- `{mode}`: {}\n", scoring_note(mode, summary.benchmark));
    }
    if rows.is_empty() {
        // A summary from before the scoring modes: its own figures only.
        rows += &format!("| {} |{}", summary.scoring, pct(Some(summary.accuracy)));
        for col in &summary.subtask_columns_order {
            rows += &cell(&summary.subtask_accuracy, summary.subtask_macro_avg, col);
        }
        rows.push('\n');
    }
    format!(
        "## {title}\n\nOverall accuracy ({} scoring): {:.2}% ({} / {} evaluated; {} of {} rows skipped)\n\n{head}\n{sep}\n{rows}\n{notes}",
        summary.scoring,
        summary.accuracy * 100.0,
        summary.correct,
        summary.eval_count,
        summary.skipped,
        summary.total,
    )
}

/// A bar chart of the sub-task accuracies (and their macro average) as PNG: one bar per scoring
/// mode in each category, the run's mode first.
pub fn bar_chart(summary: &EvalSummary, title: &str, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let names: Vec<String> = summary.subtask_columns_order.clone();
    let values = |accs: &BTreeMap<String, Option<f64>>, macro_avg: f64| -> Vec<f64> {
        names
            .iter()
            .map(|c| match c.as_str() {
                "Avg" => macro_avg * 100.0,
                c => accs.get(c).copied().flatten().unwrap_or(0.0) * 100.0,
            })
            .collect()
    };
    let mut modes: Vec<(Scoring, Vec<f64>)> = Vec::new();
    let mut order = vec![summary.scoring];
    order.extend(Scoring::ALL.iter().filter(|m| **m != summary.scoring));
    for mode in order {
        if let Some(m) = summary.by_scoring.get(&mode) {
            modes.push((mode, values(&m.subtask_accuracy, m.subtask_macro_avg)));
        }
    }
    if modes.is_empty() {
        let v = values(&summary.subtask_accuracy, summary.subtask_macro_avg);
        modes.push((summary.scoring, v));
    }
    let e = |x: String| EvalError::Chart(format!("{}: {x}", path.display()));
    let root = BitMapBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let n = names.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(90)
        .y_label_area_size(50)
        // 0..=n-1: one segment per bar group.
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..115f64)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("accuracy (%)")
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(
            ("sans-serif", 13)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .draw()
        .map_err(|x| e(x.to_string()))?;
    // Bars of one category share its segment, split by pixel margins.
    let segment = (chart.plotting_area().dim_in_pixel().0 as i32 / n as i32).max(4);
    let inner = segment - 12;
    let colors = [RGBColor(60, 110, 180), RGBColor(200, 80, 40)];
    let m = modes.len() as i32;
    for (k, (mode, values)) in modes.iter().enumerate() {
        let k = k as i32;
        let color = colors[k as usize % colors.len()];
        let (left, right) = (6 + inner * k / m, 6 + inner * (m - k - 1) / m);
        chart
            .draw_series(values.iter().enumerate().map(move |(i, v)| {
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    color.filled(),
                );
                r.set_margin(0, 0, left.max(0) as u32, right.max(0) as u32);
                r
            }))
            .map_err(|x| e(x.to_string()))?
            .label(format!("{mode} scoring"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    // Above the bars: the y axis runs to 115% to leave it room.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// Scores the results on disk under `scoring` (rewriting the sample lines whose score changes,
/// whole and atomically) and writes summary JSON, Markdown table and chart. Everything comes
/// from the stored replies, so a run and a later [`rescore`] in the same mode write the same
/// files.
pub fn write_reports(
    files: &ResultFiles,
    total: usize,
    title: &str,
    scoring: Scoring,
) -> Result<EvalSummary> {
    let stored: Vec<SampleResult> = read_jsonl(&files.samples)?;
    let mut results = stored.clone();
    results.iter_mut().for_each(|r| score_sample(r, scoring));
    if results != stored {
        let text: String = results.iter().map(jsonl_line).collect::<Result<_>>()?;
        fourd_job::files::write_atomic(&files.samples, text.as_bytes())?;
    }
    let skipped: Vec<Skipped> = read_jsonl(&files.skipped)?;
    let summary = summarize_scored(total, &results, &skipped, scoring);
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| EvalError::Input(e.to_string()))?;
    std::fs::write(&files.summary, text + "\n").map_err(|e| io(&files.summary, e))?;
    std::fs::write(&files.table, markdown_table(&summary, title))
        .map_err(|e| io(&files.table, e))?;
    if let Err(err) = bar_chart(&summary, title, &files.chart) {
        // A missing font must not cost the user the numbers.
        tracing::warn!("no chart: {err}");
    }
    Ok(summary)
}

/// Combines shard result files into one. The same index scored differently in two shards is an
/// error; a sample skipped in one shard but scored in another counts as scored.
///
/// Nothing is deleted: every shard must have been run with the same model, benchmark and
/// settings (their manifests equal but for the shard), and results already in `out` are kept
/// and merged in when their manifest agrees; when it does not, the merge stops. The merged
/// files are written whole and renamed into place.
pub fn merge(
    shards: &[PathBuf],
    out: &Path,
    total: usize,
    title: &str,
    scoring: Scoring,
) -> Result<EvalSummary> {
    let files = ResultFiles::new(out);
    let _lock = fourd_job::OutputLock::at(&files.lock, &files.samples, "fourd eval merge")?;
    let manifest = shards_manifest(shards)?;
    let mut sources: Vec<PathBuf> = shards.to_vec();
    if let Some(existing) = fourd_job::manifest::read(&files.job)? {
        let differences = manifest.differences(&existing);
        if !differences.is_empty() {
            return Err(EvalError::Input(format!(
                "{} holds results of another run than the shards:\n{}\nmerge into another \
                 folder, or move those results away first",
                files.samples.display(),
                differences.join("\n")
            )));
        }
        sources.push(files.samples.clone());
    } else if files.samples.exists() {
        return Err(EvalError::Input(format!(
            "{} exists without a manifest ({}), so it cannot be told to be the same run as the \
             shards; merge into another folder, or move it away first",
            files.samples.display(),
            files.job.display()
        )));
    }
    let (results, skipped) = union_of(&sources)?;
    let lines = |v: Vec<String>| v.concat();
    let write = |path: &Path, text: String| fourd_job::files::write_atomic(path, text.as_bytes());
    write(
        &files.samples,
        lines(results.values().map(jsonl_line).collect::<Result<_>>()?),
    )?;
    write(
        &files.skipped,
        lines(skipped.values().map(jsonl_line).collect::<Result<_>>()?),
    )?;
    manifest.write(&files.job)?;
    write_reports(&files, total, title, scoring)
}

/// The per-sample results that `path` names: the file itself, or in a folder our
/// `dsr_eval.jsonl`, else the newest of the reference's `dsr_eval_<time>.jsonl` (one run per
/// file; shard and skip files are not results).
pub fn results_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let ours = path.join("dsr_eval.jsonl");
    if ours.is_file() {
        return Ok(ours);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| io(path, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with("dsr_eval")
                && n.ends_with(".jsonl")
                && !n.ends_with("_skipped.jsonl")
                && !n.contains(".shard-")
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        EvalError::Input(format!(
            "{}: no dsr_eval.jsonl or dsr_eval_<time>.jsonl to score",
            path.display()
        ))
    })
}

/// `fourd eval rescore`: scores the per-sample file `samples` again from its stored replies under
/// `scoring` and rewrites it with its summary, table and chart; no model is loaded. `samples` may
/// be ours or the reference's own `dsr_eval_<time>.jsonl` (same fields; its summary, when there
/// is one, gives the row count). Holds the results' lock, so it never runs beside the evaluation
/// that writes them.
pub fn rescore(samples: &Path, title: &str, scoring: Scoring) -> Result<EvalSummary> {
    let files = ResultFiles::new(samples);
    if !files.samples.is_file() {
        return Err(EvalError::Input(format!(
            "{}: no per-sample results to score",
            files.samples.display()
        )));
    }
    let _lock = fourd_job::OutputLock::at(&files.lock, &files.samples, "fourd eval rescore")?;
    let results: Vec<SampleResult> = read_jsonl(&files.samples)?;
    let skipped: Vec<Skipped> = read_jsonl(&files.skipped)?;
    if results.is_empty() {
        return Err(EvalError::Input(format!(
            "{}: no scored sample in it",
            files.samples.display()
        )));
    }
    if scoring == Scoring::Judge {
        if let Some(r) = results.iter().find(|r| r.judge.is_none()) {
            return Err(EvalError::Input(format!(
                "{}: sample {} has no judge verdict; run `fourd eval judge` on it first",
                files.samples.display(),
                r.index
            )));
        }
    }
    let total = std::fs::read_to_string(&files.summary)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["total"].as_u64())
        .map_or(results.len() + skipped.len(), |t| t as usize);
    write_reports(&files, total, title, scoring)
}

/// The summary at `path`, when there is a readable one.
pub fn read_summary(path: &Path) -> Option<EvalSummary> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The manifest the shards share, with the shard itself left out; an error when a shard has
/// none or they differ.
fn shards_manifest(shards: &[PathBuf]) -> Result<fourd_job::JobManifest> {
    let mut common: Option<fourd_job::JobManifest> = None;
    for s in shards {
        let path = ResultFiles::new(s).job;
        let mut m = fourd_job::manifest::read(&path)?.ok_or_else(|| {
            EvalError::Input(format!(
                "{} has no manifest ({}): was it written by this version of fourd eval?",
                s.display(),
                path.display()
            ))
        })?;
        m.settings.insert("shard".into(), serde_json::Value::Null);
        match &common {
            None => common = Some(m),
            Some(c) if *c == m => {}
            Some(c) => {
                return Err(EvalError::Input(format!(
                    "{} was run with other inputs than the first shard:\n{}",
                    s.display(),
                    m.differences(c).join("\n")
                )))
            }
        }
    }
    common.ok_or_else(|| EvalError::Input("no shard files to merge".into()))
}

type Merged = (BTreeMap<usize, SampleResult>, BTreeMap<usize, Skipped>);

/// Every scored and skipped sample of `sources`, by index.
fn union_of(sources: &[PathBuf]) -> Result<Merged> {
    let mut results: BTreeMap<usize, SampleResult> = BTreeMap::new();
    let mut skipped: BTreeMap<usize, Skipped> = BTreeMap::new();
    for s in sources {
        let f = ResultFiles::new(s);
        for r in read_jsonl::<SampleResult>(&f.samples)? {
            if let Some(prev) = results.get(&r.index) {
                if prev != &r {
                    return Err(EvalError::Input(format!(
                        "sample {} appears in two shards with different results ({})",
                        r.index,
                        s.display()
                    )));
                }
            }
            results.insert(r.index, r);
        }
        for k in read_jsonl::<Skipped>(&f.skipped)? {
            skipped.insert(k.index, k);
        }
    }
    skipped.retain(|i, _| !results.contains_key(i));
    Ok((results, skipped))
}

fn jsonl_line<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map(|l| l + "\n")
        .map_err(|e| EvalError::Input(e.to_string()))
}

/// A line chart (PNG) of named series of `(x, y)` points, e.g. training curves.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    use plotters::prelude::*;
    let e = |x: String| EvalError::Chart(format!("{}: {x}", path.display()));
    let pts = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(e("no finite points to plot".into()));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let colors = [
        RGBColor(60, 110, 180),
        RGBColor(200, 80, 40),
        RGBColor(60, 160, 80),
        RGBColor(140, 80, 170),
    ];
    for (i, (name, s)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}
