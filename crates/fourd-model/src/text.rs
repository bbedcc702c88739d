//! The language model: a Qwen2 decoder (GQA, q/k/v biases, SwiGLU) rotated by M-RoPE, with a KV
//! cache kept outside the model so several generations can share one set of weights.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use crate::attention_softmax::attention_softmax;
use crate::config::TextConfig;
use crate::layers::{linear, GatedMlp, RmsNorm};
use crate::lora::{LoraLinear, TokenRows};
use crate::mrope::MRope;

/// Keys and values of every layer, `[batch, kv_heads, seq, head_dim]`, before the GQA repeat.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
        }
    }
    /// Cached positions (the same for every layer).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }
    /// Keeps only the given batch rows (finished sequences leave a batch this way).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(rows, 0)?;
            *v = v.index_select(rows, 0)?;
        }
        Ok(())
    }

    /// Appends the rows of `other` after this cache's (new sequences join a running batch this
    /// way). The shorter side is left-padded with zero positions, which the callers' key masks
    /// must mask; positions are per row, so padding moves no rotary angle. Returns how many
    /// positions went in front of this cache's rows and of `other`'s. An empty cache becomes
    /// `other`.
    pub fn append_rows(&mut self, other: KvCache) -> Result<(usize, usize)> {
        if self.layers.iter().all(Option::is_none) {
            *self = other;
            return Ok((0, 0));
        }
        let (mine, theirs) = (self.seq_len(), other.seq_len());
        let len = mine.max(theirs);
        let pad = |t: &Tensor, n: usize| -> Result<Tensor> {
            if n == 0 {
                return Ok(t.clone());
            }
            let mut dims = t.dims().to_vec();
            dims[2] = n;
            Tensor::cat(&[&Tensor::zeros(dims, t.dtype(), t.device())?, t], 2)
        };
        for (a, b) in self.layers.iter_mut().zip(other.layers) {
            match (a.as_mut(), b) {
                (Some((k, v)), Some((k2, v2))) => {
                    *k = Tensor::cat(&[pad(k, len - mine)?, pad(&k2, len - theirs)?], 0)?;
                    *v = Tensor::cat(&[pad(v, len - mine)?, pad(&v2, len - theirs)?], 0)?;
                }
                _ => candle_core::bail!("append_rows: the caches cover different layers"),
            }
        }
        Ok((len - mine, len - theirs))
    }
}

#[derive(Clone)]
struct Attention {
    q_proj: LoraLinear,
    k_proj: LoraLinear,
    v_proj: LoraLinear,
    o_proj: LoraLinear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((b, s, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(x)?, self.num_heads)?;
        let k = heads(self.k_proj.forward(x)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.num_kv_heads)?;
        let q = crate::grad_ops::rope(&q, cos, sin)?;
        let k = crate::grad_ops::rope(&k, cos, sin)?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // GQA without copying keys: query heads of one group share a KV head, so fold the group
        // into the query length (the mask's row for query row i is i % s).
        let rep = self.num_heads / self.num_kv_heads;
        let q = q.reshape((b, self.num_kv_heads, rep * s, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let probs = attention_softmax(&q.matmul(&k.t()?)?, mask, scale)?.to_dtype(v.dtype())?;
        let o = probs
            .matmul(&v)?
            .reshape((b, self.num_heads, s, self.head_dim))?;
        let o = o
            .transpose(1, 2)?
            .reshape((b, s, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&o)
    }
}

#[derive(Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
}

impl Attention {
    fn detached(&self) -> Self {
        Attention {
            q_proj: self.q_proj.detached(),
            k_proj: self.k_proj.detached(),
            v_proj: self.v_proj.detached(),
            o_proj: self.o_proj.detached(),
            ..*self
        }
    }
    fn params(&self) -> Vec<Tensor> {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj]
            .into_iter()
            .flat_map(LoraLinear::params)
            .collect()
    }
    fn linears(&self) -> [&LoraLinear; 4] {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj]
    }
    fn linears_mut(&mut self) -> [&mut LoraLinear; 4] {
        [
            &mut self.q_proj,
            &mut self.k_proj,
            &mut self.v_proj,
            &mut self.o_proj,
        ]
    }
}

impl DecoderLayer {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        slot: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let a = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, cos, sin, mask, slot)?;
        let x = (x + a)?;
        let m = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + m
    }
    fn detached(&self) -> Self {
        DecoderLayer {
            input_layernorm: self.input_layernorm.detached(),
            self_attn: self.self_attn.detached(),
            post_attention_layernorm: self.post_attention_layernorm.detached(),
            mlp: self.mlp.detached(),
        }
    }
    fn params(&self) -> Vec<Tensor> {
        let mut v = vec![
            self.input_layernorm.weight().clone(),
            self.post_attention_layernorm.weight().clone(),
        ];
        v.extend(self.self_attn.params());
        v.extend(self.mlp.params());
        v
    }
}

