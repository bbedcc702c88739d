//! The attention's softmax, `softmax(scores * scale + mask)`, as one pass on the CPU.
//!
//! Composed from candle's ops it costs three passes over the scores forward (scale, mask, softmax)
//! and, in training, a zero-fill plus an add per op backward. Its `exp` is glibc's, one scalar
//! call per score, and every masked entry (the upper triangle under a causal mask: half the
//! scores) went through `exp` of about `f32::MIN`, glibc's slow underflow path: `exp` was 13% of
//! a prefill on the CPU (docs/performance.md). Here the scale, the mask and the softmax are one
//! pass with a vectorised `exp` (`cpu_math`, within one unit in the last place), and
//! the backward is one pass too. Results agree with the composed ops to 1e-6 and masked entries
//! are exactly 0, as before (`tests/grad_ops.rs`).
//!
//! Other devices and dtypes (bf16 on a GPU) run the composed ops: their kernels are fused
//! already or the data is on the device.

use crate::cpu_math::{contiguous_slice, Exponent};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(scores * scale + mask)` over the last dimension, in float32 (the scores are cast to it
/// after scaling, as transformers does).
///
/// `scores`: `[..., t]`; with a mask, `[b, n, q, t]` and the mask additive float32 `[b, 1, s, t]`
/// with `q` a multiple of `s`: grouped-query heads folded into the query length, so row `i` of a
/// head takes mask row `i % s`. Gradient flows to `scores`.
pub fn attention_softmax(scores: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let fused = scores.device().is_cpu()
        && matches!(scores.dtype(), DType::F32 | DType::F64)
        && mask.is_none_or(|m| m.dtype() == scores.dtype());
    if !fused {
        return composed(scores, mask, scale);
    }
    let op = AttentionSoftmax { scale };
    let scores = scores.contiguous()?;
    match mask {
        Some(m) => {
            check_mask(&scores, m)?;
            scores.apply_op2(&m.contiguous()?, op)
        }
        None => scores.apply_op1(op),
    }
}

/// The same arithmetic as separate candle ops.
fn composed(scores: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let scores = (scores * scale)?.to_dtype(DType::F32)?;
    let scores = match mask {
        Some(m) => {
            let (b, n, q, t) = scores.dims4()?;
            let s = m.dim(2)?;
            scores
                .reshape((b, n, q / s, s, t))?
                .broadcast_add(&m.unsqueeze(2)?)?
                .reshape((b, n, q, t))?
        }
        None => scores,
    };
    crate::grad_ops::softmax_last_dim(&scores)
}

fn check_mask(scores: &Tensor, mask: &Tensor) -> Result<()> {
    let (b, _, q, t) = scores.dims4()?;
    let (mb, one, s, mt) = mask.dims4()?;
    if mb != b || one != 1 || mt != t || s == 0 || q % s != 0 {
        candle_core::bail!(
            "attention_softmax: mask {:?} does not fit scores {:?}",
            mask.dims(),
            scores.dims()
        );
    }
    Ok(())
}

struct AttentionSoftmax {
    scale: f64,
}

/// Row geometry: `rows` rows of `t` scores; a head has `q` rows; a batch item `heads * q` rows and
/// `s` mask rows.
#[derive(Clone, Copy)]
struct Rows {
    t: usize,
    q: usize,
    heads: usize,
    s: usize,
}

impl Rows {
    /// Rows of `scores`; with a mask of `s` rows, `scores` must be `[b, n, q, t]`.
    fn of(l: &Layout, s: Option<usize>) -> Result<Self> {
        let dims = l.dims();
        let t = dims.last().copied().unwrap_or(1).max(1);
        match (dims, s) {
            (&[_, heads, q, _], Some(s)) => Ok(Rows { t, q, heads, s }),
            (_, Some(_)) => candle_core::bail!(
                "attention_softmax: masked scores must be [b, n, q, t], got {dims:?}"
            ),
            (_, None) => {
                let q = l.shape().elem_count() / t;
                Ok(Rows {
                    t,
                    q,
                    heads: 1,
                    s: q,
                })
            }
        }
    }
    /// Where row `r`'s mask row starts in the mask.
    fn mask_offset(&self, r: usize) -> usize {
        let batch = r / (self.heads * self.q);
        (batch * self.s + (r % self.q) % self.s) * self.t
    }
}

fn forward_rows<T: Exponent>(scores: &[T], mask: Option<&[T]>, rows: Rows, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale);
    let mut out = vec![T::zero(); scores.len()];
    out.par_chunks_mut(rows.t)
        .zip(scores.par_chunks(rows.t))
        .enumerate()
        .for_each(|(r, (y, x))| {
            // As `(x * scale)` then `+ mask` (two roundings, no fused multiply-add).
            match mask {
                Some(m) => {
                    let m = &m[rows.mask_offset(r)..][..rows.t];
                    for ((y, &x), &m) in y.iter_mut().zip(x).zip(m) {
                        *y = x * scale + m;
                    }
                }
                None => y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * scale),
            }
            let mut max = T::zero();
            unsafe { T::vec_reduce_max(y.as_ptr(), &mut max, rows.t) };
            y.iter_mut().for_each(|v| *v = T::exp_nonpositive(*v - max));
            let mut sum = T::zero();
            unsafe { T::vec_reduce_sum(y.as_ptr(), &mut sum, rows.t) };
            y.iter_mut().for_each(|v| *v /= sum);
        });
    out
}

impl AttentionSoftmax {
    fn run(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        mask: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let rows = Rows::of(lx, mask.map(|(_, l)| l.dims()[2]))?;
        let storage = match (x, mask) {
            (CpuStorage::F32(x), None) => CpuStorage::F32(forward_rows(
                contiguous_slice(x, lx, "attention_softmax")?,
                None,
                rows,
                self.scale,
            )),
            (CpuStorage::F32(x), Some((CpuStorage::F32(m), lm))) => CpuStorage::F32(forward_rows(
                contiguous_slice(x, lx, "attention_softmax")?,
                Some(contiguous_slice(m, lm, "attention_softmax")?),
                rows,
                self.scale,
            )),
            (CpuStorage::F64(x), None) => CpuStorage::F64(forward_rows(
                contiguous_slice(x, lx, "attention_softmax")?,
                None,
                rows,
                self.scale,
            )),
            (CpuStorage::F64(x), Some((CpuStorage::F64(m), lm))) => CpuStorage::F64(forward_rows(
                contiguous_slice(x, lx, "attention_softmax")?,
                Some(contiguous_slice(m, lm, "attention_softmax")?),
                rows,
                self.scale,
            )),
            _ => candle_core::bail!("attention_softmax: float32 or float64 scores and mask"),
        };
        Ok((storage, lx.shape().clone()))
    }

    /// `d scores = scale * y * (g - sum(g * y))`, one pass per row.
    fn backward(&self, res: &Tensor, grad: &Tensor) -> Result<Tensor> {
        grad.contiguous()?
            .apply_op2_no_bwd(&res.contiguous()?, &SoftmaxBackward { scale: self.scale })
    }
}

impl CustomOp1 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "attention-softmax"
    }
    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(x, lx, None)
    }
    fn bwd(&self, _: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(res, grad)?))
    }
}

impl CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "attention-softmax"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        m: &CpuStorage,
        lm: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(x, lx, Some((m, lm)))
    }
    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The mask is a constant: no gradient.
        Ok((Some(self.backward(res, grad)?), None))
    }
}

/// The softmax's backward: arguments the output's gradient and the output.
struct SoftmaxBackward {
    scale: f64,
}

fn backward_rows<T: Exponent>(g: &[T], y: &[T], t: usize, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale);
    let mut out = vec![T::zero(); g.len()];
    out.par_chunks_mut(t)
        .zip(g.par_chunks(t).zip(y.par_chunks(t)))
        .for_each(|(d, (g, y))| {
            let dot = g.iter().zip(y).fold(T::zero(), |a, (&g, &y)| a + g * y);
            for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                *d = (g * y - y * dot) * scale;
            }
        });
    out
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "attention-softmax-backward"
    }
    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        y: &CpuStorage,
        ly: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let t = lg.dims().last().copied().unwrap_or(1).max(1);
        let storage = match (g, y) {
            (CpuStorage::F32(g), CpuStorage::F32(y)) => CpuStorage::F32(backward_rows(
                contiguous_slice(g, lg, "attention_softmax")?,
                contiguous_slice(y, ly, "attention_softmax")?,
                t,
                self.scale,
            )),
            (CpuStorage::F64(g), CpuStorage::F64(y)) => CpuStorage::F64(backward_rows(
                contiguous_slice(g, lg, "attention_softmax")?,
                contiguous_slice(y, ly, "attention_softmax")?,
                t,
                self.scale,
            )),
            _ => candle_core::bail!("attention_softmax backward: float32 or float64"),
        };
        Ok((storage, lg.shape().clone()))
    }
}
