//! Checkpoint weights: `model.safetensors` or a sharded `model.safetensors.index.json`, memory-mapped,
//! in either key layout transformers has written. The model code asks for tensors by their
//! transformers <= 4.51 names (`visual.*`, `model.layers.*`, `lm_head.weight`); `KeyLayout` maps
//! those to what the files hold. Exposed to candle as a `VarBuilder` backend so the same model code
//! also builds from a `VarMap` for training.
//!
//! The released 4DThinker checkpoints (transformers 4.50: legacy names, bf16,
//! `model-0000N-of-0000M.safetensors` listed in the index's `weight_map`) load as they are; every
//! tensor is converted from its stored dtype to the compute dtype the caller asks for. Other files
//! in the folder (the Trainer's `optimizer.pt`, DeepSpeed's `global_stepN/`) are never opened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::error::{read_json, ModelError, Result};

/// Where a checkpoint keeps its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// transformers <= 4.51: `visual.*`, `model.embed_tokens`, `model.layers.*`, `model.norm`.
    Legacy,
    /// transformers >= 4.52: `model.visual.*`, `model.language_model.*`.
    Nested,
}

impl KeyLayout {
    /// Maps a legacy (canonical) name to the name stored under this layout.
    pub fn stored_name(self, canonical: &str) -> String {
        match self {
            KeyLayout::Legacy => canonical.to_string(),
            KeyLayout::Nested => {
                if let Some(rest) = canonical.strip_prefix("visual.") {
                    format!("model.visual.{rest}")
                } else if let Some(rest) = canonical.strip_prefix("model.") {
                    format!("model.language_model.{rest}")
                } else {
                    canonical.to_string()
                }
            }
        }
    }
}

impl KeyLayout {
    /// The canonical (legacy) name of a name stored in either layout.
    pub fn canonical_name(stored: &str) -> String {
        if let Some(rest) = stored.strip_prefix("model.visual.") {
            format!("visual.{rest}")
        } else if let Some(rest) = stored.strip_prefix("model.language_model.") {
            format!("model.{rest}")
        } else {
            stored.to_string()
        }
    }
}

/// The safetensors files of one checkpoint, memory-mapped.
pub struct CheckpointWeights {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// Stored name -> index into `files`.
    routing: HashMap<String, usize>,
    pub layout: KeyLayout,
    dir: PathBuf,
}

impl CheckpointWeights {
    /// Opens `model.safetensors.index.json` (sharded) or `model.safetensors` in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let paths: Vec<PathBuf> = if index.exists() {
            let v = read_json(&index)?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    ModelError::config(&index, "weight_map", "missing or not an object")
                })?;
            let mut shards: Vec<String> = Vec::new();
            for (k, f) in map {
                let f = f.as_str().ok_or_else(|| {
                    ModelError::config(&index, format!("weight_map.{k}"), "expected a file name")
                })?;
                if !shards.iter().any(|s| s == f) {
                    shards.push(f.to_string());
                }
            }
            shards.sort();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(ModelError::input(format!(
                "{}: no model.safetensors or model.safetensors.index.json found",
                dir.display()
            )));
        };
        Self::open_files(dir, &paths)
    }

    pub fn open_files(dir: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut routing = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            if !p.exists() {
                return Err(ModelError::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
                ));
            }
            // SAFETY: the file is mapped read-only; like every mmap-based loader we assume it is not
            // modified while the model is alive.
            let st = unsafe { MmapedSafetensors::new(p) }.map_err(|e| ModelError::Safetensors {
                path: p.clone(),
                msg: root_cause(&e),
            })?;
            for (name, _) in st.tensors() {
                routing.insert(name, i);
            }
            files.push((p.clone(), st));
        }
        let layout = if routing
            .keys()
            .any(|k| k.starts_with("model.language_model.") || k.starts_with("model.visual."))
        {
            KeyLayout::Nested
        } else {
            KeyLayout::Legacy
        };
        Ok(CheckpointWeights {
            files,
            routing,
            layout,
            dir: dir.to_path_buf(),
        })
    }

    pub fn contains(&self, canonical: &str) -> bool {
        self.routing
            .contains_key(&self.layout.stored_name(canonical))
    }

    /// The stored dtype of a tensor (used to pick a default compute dtype).
    pub fn stored_dtype(&self, canonical: &str) -> Option<DType> {
        let stored = self.layout.stored_name(canonical);
        let (_, st) = &self.files[*self.routing.get(&stored)?];
        st.get(&stored)
            .ok()
            .and_then(|v| DType::try_from(v.dtype()).ok())
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &String> {
        self.routing.keys()
    }

    /// Loads a tensor by canonical name, checking its shape, converted to `dtype` on `device`.
    pub fn load(
        &self,
        canonical: &str,
        shape: Option<&Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let stored = self.layout.stored_name(canonical);
        let idx = *self
            .routing
            .get(&stored)
            .ok_or_else(|| ModelError::Tensor {
                name: stored.clone(),
                msg: format!(
                    "not found in the checkpoint at {} ({:?} key layout)",
                    self.dir.display(),
                    self.layout
                ),
            })?;
        let (path, st) = &self.files[idx];
        let view = st.get(&stored).map_err(|e| ModelError::Tensor {
            name: stored.clone(),
            msg: format!("{}: {e}", path.display()),
        })?;
        if let Some(shape) = shape {
            if view.shape() != shape.dims() {
                return Err(ModelError::Tensor {
                    name: stored,
                    msg: format!(
                        "in {} has shape {:?}, expected {:?}",
                        path.display(),
                        view.shape(),
                        shape.dims()
                    ),
                });
            }
        }
        let t = view.load(device).map_err(|e| ModelError::Tensor {
            name: stored.clone(),
            msg: format!("{}: {}", path.display(), root_cause(&e)),
        })?;
        Ok(t.to_dtype(dtype)?)
    }

    /// Loads a tensor by its stored name, in its stored dtype, on the CPU.
    pub fn load_stored(&self, stored: &str) -> Result<Tensor> {
        let idx = *self.routing.get(stored).ok_or_else(|| ModelError::Tensor {
            name: stored.to_string(),
            msg: format!("not found in the checkpoint at {}", self.dir.display()),
        })?;
        let (path, st) = &self.files[idx];
        st.load(stored, &Device::Cpu)
            .map_err(|e| ModelError::Tensor {
                name: stored.to_string(),
                msg: format!("{}: {}", path.display(), root_cause(&e)),
            })
    }

    /// A `VarBuilder` over these weights, named canonically.
    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

fn root_cause(e: &candle_core::Error) -> String {
    // candle wraps errors with backtraces and paths; the innermost message is the useful one.
    let s = e.to_string();
    s.lines().next().unwrap_or("").to_string()
}

impl candle_nn::var_builder::SimpleBackend for CheckpointWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(&s), dtype, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// Compute dtypes users can choose with `--dtype`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "fp32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "fp16" | "half" => Ok(DType::F16),
        _ => Err(ModelError::UnknownDType(s.to_string())),
    }
}