/// Gradients of decoder-layer parameters produced while recomputing layers in the backward pass
/// (gradient checkpointing), keyed by the parameter tensor's id. The outer backward pass cannot
/// return them (a custom op only returns gradients of its inputs), so they are collected here
/// and merged by the trainer.
#[derive(Clone, Default)]
pub struct CheckpointGrads(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<candle_core::TensorId, Tensor>>>,
);

impl CheckpointGrads {
    pub fn take(&self) -> std::collections::HashMap<candle_core::TensorId, Tensor> {
        std::mem::take(&mut *self.0.lock().expect("checkpoint grads lock"))
    }
    fn add(&self, id: candle_core::TensorId, g: Tensor) -> Result<()> {
        let mut m = self.0.lock().expect("checkpoint grads lock");
        let sum = match m.remove(&id) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        m.insert(id, sum);
        Ok(())
    }
}

/// `y = layer(x)` whose forward ran without a graph; the backward recomputes the layer with one.
struct RecomputeLayer {
    layer: DecoderLayer,
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
    grads: CheckpointGrads,
}

impl candle_core::CustomOp2 for RecomputeLayer {
    fn name(&self) -> &'static str {
        "recompute-decoder-layer"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        y: &candle_core::CpuStorage,
        ly: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &candle_core::Layout,
        y: &candle_core::CudaStorage,
        ly: &candle_core::Layout,
    ) -> Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let xv = candle_core::Var::from_tensor(&x.detach())?;
        let mut slot = None;
        let y = self.layer.forward(
            xv.as_tensor(),
            &self.cos,
            &self.sin,
            self.mask.as_ref(),
            &mut slot,
        )?;
        let grads = (y * grad.detach())?.sum_all()?.backward()?;
        for p in self.layer.params() {
            if let Some(g) = grads.get(&p) {
                self.grads.add(p.id(), g.detach())?;
            }
        }
        Ok((grads.get(xv.as_tensor()).map(Tensor::detach), None))
    }
}

/// The positions a forward pass projects onto the vocabulary. The projection is the widest matmul
/// of the model (151,936 columns for Qwen2.5-VL), so decoding wants the last position only and
/// training the positions its labels are predicted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogitRows {
    All,
    Last,
    /// Positions `start..end`: logit row `i` is position `start + i`.
    Span(std::ops::Range<usize>),
}

/// What one forward pass returns: logits and the final-norm hidden states (latent imagery feeds
/// the latter back as input embeddings).
pub struct TextOutput {
    /// `[batch, rows, vocab]` (float32), the rows [`LogitRows`] asked for.
    pub logits: Tensor,
    /// `[batch, seq, hidden]` after the final RMSNorm.
    pub hidden: Tensor,
}

#[derive(Clone)]
pub struct TextModel {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: LoraLinear,
    /// An adapter's token rows of the embedding table and of `lm_head` (tied: the same rows).
    pub embed_rows: Option<TokenRows>,
    pub lm_head_rows: Option<TokenRows>,
    pub mrope: MRope,
    pub cfg: TextConfig,
    /// When set, decoder layers whose input takes part in autograd are recomputed in the
    /// backward pass instead of keeping their activations (gradient checkpointing).
    pub grad_checkpoint: Option<CheckpointGrads>,
}

