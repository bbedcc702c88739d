//! LoRA (Hu et al., 2021) on the model's linear layers, and PEFT's trainable token rows.
//!
//! A LoRA update adds `scale * B A x` to a frozen linear layer `W x + b`, with `A` `[r, in]`,
//! `B` `[out, r]` and `scale = alpha / r` (`alpha / sqrt(r)` with rsLoRA). As in PEFT, the update
//! runs in the adapter's dtype (float32 when training, whatever the base's) and the sum is cast
//! back to the base's dtype.
//!
//! Token rows are PEFT's `trainable_token_indices`: a few rows of the embedding table (and of an
//! untied `lm_head`) whose values replace the base's. DIFT needs them: the latent tokens that
//! `fourd model add-latent-tokens` adds start as the mean embedding and must learn.
//!
//! The file format is PEFT's and lives in [`crate::peft`]; this module is the model side: the
//! [`Adapter`] (updates by module name, token rows), [`LoraLinear`] (a linear layer that may
//! carry an update) and the merge into plain weights.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;
use rand::{Rng, SeedableRng};

use crate::error::{ModelError, Result};

/// PEFT's module names of the language model's projections: what `--lora-targets` may name.
pub const LANGUAGE_MODEL_TARGETS: [&str; 8] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
];

/// The default targets: every attention and MLP projection of the language model (not
/// `lm_head`, whose rows the token rows already train where it matters).
pub const DEFAULT_TARGETS: &[&str] = LANGUAGE_MODEL_TARGETS.split_at(7).0;

/// The shape of a new adapter: rank, alpha, dropout and which projections it adapts.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSettings {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Leaf module names (`q_proj`, ...), applied to the language model only.
    pub targets: Vec<String>,
    /// rsLoRA's scale `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
}

impl LoraSettings {
    pub fn new(rank: usize, alpha: f64) -> Self {
        LoraSettings {
            rank,
            alpha,
            dropout: 0.0,
            targets: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        }
    }

