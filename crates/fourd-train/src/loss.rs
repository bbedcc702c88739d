//! The DIFT objective: `ce_weight * CE(text) + sim_weight * mean_p(1 - cos(h[p-1], e[p]))`.
//!
//! `e[p]` is the input embedding at latent position `p`: the helper image's vision features,
//! average-pooled to `latent_size` vectors and detached (the vision tower is frozen). `h[p-1]` is
//! the final-norm hidden state one position earlier: the vector generation feeds back as the
//! next input, so the cosine term teaches the model to "imagine" the helper image. Both terms are
//! computed in float32.

use candle_core::{DType, Tensor, D};
use fourd_model::generation::LatentTokens;
use fourd_model::inputs::ModelInputs;
use fourd_model::mrope::batch_rope_index;
use fourd_model::mrope::VisionItem;
use fourd_model::text::LogitRows;
use fourd_model::Qwen25VL;

use crate::dift_data::DiftExample;
use crate::error::{Result, TrainError};

#[derive(Clone, Copy, Debug)]
pub struct LossWeights {
    pub ce: f64,
    pub sim: f64,
    /// Weight of the answer's tokens (after `<answer>`) in the cross-entropy, which becomes a
    /// weighted mean. 1 is the reference's plain mean; more puts the one decisive token (the
    /// option letter) on a par with the long reasoning, which a model trained from scratch needs
    /// to learn to look its conclusion up among the options.
    pub answer: f64,
}

impl Default for LossWeights {
    /// The reference's `--ce_weight 0.1 --sim_weight 1.0`.
    fn default() -> Self {
        LossWeights {
            ce: 0.1,
            sim: 1.0,
            answer: 1.0,
        }
    }
}

/// The differentiable total and its parts.
pub struct DiftLoss {
    pub total: Tensor,
    pub ce: f32,
    pub sim: f32,
    /// Mean cosine similarity over latent positions (1 - sim).
    pub cos: f32,
    pub text_tokens: usize,
    pub latent_tokens: usize,
    /// Teacher-forced argmax hits over the labelled tokens, and over the answer's tokens (those
    /// after the reply's last `<answer>`): `(hits, count)`.
    pub token_hits: (usize, usize),
    pub answer_hits: (usize, usize),
    /// Argmax prediction at every labelled position, for the debug sample.
    pub predicted: Vec<u32>,
    pub targets: Vec<u32>,
}

/// `compress_strategy = "average"`: drop the last `rows % latent_size` rows, split the rest into
/// `latent_size` contiguous groups (horizontal bands, as the merged tokens are in raster order)
/// and average each group. Any other strategy keeps the first `latent_size` rows, as the
/// reference does.
pub fn compress_latent(features: &Tensor, latent_size: usize, strategy: &str) -> Result<Tensor> {
    let (rows, hidden) = features.dims2()?;
    if rows < latent_size {
        return Err(TrainError::Config(format!(
            "a helper image gives {rows} vision tokens, fewer than latent_size {latent_size}; use a larger image"
        )));
    }
    if strategy == "average" {
        let group = rows / latent_size;
        Ok(features
            .narrow(0, 0, group * latent_size)?
            .reshape((latent_size, group, hidden))?
            .mean(1)?)
    } else {
        Ok(features.narrow(0, 0, latent_size)?)
    }
}

