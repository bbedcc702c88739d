//! `Qwen2_5_VLForConditionalGeneration`: the vision tower's features are scattered into the
//! placeholder positions of the token embeddings, then the LLM runs with M-RoPE positions.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::{GenerationDefaults, PreprocessorConfig, Qwen25VlConfig};
use crate::error::{ModelError, Result};
use crate::inputs::{ModelInputs, Processor};
use crate::mrope::{batch_rope_index, BatchPositions, RopeIndexParams};
use crate::processor::ImageProcessor;
use crate::text::{attention_mask, KvCache, LogitRows, TextModel, TextOutput};
use crate::tokenizer::QwenTokenizer;
use crate::vision::VisionTower;
use crate::weights::CheckpointWeights;

#[derive(Clone)]
pub struct Qwen25VL {
    pub config: Qwen25VlConfig,
    pub visual: VisionTower,
    pub text: TextModel,
    pub device: Device,
}

/// Result of the prompt pass.
pub struct PrefillOutput {
    pub output: TextOutput,
    pub positions: BatchPositions,
    /// Vision tower output for the images / videos, `[tokens, hidden]`.
    pub image_embeds: Option<Tensor>,
    pub video_embeds: Option<Tensor>,
}

impl Qwen25VL {
    /// Loads `config.json` and the safetensors weights of a checkpoint folder.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = Qwen25VlConfig::from_file(&config_file(dir)?)?;
        let weights = CheckpointWeights::open(dir)?;
        Self::new(config, weights.var_builder(dtype, device))
    }

    /// Builds the model from any `VarBuilder` named like a transformers <= 4.51 checkpoint.
    pub fn new(config: Qwen25VlConfig, vb: VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let visual = VisionTower::new(&config.vision, vb.pp("visual")).map_err(tensor_error)?;
        let text = TextModel::new(&config.text, vb).map_err(tensor_error)?;
        Ok(Qwen25VL {
            config,
            visual,
            text,
            device,
        })
    }

    pub fn dtype(&self) -> DType {
        self.text.dtype()
    }

    /// Every linear layer (vision tower, decoder, `lm_head`), each named by its checkpoint path.
    pub fn linears(&self) -> Vec<&crate::lora::LoraLinear> {
        let mut v = self.visual.linears();
        v.extend(self.text.linears());
        v
    }

    /// Puts `adapter` on the model (replacing any other): each update on the linear layer of
    /// its name, the token rows on the embedding and `lm_head`. Fails, changing nothing, when
    /// an update names no layer or does not fit it.
    pub fn set_adapter(
        &mut self,
        adapter: &crate::lora::Adapter,
        dropout: Option<crate::lora::LoraDropout>,
    ) -> Result<()> {
        let mut unused: std::collections::BTreeSet<&String> = adapter.modules.keys().collect();
        for lin in self.linears() {
            if let Some(u) = adapter.modules.get(&*lin.name) {
                let (out_dim, in_dim) = lin.base.weight().dims2()?;
                if u.a.dims2()?.1 != in_dim || u.b.dims2()?.0 != out_dim {
                    return Err(ModelError::Tensor {
                        name: lin.name.to_string(),
                        msg: format!(
                            "the adapter's lora_A {:?} / lora_B {:?} do not fit its weight [{out_dim}, {in_dim}]",
                            u.a.dims(),
                            u.b.dims()
                        ),
                    });
                }
                unused.remove(&lin.name.to_string());
            }
        }
        if let Some(name) = unused.into_iter().next() {
            return Err(ModelError::Tensor {
                name: name.clone(),
                msg: "the adapter updates it, but the model has no such linear layer".into(),
            });
        }
        let hidden = self.config.text.hidden_size;
        let vocab = self.config.text.vocab_size;
        for rows in [&adapter.embed_rows, &adapter.lm_head_rows]
            .into_iter()
            .flatten()
        {
            if rows.values.dims2()? != (rows.ids.len(), hidden) {
                return Err(ModelError::input(format!(
                    "the adapter's token rows have shape {:?}, expected [{}, {hidden}]",
                    rows.values.dims(),
                    rows.ids.len()
                )));
            }
            if let Some(id) = rows.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(ModelError::input(format!(
                    "the adapter trains token {id}, past the model's vocabulary of {vocab}"
                )));
            }
        }
        if adapter.lm_head_rows.is_some() && self.config.text.tie_word_embeddings {
            return Err(ModelError::input(
                "the adapter has lm_head token rows of its own, but this model ties lm_head to the embeddings",
            ));
        }
        for lin in self
            .visual
            .linears_mut()
            .into_iter()
            .chain(self.text.linears_mut())
        {
            lin.lora = adapter.modules.get(&*lin.name).cloned();
            lin.dropout = lin.lora.as_ref().and(dropout.clone());
        }
        self.text.embed_rows = adapter.embed_rows.clone();
        self.text.lm_head_rows = adapter.lm_head_rows.clone();
        Ok(())
    }

    /// The model without its adapter: the base, sharing its weights (no copy). GRPO's reference
    /// model when the policy trains an adapter.
    pub fn without_adapter(&self) -> Self {
        let mut base = self.clone();
        for lin in base
            .visual
            .linears_mut()
            .into_iter()
            .chain(base.text.linears_mut())
        {
            lin.lora = None;
            lin.dropout = None;
        }
        base.text.embed_rows = None;
        base.text.lm_head_rows = None;
        base
    }

    pub fn rope_params(&self, tokenizer: &QwenTokenizer) -> RopeIndexParams {
        RopeIndexParams {
            image_pad: self.config.image_token_id.or(tokenizer.special.image_pad),
            video_pad: self.config.video_token_id.or(tokenizer.special.video_pad),
            spatial_merge_size: self.config.vision.spatial_merge_size,
            tokens_per_second: self.config.vision.tokens_per_second,
            style: self.config.rope_index,
        }
    }

    /// Runs the vision tower on images (or videos) and returns the merged features.
    pub fn encode_vision(&self, pixels: &Tensor, grids: &[[usize; 3]]) -> Result<Tensor> {
        Ok(self.visual.forward(pixels, grids)?)
    }

    /// Token embeddings with vision features scattered into the placeholder positions.
    pub fn embed_inputs(
        &self,
        inputs: &ModelInputs,
        params: &RopeIndexParams,
        image_embeds: Option<&Tensor>,
        video_embeds: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.embed_with_features(
            &inputs.input_ids,
            &[
                (params.image_pad, image_embeds, "image"),
                (params.video_pad, video_embeds, "video"),
            ],
        )
    }

    /// Token embeddings `[batch, seq, hidden]` where the k-th occurrence of each placeholder id
    /// takes row k of its features (`(placeholder, features [n, hidden], what)`); the counts must
    /// match. Differentiable with respect to the embedding table and the features.
    pub fn embed_with_features(
        &self,
        input_ids: &[Vec<u32>],
        features: &[(Option<u32>, Option<&Tensor>, &str)],
    ) -> Result<Tensor> {
        let b = input_ids.len();
        let s = input_ids.first().map_or(0, Vec::len);
        let flat: Vec<u32> = input_ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat.clone(), (b * s,), &self.device)?;
        let mut parts = vec![self.text.embed(&ids)?];
        let mut index: Vec<u32> = (0..(b * s) as u32).collect();
        let mut base = (b * s) as u32;
        for &(pad, feats, what) in features {
            let slots: Vec<usize> = match pad {
                Some(p) => flat
                    .iter()
                    .enumerate()
                    .filter(|(_, &t)| t == p)
                    .map(|(i, _)| i)
                    .collect(),
                None => vec![],
            };
            let rows = feats.map_or(Ok(0), |f| f.dim(0))?;
            if slots.len() != rows {
                return Err(ModelError::input(format!(
                    "{what} features and {what} tokens do not match: tokens: {}, features: {rows}",
                    slots.len()
                )));
            }
            if let Some(f) = feats {
                for (k, &slot) in slots.iter().enumerate() {
                    index[slot] = base + k as u32;
                }
                base += rows as u32;
                parts.push(f.to_dtype(self.dtype())?);
            }
        }
        let all = Tensor::cat(&parts, 0)?;
        let hidden = self.config.text.hidden_size;
        Ok(all
            .index_select(&Tensor::new(index.as_slice(), &self.device)?, 0)?
            .reshape((b, s, hidden))?)
    }

    /// The prompt pass: vision tower, embedding merge, M-RoPE positions and the LLM. Fills `cache`.
    pub fn prefill(
        &self,
        inputs: &ModelInputs,
        params: &RopeIndexParams,
        cache: &mut KvCache,
        logit_rows: &LogitRows,
    ) -> Result<PrefillOutput> {
        let image_embeds = match ModelInputs::pixel_tensor(&inputs.images, &self.device)? {
            Some(px) => Some(self.encode_vision(&px, &inputs.image_grids())?),
            None => None,
        };
        let video_embeds = match ModelInputs::pixel_tensor(&inputs.videos, &self.device)? {
            Some(px) => Some(self.encode_vision(&px, &inputs.video_grids())?),
            None => None,
        };
        let embeds =
            self.embed_inputs(inputs, params, image_embeds.as_ref(), video_embeds.as_ref())?;
        let positions = batch_rope_index(
            &inputs.input_ids,
            &inputs.attention_mask,
            params,
            &inputs.vision_items(),
        )?;
        let output = self.forward_embeds(
            &embeds,
            &positions.position_ids,
            &inputs.attention_mask,
            cache,
            logit_rows,
        )?;
        Ok(PrefillOutput {
            output,
            positions,
            image_embeds,
            video_embeds,
        })
    }

    /// Runs the LLM on embeddings `[batch, seq, hidden]` at the given positions `[3][batch][seq]`.
    /// `key_mask` covers cached plus new positions (1 = real token).
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        position_ids: &[Vec<Vec<i64>>],
        key_mask: &[Vec<u8>],
        cache: &mut KvCache,
        logit_rows: &LogitRows,
    ) -> Result<TextOutput> {
        let (_, s, _) = embeds.dims3()?;
        let (cos, sin) = self.text.mrope.cos_sin(position_ids, &self.device)?;
        let needs_mask = s > 1 || key_mask.iter().any(|r| r.contains(&0));
        let mask = if needs_mask {
            Some(attention_mask(key_mask, s, &self.device)?)
        } else {
            None
        };
        Ok(self
            .text
            .forward(embeds, &cos, &sin, mask.as_ref(), cache, logit_rows)?)
    }

    /// One decoding step: one new input embedding per row at text position `positions[row]` (the
    /// same on all three M-RoPE axes).
    pub fn step(
        &self,
        embeds: &Tensor,
        positions: &[i64],
        key_mask: &[Vec<u8>],
        cache: &mut KvCache,
    ) -> Result<TextOutput> {
        let pos: Vec<Vec<i64>> = positions.iter().map(|&p| vec![p]).collect();
        let position_ids = vec![pos.clone(), pos.clone(), pos];
        self.forward_embeds(embeds, &position_ids, key_mask, cache, &LogitRows::Last)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.text.num_layers())
    }
}

