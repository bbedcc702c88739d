//! What a training run holds in memory per rank, by category, from the model's real parameter
//! shapes: `fourd bench memory`.
//!
//! Counted as this trainer allocates them (not as DeepSpeed would):
//! - **weights**: every tensor in the compute dtype (the frozen vision tower included);
//! - **gradients**: the step's accumulation buffer of the trained tensors, in their dtype
//!   (replicated and ZeRO-1), or this rank's float32 chunk (ZeRO-2);
//! - **master weights**: float32 copies of half-precision trained tensors (all of them when
//!   replicated; this rank's chunk, always float32, under ZeRO);
//! - **moments**: AdamW's two float32 moments, of all trained tensors or of this rank's chunk;
//! - **backward gradients** (transient): one micro-batch's gradients as the backward pass returns
//!   them, all at once, before they are added to the step's buffer or reduced;
//! - **reduction buffers** (transient, data parallel only): the flat float32 gradient that is
//!   all-reduced (input and output), or under ZeRO one bucket of it reduce-scattered or
//!   all-gathered at a time, plus the largest tensor assembled from the gathered buckets;
//! - **activations** (an estimate, at a given sequence length, batch 1): what autograd keeps
//!   for the backward pass of each decoder layer (projections' inputs and outputs, the float32
//!   attention scores and probabilities, the MLP's intermediates, LoRA's float32 inputs), plus
//!   the float32 logits and their log-softmax; with gradient checkpointing, each layer's input
//!   plus one layer recomputed at a time. The vision tower runs without a graph (frozen).

use candle_core::DType;
use fourd_model::config::{TextConfig, VisionConfig};
use fourd_model::Qwen25VlConfig;

use crate::zero::ZeroStage;

/// The released configurations this command knows by name (copies of the Hugging Face
/// `config.json` fields that set shapes).
pub fn released_config(size: &str) -> Option<&'static str> {
    match size {
        "3b" => Some(include_str!("memory/qwen2.5-vl-3b.json")),
        "7b" => Some(include_str!("memory/qwen2.5-vl-7b.json")),
        _ => None,
    }
}

/// Every tensor of Qwen2.5-VL with this configuration, by canonical name, with its shape (what
/// the model builds; a test checks it against real checkpoints).
pub fn parameter_shapes(cfg: &Qwen25VlConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = vision_shapes(&cfg.vision);
    out.extend(text_shapes(&cfg.text));
    out
}

fn vision_shapes(v: &VisionConfig) -> Vec<(String, Vec<usize>)> {
    let h = v.hidden_size;
    let mut out = vec![(
        "visual.patch_embed.proj.weight".to_string(),
        vec![
            h,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
    )];
    let linear = |out: &mut Vec<(String, Vec<usize>)>, name: String, o: usize, i: usize| {
        out.push((format!("{name}.weight"), vec![o, i]));
        out.push((format!("{name}.bias"), vec![o]));
    };
    for b in 0..v.depth {
        let p = format!("visual.blocks.{b}");
        out.push((format!("{p}.norm1.weight"), vec![h]));
        out.push((format!("{p}.norm2.weight"), vec![h]));
        linear(&mut out, format!("{p}.attn.qkv"), 3 * h, h);
        linear(&mut out, format!("{p}.attn.proj"), h, h);
        linear(
            &mut out,
            format!("{p}.mlp.gate_proj"),
            v.intermediate_size,
            h,
        );
        linear(&mut out, format!("{p}.mlp.up_proj"), v.intermediate_size, h);
        linear(
            &mut out,
            format!("{p}.mlp.down_proj"),
            h,
            v.intermediate_size,
        );
    }
    let merged = h * v.spatial_merge_size * v.spatial_merge_size;
    out.push(("visual.merger.ln_q.weight".into(), vec![h]));
    linear(&mut out, "visual.merger.mlp.0".into(), merged, merged);
    linear(
        &mut out,
        "visual.merger.mlp.2".into(),
        v.out_hidden_size,
        merged,
    );
    out
}

fn text_shapes(t: &TextConfig) -> Vec<(String, Vec<usize>)> {
    language_model_shapes(&LanguageModelSizes {
        vocab: t.vocab_size,
        hidden: t.hidden_size,
        intermediate: t.intermediate_size,
        layers: t.num_hidden_layers,
        q: t.num_attention_heads * t.head_dim,
        kv: t.num_key_value_heads * t.head_dim,
        tied: t.tie_word_embeddings,
    })
}

/// The sizes that set the language model's parameter shapes.
#[derive(Clone, Copy, Debug)]
pub struct LanguageModelSizes {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// Query projection width (heads x head size).
    pub q: usize,
    /// Key / value projection width (KV heads x head size).
    pub kv: usize,
    pub tied: bool,
}

/// Every language-model tensor (canonical names) with its shape.
pub fn language_model_shapes(s: &LanguageModelSizes) -> Vec<(String, Vec<usize>)> {
    let (h, q, kv) = (s.hidden, s.q, s.kv);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![s.vocab, h])];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        for (name, o, i, bias) in [
            ("self_attn.q_proj", q, h, true),
            ("self_attn.k_proj", kv, h, true),
            ("self_attn.v_proj", kv, h, true),
            ("self_attn.o_proj", h, q, false),
            ("mlp.gate_proj", s.intermediate, h, false),
            ("mlp.up_proj", s.intermediate, h, false),
            ("mlp.down_proj", h, s.intermediate, false),
        ] {
            out.push((format!("{p}.{name}.weight"), vec![o, i]));
            if bias {
                out.push((format!("{p}.{name}.bias"), vec![o]));
            }
        }
    }
    out.push(("model.norm.weight".into(), vec![h]));
    if !s.tied {
        out.push(("lm_head.weight".into(), vec![s.vocab, h]));
    }
    out
}

