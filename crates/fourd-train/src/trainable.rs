//! What a run trains, and what it writes: every language-model weight (full fine-tuning, a
//! Hugging Face model folder out) or a LoRA adapter on frozen base weights (PEFT's adapter folder
//! out: `adapter_config.json` + `adapter_model.safetensors`, which `PeftModel.from_pretrained` and
//! `fourd … --adapter` load).
//!
//! With LoRA the base weights are plain tensors in the run's dtype (bf16 on GPUs), never
//! variables, so they take no gradients, master copies or moments; the adapter and its optimiser
//! state are float32. The latent tokens' rows of the embedding table (and of an untied
//! `lm_head`) train too, as PEFT's `trainable_token_indices`: without them the tokens that
//! `fourd model add-latent-tokens` added would keep their initial mean embedding.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use candle_core::{DType, Device, Var};
use fourd_model::generation::LatentTokens;
use fourd_model::lora::{Adapter, LoraDropout, LoraSettings};
use fourd_model::ModelBundle;

use crate::error::{Result, TrainError};
use crate::params::TrainableWeights;

/// Where a run's model comes from.
pub struct LoadSpec<'a> {
    /// The starting checkpoint (full) or the base model (LoRA).
    pub model: &'a Path,
    /// A checkpoint folder of this run to continue from.
    pub resume: Option<&'a Path>,
    pub from_scratch: Option<f64>,
    pub seed: u64,
    pub dtype: DType,
    pub device: &'a Device,
    pub train_vision: bool,
    /// Train a LoRA adapter with these settings instead of the weights.
    pub lora: Option<&'a LoraSettings>,
    /// Recompute decoder layers in the backward pass instead of keeping their activations.
    pub gradient_checkpointing: bool,
}

enum Trained {
    Full(Arc<TrainableWeights>),
    Adapter {
        adapter: Adapter,
        dropout: Option<LoraDropout>,
        /// The base model, as recorded in `adapter_config.json`.
        base: PathBuf,
    },
}

/// The model of a run with what it trains.
pub struct TrainingModel {
    pub bundle: Arc<ModelBundle>,
    /// Gradients that gradient checkpointing collects while recomputing layers.
    pub checkpoint_grads: Option<fourd_model::text::CheckpointGrads>,
    /// The trained tensors by name, sorted (optimiser state is saved and matched by name).
    pub vars: Vec<(String, Var)>,
    /// Where the weights came from (the checkpoint resumed from, for a full run); its tokenizer
    /// and processor files go with every output.
    pub weights_dir: PathBuf,
    trained: Trained,
}

/// A run starts from a model folder, not an adapter: training on top of an adapter means merging
/// it first (its base is in its config).
pub fn check_model_folder(model: &Path) -> Result<()> {
    if fourd_model::peft::is_adapter_dir(model) && !model.join("config.json").exists() {
        return Err(TrainError::Config(format!(
            "--model {}: a LoRA adapter, not a model; merge it into its base first (fourd model merge-lora --model BASE --adapter {} --out MERGED) and train from MERGED",
            model.display(),
            model.display()
        )));
    }
    Ok(())
}

/// Checks a LoRA run's flags against the others before anything loads; errors name the flags.
pub fn check_lora_flags(
    lora: Option<&LoraSettings>,
    gradient_checkpointing: bool,
    from_scratch: bool,
    train_vision: bool,
) -> Result<()> {
    let Some(s) = lora else { return Ok(()) };
    s.validate()
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let refuse = |why: &str| Err(TrainError::Config(why.to_string()));
    if from_scratch {
        return refuse("--from-scratch and --lora-rank: an adapter on random weights learns nothing a full run would not; train without LoRA");
    }
    if train_vision {
        return refuse("--train-vision trains the whole vision tower; with --lora-rank only the language model's adapter trains (leave one out)");
    }
    if s.dropout > 0.0 && gradient_checkpointing {
        // The recomputed layer would draw other dropout masks than the forward pass did.
        return refuse("--lora-dropout > 0 with --gradient-checkpointing is not supported (the recomputation would draw different dropout masks); set --lora-dropout 0 or leave out --gradient-checkpointing");
    }
    Ok(())
}