fn tensor_error(e: candle_core::Error) -> ModelError {
    // The weights backend already names the tensor and file; keep its message whole.
    match e {
        candle_core::Error::Msg(m) => ModelError::Tensor {
            name: "checkpoint".into(),
            msg: m,
        },
        other => ModelError::Candle(other),
    }
}

/// `dir/config.json`, or an error saying that `dir` is not a checkpoint folder. A released
/// training output (`model/dift/` holding `checkpoints/`, or `checkpoints/` holding the Trainer's
/// `checkpoint-N/` folders) is easy to point at one level too high, so the error lists the
/// sub-folders that are checkpoints.
pub fn config_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("config.json");
    if path.is_file() {
        return Ok(path);
    }
    if crate::peft::is_adapter_dir(dir) {
        let base = crate::error::read_json(&dir.join(crate::peft::CONFIG_FILE))
            .ok()
            .and_then(|v| v["base_model_name_or_path"].as_str().map(str::to_string))
            .unwrap_or_else(|| "the base model".into());
        return Err(ModelError::config(
            &path,
            "(file)",
            format!(
                "not found: {} is a LoRA adapter; pass its base as the model and the folder as the adapter (--model {base} --adapter {})",
                dir.display(),
                dir.display()
            ),
        ));
    }
    let mut subs: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // checkpoint-500 before checkpoint-1000
            let step = name
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (name, step)
        })
        .collect();
    subs.sort_by_key(|(name, step)| {
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
        (stem.to_string(), *step, name.clone())
    });
    let msg = match subs.len() {
        0 if !dir.is_dir() => "not found (no such model folder)".to_string(),
        0 => "not found: not a checkpoint folder".to_string(),
        n => {
            let shown: Vec<String> = subs.iter().take(4).map(|(s, _)| format!("{s}/")).collect();
            let more = if n > 4 {
                format!(" and {} more", n - 4)
            } else {
                String::new()
            };
            format!(
                "not found; the checkpoints are in its sub-folder(s) {}{more}: give one of those",
                shown.join(", ")
            )
        }
    };
    Err(ModelError::io(
        &path,
        std::io::Error::new(std::io::ErrorKind::NotFound, msg),
    ))
}