/// A training setup to account for.
#[derive(Clone, Debug)]
pub struct MemorySetup {
    pub world: usize,
    pub zero: Option<ZeroStage>,
    /// LoRA rank on the default targets (the language model's seven projections), with the
    /// three latent tokens' rows; `None`: the whole language model trains.
    pub lora_rank: Option<usize>,
    pub gradient_checkpointing: bool,
    pub dtype: DType,
    /// Tokens in the sequence the activations are counted for (batch 1).
    pub seq_len: usize,
}

/// Bytes per rank by category, and the parameter counts they come from.
#[derive(Clone, Debug)]
pub struct MemoryEstimate {
    pub parameters: usize,
    pub trained: usize,
    pub categories: Vec<(&'static str, u64)>,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.categories.iter().map(|(_, b)| b).sum()
    }
}

/// Latent tokens whose rows a LoRA run trains.
const LATENT_ROWS: usize = 3;

pub fn estimate(cfg: &Qwen25VlConfig, s: &MemorySetup) -> MemoryEstimate {
    let shapes = parameter_shapes(cfg);
    let count = |dims: &Vec<usize>| dims.iter().product::<usize>();
    let parameters: usize = shapes.iter().map(|(_, d)| count(d)).sum();
    let t = &cfg.text;
    let trained = match s.lora_rank {
        None => shapes
            .iter()
            .filter(|(n, _)| !n.starts_with("visual."))
            .map(|(_, d)| count(d))
            .sum(),
        Some(r) => {
            let adapted: usize = shapes
                .iter()
                .filter(|(n, d)| {
                    n.starts_with("model.layers.") && n.ends_with("_proj.weight") && d.len() == 2
                })
                .map(|(_, d)| r * (d[0] + d[1]))
                .sum();
            let rows = LATENT_ROWS * t.hidden_size * if t.tie_word_embeddings { 1 } else { 2 };
            adapted + rows
        }
    };
    let b = s.dtype.size_in_bytes() as u64;
    let world = s.world.max(1) as u64;
    let tr = trained as u64;
    // LoRA's tensors are float32 whatever the dtype; full runs train in the compute dtype.
    let trained_bytes = if s.lora_rank.is_some() { 4 } else { b };
    let shard = tr.div_ceil(world);
    let (grads, master, moments) = match s.zero {
        None => (
            tr * trained_bytes,
            if trained_bytes == 4 { 0 } else { tr * 4 },
            tr * 8,
        ),
        Some(ZeroStage::One) => (tr * trained_bytes, shard * 4, shard * 8),
        Some(ZeroStage::Two) => (shard * 4, shard * 4, shard * 8),
    };
    let bucket = (crate::zero::BUCKET_ELEMENTS as u64).min(tr);
    let largest = shapes
        .iter()
        .filter(|(n, _)| s.lora_rank.is_none() && !n.starts_with("visual."))
        .map(|(_, d)| count(d) as u64)
        .max()
        .unwrap_or(0);
    let reduction = match (s.world > 1, s.zero) {
        (false, None) => 0,
        (true, None) => 2 * tr * 4,
        (_, Some(_)) => bucket * 4 + bucket.div_ceil(world) * 4 + largest * 4,
    };
    let frozen = parameters as u64 - if s.lora_rank.is_some() { 0 } else { tr };
    let weights = frozen * b
        + if s.lora_rank.is_some() {
            tr * 4
        } else {
            tr * b
        };
    MemoryEstimate {
        parameters,
        trained,
        categories: vec![
            ("weights", weights),
            ("gradients", grads),
            ("master weights (f32)", master),
            ("AdamW moments (f32)", moments),
            ("backward gradients (transient)", tr * trained_bytes),
            ("reduction buffers (transient)", reduction),
            ("activations (estimate)", activations(t, s)),
        ],
    }
}

