//! The stages over a whole input tree: clip selection (`--shard`), parallel workers (`--jobs`),
//! resumability, the manifest, progress bars and logs.
//!
//! Output folder layout:
//!
//! | path | written by | content |
//! |---|---|---|
//! | `clips/<group>/<clip>/ingest.json` | ingest | [`IngestRecord`] |
//! | `clips/<group>/<clip>/frames/frame_<seq>.png` | ingest | the annotated frames |
//! | `clips/<group>/<clip>/labels.json` | label | [`LabelRecord`] |
//! | `clips/<group>/<clip>/overlays/*.png` | label | helper imagery |
//! | `clips/<group>/<clip>/candidates.json` | qa | [`Candidate`]s |
//! | `clips/<group>/<clip>/failed.json` | any | `{stage, reason}` of a failed clip |
//! | `manifest.json` | every stage | done / failed / skipped clips with reasons |
//! | `dift.jsonl`, `4drl.jsonl` | export | the training files ([`crate::export`]) |
//! | `export_stats.json`, `agreement.json` | export | counts, option-only baselines, agreement with `truth.json` |
//!
//! Every file is written atomically (temporary name, then rename), and a clip's stage output is
//! written last, after its frames or overlays: a clip whose stage file exists is finished, and
//! a rerun skips it (unless the stage's configuration fingerprint changed). A killed run leaves at
//! most temporary files, which the next run removes. Failed clips are retried on the next run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::camera_labels::CameraRule;
use crate::error::{DataError, Result};
use crate::export::{build_questions, write_outputs, ExportStats, ReplyForm, DIFT_FILE, RL_FILE};
use crate::fsio::{read_json, remove_stale_temps, write_json};
use crate::ingest::{discover, ingest_clip, read_metadata, ClipRef, IngestOptions, IngestRecord};
use crate::label::{label_clip, LabelOptions, LabelRecord};
use crate::masks::SegmenterChoice;
use crate::object_motion::MotionThresholds;
use crate::qa::{clip_candidates, QaOptions};
use crate::questions::{Candidate, QuestionKind};
use crate::truth::{clip_agreement, Agreement};

/// `clips/<group>/<clip>` for a clip key `group/clip`.
pub fn clip_dir_rel(key: &str) -> PathBuf {
    Path::new("clips").join(key)
}

/// Why a [`Rewriter`] returned no rewrite. The candidate keeps its template text, and the
/// message is recorded in its `rewrite` field.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The chat request failed.
    #[error(transparent)]
    Api(#[from] fourd_api::ApiError),
    /// The reply is not the JSON object the prompt asked for. The parser's message is part of
    /// the text (not a `source`), so an error chain prints it once.
    #[error("reply is not the requested JSON: {cause}")]
    NotJson { cause: serde_json::Error },
    /// The reply is JSON but has neither field.
    #[error("reply has neither `question` nor `reasoning`")]
    NoFields,
}

/// Optional rewriting of question wording and chains of thought by a chat model.
pub trait Rewriter: Send + Sync {
    /// Returns the candidate rewritten (question and/or think), or why there is none; the
    /// caller validates the result and keeps the original when it fails.
    fn rewrite(
        &self,
        c: &Candidate,
    ) -> std::result::Result<(Option<String>, Option<String>), RewriteError>;
    fn name(&self) -> String;
}