/// Everything needed to run a checkpoint folder: model, tokenizer, processor, generation defaults.
pub struct ModelBundle {
    pub model: Qwen25VL,
    pub tokenizer: QwenTokenizer,
    pub processor: Processor,
    pub generation: GenerationDefaults,
    pub dir: PathBuf,
    /// The PEFT adapter folder the model runs with, if any ([`ModelBundle::attach_adapter`]).
    pub adapter: Option<PathBuf>,
}

impl ModelBundle {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_with(dir, |config| {
            Qwen25VL::new(
                config,
                CheckpointWeights::open(dir)?.var_builder(dtype, device),
            )
        })
    }

    /// Like [`ModelBundle::load`], with the model built by `build` from the folder's config (the
    /// trainer builds it over trainable weights or fresh ones).
    pub fn load_with(
        dir: &Path,
        build: impl FnOnce(Qwen25VlConfig) -> Result<Qwen25VL>,
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            ));
        }
        let model = build(Qwen25VlConfig::from_file(&config_file(dir)?)?)?;
        let tokenizer = QwenTokenizer::from_dir(dir)?;
        let pre = dir.join("preprocessor_config.json");
        let pre = if pre.exists() {
            PreprocessorConfig::from_file(&pre)?
        } else {
            PreprocessorConfig::default()
        };
        let gen = dir.join("generation_config.json");
        let generation = if gen.exists() {
            GenerationDefaults::from_file(&gen)?
        } else {
            GenerationDefaults::default()
        };
        let vocab = model.config.text.vocab_size;
        if tokenizer.vocab_len() > vocab {
            return Err(ModelError::config(
                dir.join("config.json"),
                "vocab_size",
                format!(
                    "{vocab} is smaller than the tokenizer's {} tokens",
                    tokenizer.vocab_len()
                ),
            ));
        }
        // 4DThinker checkpoints record the latent ids in config.json; the tokenizer is authoritative.
        let l = &model.config.latent;
        let s = &tokenizer.special;
        for (field, cfg_id, tok_id) in [
            ("latent_token_id", l.latent_token_id, s.latent_pad),
            ("latent_start_id", l.latent_start_id, s.latent_start),
            ("latent_end_id", l.latent_end_id, s.latent_end),
        ] {
            if cfg_id.is_some() && cfg_id != tok_id {
                tracing::warn!("config.json {field} = {cfg_id:?} but the tokenizer says {tok_id:?}; using the tokenizer's");
            }
        }
        let processor = Processor::new(
            ImageProcessor::new(pre),
            &tokenizer,
            generation.pad_token_id,
        )?;
        Ok(ModelBundle {
            model,
            tokenizer,
            processor,
            generation,
            dir: dir.to_path_buf(),
            adapter: None,
        })
    }

    /// Puts the PEFT adapter in `dir` on the model (float32 updates, as PEFT runs them by
    /// default, whatever the model's dtype).
    pub fn attach_adapter(&mut self, dir: &Path) -> Result<()> {
        let adapter = crate::peft::read_adapter(dir, DType::F32, &self.model.device)?;
        self.model.set_adapter(&adapter, None)?;
        self.adapter = Some(dir.to_path_buf());
        Ok(())
    }

    pub fn rope_params(&self) -> RopeIndexParams {
        self.model.rope_params(&self.tokenizer)
    }

    /// Tokens that end generation: `generation_config.json`'s and `config.json`'s EOS ids and
    /// `<|im_end|>`.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = self.generation.eos_token_id.clone();
        ids.extend(self.model.config.eos_token_id.iter().copied());
        ids.extend(self.tokenizer.special.im_end);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Latent imagery settings when the tokenizer has the latent tokens: `latent_size` from
    /// `size_override`, else config.json, else 8 (the reference loop's default). Asking for a size
    /// on a checkpoint without latent tokens is an error.
    pub fn latent_tokens(
        &self,
        size_override: Option<usize>,
    ) -> Result<Option<crate::generation::LatentTokens>> {
        let s = &self.tokenizer.special;
        match (s.latent_pad, s.latent_start, s.latent_end) {
            (Some(pad), Some(start), Some(end)) => {
                let size = size_override
                    .or(self.model.config.latent.latent_size)
                    .unwrap_or(8);
                Ok(Some(crate::generation::LatentTokens {
                    pad,
                    start,
                    end,
                    size,
                }))
            }
            _ if size_override.is_some() => Err(ModelError::input(format!(
                "a latent size was given, but the tokenizer of {} has no latent tokens",
                self.dir.display()
            ))),
            _ => Ok(None),
        }
    }
}
