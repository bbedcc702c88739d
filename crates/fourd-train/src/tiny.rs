//! Fresh tiny Qwen2.5-VL checkpoints for training from scratch (`fourd demo` and the tests):
//! a byte-level BPE tokenizer trained on the caller's corpus with the Qwen2.5-VL and 4DThinker
//! special tokens, the Qwen2.5-VL chat template, a transformers 4.x `config.json` with the latent
//! fields, a processor config, and random weights initialised as transformers does.

use std::path::Path;

use candle_core::{DType, Device};
use fourd_model::{Qwen25VL, Qwen25VlConfig};
use serde_json::json;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::checkpoint::write_json;
use crate::error::{Result, TrainError};
use crate::params::{language_model_trains, TrainableWeights, WeightSource};

pub const CHAT_TEMPLATE: &str = include_str!("qwen25vl_chat_template.jinja");

/// Special tokens in Qwen2.5-VL order, then the three 4DThinker latent tokens.
pub const SPECIAL_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|latent_pad|>",
    "<|latent_start|>",
    "<|latent_end|>",
];

#[derive(Clone, Debug)]
pub struct TinySpec {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate_size: usize,
    pub vision_hidden_size: usize,
    pub vision_depth: usize,
    pub vision_heads: usize,
    pub latent_size: usize,
    /// BPE vocabulary before the special tokens.
    pub bpe_vocab: usize,
    pub init_std: f64,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            hidden_size: 96,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 256,
            vision_hidden_size: 48,
            vision_depth: 2,
            vision_heads: 2,
            latent_size: 4,
            bpe_vocab: 600,
            init_std: 0.02,
            seed: 0,
        }
    }
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::checkpoint(path, format!("tokenizer: {e}"))
}

/// Writes a complete random checkpoint to `out`.
pub fn init_tiny_checkpoint(out: &Path, corpus: &[String], spec: &TinySpec) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let tok_path = out.join("tokenizer.json");
    // Byte-level BPE as Qwen's (with the GPT-2 split regex, so merges never cross a newline or a word boundary).
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(spec.bpe_vocab + 256)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer: tokenizers::TokenizerImpl<
        BPE,
        tokenizers::NormalizerWrapper,
        tokenizers::PreTokenizerWrapper,
        tokenizers::PostProcessorWrapper,
        tokenizers::DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        .with_decoder(Some(ByteLevel::default().into()))
        .build()
        .map_err(|e| tok_err(&tok_path, e))?;
    tokenizer
        .train(&mut trainer, corpus.iter().cloned())
        .map_err(|e| tok_err(&tok_path, e))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    tokenizer
        .save(&tok_path, false)
        .map_err(|e| tok_err(&tok_path, e))?;
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| tok_err(&tok_path, format!("{t} missing")))
    };
    let vocab = tokenizer.get_vocab_size(true).div_ceil(16) * 16;
    std::fs::write(out.join("chat_template.jinja"), CHAT_TEMPLATE)
        .map_err(|e| TrainError::io(out, e))?;
    write_json(
        &out.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
            "bos_token": null, "unk_token": null, "model_max_length": 32768, "clean_up_tokenization_spaces": false,
            "split_special_tokens": false, "processor_class": "Qwen2_5_VLProcessor"
        }),
    )?;
    let head_dim = spec.hidden_size / spec.heads;
    let half = head_dim / 2;
    // Qwen2.5-VL splits the rotary half-dims 16/24/24 of 64; keep the proportions.
    let t = half / 4;
    let h = (half - t) / 2;
    let mrope = [t, h, half - t - h];
    let config = json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": id("<|endoftext|>")?,
        "eos_token_id": id("<|im_end|>")?,
        "pad_token_id": id("<|endoftext|>")?,
        "vision_start_token_id": id("<|vision_start|>")?,
        "vision_end_token_id": id("<|vision_end|>")?,
        "vision_token_id": id("<|vision_pad|>")?,
        "image_token_id": id("<|image_pad|>")?,
        "video_token_id": id("<|video_pad|>")?,
        "latent_token_id": id("<|latent_pad|>")?,
        "latent_start_id": id("<|latent_start|>")?,
        "latent_end_id": id("<|latent_end|>")?,
        "latent_size": spec.latent_size,
        "compress_strategy": "average",
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": spec.init_std,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": 4096,
        "max_window_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_hidden_layers": spec.layers,
        "num_key_value_heads": spec.kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "use_cache": true,
        "use_sliding_window": false,
        "rope_scaling": {"type": "mrope", "mrope_section": mrope},
        "vocab_size": vocab,
        "vision_config": {
            "depth": spec.vision_depth,
            "hidden_act": "silu",
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_hidden_size * 2,
            "num_heads": spec.vision_heads,
            "in_chans": 3,
            "out_hidden_size": spec.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": [spec.vision_depth - 1],
            "tokens_per_second": 2,
            "temporal_patch_size": 2
        }
    });
    write_json(&out.join("config.json"), &config)?;
    write_json(
        &out.join("preprocessor_config.json"),
        &json!({
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "Qwen2VLImageProcessor", "max_pixels": fourd_video::DEFAULT_MAX_PIXELS, "min_pixels": 3136,
            "merge_size": 2, "patch_size": 14, "resample": 3, "rescale_factor": 1.0 / 255.0, "temporal_patch_size": 2
        }),
    )?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"bos_token_id": id("<|endoftext|>")?, "eos_token_id": [id("<|im_end|>")?, id("<|endoftext|>")?],
                "pad_token_id": id("<|endoftext|>")?, "do_sample": false}),
    )?;
    // Random weights through the same builder the model uses, so every tensor it asks for exists.
    let parsed = Qwen25VlConfig::from_file(&out.join("config.json"))?;
    let weights = TrainableWeights::new(
        WeightSource::Random {
            seed: spec.seed,
            std: spec.init_std,
        },
        language_model_trains,
    );
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    let _model = Qwen25VL::new(parsed, vb)?;
    let tensors = weights.tensors();
    let map: std::collections::HashMap<String, candle_core::Tensor> = tensors.into_iter().collect();
    let path = out.join("model.safetensors");
    candle_core::safetensors::save(&map, &path)
        .map_err(|e| TrainError::checkpoint(&path, e.to_string()))?;
    Ok(())
}
