//! Hugging Face checkpoints and resumable trainer state.
//!
//! A checkpoint folder holds `model.safetensors` (every tensor under its transformers <= 4.51
//! name, which both transformers 4.x and 5.x load), the source checkpoint's `config.json` with the
//! latent fields filled in and its `torch_dtype` / `dtype` set to the stored dtype, its tokenizer /
//! chat template / processor files (not the source's own Trainer state), and, for resuming,
//! `optimizer.safetensors` plus `trainer_state.json`. Folders are written under a temporary name
//! and renamed into place, so a crash never leaves a half-written checkpoint behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use fourd_model::generation::LatentTokens;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Files of the source checkpoint that are copied verbatim (tokenizer, template, processor,
/// generation config). Not copied: the weights and their index (written anew), `config.json`
/// (rewritten), run state, and what the Hugging Face Trainer and DeepSpeed leave in a released
/// `checkpoint-N/` folder (`optimizer.pt`, `scheduler.pt`, `rng_state*.pth`, `training_args.bin`,
/// `trainer_state.json`, `latest`, `zero_to_fp32.py`; folders such as `global_stepN/` are never
/// copied). Those are torch pickles of the source's training, the optimizer alone twice the
/// model's size, and say nothing true about the model trained from it.
fn is_side_file(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with(".jsonl")
        || name.ends_with(".safetensors")
        || name.ends_with(".pt")
        || name.ends_with(".pth")
        || name.ends_with(".bin")
        || name.ends_with(".index.json")
        || name == "config.json"
        || name == "adapter_config.json"
        || name == "optimizer.safetensors"
        || name == "trainer_state.json"
        || name == "latest"
        || name == "zero_to_fp32.py"
        || name.starts_with("events.out"))
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimiser steps taken.
    pub global_step: u64,
    pub epoch: usize,
    /// Records of this epoch's order already consumed.
    pub position: usize,
    pub seed: u64,
    pub nan_skipped: u64,
    pub examples_seen: u64,
    pub tokens_seen: u64,
}

/// Where a run stands after an optimiser step: whether the schedule is done, whether the run
/// halts here (`halt_after` steps taken in this process) and whether a checkpoint is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    pub finished: bool,
    pub halted: bool,
    pub checkpoint_due: bool,
}

impl StepOutcome {
    /// After reaching `step` of `total_steps`, in a process that started at `first_step`.
    pub fn at(
        step: u64,
        total_steps: u64,
        first_step: u64,
        halt_after: Option<u64>,
        save_steps: Option<u64>,
    ) -> Self {
        let finished = step >= total_steps;
        StepOutcome {
            finished,
            halted: !finished && halt_after.is_some_and(|h| step - first_step >= h),
            checkpoint_due: save_steps.is_some_and(|s| s > 0 && step > 0 && step.is_multiple_of(s)),
        }
    }
}

