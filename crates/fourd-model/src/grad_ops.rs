//! Differentiable versions of candle's fused kernels.
//!
//! candle's fast `rope`, `rms_norm` and `softmax_last_dim` have no backward pass, so training
//! through them fails. Each function here runs the same fused kernel forward and, only when an
//! input takes part in autograd, attaches an analytic backward through a small custom op
//! ([`AttachGrad`]) whose forward copies the fused result and whose backward is written in tensor
//! ops. Inference therefore pays nothing; training gets fused-kernel forwards. The backward
//! formulas are checked against finite differences in `tests/grad_ops.rs`.

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D,
};

/// Rotary embedding (`candle_nn::rotary_emb::rope` layout: `x` `[b, h, s, d]`, `cos`/`sin`
/// `[s, d/2]` or `[b, s, d/2]`, rotate-half convention). Gradient flows to `x` only.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let y = candle_nn::rotary_emb::rope(x, cos, sin)?;
    if !x.track_op() {
        return Ok(y);
    }
    x.apply_op2_arc(
        &y.detach(),
        std::sync::Arc::new(Box::new(AttachGrad(Backward::Rope {
            cos: cos.clone(),
            sin: sin.clone(),
        }))),
    )
}

/// RMSNorm `x / sqrt(mean(x^2) + eps) * w` over the last dimension (fused forward for
/// contiguous input). Gradients flow to `x` and `w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let y = if x.dtype() == candle_core::DType::F64 {
        // The fused kernel has no f64 variant (used by the finite-difference tests).
        let (xd, wd) = (x.detach(), w.detach());
        let r = (xd.sqr()?.mean_keepdim(D::Minus1)? + eps as f64)?
            .sqrt()?
            .recip()?;
        xd.broadcast_mul(&r)?.broadcast_mul(&wd)?
    } else {
        candle_nn::ops::rms_norm(x, w, eps)?
    };
    if !x.track_op() && !w.track_op() {
        return Ok(y);
    }
    // The weight's gradient is computed in the backward of a second attachment so that one op
    // keeps the two-argument shape: y = attach(x -> dx) then attach(w -> dw) on the same value.
    let with_x = x.apply_op2_arc(
        &y.detach(),
        std::sync::Arc::new(Box::new(AttachGrad(Backward::RmsNormInput {
            w: w.detach(),
            eps: eps as f64,
        }))),
    )?;
    if !w.track_op() {
        return Ok(with_x);
    }
    let w_grad = w.apply_op2_arc(
        &Tensor::zeros_like(&y)?,
        std::sync::Arc::new(Box::new(AttachGrad(Backward::RmsNormWeight {
            x: x.detach(),
            eps: eps as f64,
        }))),
    )?;
    // `w_grad` is numerically zero; adding it routes d(loss)/dy into the weight's backward.
    with_x + w_grad
}

/// Softmax over the last dimension. Gradient flows to `x`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let y = candle_nn::ops::softmax_last_dim(x)?;
    if !x.track_op() {
        return Ok(y);
    }
    x.apply_op2_arc(
        &y.detach(),
        std::sync::Arc::new(Box::new(AttachGrad(Backward::Softmax))),
    )
}