impl TextModel {
    /// `vb` is the checkpoint root (canonical names `model.*` and `lm_head.*`).
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, h, m.pp("embed_tokens"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::new(h, cfg.rms_norm_eps, l.pp("input_layernorm"))?,
                self_attn: Attention {
                    q_proj: linear(h, cfg.num_attention_heads * hd, true, a.pp("q_proj"))?,
                    k_proj: linear(h, cfg.num_key_value_heads * hd, true, a.pp("k_proj"))?,
                    v_proj: linear(h, cfg.num_key_value_heads * hd, true, a.pp("v_proj"))?,
                    o_proj: linear(cfg.num_attention_heads * hd, h, false, a.pp("o_proj"))?,
                    num_heads: cfg.num_attention_heads,
                    num_kv_heads: cfg.num_key_value_heads,
                    head_dim: hd,
                },
                post_attention_layernorm: RmsNorm::new(
                    h,
                    cfg.rms_norm_eps,
                    l.pp("post_attention_layernorm"),
                )?,
                mlp: GatedMlp::new(h, cfg.intermediate_size, false, l.pp("mlp"))?,
            });
        }
        let norm = RmsNorm::new(h, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            LoraLinear::new(
                "lm_head".into(),
                Linear::new(embed_tokens.embeddings().clone(), None),
            )
        } else {
            linear(h, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(TextModel {
            embed_tokens,
            layers,
            norm,
            lm_head,
            embed_rows: None,
            lm_head_rows: None,
            mrope: MRope::new(hd, cfg.rope_theta, &cfg.mrope_section),
            cfg: cfg.clone(),
            grad_checkpoint: None,
        })
    }

    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let base = self.embed_tokens.forward(ids)?;
        match &self.embed_rows {
            Some(rows) => crate::lora::embed_with_rows(&base, ids, rows),
            None => Ok(base),
        }
    }

    /// The embedding table (the base's rows, without an adapter's).
    pub fn embedding_table(&self) -> &Tensor {
        self.embed_tokens.embeddings()
    }

    /// `lm_head`'s weight (the embedding table when tied).
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.base.weight()
    }

    /// Every linear layer of the decoder, then `lm_head`.
    pub fn linears(&self) -> Vec<&LoraLinear> {
        let mut v = Vec::new();
        for l in &self.layers {
            v.extend(l.self_attn.linears());
            v.extend(l.mlp.linears());
        }
        v.push(&self.lm_head);
        v
    }

    pub fn linears_mut(&mut self) -> Vec<&mut LoraLinear> {
        let mut v = Vec::new();
        for l in &mut self.layers {
            v.extend(l.self_attn.linears_mut());
            v.extend(l.mlp.linears_mut());
        }
        v.push(&mut self.lm_head);
        v
    }

    /// The rows `lm_head` uses: its own, or the embedding's when tied (PEFT ties them).
    fn head_rows(&self) -> Option<&TokenRows> {
        match self.cfg.tie_word_embeddings {
            true => self.embed_rows.as_ref(),
            false => self.lm_head_rows.as_ref(),
        }
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.embeddings().dtype()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the decoder on `embeds` `[batch, seq, hidden]`.
    ///
    /// `cos`/`sin`: M-RoPE tables `[batch, seq, head_dim/2]`. `mask`: additive float32
    /// `[batch, 1, seq, cached + seq]`, or `None` when every row is unpadded and `seq == 1` or the
    /// cache is empty and causality alone applies (then a causal mask is built here).
    /// `logit_rows`: the positions projected onto the vocabulary.
    pub fn forward(
        &self,
        embeds: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        logit_rows: &LogitRows,
    ) -> Result<TextOutput> {
        let dtype = embeds.dtype();
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        if cache.layers.len() != self.layers.len() {
            *cache = KvCache::new(self.layers.len());
        }
        let mut x = embeds.clone();
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = match &self.grad_checkpoint {
                Some(grads) if x.track_op() => {
                    // Forward without a graph (detached weights and input), keep only x and y.
                    // The KV cache is still filled: a model being trained also generates (GRPO's
                    // rollouts), and decoding needs the keys and values of what came before.
                    let y = layer
                        .detached()
                        .forward(&x.detach(), &cos, &sin, mask, slot)?;
                    let op = RecomputeLayer {
                        layer: layer.clone(),
                        cos: cos.clone(),
                        sin: sin.clone(),
                        mask: mask.cloned(),
                        grads: grads.clone(),
                    };
                    x.apply_op2_arc(&y, std::sync::Arc::new(Box::new(op)))?
                }
                _ => layer.forward(&x, &cos, &sin, mask, slot)?,
            };
        }
        let hidden = self.norm.forward(&x)?;
        let for_logits = match logit_rows {
            LogitRows::All => hidden.clone(),
            LogitRows::Last => hidden.narrow(1, hidden.dim(1)? - 1, 1)?,
            LogitRows::Span(r) => hidden.narrow(1, r.start, r.len())?,
        };
        let mut logits = self.lm_head.forward(&for_logits)?;
        if let Some(rows) = self.head_rows() {
            logits = crate::lora::logits_with_rows(
                &logits,
                &for_logits,
                self.lm_head.base.weight(),
                rows,
            )?;
        }
        let logits = logits.to_dtype(DType::F32)?;
        Ok(TextOutput { logits, hidden })
    }
}

/// Additive attention mask `[batch, 1, q_len, past + q_len]`: causal within the new tokens, and
/// keys whose `key_mask` is 0 (padding) are never attended. Masked entries get float32's minimum,
/// as transformers does, so a fully masked (padding) row stays finite.
pub fn attention_mask(
    key_mask: &[Vec<u8>],
    q_len: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let b = key_mask.len();
    let t = key_mask.first().map_or(0, Vec::len);
    let past = t - q_len;
    let mut data = Vec::with_capacity(b * q_len * t);
    for row in key_mask {
        for i in 0..q_len {
            for (j, &m) in row.iter().enumerate() {
                let visible = m != 0 && j <= past + i;
                data.push(if visible { 0f32 } else { f32::MIN });
            }
        }
    }
    Tensor::from_vec(data, (b, 1, q_len, t), device)
}
