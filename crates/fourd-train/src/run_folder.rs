//! The run folder of a training job, kept consistent across re-runs.
//!
//! - One writer: the folder is locked while a run writes into it (`fourd_job::OutputLock`).
//! - A fresh start into a folder that holds a run is refused (it would overwrite the final model,
//!   keep the old run's checkpoints, where a later `--resume` would pick them up, and append to
//!   its log), unless `--overwrite` clears that run first.
//! - `--resume` continues only the run the manifest describes: the same model, data and
//!   settings.
//! - Leftovers of a checkpoint write that failed (`.checkpoint-N.tmp-PID`) are removed.
//! - A resumed run's log continues from the checkpoint's step: `train_log.jsonl` loses the lines
//!   after it, and the new TensorBoard event file starts with TensorBoard's restart marker,
//!   which makes it drop the old files' points from that step on (what PyTorch's
//!   `SummaryWriter(purge_step=...)` does).

use std::path::Path;

use fourd_job::{JobManifest, OutputLock};

use crate::checkpoint::list_checkpoints;
use crate::error::{Result, TrainError};

/// The manifest of a run.
pub const JOB_FILE: &str = "fourd_job.json";

/// Files and folders a run writes (besides checkpoints): what `--overwrite` clears.
const RUN_FILES: &[&str] = &[
    JOB_FILE,
    "train_log.jsonl",
    "runs",
    "skipped.jsonl",
    "model.safetensors",
    "config.json",
    "adapter_model.safetensors",
    "adapter_config.json",
];

fn job_error(e: fourd_job::JobError) -> TrainError {
    TrainError::Job(e)
}

/// Opens `out` for a run: locks it, clears temporary leftovers, and checks `manifest` against
/// the run already there. Returns the lock, held for the whole run.
pub fn open(
    out: &Path,
    manifest: &JobManifest,
    resuming: bool,
    overwrite: bool,
) -> Result<OutputLock> {
    let lock = OutputLock::folder(out, &manifest.job).map_err(job_error)?;
    remove_temporaries(out)?;
    let job_file = out.join(JOB_FILE);
    if resuming {
        let hint = "resume with the flags the run was started with, or train into another --out";
        manifest.begin(&job_file, false, hint).map_err(job_error)?;
        return Ok(lock);
    }
    if let Some(what) = holds_a_run(out) {
        if !overwrite {
            return Err(TrainError::Config(format!(
                "{} holds a run ({what}); give --resume {} to continue it, --overwrite to start \
                 afresh (deletes its checkpoints, log and TensorBoard events), or another --out",
                out.display(),
                out.display()
            )));
        }
        clear_run(out)?;
    }
    manifest.write(&job_file).map_err(job_error)?;
    Ok(lock)
}

/// What shows that `out` holds a run, if anything does.
fn holds_a_run(out: &Path) -> Option<String> {
    let checkpoints = list_checkpoints(out);
    if let Some((step, _)) = checkpoints.last() {
        return Some(format!(
            "{} checkpoint(s), the last at step {step}",
            checkpoints.len()
        ));
    }
    [
        "model.safetensors",
        "adapter_model.safetensors",
        "train_log.jsonl",
        JOB_FILE,
    ]
    .iter()
    .find(|f| out.join(f).exists())
    .map(|f| f.to_string())
}

/// Deletes an earlier run's files (only those a run writes; nothing else in the folder).
fn clear_run(out: &Path) -> Result<()> {
    for (_, dir) in list_checkpoints(out) {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    for name in RUN_FILES {
        let p = out.join(name);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        };
        removed.map_err(|e| TrainError::io(&p, e))?;
    }
    Ok(())
}

/// Removes the temporary folders and files of checkpoint writes that did not finish.
pub fn remove_temporaries(out: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp") {
            let p = e.path();
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|err| TrainError::io(&p, err))?;
            tracing::info!(
                "removed {}, left by a checkpoint write that failed",
                p.display()
            );
        }
    }
    Ok(())
}

/// Cuts `train_log.jsonl` after `step`: a resumed run logs the later steps again.
pub fn truncate_log(out: &Path, step: u64) -> Result<()> {
    let path = out.join("train_log.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fourd_job::files::write_atomic(&path, kept.as_bytes()).map_err(job_error)
}