/// Everything the pipeline needs.
#[derive(Clone)]
pub struct PipelineConfig {
    /// Root of the SpatialVID-layout input (`videos/`, `annotations/`, metadata CSV).
    pub input: PathBuf,
    /// Output folder (see the module docs).
    pub output: PathBuf,
    /// Clips with more annotated frames are skipped (reference: 50).
    pub max_frames: usize,
    /// Worker threads; 0 = one per core.
    pub jobs: usize,
    /// `(i, n)`: only clips whose index in the sorted list is `i` modulo `n`.
    pub shard: Option<(usize, usize)>,
    /// Run seed; each clip derives its own from it and its id.
    pub seed: u64,
    pub segmenter: SegmenterChoice,
    pub camera_rule: CameraRule,
    pub motion: MotionThresholds,
    /// Most overlays per object.
    pub object_keyframes: usize,
    pub kinds: Vec<QuestionKind>,
    /// Keep every answer label at most 1/4 of its kind (required for chance-level option-only
    /// baselines; turn off only to inspect the raw label distribution).
    pub balance_answers: bool,
    /// How each DIFT reply closes: the reference's lettered answer (default), an option check
    /// (`A. label: no; B. label: yes; ...`) before it, or the label alone.
    pub reply: ReplyForm,
    /// Draw indicatif progress bars (on stderr, only when it is a terminal).
    pub progress: bool,
    pub rewriter: Option<std::sync::Arc<dyn Rewriter>>,
    /// Optional second opinion on object directions (recorded, compared, never the answer).
    pub judge: Option<std::sync::Arc<dyn crate::object_motion::DirectionJudge>>,
    /// Process the input from scratch in an output folder that holds another input's clips
    /// (deleting them) instead of stopping.
    pub overwrite: bool,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("input", &self.input)
            .field("output", &self.output)
            .field("max_frames", &self.max_frames)
            .field("jobs", &self.jobs)
            .field("shard", &self.shard)
            .field("seed", &self.seed)
            .field("segmenter", &self.segmenter)
            .field("camera_rule", &self.camera_rule)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl PipelineConfig {
    /// Defaults for `input` -> `output`.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            max_frames: 50,
            jobs: 0,
            shard: None,
            seed: 0,
            segmenter: SegmenterChoice::Auto,
            camera_rule: CameraRule::Exact,
            motion: MotionThresholds::default(),
            object_keyframes: 4,
            kinds: QuestionKind::ALL.to_vec(),
            balance_answers: true,
            reply: ReplyForm::Letter,
            progress: false,
            rewriter: None,
            judge: None,
            overwrite: false,
        }
    }

    fn label_options(&self) -> LabelOptions {
        LabelOptions {
            segmenter: self.segmenter.clone(),
            camera_rule: self.camera_rule,
            motion: self.motion.clone(),
            object_keyframes: self.object_keyframes,
            judge: self.judge.clone(),
        }
    }

    fn qa_fingerprint(&self) -> String {
        format!(
            "seed={};kinds={:?};rewriter={}",
            self.seed,
            self.kinds,
            self.rewriter.as_ref().map_or("none".into(), |r| r.name())
        )
    }

    fn validate(&self) -> Result<()> {
        if let Some((i, n)) = self.shard {
            if n == 0 || i >= n {
                return Err(DataError::Config(format!(
                    "shard {i}/{n}: needs 0 <= i < n"
                )));
            }
        }
        if self.max_frames < 2 {
            return Err(DataError::Config("max_frames must be at least 2".into()));
        }
        if self.kinds.is_empty() {
            return Err(DataError::Config("no question kinds selected".into()));
        }
        Ok(())
    }
}

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Ingest,
    Label,
    Qa,
    Export,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Label => "label",
            Stage::Qa => "qa",
            Stage::Export => "export",
        }
    }
}

/// `failed.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub stage: Stage,
    pub reason: String,
    /// `Skipped` clips are valid but out of scope (e.g. too many frames).
    pub skipped: bool,
}

/// One clip's line of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// `done` (through the last stage run), `failed`, `skipped` or `pending`.
    pub status: String,
    /// Last stage finished.
    pub stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a stage (or a whole run) did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub clips: usize,
    /// Finished in this run.
    pub processed: usize,
    /// Already finished by an earlier run and left alone.
    pub reused: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Not attempted because an earlier stage failed for the clip.
    pub blocked: usize,
    pub seconds: f64,
}