/// What autograd keeps for one sequence of `seq_len` tokens (see the module docs).
fn activations(t: &TextConfig, s: &MemorySetup) -> u64 {
    let l = s.seq_len as u64;
    let b = s.dtype.size_in_bytes() as u64;
    let (h, i) = (t.hidden_size as u64, t.intermediate_size as u64);
    let hd = t.head_dim as u64;
    let (q, kv) = (
        t.num_attention_heads as u64 * hd,
        t.num_key_value_heads as u64 * hd,
    );
    let heads = t.num_attention_heads as u64;
    let per_layer = {
        let norms = 2 * l * h * b + 2 * l * h * 4;
        let projections = l * (q + 2 * kv) * b * 2 + l * q * b + l * h * b;
        let attention = heads * l * l * (4 + 4 + b);
        let mlp = 4 * l * i * b + l * h * b;
        let lora = match s.lora_rank {
            // Float32 copies of each adapted projection's input, and the rank-r intermediates.
            Some(r) => l * 4 * (6 * h + i) + 7 * l * r as u64 * 4,
            None => 0,
        };
        norms + projections + attention + mlp + lora
    };
    let layers = t.num_hidden_layers as u64;
    let logits = 2 * l * t.vocab_size as u64 * 4;
    let decoder = if s.gradient_checkpointing {
        layers * l * h * b + per_layer
    } else {
        layers * per_layer
    };
    decoder + logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(size: &str) -> Qwen25VlConfig {
        let raw = serde_json::from_str(released_config(size).expect("known size")).expect("json");
        Qwen25VlConfig::from_value(raw, Path::new(size)).expect("config")
    }

    /// The shapes are the ones the model builds: checked against real checkpoints' files.
    #[test]
    fn shapes_match_the_fixture_checkpoints() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        for dir in ["latent/model", "qwen25vl/model-tied-bf16"] {
            let dir = root.join(dir);
            let cfg = Qwen25VlConfig::from_file(&dir.join("config.json")).expect("config");
            let w = fourd_model::weights::CheckpointWeights::open(&dir).expect("weights");
            let mut stored: Vec<(String, Vec<usize>)> = w
                .tensor_names()
                .map(|n| {
                    let canonical = fourd_model::weights::KeyLayout::canonical_name(n);
                    let t = w.load_stored(n).expect("tensor");
                    (canonical, t.dims().to_vec())
                })
                .collect();
            stored.sort();
            let mut ours = parameter_shapes(&cfg);
            ours.sort();
            assert_eq!(ours, stored, "{}", dir.display());
        }
    }

    #[test]
    fn released_sizes_have_their_published_parameter_counts() {
        // The model cards: 3B "3.75B" and 7B "8.29B" parameters.
        let n3 = estimate(&config("3b"), &setup(1, None, None)).parameters;
        let n7 = estimate(&config("7b"), &setup(1, None, None)).parameters;
        assert!((3.70e9..3.80e9).contains(&(n3 as f64)), "{n3}");
        assert!((8.25e9..8.35e9).contains(&(n7 as f64)), "{n7}");
    }

    fn setup(world: usize, zero: Option<ZeroStage>, lora: Option<usize>) -> MemorySetup {
        MemorySetup {
            world,
            zero,
            lora_rank: lora,
            gradient_checkpointing: true,
            dtype: DType::BF16,
            seq_len: 4096,
        }
    }

    #[test]
    fn sharding_divides_what_it_shards() {
        let cfg = config("7b");
        let one = estimate(&cfg, &setup(8, None, None));
        let z2 = estimate(&cfg, &setup(8, Some(ZeroStage::Two), None));
        let get = |e: &MemoryEstimate, k: &str| {
            e.categories
                .iter()
                .find(|(n, _)| *n == k)
                .expect("category")
                .1
        };
        let tr = one.trained as u64;
        assert_eq!(get(&one, "AdamW moments (f32)"), 8 * tr);
        assert_eq!(get(&z2, "AdamW moments (f32)"), 8 * tr.div_ceil(8));
        assert_eq!(get(&z2, "gradients"), 4 * tr.div_ceil(8));
        assert_eq!(get(&one, "weights"), get(&z2, "weights"));
        let lora = estimate(&cfg, &setup(1, None, Some(16)));
        assert!(lora.trained < one.trained / 100);
        assert_eq!(get(&lora, "master weights (f32)"), 0);
    }
}
