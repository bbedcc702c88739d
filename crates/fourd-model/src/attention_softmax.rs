//! The attention's softmax, `softmax(scores * scale + mask)`, as one pass on the CPU.
//!
//! Composed from candle's ops it costs three passes over the scores forward (scale, mask, softmax)
//! and, in training, a zero-fill plus an add per op backward. Its `exp` is glibc's, one scalar
//! call per score, and every masked entry (the upper triangle under a causal mask: half the
//! scores) went through `exp` of about `f32::MIN`, glibc's slow underflow path: `exp` was 16% of
//! a prefill on the CPU (docs/performance.md). Here the scale, the mask and the softmax are one
//! pass with a vectorised `exp` ([`exp_f32_nonpositive`], within one unit in the last place), and
//! the backward is one pass too. Results agree with the composed ops to 1e-6 and masked entries
//! are exactly 0, as before (`tests/grad_ops.rs`).
//!
//! Other devices and dtypes (bf16 on a GPU) run the composed ops: their kernels are fused
//! already or the data is on the device.

use candle_core::cpu::kernels::VecOps;
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

/// `exp` of a softmax's exponents (`x - max <= 0`).
trait Exponent: VecOps + num_traits::Float + candle_core::WithDType {
    fn exp_nonpositive(x: Self) -> Self;
}
impl Exponent for f32 {
    fn exp_nonpositive(x: f32) -> f32 {
        exp_f32_nonpositive(x)
    }
}
impl Exponent for f64 {
    /// Float64 runs only in the finite-difference tests: the standard library's.
    fn exp_nonpositive(x: f64) -> f64 {
        x.exp()
    }
}

/// `exp(x)` for `x <= 0` in float32, without branches so that the compiler vectorises the loop
/// that calls it, to within one unit in the last place of the exact value (`tests` below).
///
/// Why not `f32::exp`: glibc's `expf` is one scalar call per score, and the masked scores (about
/// `f32::MIN`) go through its slow underflow path. That was 16% of a prefill on the CPU. The
/// compiler turns any branch around `exp` into a select and calls it anyway, since it counts
/// `exp` as free of side effects. PyTorch's CPU softmax likewise uses a vectorised `exp`
/// (Sleef's), not libm's.
///
/// Method (Cody and Waite's reduction, as in Cephes' `expf`): `x = n ln2 + r` with `n` the nearest
/// integer to `x / ln2`, so `|r| <= ln2 / 2`; `exp(r)` by a degree-7 polynomial; `2^n` by building
/// the float's exponent bits. Below `ln(f32::MIN_POSITIVE)` the result is 0, where `expf` would
/// return a subnormal (below 1.2e-38, nothing beside a softmax's maximum term, which is 1).
/// NaN stays NaN.
#[inline(always)]
fn exp_f32_nonpositive(x: f32) -> f32 {
    const LN_MIN_POSITIVE: f32 = -87.336_55;
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for the |n| <= 126 used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // Cephes' minimax coefficients for exp(r) = 1 + r + r^2 P(r) on [-ln2/2, ln2/2].
    const P: [f32; 6] = [
        1.987_569_2e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let under = x < LN_MIN_POSITIVE;
    let xc = if under { LN_MIN_POSITIVE } else { x };
    let shifted = xc * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = P.iter().fold(0.0f32, |acc, &c| acc * r + c);
    let exp_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    if under {
        0.0
    } else {
        exp_r * two_n
    }
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

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("attention_softmax: input must be contiguous"),
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
            (CpuStorage::F32(x), None) => {
                CpuStorage::F32(forward_rows(contiguous(x, lx)?, None, rows, self.scale))
            }
            (CpuStorage::F32(x), Some((CpuStorage::F32(m), lm))) => CpuStorage::F32(forward_rows(
                contiguous(x, lx)?,
                Some(contiguous(m, lm)?),
                rows,
                self.scale,
            )),
            (CpuStorage::F64(x), None) => {
                CpuStorage::F64(forward_rows(contiguous(x, lx)?, None, rows, self.scale))
            }
            (CpuStorage::F64(x), Some((CpuStorage::F64(m), lm))) => CpuStorage::F64(forward_rows(
                contiguous(x, lx)?,
                Some(contiguous(m, lm)?),
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
                contiguous(g, lg)?,
                contiguous(y, ly)?,
                t,
                self.scale,
            )),
            (CpuStorage::F64(g), CpuStorage::F64(y)) => CpuStorage::F64(backward_rows(
                contiguous(g, lg)?,
                contiguous(y, ly)?,
                t,
                self.scale,
            )),
            _ => candle_core::bail!("attention_softmax backward: float32 or float64"),
        };
        Ok((storage, lg.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32_nonpositive;

    /// Within one unit in the last place of the exact value over the whole range where float32's
    /// `exp` is normal, exactly 0 below it and at `f32::MIN` (a masked score), 1 at 0.
    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x <= 0.0 {
            let ours = exp_f32_nonpositive(x) as f64;
            let exact = (x as f64).exp();
            let ulp = (exact as f32).next_up() as f64 - exact as f32 as f64;
            worst = worst.max((ours - exact).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst <= 1.0, "worst error {worst} ulp");
        assert_eq!(exp_f32_nonpositive(0.0), 1.0);
        assert_eq!(exp_f32_nonpositive(-88.0), 0.0);
        assert_eq!(exp_f32_nonpositive(f32::MIN), 0.0);
        assert_eq!(exp_f32_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32_nonpositive(f32::NAN).is_nan());
    }
}
