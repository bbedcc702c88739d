//! Multiple-choice video benchmark evaluation (DSR-Bench, and other benchmarks through a column
//! mapping), compatible with the output files of 4DThinker's `evaluation/dsr_eval.py`.
//!
//! benchmark (parquet / JSONL) -> frames (FFmpeg) -> prompts -> latent-imagery generation ->
//! answer extraction (`fourd_records::answer`) -> per-sample JSONL (appended, resumable) -> summary, Markdown table, chart.

pub mod benchmark;
pub mod compare;
pub mod error;
pub mod judge;
pub mod official;
pub mod report;
pub mod run;

pub use error::{EvalError, Result};