    /// Checks the values; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::input("--lora-rank must be at least 1"));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(ModelError::input(format!(
                "--lora-alpha must be a finite number > 0 (got {})",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::input(format!(
                "--lora-dropout must be in [0, 1) (got {})",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(ModelError::input("--lora-targets names no module"));
        }
        for t in &self.targets {
            if !LANGUAGE_MODEL_TARGETS.contains(&t.as_str()) {
                return Err(ModelError::input(format!(
                    "--lora-targets: `{t}` is not a linear layer of the language model (one of {})",
                    LANGUAGE_MODEL_TARGETS.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        lora_scale(self.alpha, self.rank, self.use_rslora)
    }

    /// Whether the linear layer named `module` (canonical, `model.layers.0.self_attn.q_proj`)
    /// gets an update: a language-model module whose last name component is a target.
    pub fn targets_module(&self, module: &str) -> bool {
        let leaf = module.rsplit('.').next().unwrap_or(module);
        !module.starts_with("visual.") && self.targets.iter().any(|t| t == leaf)
    }
}

/// PEFT's scaling: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
pub fn lora_scale(alpha: f64, rank: usize, rslora: bool) -> f64 {
    if rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    }
}

/// One layer's low-rank update.
#[derive(Clone, Debug)]
pub struct LowRank {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    pub scale: f64,
}

impl LowRank {
    /// `scale * B A` `[out, in]` in float32: what merging adds to the weight.
    pub fn delta_weight(&self) -> Result<Tensor> {
        let a = self.a.to_dtype(DType::F32)?;
        let b = self.b.to_dtype(DType::F32)?;
        Ok((b.matmul(&a)? * self.scale)?)
    }
}

/// Rows that replace the base's rows `ids` of an embedding table or `lm_head` (PEFT's
/// `trainable_tokens_delta`, which holds values, not differences).
#[derive(Clone, Debug)]
pub struct TokenRows {
    pub ids: Vec<u32>,
    /// `[ids.len(), hidden]`
    pub values: Tensor,
}

/// LoRA dropout while training: on the adapter's input only, as PEFT does, and only while
/// `active` (the trainer turns it off for generation).
#[derive(Clone, Debug)]
pub struct LoraDropout {
    pub p: f32,
    pub active: Arc<AtomicBool>,
}

/// A complete adapter: updates by canonical module name, token rows, and the settings it was
/// made with (what `adapter_config.json` records).
#[derive(Clone, Debug)]
pub struct Adapter {
    pub settings: LoraSettings,
    /// Canonical module name (`model.layers.0.self_attn.q_proj`, `lm_head`) -> update.
    pub modules: BTreeMap<String, LowRank>,
    pub embed_rows: Option<TokenRows>,
    /// Rows of an untied `lm_head`. A tied `lm_head` uses `embed_rows` (PEFT ties the two).
    pub lm_head_rows: Option<TokenRows>,
}

impl Adapter {
    /// A fresh adapter for `model`'s targeted layers, as PEFT initialises one: `A` uniform in
    /// `±1/sqrt(in)` (kaiming-uniform with `a = sqrt(5)`), `B` zero, so training starts from the
    /// base model exactly. Token rows start as the base's rows. Float32 on `device`.
    pub fn init(
        model: &crate::Qwen25VL,
        settings: &LoraSettings,
        token_ids: &[u32],
        seed: u64,
    ) -> Result<Self> {
        settings.validate()?;
        let device = model.device.clone();
        let mut modules = BTreeMap::new();
        for lin in model.linears() {
            if !settings.targets_module(&lin.name) {
                continue;
            }
            let (out_dim, in_dim) = lin.base.weight().dims2()?;
            let a = kaiming_uniform(settings.rank, in_dim, &lin.name, seed, &device)?;
            let b = Tensor::zeros((out_dim, settings.rank), DType::F32, &device)?;
            modules.insert(
                lin.name.to_string(),
                LowRank {
                    a,
                    b,
                    scale: settings.scale(),
                },
            );
        }
        if modules.is_empty() {
            return Err(ModelError::input(format!(
                "--lora-targets {} match no layer of the model",
                settings.targets.join(",")
            )));
        }
        let rows = |table: &Tensor| -> Result<Option<TokenRows>> {
            if token_ids.is_empty() {
                return Ok(None);
            }
            let idx = Tensor::new(token_ids, table.device())?;
            Ok(Some(TokenRows {
                ids: token_ids.to_vec(),
                values: crate::layers::weight_rows(table, &idx)?.to_dtype(DType::F32)?,
            }))
        };
        let text = &model.text;
        Ok(Adapter {
            settings: settings.clone(),
            modules,
            embed_rows: rows(text.embedding_table())?,
            lm_head_rows: match text.cfg.tie_word_embeddings {
                true => None,
                false => rows(text.lm_head_weight())?,
            },
        })
    }

    /// Every tensor of the adapter under a stable name (the PEFT key without its
    /// `base_model.model.` prefix, in canonical layout): what the optimiser trains.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, m) in &self.modules {
            out.push((format!("{name}.lora_A.weight"), m.a.clone()));
            out.push((format!("{name}.lora_B.weight"), m.b.clone()));
        }
        if let Some(r) = &self.embed_rows {
            out.push((EMBED_ROWS.to_string(), r.values.clone()));
        }
        if let Some(r) = &self.lm_head_rows {
            out.push((LM_HEAD_ROWS.to_string(), r.values.clone()));
        }
        out
    }

    /// The same adapter with each tensor replaced by `f(name, tensor)` (to make them `Var`s,
    /// move or cast them).
    pub fn map_tensors(
        &self,
        mut f: impl FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<Adapter> {
        let mut modules = BTreeMap::new();
        for (name, m) in &self.modules {
            modules.insert(
                name.clone(),
                LowRank {
                    a: f(&format!("{name}.lora_A.weight"), &m.a)?,
                    b: f(&format!("{name}.lora_B.weight"), &m.b)?,
                    scale: m.scale,
                },
            );
        }
        let rows = |r: &Option<TokenRows>,
                    key: &str,
                    f: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>|
         -> Result<Option<TokenRows>> {
            r.as_ref()
                .map(|r| {
                    Ok(TokenRows {
                        ids: r.ids.clone(),
                        values: f(key, &r.values)?,
                    })
                })
                .transpose()
        };
        Ok(Adapter {
            settings: self.settings.clone(),
            embed_rows: rows(&self.embed_rows, EMBED_ROWS, &mut f)?,
            lm_head_rows: rows(&self.lm_head_rows, LM_HEAD_ROWS, &mut f)?,
            modules,
        })
    }
}

/// Names of the token rows among [`Adapter::named_tensors`].
pub const EMBED_ROWS: &str = "model.embed_tokens.token_adapter.trainable_tokens_delta";
pub const LM_HEAD_ROWS: &str = "lm_head.token_adapter.trainable_tokens_delta";

/// PEFT's `kaiming_uniform_(A, a=sqrt(5))`: uniform in `±1/sqrt(fan_in)`, from a stream seeded
/// by (seed, module name) so values do not depend on creation order.
fn kaiming_uniform(
    rows: usize,
    fan_in: usize,
    name: &str,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(h);
    let data: Vec<f32> = (0..rows * fan_in)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    Ok(Tensor::from_vec(data, (rows, fan_in), device)?)
}

/// A linear layer that may carry a LoRA update. `name` is its canonical module name, by which
/// adapters find it.
#[derive(Clone, Debug)]
pub struct LoraLinear {
    pub name: Arc<str>,
    pub base: Linear,
    pub lora: Option<LowRank>,
    pub dropout: Option<LoraDropout>,
}

impl LoraLinear {
    pub fn new(name: String, base: Linear) -> Self {
        LoraLinear {
            name: name.into(),
            base,
            lora: None,
            dropout: None,
        }
    }

    /// The layer over detached tensors (shares storage; builds no autograd graph).
    pub fn detached(&self) -> Self {
        LoraLinear {
            name: self.name.clone(),
            base: Linear::new(
                self.base.weight().detach(),
                self.base.bias().map(Tensor::detach),
            ),
            lora: self.lora.as_ref().map(|l| LowRank {
                a: l.a.detach(),
                b: l.b.detach(),
                scale: l.scale,
            }),
            dropout: self.dropout.clone(),
        }
    }

    /// Weight, bias and the update's `A` and `B`.
    pub fn params(&self) -> Vec<Tensor> {
        let mut v = vec![self.base.weight().clone()];
        v.extend(self.base.bias().cloned());
        if let Some(l) = &self.lora {
            v.push(l.a.clone());
            v.push(l.b.clone());
        }
        v
    }
}

impl Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = crate::grad_ops::linear(x, &self.base)?;
        let Some(l) = &self.lora else { return Ok(y) };
        let mut xin = x.to_dtype(l.a.dtype())?;
        if let Some(d) = &self.dropout {
            if d.p > 0.0 && d.active.load(Ordering::Relaxed) {
                xin = candle_nn::ops::dropout(&xin, d.p)?;
            }
        }
        let down = crate::grad_ops::linear(&xin, &Linear::new(l.a.clone(), None))?;
        // The scale goes on B ([out, r]), not on the output ([tokens, out]): one small multiply.
        let up = crate::grad_ops::linear(&down, &Linear::new((&l.b * l.scale)?, None))?;
        (y.to_dtype(up.dtype())? + up)?.to_dtype(y.dtype())
    }
}

/// Embedding lookups with token rows: the base's rows, except where `rows` replace them.
pub(crate) fn embed_with_rows(
    base: &Tensor,
    ids: &Tensor,
    rows: &TokenRows,
) -> candle_core::Result<Tensor> {
    let host = ids.flatten_all()?.to_vec1::<u32>()?;
    let (mut local, mut replaced) = (Vec::with_capacity(host.len()), Vec::new());
    for &t in &host {
        let k = rows.ids.iter().position(|&r| r == t);
        local.push(k.unwrap_or(0) as u32);
        replaced.push(u8::from(k.is_some()));
    }
    if !replaced.contains(&1) {
        return Ok(base.clone());
    }
    let n = host.len();
    let h = base.dim(candle_core::D::Minus1)?;
    let dev = base.device();
    let local = Tensor::from_vec(local, n, dev)?;
    let picked = rows
        .values
        .to_dtype(base.dtype())?
        .index_select(&local, 0)?
        .reshape(base.shape())?;
    let mask = Tensor::from_vec(replaced, n, dev)?
        .reshape((n, 1))?
        .broadcast_as((n, h))?
        .reshape(base.shape())?;
    mask.where_cond(&picked, base)
}

/// Logits with token rows of `lm_head`: the columns `rows.ids` become `hidden · values`.
/// Added as a difference (one extra logits-sized tensor, not three), exact to rounding.
pub(crate) fn logits_with_rows(
    logits: &Tensor,
    hidden: &Tensor,
    base_weight: &Tensor,
    rows: &TokenRows,
) -> candle_core::Result<Tensor> {
    let dev = hidden.device();
    let idx = Tensor::new(rows.ids.as_slice(), dev)?;
    let values = rows.values.to_dtype(hidden.dtype())?;
    let base_rows = crate::layers::weight_rows(base_weight, &idx)?.detach();
    let diff = (values - base_rows)?;
    let extra = Linear::new(diff, None)
        .forward(hidden)?
        .to_dtype(logits.dtype())?;
    let last = logits.rank() - 1;
    logits.index_add(&idx, &extra, last)
}

/// Merges `adapter` into plain weights (canonical name -> tensor, any dtype): each adapted
/// weight gets `scale * B A` (added in float32, stored back in its dtype) and the token rows
/// replace theirs. A tied `lm_head` cannot take an update of its own.
pub fn merge_into(
    weights: &mut BTreeMap<String, Tensor>,
    adapter: &Adapter,
    tied: bool,
) -> Result<()> {
    for (module, update) in &adapter.modules {
        if tied && module == "lm_head" {
            return Err(ModelError::input(
                "the adapter updates lm_head, which this model ties to the embedding table: merging would change the embeddings too",
            ));
        }
        let key = format!("{module}.weight");
        let w = weights.get(&key).ok_or_else(|| ModelError::Tensor {
            name: key.clone(),
            msg: "the adapter updates it but the base model has no such weight".into(),
        })?;
        let delta = update.delta_weight()?.to_device(w.device())?;
        if delta.dims() != w.dims() {
            return Err(ModelError::Tensor {
                name: key,
                msg: format!(
                    "has shape {:?}, the adapter's update {:?}",
                    w.dims(),
                    delta.dims()
                ),
            });
        }
        let merged = (w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
        weights.insert(key, merged);
    }
    let mut replace = |key: &str, rows: &TokenRows| -> Result<()> {
        let w = weights.get(key).ok_or_else(|| ModelError::Tensor {
            name: key.to_string(),
            msg: "the adapter has token rows for it but the base model has no such weight".into(),
        })?;
        let values = rows.values.to_device(w.device())?.to_dtype(w.dtype())?;
        let mut merged = w.clone();
        for (k, &id) in rows.ids.iter().enumerate() {
            if id as usize >= w.dim(0)? {
                return Err(ModelError::Tensor {
                    name: key.to_string(),
                    msg: format!("token row {id} is past the table's {} rows", w.dim(0)?),
                });
            }
            merged = merged.slice_scatter0(&values.narrow(0, k, 1)?, id as usize)?;
        }
        weights.insert(key.to_string(), merged);
        Ok(())
    };
    if let Some(r) = &adapter.embed_rows {
        replace("model.embed_tokens.weight", r)?;
    }
    if let Some(r) = &adapter.lm_head_rows {
        replace("lm_head.weight", r)?;
    }
    Ok(())
}

/// LoRA dropout with probability `p`, off until the trainer turns it on. Masks come from the
/// device's generator (candle's CPU generator cannot be seeded, so they are not reproducible
/// across runs; the schedule, the data order and the initial values are).
pub fn dropout_for(p: f64) -> Option<LoraDropout> {
    (p > 0.0).then(|| LoraDropout {
        p: p as f32,
        active: Arc::new(AtomicBool::new(false)),
    })
}
