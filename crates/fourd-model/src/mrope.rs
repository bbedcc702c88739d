//! Multimodal rotary positions (M-RoPE): `get_rope_index` gives every token a (time, height, width)
//! position; `MRope` turns positions into the per-dimension cos/sin tables the attention rotates by.

use candle_core::{Device, Tensor};

use crate::config::RopeIndexStyle;
use crate::error::{ModelError, Result};

/// What a vision placeholder run stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VisionItem {
    Image {
        grid_thw: [usize; 3],
    },
    /// `second_per_grid`: seconds covered by one temporal patch (temporal_patch_size / fps).
    Video {
        grid_thw: [usize; 3],
        second_per_grid: f64,
    },
}

/// Ids that mark vision placeholders, and how grids map to LLM tokens.
#[derive(Clone, Copy, Debug)]
pub struct RopeIndexParams {
    pub image_pad: Option<u32>,
    pub video_pad: Option<u32>,
    pub spatial_merge_size: usize,
    pub tokens_per_second: f64,
    pub style: RopeIndexStyle,
}

/// Positions of one (unpadded) sequence and the next free position.
#[derive(Clone, Debug)]
pub struct SequencePositions {
    /// `[t, h, w]` per token.
    pub positions: Vec<[i64; 3]>,
    /// `max(positions) + 1`: where generation continues, on all three axes.
    pub next_position: i64,
}

/// `get_rope_index` for one sequence without padding. Vision items are consumed in order from
/// `images` and `videos` as their placeholder runs appear.
pub fn rope_index(
    ids: &[u32],
    params: &RopeIndexParams,
    images: &mut dyn Iterator<Item = [usize; 3]>,
    videos: &mut dyn Iterator<Item = ([usize; 3], f64)>,
) -> Result<SequencePositions> {
    let m = params.spatial_merge_size;
    let mut positions = Vec::with_capacity(ids.len());
    let mut next: i64 = 0; // first position of the next text token
    let mut i = 0;
    while i < ids.len() {
        let tok = ids[i];
        let kind = if Some(tok) == params.image_pad {
            Some(false)
        } else if Some(tok) == params.video_pad {
            Some(true)
        } else {
            None
        };
        let Some(is_video) = kind else {
            positions.push([next; 3]);
            next += 1;
            i += 1;
            continue;
        };
        let (grid, time_interval) = if is_video {
            let (g, s) = videos.next().ok_or_else(|| {
                ModelError::input(format!(
                    "video placeholder at token {i} has no video to go with it"
                ))
            })?;
            // transformers computes the time index in float32: tau * s * tokens_per_second.
            (g, Some((s as f32, params.tokens_per_second as f32)))
        } else {
            let g = images.next().ok_or_else(|| {
                ModelError::input(format!(
                    "image placeholder at token {i} has no image to go with it"
                ))
            })?;
            (g, None)
        };
        let (t, h, w) = (grid[0], grid[1] / m, grid[2] / m);
        let n = t * h * w;
        let run = ids[i..].iter().take_while(|&&x| x == tok).count();
        if run < n {
            return Err(ModelError::input(format!(
                "{} placeholder run at token {i} has {run} tokens but its grid {grid:?} needs {n}",
                if is_video { "video" } else { "image" }
            )));
        }
        let base = next;
        let mut max_t = 0i64;
        for tau in 0..t {
            let pt = match (time_interval, params.style) {
                (Some((s, tps)), RopeIndexStyle::V4_50) => ((tau as f32 * s) * tps) as i64,
                (Some((s, tps)), RopeIndexStyle::V5) => (tau as f32 * (tps * s)) as i64,
                // Images: 4.50 scales time by 0, 5.x by 1; an image has one temporal patch anyway.
                (None, RopeIndexStyle::V4_50) => 0,
                (None, RopeIndexStyle::V5) => tau as i64,
            };
            max_t = max_t.max(pt);
            for r in 0..h {
                for c in 0..w {
                    positions.push([base + pt, base + r as i64, base + c as i64]);
                }
            }
        }
        next = match params.style {
            // Text resumes after the largest position used so far.
            RopeIndexStyle::V4_50 => base + max_t.max(h as i64 - 1).max(w as i64 - 1) + 1,
            // transformers 5.x: after the spatial extent only.
            RopeIndexStyle::V5 => base + h.max(w) as i64,
        };
        i += n;
    }
    let next_position = match params.style {
        RopeIndexStyle::V4_50 => positions
            .iter()
            .flat_map(|p| p.iter().copied())
            .max()
            .map_or(0, |x| x + 1),
        RopeIndexStyle::V5 => positions
            .iter()
            .flat_map(|p| p.iter().copied())
            .max()
            .map_or(0, |x| x + 1),
    };
    Ok(SequencePositions {
        positions,
        next_position,
    })
}

/// Positions for a left- or right-padded batch.
#[derive(Clone, Debug)]
pub struct BatchPositions {
    /// `[3][batch][seq]`.
    pub position_ids: Vec<Vec<Vec<i64>>>,
    /// Next free position of each row.
    pub next_position: Vec<i64>,
    /// `rope_deltas` as the chosen transformers version reports them (4.50: against the padded
    /// length; 5.x: against the unpadded length). Only for parity checks: decoding uses
    /// `next_position`, on which both agree.
    pub rope_deltas: Vec<i64>,
}

