//! `fourd_data`: the annotation-free 4D data pipeline.
//!
//! SpatialVID-layout clips (real, or from `fourd synth`) become multiple-choice questions about
//! camera and object motion, with chains of thought that "imagine" the tracked object on
//! keyframes, in the two training formats of 4DThinker: DIFT and 4DRL JSONL.
//!
//! Stages (each resumable, per clip, atomic; see [`pipeline`] for the output layout):
//! 1. [`ingest`]: annotations checked, annotated frames extracted (FFmpeg via `fourd-video`).
//! 2. [`label`]: camera labels from poses ([`camera`], SpatialVID's rule, compared with
//!    `instructions.json`), objects from a [`segment::Segmenter`], object motion measured from
//!    geometry ([`motion`]), helper imagery ([`imagery`]).
//! 3. [`qa`]: questions and chains of thought ([`cot`]); optional LLM rewrites ([`rewrite`]).
//! 4. [`export`]: balanced answers, leak-free options ([`questions`]), balanced letters, files.
//!
//! [`check`] validates the output files; [`truth`] measures agreement with `truth.json`.
//! `docs/data.md` describes formats, thresholds and the differences from the reference.

pub mod api;
pub mod arrays;
pub mod camera_labels;
pub mod check;
pub mod cot;
pub mod error;
pub mod export;
pub mod fsio;
pub mod imagery;
pub mod ingest;
pub mod label;
pub mod masks;
pub mod object_motion;
pub mod pipeline;
pub mod qa;
pub mod questions;
pub mod rewrite;
pub mod truth;

pub use camera_labels::CameraRule;
pub use check::{check_file, CheckReport};
pub use error::{DataError, Result};
pub use export::{ReplyForm, DIFT_FILE, RL_FILE};
/// The HTTP clients the `api` adapters use, re-exported for callers that configure them.
pub use fourd_api;
pub use masks::{Mask, Segmenter, SegmenterChoice, TrackedObject};
pub use object_motion::MotionThresholds;
pub use pipeline::{
    run_export, run_ingest, run_label, run_qa, PipelineConfig, Rewriter, RunSummary, Stage,
    StageSummary,
};
pub use questions::QuestionKind;
pub use truth::Agreement;

/// Runs every stage over `cfg.input` and writes, in `cfg.output`:
/// - `dift.jsonl` ([`DIFT_FILE`]): DIFT records `{id, text_input, text_output, image_input,
///   image_output}` (questions that have helper imagery);
/// - `4drl.jsonl` ([`RL_FILE`]): 4DRL records `{id, Question, A, B, C, D, Correct, frame_paths,
///   Type, Kind}` (every question);
/// - `manifest.json` (done / failed / skipped clips with reasons), `export_stats.json` (counts,
///   answer distribution, option-only baselines) and, for clips with `truth.json`,
///   `agreement.json`;
/// - per-clip folders `clips/<group>/<clip>/` with frames, overlays and stage records.
///
/// Clips finished by an earlier run are reused; a failed clip does not stop the others (its
/// reason is in [`RunSummary::failures`]). Errors are returned only for problems with the run as
/// a whole (unreadable input root, unwritable output folder, bad configuration).
pub fn run_pipeline(cfg: &PipelineConfig) -> Result<RunSummary> {
    pipeline::run_all(cfg)
}
