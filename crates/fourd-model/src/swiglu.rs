//! The gated MLP's `silu(gate) * up` as one pass on the CPU, forward and backward.
//!
//! From candle's ops it is a `silu` (glibc's scalar `exp` per element) and a multiply forward,
//! and backward the multiply's two products plus `silu`'s composed derivative (a negation, an
//! `exp`, an add, a reciprocal and three more products), each a pass over the `[tokens,
//! intermediate]` activations with its own buffer. Here: one pass each way with a vectorised
//! `exp` ([`crate::cpu_math`]). Values agree with the composed ops to float32 rounding
//! (`tests/grad_ops.rs`). Other devices and dtypes run the composed ops.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_math::{contiguous_slice, Exponent};

/// `silu(gate) * up`, elementwise; gradients flow to both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let fused = gate.device().is_cpu()
        && matches!(gate.dtype(), DType::F32 | DType::F64)
        && up.dtype() == gate.dtype()
        && up.dims() == gate.dims();
    if !fused {
        return candle_nn::ops::silu(gate)? * up;
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// Elements per parallel task: enough to amortise the dispatch.
const CHUNK: usize = 16 * 1024;

/// `sigmoid(g)` through `exp(-|g|)`, which never overflows.
#[inline(always)]
fn sigmoid<T: Exponent>(g: T) -> T {
    let e = T::exp_nonpositive(-g.abs());
    let one = T::one();
    if g >= T::zero() {
        one / (one + e)
    } else {
        e / (one + e)
    }
}

struct SwiGlu;

fn forward<T: Exponent>(gate: &[T], up: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); gate.len()];
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(o, (g, u))| {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(g) * u;
            }
        });
    out
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let storage = match (g, u) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => CpuStorage::F32(forward(
                contiguous_slice(g, lg, "swiglu")?,
                contiguous_slice(u, lu, "swiglu")?,
            )),
            (CpuStorage::F64(g), CpuStorage::F64(u)) => CpuStorage::F64(forward(
                contiguous_slice(g, lg, "swiglu")?,
                contiguous_slice(u, lu, "swiglu")?,
            )),
            _ => candle_core::bail!("swiglu: float32 or float64 inputs of one dtype"),
        };
        Ok((storage, lg.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both =
            grad.contiguous()?
                .apply_op3_no_bwd(&gate.detach(), &up.detach(), &SwiGluBackward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// Arguments the output's gradient `d`, `gate` and `up`; result `[2, ...]`: `d gate` then `d up`.
/// With `s = sigmoid(g)`: `d up = d * g * s`, `d gate = d * u * s * (1 + g * (1 - s))`.
struct SwiGluBackward;

fn backward<T: Exponent>(d: &[T], gate: &[T], up: &[T]) -> Vec<T> {
    let n = d.len();
    let mut out = vec![T::zero(); 2 * n];
    let (dg, du) = out.split_at_mut(n);
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(d.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(((dg, du), d), (g, u))| {
            for i in 0..d.len() {
                let s = sigmoid(g[i]);
                du[i] = d[i] * g[i] * s;
                dg[i] = d[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
    out
}

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        d: &CpuStorage,
        ld: &Layout,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let storage = match (d, g, u) {
            (CpuStorage::F32(d), CpuStorage::F32(g), CpuStorage::F32(u)) => {
                CpuStorage::F32(backward(
                    contiguous_slice(d, ld, "swiglu")?,
                    contiguous_slice(g, lg, "swiglu")?,
                    contiguous_slice(u, lu, "swiglu")?,
                ))
            }
            (CpuStorage::F64(d), CpuStorage::F64(g), CpuStorage::F64(u)) => {
                CpuStorage::F64(backward(
                    contiguous_slice(d, ld, "swiglu")?,
                    contiguous_slice(g, lg, "swiglu")?,
                    contiguous_slice(u, lu, "swiglu")?,
                ))
            }
            _ => candle_core::bail!("swiglu backward: float32 or float64 inputs of one dtype"),
        };
        let mut dims = vec![2];
        dims.extend_from_slice(ld.dims());
        Ok((storage, Shape::from_dims(&dims)))
    }
}