/// The result of [`crate::run_pipeline`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub stages: BTreeMap<String, StageSummary>,
    /// Clip key -> reason, for failed and skipped clips.
    pub failures: BTreeMap<String, String>,
    pub dift_path: PathBuf,
    pub rl_path: PathBuf,
    pub export: ExportStats,
    /// Present when some clip has `truth.json`.
    pub agreement: Option<Agreement>,
    /// Camera agreement of every variant with `instructions.json`, `[equal, compared]` steps.
    pub camera_vs_instructions: BTreeMap<String, [usize; 2]>,
    /// Labelled clips that had no usable depth (no `depth.npy`, no depth archive, or one that
    /// did not fit): no camera imagery, so their camera questions go to the 4DRL file only.
    pub clips_without_depth: usize,
}

fn clip_dir(cfg: &PipelineConfig, key: &str) -> PathBuf {
    cfg.output.join(clip_dir_rel(key))
}

fn stage_file(stage: Stage) -> &'static str {
    match stage {
        Stage::Ingest => "ingest.json",
        Stage::Label => "labels.json",
        Stage::Qa => "candidates.json",
        Stage::Export => "",
    }
}

/// The clips of this run (after `--shard`).
pub fn select_clips(cfg: &PipelineConfig) -> Result<Vec<ClipRef>> {
    cfg.validate()?;
    let all = discover(&cfg.input)?;
    Ok(match cfg.shard {
        Some((i, n)) => all
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, c)| c)
            .collect(),
        None => all,
    })
}

fn pool(cfg: &PipelineConfig) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.jobs)
        .build()
        .map_err(|e| DataError::Config(format!("cannot start {} workers: {e}", cfg.jobs)))
}

fn bar(cfg: &PipelineConfig, n: usize, stage: Stage) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} {:<6} [{{bar:40}}] {{pos}}/{{len}} clips ({{eta}} left) {{msg}}",
            stage.as_str()
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

enum Outcome {
    Done,
    Reused,
    Failed,
    Skipped,
    NotReady,
}

/// Runs one per-clip stage over `clips`; `work` does a clip and returns the JSON to store.
fn run_clip_stage<F>(
    cfg: &PipelineConfig,
    clips: &[ClipRef],
    stage: Stage,
    fingerprint: &str,
    work: F,
) -> Result<StageSummary>
where
    F: Fn(&ClipRef, &Path) -> Result<serde_json::Value> + Sync,
{
    let t0 = Instant::now();
    let pb = bar(cfg, clips.len(), stage);
    let counts: [AtomicUsize; 5] = Default::default();
    let run_one = |clip: &ClipRef| -> Outcome {
        let dir = clip_dir(cfg, &clip.key());
        remove_stale_temps(&dir);
        let out = dir.join(stage_file(stage));
        let failed = dir.join("failed.json");
        if let Ok(v) = read_json::<serde_json::Value>(&out) {
            let fp = v
                .get("config_fingerprint")
                .and_then(|x| x.as_str())
                .unwrap_or("");
            if fp == fingerprint || fingerprint.is_empty() {
                return Outcome::Reused;
            }
        }
        // A clip that failed in an earlier stage of this run is not ready for this one.
        if stage != Stage::Ingest {
            if let Ok(f) = read_json::<Failure>(&failed) {
                if f.stage < stage {
                    return Outcome::NotReady;
                }
            }
        }
        let result = work(clip, &dir);
        match result {
            Ok(mut value) => {
                if let Some(o) = value.as_object_mut() {
                    o.insert(
                        "config_fingerprint".into(),
                        serde_json::Value::String(fingerprint.to_string()),
                    );
                }
                // Later stages' outputs belong to the previous version of this stage: drop them.
                for later in [Stage::Label, Stage::Qa].into_iter().filter(|s| *s > stage) {
                    let _ = std::fs::remove_file(dir.join(stage_file(later)));
                }
                match write_json(&out, &value) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&failed);
                        Outcome::Done
                    }
                    Err(e) => {
                        tracing::error!("{}: {e}", clip.key());
                        let _ = write_json(
                            &failed,
                            &Failure {
                                stage,
                                reason: e.to_string(),
                                skipped: false,
                            },
                        );
                        Outcome::Failed
                    }
                }
            }
            Err(e) => {
                let skipped = matches!(e, DataError::Skipped(_));
                if skipped {
                    tracing::info!("{} {}: {e}", stage.as_str(), clip.key());
                } else {
                    tracing::warn!("{} {} failed: {e}", stage.as_str(), clip.key());
                }
                let _ = std::fs::remove_file(&out);
                let _ = write_json(
                    &failed,
                    &Failure {
                        stage,
                        reason: e.to_string(),
                        skipped,
                    },
                );
                if skipped {
                    Outcome::Skipped
                } else {
                    Outcome::Failed
                }
            }
        }
    };
    pool(cfg)?.install(|| {
        clips.par_iter().for_each(|c| {
            let o = run_one(c);
            let i = match o {
                Outcome::Done => 0,
                Outcome::Reused => 1,
                Outcome::Failed => 2,
                Outcome::Skipped => 3,
                Outcome::NotReady => 4,
            };
            counts[i].fetch_add(1, Ordering::Relaxed);
            pb.inc(1);
        })
    });
    pb.finish_and_clear();
    let s = StageSummary {
        clips: clips.len(),
        processed: counts[0].load(Ordering::Relaxed),
        reused: counts[1].load(Ordering::Relaxed),
        failed: counts[2].load(Ordering::Relaxed),
        skipped: counts[3].load(Ordering::Relaxed),
        blocked: counts[4].load(Ordering::Relaxed),
        seconds: t0.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "{}: {} clips, {} processed, {} already done, {} failed, {} skipped, {} blocked by an earlier stage, {:.2} s",
        stage.as_str(),
        s.clips,
        s.processed,
        s.reused,
        s.failed,
        s.skipped,
        s.blocked,
        s.seconds
    );
    write_manifest(cfg, clips)?;
    Ok(s)
}