/// Writes a checkpoint to `dir` atomically: `write` fills a temporary folder (the model or
/// adapter, optimiser state, trainer state), which is renamed into place.
pub fn save_checkpoint(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    let written = std::fs::create_dir_all(&tmp)
        .map_err(|e| TrainError::io(&tmp, e))
        .and_then(|()| write(&tmp))
        .and_then(|()| readable(&tmp));
    if let Err(e) = written {
        // A failed write (a full disk) leaves no model-sized temporary folder behind.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))?;
    Ok(())
}

/// Files 0644 and folders 0755, as Hugging Face tools write them (some writers go through
/// 0600 temporary files), so other users of a shared cluster can read the model.
fn readable(dir: &Path) -> Result<()> {
    fourd_job::files::make_tree_readable(dir).map_err(|e| TrainError::Config(e.to_string()))
}

/// Writes weights, config and side files into `dir` (which must exist).
pub fn write_model_files(
    dir: &Path,
    source_dir: &Path,
    config_raw: &serde_json::Value,
    latent: &LatentTokens,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        map.insert(name.clone(), t.to_device(&Device::Cpu)?);
    }
    // Written beside and renamed, so a reader never sees a half-written file.
    let weights = dir.join("model.safetensors");
    let tmp = dir.join(".model.safetensors.tmp");
    candle_core::safetensors::save(&map, &tmp)
        .map_err(|e| TrainError::checkpoint(&weights, e.to_string()))?;
    std::fs::rename(&tmp, &weights).map_err(|e| TrainError::io(&weights, e))?;
    let mut config = config_raw.clone();
    if let Some(obj) = config.as_object_mut() {
        obj.insert("latent_size".into(), latent.size.into());
        obj.insert("latent_token_id".into(), latent.pad.into());
        obj.insert("latent_start_id".into(), latent.start.into());
        obj.insert("latent_end_id".into(), latent.end.into());
        obj.entry("compress_strategy")
            .or_insert_with(|| "average".into());
        // The dtype the weights are now stored in (a release says "bfloat16"; a run in f32
        // writes f32): transformers' `torch_dtype="auto"` loads in it.
        let stored = tensors.first().and_then(|(_, t)| match t.dtype() {
            candle_core::DType::F32 => Some("float32"),
            candle_core::DType::BF16 => Some("bfloat16"),
            candle_core::DType::F16 => Some("float16"),
            _ => None,
        });
        if let Some(stored) = stored {
            for key in ["torch_dtype", "dtype"] {
                if obj.contains_key(key) {
                    obj.insert(key.into(), stored.into());
                }
            }
        }
    }
    write_json(&dir.join("config.json"), &config)?;
    copy_side_files(source_dir, dir)?;
    for name in ["model.safetensors", "config.json"] {
        fourd_job::files::make_readable(&dir.join(name))
            .map_err(|e| TrainError::Config(e.to_string()))?;
    }
    Ok(())
}

/// Copies the tokenizer, chat template, processor and generation files of `source_dir` into
/// `dir` (see [`is_side_file`]).
pub fn copy_side_files(source_dir: &Path, dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(source_dir).map_err(|e| TrainError::io(source_dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| TrainError::io(source_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && is_side_file(&name) {
            std::fs::copy(entry.path(), dir.join(&name))
                .map_err(|e| TrainError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

pub fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| TrainError::io(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(&path, format!("unreadable trainer state: {e}")))
}

/// `checkpoint-<step>` folders of a run, oldest first.
pub fn list_checkpoints(out: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse::<u64>().ok()?;
            e.path()
                .join("trainer_state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Deletes the oldest checkpoints beyond `limit`.
pub fn rotate_checkpoints(out: &Path, limit: usize) -> Result<()> {
    let all = list_checkpoints(out);
    if all.len() > limit {
        for (_, p) in &all[..all.len() - limit] {
            std::fs::remove_dir_all(p).map_err(|e| TrainError::io(p, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_leftovers_of_a_released_checkpoint_are_not_side_files() {
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "added_tokens.json",
            "special_tokens_map.json",
            "chat_template.json",
            "chat_template.jinja",
            "preprocessor_config.json",
            "generation_config.json",
        ] {
            assert!(is_side_file(f), "{f}");
        }
        for f in [
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
            "pytorch_model.bin",
            "config.json",
            "optimizer.pt",
            "scheduler.pt",
            "rng_state.pth",
            "rng_state_3.pth",
            "training_args.bin",
            "trainer_state.json",
            "latest",
            "zero_to_fp32.py",
        ] {
            assert!(!is_side_file(f), "{f}");
        }
    }

    #[test]
    fn a_checkpoint_write_that_fails_leaves_nothing_behind() {
        let root = std::env::temp_dir().join(format!("fourd-ckpt-fail-{}", std::process::id()));
        let source = root.join("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("tokenizer.json"), "{}").unwrap();
        let latent = LatentTokens {
            size: 1,
            pad: 3,
            start: 4,
            end: 5,
        };
        let tensors = vec![(
            "w".to_string(),
            Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap(),
        )];
        let dir = root.join("run/checkpoint-3");
        // The optimiser state fails to write, as on a full disk.
        let model =
            |tmp: &Path| write_model_files(tmp, &source, &serde_json::json!({}), &latent, &tensors);
        let e = save_checkpoint(&dir, |tmp| {
            model(tmp)?;
            Err(TrainError::Config("No space left on device".into()))
        });
        assert!(e.is_err());
        let left: Vec<String> = std::fs::read_dir(root.join("run"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // A write that succeeds is readable by everyone.
        save_checkpoint(&dir, model).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join("model.safetensors")), 0o644);
            assert_eq!(mode(&dir), 0o755);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
