//! The 4DRL objective on recorded rollouts.
//!
//! The training pass rebuilds each rollout exactly as it was sampled: prompt (with its video
//! features), then the completion, where every `<|latent_pad|>` position takes the hidden state
//! that generation fed there (re-injection, detached). Log-probabilities of the completion's text
//! tokens then equal the sampling-time ones, so the PPO ratio measures the policy change and not
//! a change of context (the reference fed a constant pad embedding instead).
//!
//! Per text token t of a completion with advantage A:
//! `l_t = -min(r_t A, clip(r_t, 1-eps, 1+eps) A) + beta * k3_t`, with `r_t = exp(logp - old)` and
//! `k3_t = exp(ref - logp) - (ref - logp) - 1`. Token-level averaging divides the sum over all
//! masked tokens of the batch by their count; per-sequence averaging takes each completion's mean
//! and then the mean over completions. The mask keeps completion text tokens only: latent start,
//! pads and end, and anything after the first end of turn, never receive policy gradient.

use candle_core::{DType, Tensor, D};
use fourd_model::generation::{LatentTokens, TokenKind};
use fourd_model::mrope::{batch_rope_index, RopeIndexParams, VisionItem};
use fourd_model::processor::VisualPatches;
use fourd_model::text::LogitRows;
use fourd_model::Qwen25VL;

use crate::error::{Result, TrainError};

/// One sampled completion, as the training pass needs it.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The prompt's ids, unpadded, video placeholder expanded.
    pub prompt_ids: Vec<u32>,
    pub video: VisualPatches,
    pub second_per_grid: f64,
    /// Generated ids up to and including the first end-of-turn token.
    pub completion: Vec<u32>,
    pub kinds: Vec<TokenKind>,
    /// Hidden states fed to the latent pads, in order, `[n_pads, hidden]` (`None`: no imagery).
    pub latent_hidden: Option<Tensor>,
    /// Sampling-time log-probabilities (`None` at latent pads and forced ends).
    pub sample_logprobs: Vec<Option<f32>>,
}

impl Rollout {
    /// Which completion positions the objective uses: sampled text tokens.
    pub fn text_mask(&self) -> Vec<bool> {
        self.kinds.iter().map(|k| *k == TokenKind::Text).collect()
    }
}

/// Log-probabilities `[completion_len]` (float32) of the completion tokens under `model`,
/// differentiable when the model's weights are variables. `reinject = false` feeds the
/// `<|latent_pad|>` embedding at latent positions instead (the reference's training pass; used
/// to show the difference).
#[allow(clippy::too_many_arguments)]
pub fn completion_logprobs(
    model: &Qwen25VL,
    params: &RopeIndexParams,
    latent: &LatentTokens,
    r: &Rollout,
    video_feats: &Tensor,
    reinject: bool,
    temperature: f64,
) -> Result<Tensor> {
    let device = &model.device;
    let p = r.prompt_ids.len();
    let c = r.completion.len();
    if c == 0 {
        return Err(TrainError::Config("empty completion".into()));
    }
    let mut ids = r.prompt_ids.clone();
    ids.extend(&r.completion);
    let ids = vec![ids];
    let mask = vec![vec![1u8; p + c]];
    let pads = r.completion.iter().filter(|&&t| t == latent.pad).count();
    let hidden = if reinject && pads > 0 {
        let h = r.latent_hidden.as_ref().ok_or_else(|| {
            TrainError::Config("rollout has latent pads but no hidden states".into())
        })?;
        Some(h.detach())
    } else {
        None
    };
    let embeds = model.embed_with_features(
        &ids,
        &[
            (params.video_pad, Some(video_feats), "video"),
            (
                hidden.as_ref().map(|_| latent.pad),
                hidden.as_ref(),
                "latent",
            ),
        ],
    )?;
    let items = [VisionItem::Video {
        grid_thw: r.video.grid_thw,
        second_per_grid: r.second_per_grid,
    }];
    let positions = batch_rope_index(&ids, &mask, params, &items)?;
    let mut cache = model.new_cache();
    // Position i predicts token i + 1: the completion's tokens come from positions p-1 .. p+c-2,
    // the only ones projected onto the vocabulary.
    let out = model.forward_embeds(
        &embeds,
        &positions.position_ids,
        &mask,
        &mut cache,
        &LogitRows::Span(p - 1..p - 1 + c),
    )?;
    let logits = out.logits.squeeze(0)?.to_dtype(DType::F32)?;
    let logits = if (temperature - 1.0).abs() > 1e-12 {
        (logits / temperature)?
    } else {
        logits
    };
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let v = logp.dim(1)?;
    let flat_index: Vec<u32> = r
        .completion
        .iter()
        .enumerate()
        .map(|(i, &t)| (i * v) as u32 + t)
        .collect();
    Ok(logp
        .flatten_all()?
        .index_select(&Tensor::new(flat_index.as_slice(), device)?, 0)?)
}

#[derive(Clone, Copy, Debug)]
pub struct Objective {
    pub epsilon: f64,
    pub beta: f64,
}

/// Statistics of one completion's term.
#[derive(Clone, Copy, Debug, Default)]
pub struct TermStats {
    pub tokens: usize,
    pub kl_sum: f64,
    /// Tokens where the clipped branch is the active one.
    pub clipped: usize,
    pub ratio_sum: f64,
}

/// `sum_t m_t l_t / normalizer` for one completion. `old` and `reference` are per completion
/// position (only masked positions are read). `reference = None` drops the KL term.
pub fn grpo_term(
    logp: &Tensor,
    old: &[f32],
    reference: Option<&[f32]>,
    mask: &[bool],
    advantage: f64,
    obj: Objective,
    normalizer: f64,
) -> Result<(Tensor, TermStats)> {
    let device = logp.device();
    let keep: Vec<u32> = mask
        .iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .map(|(i, _)| i as u32)
        .collect();
    if keep.is_empty() {
        return Ok((Tensor::zeros((), DType::F32, device)?, TermStats::default()));
    }
    let idx = Tensor::new(keep.as_slice(), device)?;
    let lp = logp.index_select(&idx, 0)?;
    let old_t = Tensor::new(
        keep.iter()
            .map(|&i| old[i as usize])
            .collect::<Vec<f32>>()
            .as_slice(),
        device,
    )?;
    let ratio = (&lp - &old_t)?.exp()?;
    let s1 = (&ratio * advantage)?;
    let s2 = (ratio.clamp((1.0 - obj.epsilon) as f32, (1.0 + obj.epsilon) as f32)? * advantage)?;
    let mut per_token = s1.minimum(&s2)?.neg()?;
    let mut stats = TermStats {
        tokens: keep.len(),
        ..Default::default()
    };
    let ratios: Vec<f32> = ratio.to_vec1()?;
    stats.ratio_sum = ratios.iter().map(|&x| x as f64).sum();
    stats.clipped = ratios
        .iter()
        .filter(|&&x| {
            (advantage > 0.0 && (x as f64) > 1.0 + obj.epsilon)
                || (advantage < 0.0 && (x as f64) < 1.0 - obj.epsilon)
        })
        .count();
    if let (Some(reference), true) = (reference, obj.beta != 0.0) {
        let ref_t = Tensor::new(
            keep.iter()
                .map(|&i| reference[i as usize])
                .collect::<Vec<f32>>()
                .as_slice(),
            device,
        )?;
        let d = (ref_t - &lp)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        stats.kl_sum = k3.sum_all()?.to_scalar::<f32>()? as f64;
        per_token = (per_token + (k3 * obj.beta)?)?;
    }
    Ok(((per_token.sum_all()? / normalizer)?, stats))
}