/// Stage 1 over the selected clips.
fn run_ingest_unlocked(cfg: &PipelineConfig) -> Result<StageSummary> {
    let clips = select_clips(cfg)?;
    std::fs::create_dir_all(&cfg.output).map_err(|e| DataError::io(&cfg.output, e))?;
    let metadata = read_metadata(&cfg.input)?;
    let opts = IngestOptions {
        max_frames: cfg.max_frames,
    };
    let fp = format!("max_frames={}", cfg.max_frames);
    run_clip_stage(cfg, &clips, Stage::Ingest, &fp, |clip, _| {
        let meta = metadata.get(&clip.clip).copied().unwrap_or_default();
        let rec = ingest_clip(clip, meta, &opts, &cfg.output)?;
        serde_json::to_value(&rec).map_err(|e| DataError::Config(e.to_string()))
    })
}

fn read_stage<T: serde::de::DeserializeOwned>(
    cfg: &PipelineConfig,
    key: &str,
    stage: Stage,
) -> Result<T> {
    read_json(&clip_dir(cfg, key).join(stage_file(stage)))
}

/// Stage 2 over the selected clips (needs ingest).
fn run_label_unlocked(cfg: &PipelineConfig) -> Result<StageSummary> {
    let clips = select_clips(cfg)?;
    let opts = cfg.label_options();
    run_clip_stage(cfg, &clips, Stage::Label, &opts.fingerprint(), |clip, _| {
        let ingest: IngestRecord = read_stage(cfg, &clip.key(), Stage::Ingest)?;
        let rec = label_clip(&ingest, &opts, &cfg.output)?;
        serde_json::to_value(&rec).map_err(|e| DataError::Config(e.to_string()))
    })
}

#[derive(Serialize, Deserialize)]
struct CandidateFile {
    candidates: Vec<Candidate>,
}

/// Stage 3 over the selected clips (needs label).
fn run_qa_unlocked(cfg: &PipelineConfig) -> Result<StageSummary> {
    let clips = select_clips(cfg)?;
    let opts = QaOptions {
        kinds: cfg.kinds.clone(),
        seed: cfg.seed,
    };
    run_clip_stage(cfg, &clips, Stage::Qa, &cfg.qa_fingerprint(), |clip, _| {
        let ingest: IngestRecord = read_stage(cfg, &clip.key(), Stage::Ingest)?;
        let labels: LabelRecord = read_stage(cfg, &clip.key(), Stage::Label)?;
        let mut cands = clip_candidates(&ingest, &labels, &opts)?;
        if let Some(rw) = &cfg.rewriter {
            for c in &mut cands {
                crate::rewrite::apply(rw.as_ref(), c);
            }
        }
        serde_json::to_value(CandidateFile { candidates: cands })
            .map_err(|e| DataError::Config(e.to_string()))
    })
}