/// Loads the model of a run: the weights as variables (full), or the frozen base with a fresh
/// or resumed adapter whose tensors are the variables (LoRA).
pub fn load(spec: &LoadSpec) -> Result<TrainingModel> {
    let grads = spec
        .gradient_checkpointing
        .then(fourd_model::text::CheckpointGrads::default);
    let Some(settings) = spec.lora else {
        let (weights_dir, scratch) = match spec.resume {
            Some(d) => (d.to_path_buf(), None),
            None => (spec.model.to_path_buf(), spec.from_scratch),
        };
        let (mut bundle, weights) = crate::dift::load_trainable_with(
            &weights_dir,
            scratch,
            spec.seed,
            spec.dtype,
            spec.device,
            spec.train_vision,
        )?;
        bundle.model.text.grad_checkpoint = grads.clone();
        return Ok(TrainingModel {
            bundle: Arc::new(bundle),
            checkpoint_grads: grads,
            vars: weights.vars(),
            weights_dir,
            trained: Trained::Full(weights),
        });
    };
    let mut bundle = ModelBundle::load(spec.model, spec.dtype, spec.device)?;
    let adapter = match spec.resume {
        Some(d) => fourd_model::peft::read_adapter(d, DType::F32, spec.device)?,
        None => {
            let tokens: Vec<u32> = bundle
                .latent_tokens(None)?
                .map(|l| vec![l.pad, l.start, l.end])
                .unwrap_or_default();
            Adapter::init(&bundle.model, settings, &tokens, spec.seed)?
        }
    };
    let mut vars = Vec::new();
    let adapter = adapter.map_tensors(|name, t| {
        let v = Var::from_tensor(t)?;
        vars.push((name.to_string(), v.clone()));
        Ok(v.as_tensor().clone())
    })?;
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let dropout = fourd_model::lora::dropout_for(settings.dropout);
    bundle.model.set_adapter(&adapter, dropout.clone())?;
    let base = std::fs::canonicalize(spec.model).unwrap_or_else(|_| spec.model.to_path_buf());
    bundle.model.text.grad_checkpoint = grads.clone();
    Ok(TrainingModel {
        bundle: Arc::new(bundle),
        checkpoint_grads: grads,
        vars,
        weights_dir: spec.model.to_path_buf(),
        trained: Trained::Adapter {
            adapter,
            dropout,
            base,
        },
    })
}

impl TrainingModel {
    /// Trained parameters.
    pub fn parameter_count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    pub fn is_adapter(&self) -> bool {
        matches!(self.trained, Trained::Adapter { .. })
    }

    /// Turns LoRA dropout on (training passes) or off (generation); nothing without it.
    pub fn set_dropout(&self, on: bool) {
        if let Trained::Adapter {
            dropout: Some(d), ..
        } = &self.trained
        {
            d.active.store(on, Ordering::Relaxed);
        }
    }

    /// Writes the run's model into the existing folder `dir`: the model folder (full) or the
    /// adapter folder (LoRA), with the tokenizer and processor files either way.
    pub fn write(&self, dir: &Path, latent: &LatentTokens) -> Result<()> {
        match &self.trained {
            Trained::Full(weights) => crate::checkpoint::write_model_files(
                dir,
                &self.weights_dir,
                &self.bundle.model.config.raw,
                latent,
                &weights.tensors(),
            ),
            Trained::Adapter { adapter, base, .. } => {
                fourd_model::peft::write_adapter(dir, adapter, base)?;
                crate::checkpoint::copy_side_files(&self.weights_dir, dir)?;
                fourd_job::files::make_tree_readable(dir)
                    .map_err(|e| TrainError::Config(e.to_string()))
            }
        }
    }
}
