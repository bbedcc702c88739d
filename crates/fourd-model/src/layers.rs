//! Small building blocks shared by the vision tower and the LLM.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::lora::LoraLinear;

/// RMSNorm as transformers computes it: normalise in float32, cast back, then scale.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// The same norm over detached weights (shares storage; builds no autograd graph).
    pub fn detached(&self) -> Self {
        RmsNorm {
            weight: self.weight.detach(),
            eps: self.eps,
        }
    }
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dtype() == DType::F32 && x.is_contiguous() {
            // Same arithmetic, one fused kernel.
            return crate::grad_ops::rms_norm(x, &self.weight, self.eps as f32);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// A linear layer named by its path in the checkpoint (adapters find it by that name).
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<LoraLinear> {
    let name = vb.prefix();
    let base = if bias {
        candle_nn::linear(in_dim, out_dim, vb)?
    } else {
        candle_nn::linear_no_bias(in_dim, out_dim, vb)?
    };
    let weight = laid_out_for_cpu_matmul(base.weight().clone())?;
    Ok(LoraLinear::new(
        name,
        candle_nn::Linear::new(weight, base.bias().cloned()),
    ))
}

/// A frozen weight `[out, in]` on the CPU, as the transposed view of a contiguous `[in, out]`
/// copy: same shape and values, but `weight.t()`, which the layer multiplies by, is contiguous.
/// gemm packs a transposed right-hand side with strided loads: multiplying by the view took 16
/// to 35% longer than by a contiguous matrix at the bench model's sizes (docs/performance.md).
/// Weights being trained (variables) and other devices keep their layout.
fn laid_out_for_cpu_matmul(w: Tensor) -> Result<Tensor> {
    if w.device().is_cpu() && !w.track_op() && w.rank() == 2 {
        w.t()?.contiguous()?.t()
    } else {
        Ok(w)
    }
}

/// Rows `ids` of a weight `[out, in]` in either layout (a frozen CPU weight is the transposed
/// view of an `[in, out]` matrix, see above), contiguous.
pub(crate) fn weight_rows(w: &Tensor, ids: &Tensor) -> Result<Tensor> {
    if !w.is_contiguous() && w.rank() == 2 && w.t()?.is_contiguous() {
        return w.t()?.index_select(ids, 1)?.t()?.contiguous();
    }
    w.contiguous()?.index_select(ids, 0)
}

/// `down(silu(gate(x)) * up(x))`: the gated MLP of both towers (biases in the vision tower only).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    gate_proj: LoraLinear,
    up_proj: LoraLinear,
    down_proj: LoraLinear,
}

impl GatedMlp {
    pub fn detached(&self) -> Self {
        GatedMlp {
            gate_proj: self.gate_proj.detached(),
            up_proj: self.up_proj.detached(),
            down_proj: self.down_proj.detached(),
        }
    }
    pub fn params(&self) -> Vec<Tensor> {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
            .into_iter()
            .flat_map(LoraLinear::params)
            .collect()
    }
    pub fn linears(&self) -> [&LoraLinear; 3] {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
    }
    pub fn linears_mut(&mut self) -> [&mut LoraLinear; 3] {
        [&mut self.gate_proj, &mut self.up_proj, &mut self.down_proj]
    }
    pub fn new(hidden: usize, intermediate: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Ok(GatedMlp {
            gate_proj: linear(hidden, intermediate, bias, vb.pp("gate_proj"))?,
            up_proj: linear(hidden, intermediate, bias, vb.pp("up_proj"))?,
            down_proj: linear(intermediate, hidden, bias, vb.pp("down_proj"))?,
        })
    }
}

impl Module for GatedMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated = crate::swiglu::swiglu(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
    }
}

/// softmax(q k^T * scale) v with the softmax in float32. `q`, `k`, `v`: `[..., L, D]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let scores = q.matmul(&k.t()?)?;
    let probs = crate::attention_softmax::attention_softmax(&scores, None, scale)?;
    probs.to_dtype(q.dtype())?.matmul(v)
}