/// Forward pass and loss for one example.
pub fn dift_loss(
    model: &Qwen25VL,
    params: &fourd_model::mrope::RopeIndexParams,
    latent: &LatentTokens,
    compress: &str,
    weights: LossWeights,
    ex: &DiftExample,
) -> Result<DiftLoss> {
    let device = &model.device;
    // Vision tower: when frozen its weights are plain tensors and no graph is built; when it
    // trains (from scratch), gradients reach it through the video features. The latent targets
    // are always detached.
    let video_px = ModelInputs::pixel_tensor(std::slice::from_ref(&ex.video), device)?
        .ok_or_else(|| TrainError::Config("example without video".into()))?;
    let video_feats = model.encode_vision(&video_px, &[ex.video.grid_thw])?;
    let latent_feats = if ex.latent_images.is_empty() {
        None
    } else {
        let px = ModelInputs::pixel_tensor(&ex.latent_images, device)?.expect("non-empty");
        let grids: Vec<[usize; 3]> = ex.latent_images.iter().map(|p| p.grid_thw).collect();
        let feats = model.encode_vision(&px, &grids)?;
        let merge = model.config.vision.spatial_merge_size;
        let mut rows = 0;
        let mut parts = Vec::with_capacity(grids.len());
        for p in &ex.latent_images {
            let n = p.llm_tokens(merge);
            parts.push(compress_latent(
                &feats.narrow(0, rows, n)?,
                latent.size,
                compress,
            )?);
            rows += n;
        }
        Some(Tensor::cat(&parts, 0)?.detach())
    };
    let ids = vec![ex.input_ids.clone()];
    let mask = vec![vec![1u8; ex.input_ids.len()]];
    let embeds = model.embed_with_features(
        &ids,
        &[
            (params.video_pad, Some(&video_feats), "video"),
            (Some(latent.pad), latent_feats.as_ref(), "latent"),
        ],
    )?;
    let items = [VisionItem::Video {
        grid_thw: ex.video.grid_thw,
        second_per_grid: ex.second_per_grid,
    }];
    let positions = batch_rope_index(&ids, &mask, params, &items)?;
    // Cross-entropy: position i predicts label i + 1. Only the span of positions that predict a
    // label is projected onto the vocabulary.
    let (pred_rows, targets): (Vec<u32>, Vec<u32>) = ex
        .labels
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, l)| l.map(|t| ((i - 1) as u32, t)))
        .unzip();
    let (Some(&first), Some(&last)) = (pred_rows.first(), pred_rows.last()) else {
        return Err(TrainError::Config(format!(
            "example {} has no target tokens",
            ex.id
        )));
    };
    let mut cache = model.new_cache();
    let span = first as usize..last as usize + 1;
    let out = model.forward_embeds(
        &embeds,
        &positions.position_ids,
        &mask,
        &mut cache,
        &LogitRows::Span(span),
    )?;
    let logits = out.logits.squeeze(0)?.to_dtype(DType::F32)?;
    let in_span: Vec<u32> = pred_rows.iter().map(|r| r - first).collect();
    let picked = logits.index_select(&Tensor::new(in_span.as_slice(), device)?, 0)?;
    let target_t = Tensor::new(targets.as_slice(), device)?;
    let mut ce = candle_nn::loss::cross_entropy(&picked, &target_t)?;
    let plain_ce = ce.to_scalar::<f32>()?;
    if weights.answer != 1.0 && ex.answer_start < ex.labels.len() {
        let w: Vec<f32> = ex
            .labels
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| {
                if i >= ex.answer_start {
                    weights.answer as f32
                } else {
                    1.0
                }
            })
            .collect();
        let w = Tensor::new(w.as_slice(), device)?;
        let nll = candle_nn::ops::log_softmax(&picked, D::Minus1)?
            .gather(&target_t.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()?;
        ce = ((nll * &w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64)?;
    }
    let predicted = picked.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let mut token_hits = (0, targets.len());
    let mut answer_hits = (0, 0);
    for ((&row, &t), &p) in pred_rows.iter().zip(&targets).zip(&predicted) {
        let hit = usize::from(p == t);
        token_hits.0 += hit;
        if row as usize + 1 >= ex.answer_start {
            answer_hits.0 += hit;
            answer_hits.1 += 1;
        }
    }

    // Cosine term over latent positions.
    let latent_pos: Vec<u32> = ex
        .input_ids
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == latent.pad)
        .map(|(i, _)| i as u32)
        .collect();
    let (sim, cos_mean) = match &latent_feats {
        Some(target) if !latent_pos.is_empty() => {
            let prev: Vec<u32> = latent_pos.iter().map(|&p| p - 1).collect();
            let h = out
                .hidden
                .squeeze(0)?
                .to_dtype(DType::F32)?
                .index_select(&Tensor::new(prev.as_slice(), device)?, 0)?;
            let e = target.to_dtype(DType::F32)?;
            let cos = cosine_similarity(&h, &e)?;
            let cos_mean = cos.mean_all()?;
            ((1.0 - &cos_mean)?, cos_mean.to_scalar::<f32>()?)
        }
        _ => (Tensor::zeros((), DType::F32, device)?, 0.0),
    };
    let total = ((&ce * weights.ce)? + (&sim * weights.sim)?)?;
    Ok(DiftLoss {
        ce: plain_ce,
        sim: sim.to_scalar::<f32>()?,
        cos: cos_mean,
        total,
        text_tokens: targets.len(),
        latent_tokens: latent_pos.len(),
        token_hits,
        answer_hits,
        predicted,
        targets,
    })
}

/// Row-wise cosine similarity as `torch.nn.functional.cosine_similarity` (eps 1e-8 on each norm).
pub fn cosine_similarity(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(D::Minus1)?;
    let na = a.sqr()?.sum(D::Minus1)?.sqrt()?.clamp(1e-8f32, f32::MAX)?;
    let nb = b.sqr()?.sum(D::Minus1)?.sqrt()?.clamp(1e-8f32, f32::MAX)?;
    Ok(dot.div(&(na * nb)?)?)
}