/// `get_rope_index` over a batch. `mask[b][s]` is 1 for real tokens. Vision items are numbered
/// across the whole batch in row order, as transformers does.
pub fn batch_rope_index(
    ids: &[Vec<u32>],
    mask: &[Vec<u8>],
    params: &RopeIndexParams,
    items: &[VisionItem],
) -> Result<BatchPositions> {
    let mut images = items.iter().filter_map(|it| match it {
        VisionItem::Image { grid_thw } => Some(*grid_thw),
        _ => None,
    });
    let mut videos = items.iter().filter_map(|it| match it {
        VisionItem::Video {
            grid_thw,
            second_per_grid,
        } => Some((*grid_thw, *second_per_grid)),
        _ => None,
    });
    let b = ids.len();
    let s = ids.first().map_or(0, Vec::len);
    let fill = match params.style {
        RopeIndexStyle::V4_50 => 1,
        RopeIndexStyle::V5 => 0,
    };
    let mut position_ids = vec![vec![vec![fill; s]; b]; 3];
    let mut next_position = Vec::with_capacity(b);
    let mut rope_deltas = Vec::with_capacity(b);
    for (row, (row_ids, row_mask)) in ids.iter().zip(mask).enumerate() {
        let kept: Vec<u32> = row_ids
            .iter()
            .zip(row_mask)
            .filter(|(_, &m)| m != 0)
            .map(|(&t, _)| t)
            .collect();
        let sp = rope_index(&kept, params, &mut images, &mut videos)?;
        let mut k = 0;
        for (j, &m) in row_mask.iter().enumerate() {
            if m != 0 {
                for (axis, &p) in sp.positions[k].iter().enumerate() {
                    position_ids[axis][row][j] = p;
                }
                k += 1;
            }
        }
        let len = match params.style {
            RopeIndexStyle::V4_50 => s,
            RopeIndexStyle::V5 => kept.len(),
        } as i64;
        rope_deltas.push(sp.next_position - len);
        next_position.push(sp.next_position);
    }
    Ok(BatchPositions {
        position_ids,
        next_position,
        rope_deltas,
    })
}

/// Rotary frequencies `1 / theta^(2k/dim)`, in float32 as transformers computes them.
pub fn inv_freq(dim: usize, theta: f64) -> Vec<f32> {
    (0..dim / 2)
        .map(|k| 1.0f32 / (theta as f32).powf((2 * k) as f32 / dim as f32))
        .collect()
}

/// M-RoPE tables. For rotary dim k < head_dim/2 the position axis is chosen by `mrope_section`
/// (time for the first section, then height, then width); rotate-half pairs k with k + head_dim/2.
#[derive(Clone, Debug)]
pub struct MRope {
    inv_freq: Vec<f32>,
    /// Axis (0 = time, 1 = height, 2 = width) of each of the head_dim/2 frequencies.
    axis_of: Vec<usize>,
}

impl MRope {
    pub fn new(head_dim: usize, theta: f64, mrope_section: &[usize]) -> Self {
        let mut axis_of = Vec::with_capacity(head_dim / 2);
        for (axis, &n) in mrope_section.iter().enumerate() {
            axis_of.extend(std::iter::repeat_n(axis % 3, n));
        }
        MRope {
            inv_freq: inv_freq(head_dim, theta),
            axis_of,
        }
    }

    /// cos and sin of shape `[batch, seq, head_dim/2]` for positions `[3][batch][seq]`.
    pub fn cos_sin(
        &self,
        position_ids: &[Vec<Vec<i64>>],
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let b = position_ids[0].len();
        let s = position_ids[0].first().map_or(0, Vec::len);
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(b * s * half);
        let mut sin = Vec::with_capacity(b * s * half);
        // Row, position and frequency index three different arrays: indices read clearer here.
        #[allow(clippy::needless_range_loop)]
        for row in 0..b {
            for j in 0..s {
                for k in 0..half {
                    let p = position_ids[self.axis_of[k]][row][j] as f32;
                    let angle = p * self.inv_freq[k];
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (b, s, half), device)?,
            Tensor::from_vec(sin, (b, s, half), device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(style: RopeIndexStyle) -> RopeIndexParams {
        RopeIndexParams {
            image_pad: Some(1),
            video_pad: Some(2),
            spatial_merge_size: 2,
            tokens_per_second: 2.0,
            style,
        }
    }

    /// The worked example of the specification: 15 text tokens, a (2,4,6) video at 2 s per grid,
    /// then 5 text tokens.
    #[test]
    fn worked_example_of_the_spec() {
        let mut ids = vec![0u32; 15];
        ids.extend(std::iter::repeat_n(2, 12));
        ids.extend(std::iter::repeat_n(0, 5));
        let sp = rope_index(
            &ids,
            &params(RopeIndexStyle::V4_50),
            &mut std::iter::empty(),
            &mut std::iter::once(([2, 4, 6], 2.0)),
        )
        .unwrap();
        assert_eq!(sp.positions[15], [15, 15, 15]);
        assert_eq!(sp.positions[15 + 6], [19, 15, 15]);
        assert_eq!(sp.positions[15 + 11], [19, 16, 17]);
        assert_eq!(sp.positions[27], [20, 20, 20]);
        assert_eq!(sp.next_position, 25);
    }

    #[test]
    fn short_placeholder_run_is_an_error() {
        let ids = vec![0, 1, 1, 0];
        let e = rope_index(
            &ids,
            &params(RopeIndexStyle::V4_50),
            &mut std::iter::once([1, 4, 4]),
            &mut std::iter::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs 4"), "{e}");
    }
}