/// `x Wᵀ + b` under autograd.
///
/// candle's `Linear` builds a reshape, a transpose and a matmul node per call, and its backward
/// fills and adds a zero gradient for each: two activation-sized and two weight-sized passes, one
/// of the latter strided, per layer and step, beside the two matmuls. On the CPU this is one op:
/// forward one matmul on the weight's transposed view; backward `dx = g W` and, only for a weight
/// under autograd, `dW = gᵀ x`. A frozen weight (LoRA's base) forms no gradient at all: candle's
/// matmul backward would form it whether or not anything needs it, a weight-sized matmul and
/// buffer per layer and step for nothing. The bias, when there is one, is added as before.
///
/// Without autograd (inference) this is `Linear::forward`. On other devices a frozen weight
/// still forms no gradient; a trained one runs candle's ops.
pub fn linear(x: &Tensor, layer: &candle_nn::Linear) -> Result<Tensor> {
    use candle_core::Module;
    let w = layer.weight();
    if !x.track_op() && !w.track_op() {
        return layer.forward(x);
    }
    if !x.device().is_cpu() {
        if w.track_op() {
            return layer.forward(x);
        }
        let y = layer.forward(&x.detach())?;
        return x.apply_op2_arc(
            &y.detach(),
            std::sync::Arc::new(Box::new(AttachGrad(Backward::FrozenLinear {
                w: w.detach(),
            }))),
        );
    }
    let y = x
        .contiguous()?
        .apply_op2_arc(w, std::sync::Arc::new(Box::new(LinearNoBias)))?;
    match layer.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x Wᵀ` (CPU): arguments `x` `[..., k]` (contiguous) and `W` `[n, k]`.
struct LinearNoBias;

impl CustomOp2 for LinearNoBias {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[n, k], Some(&xk)) = (lw.dims(), lx.dims().last()) else {
            candle_core::bail!("linear: weight {:?}, input {:?}", lw.dims(), lx.dims())
        };
        if xk != k || !lx.is_contiguous() {
            candle_core::bail!("linear: input {:?} against weight [{n}, {k}]", lx.dims());
        }
        let m = lx.shape().elem_count() / k;
        let rows = Layout::contiguous_with_offset((m, k), lx.start_offset());
        let y = x.matmul(w, (1, m, n, k), &rows, &lw.transpose(0, 1)?)?;
        let mut dims = lx.dims().to_vec();
        *dims.last_mut().expect("input has a last dimension") = n;
        Ok((y, Shape::from_dims(&dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let g = grad.contiguous()?.reshape(((), n))?;
        let dx = match x.track_op() {
            true => Some(g.matmul(&w.detach())?.reshape(x.dims())?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(g.t()?.matmul(&x.detach().reshape(((), k))?)?),
            false => None,
        };
        Ok((dx, dw))
    }
}

enum Backward {
    Rope { cos: Tensor, sin: Tensor },
    FrozenLinear { w: Tensor },
    RmsNormInput { w: Tensor, eps: f64 },
    RmsNormWeight { x: Tensor, eps: f64 },
    Softmax,
}

/// `attach(a, v)` returns `v` unchanged; its backward maps d(loss)/d(result) to d(loss)/d(a)
/// with the formula of the fused op that produced `v` from `a`.
struct AttachGrad(Backward);

fn copy_value(l: &Layout, shape: &Shape) -> Result<()> {
    if !l.is_contiguous() || l.start_offset() != 0 || l.shape() != shape {
        candle_core::bail!("attach-grad: the fused result must be a fresh contiguous tensor");
    }
    Ok(())
}

impl CustomOp2 for AttachGrad {
    fn name(&self) -> &'static str {
        "attach-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        value: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_value(lv, lv.shape())?;
        Ok((value.try_clone(lv)?, lv.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        value: &candle_core::CudaStorage,
        lv: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_value(lv, lv.shape())?;
        Ok((value.try_clone(lv)?, lv.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _value: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        // Half-precision gradients are formed in f32, as the forward normalises in f32.
        let cd = if arg.dtype() == candle_core::DType::F64 {
            candle_core::DType::F64
        } else {
            candle_core::DType::F32
        };
        let d = match &self.0 {
            // A rotation by theta per pair; its transpose rotates by -theta.
            Backward::Rope { cos, sin } => candle_nn::rotary_emb::rope(&g, cos, &sin.neg()?)?,
            Backward::FrozenLinear { w } => g.broadcast_matmul(w)?,
            Backward::Softmax => {
                let gy = (&g * res)?;
                (gy.clone() - res.broadcast_mul(&gy.sum_keepdim(D::Minus1)?)?)?
            }
            Backward::RmsNormInput { w, eps } => {
                // y = x * r * w, r = (mean(x^2) + eps)^-1/2:
                // dx = r * (g*w) - x * r^3 * mean(g*w*x)
                let x = arg.to_dtype(cd)?;
                let gw = g.to_dtype(cd)?.broadcast_mul(&w.to_dtype(cd)?)?;
                let r = (x.sqr()?.mean_keepdim(D::Minus1)? + *eps)?
                    .sqrt()?
                    .recip()?;
                let m = (&gw * &x)?.mean_keepdim(D::Minus1)?;
                let dx = (gw.broadcast_mul(&r)? - x.broadcast_mul(&(r.powf(3.0)? * m)?)?)?;
                dx.to_dtype(arg.dtype())?
            }
            Backward::RmsNormWeight { x, eps } => {
                // dw = sum over all leading dims of g * x * r
                let xf = x.to_dtype(cd)?;
                let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + *eps)?
                    .sqrt()?
                    .recip()?;
                let prod = (g.to_dtype(cd)? * xf.broadcast_mul(&r)?)?;
                let h = prod.dim(D::Minus1)?;
                prod.reshape(((), h))?.sum(0)?.to_dtype(arg.dtype())?
            }
        };
        Ok((Some(d), None))
    }
}