/// What [`run_export`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportResult {
    pub summary: StageSummary,
    pub stats: ExportStats,
    /// Present when some clip has `truth.json`.
    pub agreement: Option<Agreement>,
    /// Per camera rule: `[equal, compared]` unit steps against `instructions.json`.
    pub camera_vs_instructions: BTreeMap<String, [usize; 2]>,
    /// See [`RunSummary::clips_without_depth`].
    pub clips_without_depth: usize,
}

/// Stage 4 (global and cheap, always recomputed): balancing, options, letters, the two JSONL
/// files, `export_stats.json` and, when `truth.json` exists, `agreement.json`.
fn run_export_unlocked(cfg: &PipelineConfig) -> Result<ExportResult> {
    let t0 = Instant::now();
    let clips = select_clips(cfg)?;
    // A run killed while writing the JSONL files leaves their temporary copies here.
    remove_stale_temps(&cfg.output);
    let mut cands = Vec::new();
    let mut agreement: Option<Agreement> = None;
    let mut vs_instr: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    let mut without_depth = 0;
    let mut used = 0;
    for clip in &clips {
        let key = clip.key();
        let Ok(file) = read_stage::<CandidateFile>(cfg, &key, Stage::Qa) else {
            continue;
        };
        used += 1;
        cands.extend(file.candidates);
        let (Ok(ingest), Ok(labels)) = (
            read_stage::<IngestRecord>(cfg, &key, Stage::Ingest),
            read_stage::<LabelRecord>(cfg, &key, Stage::Label),
        ) else {
            continue;
        };
        without_depth += usize::from(!labels.has_depth);
        for (k, v) in &labels.camera.agreement_with_instructions {
            let e = vs_instr.entry(k.clone()).or_default();
            e[0] += v[0];
            e[1] += v[1];
        }
        if let Some(a) = clip_agreement(&ingest, &labels)? {
            agreement.get_or_insert_with(Agreement::default).merge(&a);
        }
    }
    let (questions, mut stats) = build_questions(cands, cfg.seed, cfg.balance_answers);
    write_outputs(&questions, &cfg.output, &mut stats, cfg.reply)?;
    write_json(&cfg.output.join("export_stats.json"), &stats)?;
    if let Some(a) = &agreement {
        write_json(&cfg.output.join("agreement.json"), a)?;
    }
    let s = StageSummary {
        clips: clips.len(),
        processed: used,
        seconds: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    tracing::info!(
        "export: {} questions from {} clips ({} DIFT records), {:.2} s",
        stats.questions,
        used,
        stats.dift_records,
        s.seconds
    );
    Ok(ExportResult {
        summary: s,
        stats,
        agreement,
        camera_vs_instructions: vs_instr,
        clips_without_depth: without_depth,
    })
}

/// Rebuilds `manifest.json` from the per-clip files.
pub fn write_manifest(
    cfg: &PipelineConfig,
    clips: &[ClipRef],
) -> Result<BTreeMap<String, ManifestEntry>> {
    let mut m = BTreeMap::new();
    for c in clips {
        let dir = clip_dir(cfg, &c.key());
        let stage = [Stage::Qa, Stage::Label, Stage::Ingest]
            .into_iter()
            .find(|s| dir.join(stage_file(*s)).is_file());
        let entry = match read_json::<Failure>(&dir.join("failed.json")) {
            Ok(f) => ManifestEntry {
                status: if f.skipped { "skipped" } else { "failed" }.into(),
                stage,
                reason: Some(format!("{}: {}", f.stage.as_str(), f.reason)),
            },
            Err(_) => ManifestEntry {
                status: if stage.is_some() { "done" } else { "pending" }.into(),
                stage,
                reason: None,
            },
        };
        m.insert(c.key(), entry);
    }
    write_json(&cfg.output.join("manifest.json"), &m)?;
    Ok(m)
}

/// Stage 1 over the selected clips.
pub fn run_ingest(cfg: &PipelineConfig) -> Result<StageSummary> {
    let _lock = open_output(cfg)?;
    run_ingest_unlocked(cfg)
}

/// Stage 2 over the selected clips (needs ingest).
pub fn run_label(cfg: &PipelineConfig) -> Result<StageSummary> {
    let _lock = open_output(cfg)?;
    run_label_unlocked(cfg)
}

/// Stage 3 over the selected clips (needs label).
pub fn run_qa(cfg: &PipelineConfig) -> Result<StageSummary> {
    let _lock = open_output(cfg)?;
    run_qa_unlocked(cfg)
}

/// Stage 4: balancing, options, letters and the two JSONL files (see [`ExportResult`]).
pub fn run_export(cfg: &PipelineConfig) -> Result<ExportResult> {
    let _lock = open_output(cfg)?;
    run_export_unlocked(cfg)
}

/// The job file of an output folder: which input its clips came from.
pub const JOB_FILE: &str = "fourd_job.json";

/// Locks the output folder for this job (one writer at a time) and checks that its clips came
/// from this input. Settings need no such check: every clip stage records a fingerprint of
/// the settings it ran with and is redone when they change. Clips are keyed by `group/clip`,
/// though, so the clips of another input with the same keys would be taken for this input's:
/// that stops, unless `overwrite` clears the earlier clips first.
fn open_output(cfg: &PipelineConfig) -> Result<fourd_job::OutputLock> {
    let lock = fourd_job::OutputLock::folder(&cfg.output, "fourd data")?;
    let manifest = fourd_job::JobManifest::new("fourd data")
        .input("clips", input_identity(cfg)?)
        .setting("shard", cfg.shard);
    let hint = "give --overwrite to process this input from scratch there (its clips are \
                deleted), or another --out";
    let start = manifest.begin(&cfg.output.join(JOB_FILE), cfg.overwrite, hint)?;
    let clips = cfg.output.join("clips");
    if start == fourd_job::Start::Fresh && cfg.overwrite && clips.exists() {
        std::fs::remove_dir_all(&clips).map_err(|e| DataError::io(&clips, e))?;
    }
    Ok(lock)
}

/// The input's identity: its metadata table (when it has one) and the keys of its clips.
fn input_identity(cfg: &PipelineConfig) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Some(p) = crate::ingest::metadata_path(&cfg.input) {
        h.update(std::fs::read(&p).map_err(|e| DataError::io(&p, e))?);
    }
    for c in discover(&cfg.input)? {
        h.update(c.key().as_bytes());
        h.update(b"\n");
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// All four stages; see [`crate::run_pipeline`].
pub fn run_all(cfg: &PipelineConfig) -> Result<RunSummary> {
    let _lock = open_output(cfg)?;
    let mut summary = RunSummary::default();
    summary
        .stages
        .insert("ingest".into(), run_ingest_unlocked(cfg)?);
    summary
        .stages
        .insert("label".into(), run_label_unlocked(cfg)?);
    summary.stages.insert("qa".into(), run_qa_unlocked(cfg)?);
    let e = run_export_unlocked(cfg)?;
    summary.stages.insert("export".into(), e.summary);
    summary.export = e.stats;
    summary.agreement = e.agreement;
    summary.camera_vs_instructions = e.camera_vs_instructions;
    summary.clips_without_depth = e.clips_without_depth;
    summary.dift_path = cfg.output.join(DIFT_FILE);
    summary.rl_path = cfg.output.join(RL_FILE);
    let clips = select_clips(cfg)?;
    for (k, e) in write_manifest(cfg, &clips)? {
        if let Some(r) = e.reason {
            summary.failures.insert(k, r);
        }
    }
    Ok(summary)
}
