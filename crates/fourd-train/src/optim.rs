//! AdamW (PyTorch's decoupled form), the Hugging Face linear warmup/decay schedule and global
//! gradient-norm clipping, with state that saves and restores exactly (for `--resume`).
//!
//! The update runs fused, in one pass over memory ([`crate::optim_kernels`]); the same update in
//! candle's tensor ops remains as the fallback for what the fused one does not handle (f16
//! weights, strided tensors) and as its reference in tests and `fourd bench optimizer`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::optim_kernels::{Buffers, Hyper, SumOfSquares};

#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Hugging Face `Trainer` leaves biases and normalisation scales out of weight decay.
pub fn decays(name: &str) -> bool {
    let leaf = name.rsplit('.').nth(1).unwrap_or("");
    !(name.ends_with(".bias") || leaf.contains("norm") || leaf == "ln_q")
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    /// Float32 master copy of a half-precision parameter: updates accumulate here and the
    /// parameter receives the rounded value, so steps smaller than bf16's resolution are not lost.
    master: Option<Tensor>,
    decay: bool,
}

impl Slot {
    /// The update in candle's tensor ops: about thirteen passes over memory, each allocating.
    fn step_composed(
        &mut self,
        c: &AdamWConfig,
        step: u64,
        g: &Tensor,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        let p = match &self.master {
            Some(m) => m.clone(),
            None => self.var.as_tensor().detach().to_dtype(DType::F32)?,
        };
        let (m, v, p) =
            composed_update(c, step, g, lr, grad_scale, self.decay, &self.m, &self.v, p)?;
        (self.m, self.v) = (m, v);
        if self.master.is_some() {
            self.var.set(&p.to_dtype(self.var.dtype())?)?;
            self.master = Some(p);
        } else {
            self.var.set(&p)?;
        }
        Ok(())
    }
}

/// One AdamW update in candle's tensor ops: the new `(m, v, p)` from float32 moments `m`, `v`,
/// weights `p` and gradient `g` (any float dtype; multiplied by `grad_scale` first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn composed_update(
    c: &AdamWConfig,
    step: u64,
    g: &Tensor,
    lr: f64,
    grad_scale: f64,
    decay: bool,
    m: &Tensor,
    v: &Tensor,
    p: Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    // Nothing below may record a graph: the moments and master weights live across steps,
    // and a recorded graph would keep every step's temporaries (see `collect_grads`).
    let g = g.detach().to_dtype(DType::F32)?;
    let g = if grad_scale != 1.0 {
        (g * grad_scale)?
    } else {
        g
    };
    let m = ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let p = if decay {
        (p * (1.0 - lr * c.weight_decay))?
    } else {
        p
    };
    let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
    let update = ((&m / bc1)? / denom)?;
    let p = (p - (update * lr)?)?;
    Ok((m, v, p))
}

pub struct AdamW {
    slots: Vec<Slot>,
    pub cfg: AdamWConfig,
    /// Optimiser steps taken (bias correction uses it).
    pub step: u64,
    /// Update in one pass where the tensors allow it (the default); false forces tensor ops.
    pub fused: bool,
}

impl AdamW {
    /// Moments are kept in float32 whatever the parameters' dtype, and half-precision parameters
    /// get a float32 master copy.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                // Two allocations: the fused update writes m and v in place, so they must not share one.
                let zeros = || Tensor::zeros(var.shape(), DType::F32, var.device());
                let master = (var.dtype() != DType::F32)
                    .then(|| var.as_tensor().detach().to_dtype(DType::F32))
                    .transpose()?;
                Ok(Slot {
                    decay: decays(&name),
                    name,
                    m: zeros()?,
                    v: zeros()?,
                    var,
                    master,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            cfg,
            step: 0,
            fused: true,
        })
    }

    /// One update with learning rate `lr` from `grads` (aligned with the variables given to
    /// [`AdamW::new`]) multiplied by `grad_scale` (averaging and clipping, folded in so that the
    /// gradients are not rewritten first); parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &Grads, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let (cfg, step) = (self.cfg, self.step);
        for (s, g) in self.slots.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            let buffers = Buffers {
                grad: g,
                weight: s.var.as_tensor(),
                master: s.master.as_ref(),
                m: &s.m,
                v: &s.v,
            };
            if self.fused && buffers.fusable() {
                buffers.update(Hyper::new(&cfg, step, lr, s.decay, grad_scale))?;
            } else {
                s.step_composed(&cfg, step, g, lr, grad_scale)?;
            }
        }
        Ok(())
    }

    /// The variables it updates, by name, in order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.var.clone()))
            .collect()
    }

    /// Writes moments and step to a safetensors file (`m.<name>`, `v.<name>`, `step`).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_state(&self.state()?, path)
    }

    /// The state as it is saved: `m.<name>`, `v.<name>`, `master.<name>` (half-precision
    /// parameters only) and `step`, on the CPU.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for s in &self.slots {
            map.insert(format!("m.{}", s.name), s.m.to_device(&Device::Cpu)?);
            map.insert(format!("v.{}", s.name), s.v.to_device(&Device::Cpu)?);
            if let Some(m) = &s.master {
                map.insert(format!("master.{}", s.name), m.to_device(&Device::Cpu)?);
            }
        }
        map.insert(
            "step".into(),
            Tensor::new(&[self.step as i64], &Device::Cpu)?,
        );
        Ok(map)
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let state = StateFile::read(path)?;
        let (map, get) = (&state.map, |k: &str| state.get(k));
        for s in &mut self.slots {
            let device = s.var.device().clone();
            for (key, dst) in [
                (format!("m.{}", s.name), &mut s.m),
                (format!("v.{}", s.name), &mut s.v),
            ] {
                let t = get(&key)?;
                if t.shape() != s.var.shape() {
                    return Err(TrainError::checkpoint(
                        path,
                        format!(
                            "`{key}` has shape {:?}, the parameter {:?}",
                            t.shape(),
                            s.var.shape()
                        ),
                    ));
                }
                *dst = t.to_dtype(DType::F32)?.to_device(&device)?;
            }
            if s.master.is_some() {
                // A checkpoint from an f32 run has no master copy: start from the parameter.
                if let Some(t) = map.get(&format!("master.{}", s.name)) {
                    s.master = Some(t.to_dtype(DType::F32)?.to_device(&device)?);
                }
            }
        }
        self.step = state.step()?;
        Ok(())
    }
}

/// An optimiser state file ([`AdamW::state`]'s layout) as read for `--resume`; errors name
/// the file and the missing key.
pub(crate) struct StateFile<'p> {
    pub path: &'p Path,
    pub map: HashMap<String, Tensor>,
}

impl<'p> StateFile<'p> {
    pub fn read(path: &'p Path) -> Result<Self> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
        Ok(StateFile { path, map })
    }

    pub fn get(&self, k: &str) -> Result<&Tensor> {
        self.map.get(k).ok_or_else(|| {
            TrainError::checkpoint(self.path, format!("optimizer state lacks `{k}`"))
        })
    }

    pub fn step(&self) -> Result<u64> {
        Ok(self
            .get("step")?
            .to_vec1::<i64>()?
            .first()
            .copied()
            .unwrap_or(0) as u64)
    }
}

/// Writes optimiser state ([`AdamW::state`]'s layout) to a safetensors file.
pub fn save_state(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(map, path)
        .map_err(|e| TrainError::checkpoint(path, e.to_string()))
}

/// Learning-rate schedule of `get_linear_schedule_with_warmup`: the rate for optimiser step
/// `step` (0-based, the value used by that step).
#[derive(Clone, Copy, Debug)]
pub struct LinearSchedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LinearSchedule {
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let rest = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak * (self.total_steps.saturating_sub(step) as f64 / rest).max(0.0)
    }
}

/// Gradients aligned with the trainable variables (`None`: no gradient reached it).
pub type Grads = Vec<Option<Tensor>>;

/// The gradients of `vars` out of a backward pass, detached.
///
/// Why detached: a gradient that candle computed from forward tensors that track the graph
/// (a weight multiplied by an activation, say) records that graph, keeping the forward pass
/// alive for as long as the gradient lives, and optimiser state computed from it would chain
/// onto it.
pub fn collect_grads(store: &GradStore, vars: &[(String, Var)]) -> Grads {
    vars.iter()
        .map(|(_, v)| store.get(v.as_tensor()).map(Tensor::detach))
        .collect()
}

/// The gradients of one backward pass: those in `store` plus those gradient checkpointing
/// collected while recomputing layers (`extra`, by parameter id).
pub fn backward_grads(
    store: &GradStore,
    extra: Option<&fourd_model::text::CheckpointGrads>,
    vars: &[(String, Var)],
) -> Result<Grads> {
    let mut grads = collect_grads(store, vars);
    if let Some(extra) = extra {
        let mut map = extra.take();
        for ((_, v), g) in vars.iter().zip(grads.iter_mut()) {
            if let Some(e) = map.remove(&v.as_tensor().id()) {
                *g = Some(match g.take() {
                    Some(prev) => (prev + e)?,
                    None => e,
                });
            }
        }
    }
    Ok(grads)
}

/// Global L2 norm (float32).
pub fn grad_norm(grads: &Grads) -> Result<f64> {
    // Summed on the device and read once: one host read per tensor would stall the queue
    // hundreds of times a step.
    let mut total: Option<Tensor> = None;
    for g in grads.iter().flatten() {
        let s = sum_of_squares(g)?;
        total = Some(match total {
            Some(t) => (t + s)?,
            None => s,
        });
    }
    let total = match total {
        Some(t) => t.to_scalar::<f32>()? as f64,
        None => 0.0,
    };
    Ok(total.sqrt())
}

/// Elements per row of the first reduction stage in [`sum_of_squares`]'s tensor-op fallback.
const REDUCE_COLS: usize = 4096;

/// The sum of squares of `t` as a float32 scalar tensor. One pass ([`SumOfSquares`]) for float32
/// and bf16; otherwise tensor ops reduce in two stages, because candle's CUDA reduction runs one
/// thread block per output element and a single `sum_all` over a 311M-element embedding would run
/// on one of the GPU's 132 SMs.
pub(crate) fn sum_of_squares(t: &Tensor) -> Result<Tensor> {
    if SumOfSquares::handles(t) {
        return Ok(t.detach().apply_op1_no_bwd(&SumOfSquares)?.sum_all()?);
    }
    let flat = t.flatten_all()?.to_dtype(DType::F32)?;
    let n = flat.dim(0)?;
    let rows = n / REDUCE_COLS;
    let mut parts = Vec::with_capacity(2);
    if rows > 0 {
        parts.push(
            flat.narrow(0, 0, rows * REDUCE_COLS)?
                .reshape((rows, REDUCE_COLS))?
                .sqr()?
                .sum(1)?
                .sum_all()?,
        );
    }
    if n > rows * REDUCE_COLS {
        parts.push(
            flat.narrow(0, rows * REDUCE_COLS, n - rows * REDUCE_COLS)?
                .sqr()?
                .sum_all()?,
        );
    }
    Ok(match parts.len() {
        0 => Tensor::zeros((), DType::F32, t.device())?,
        1 => parts.remove(0),
        _ => (&parts[0] + &parts[1])?,
    })
}

/// The factor `clip_grad_norm_` scales gradients of global norm `norm` by: `max_norm / (norm +
/// 1e-6)` if the norm exceeds `max_norm` (> 0), else 1. [`AdamW::step`] applies it.
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// Adds `b` into `acc` (gradient accumulation over micro-batches).
pub fn accumulate(acc: &mut Option<Grads>, b: Grads) -> Result<()> {
    match acc {
        None => *acc = Some(b),
        Some(a) => {
            for (x, y) in a.iter_mut().zip(b) {
                *x = match (x.take(), y) {
                    (Some(p), Some(q)) => Some((p + q)?),
                    (p, q) => p.or(q),
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_parameters_accumulate_small_updates_in_the_f32_master_copy() {
        let var = Var::from_tensor(&Tensor::ones(4, DType::BF16, &Device::Cpu).unwrap()).unwrap();
        let cfg = AdamWConfig {
            lr: 1e-4,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg).unwrap();
        let g = vec![Some(Tensor::ones(4, DType::BF16, &Device::Cpu).unwrap())];
        // One step moves the weight by ~1e-4, far below bf16's spacing at 1.0 (2^-7).
        opt.step(&g, 1e-4, 1.0).unwrap();
        assert_eq!(
            var.as_tensor()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0],
            1.0
        );
        for _ in 0..99 {
            opt.step(&g, 1e-4, 1.0).unwrap();
        }
        let w = var
            .as_tensor()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(
            w < 1.0 && w > 0.98,
            "100 steps of 1e-4 reached the bf16 weight: {w}"
        );
        let master = opt.slots[0]
            .master
            .as_ref()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!((master - 0.99).abs() < 1e-3, "master {master}");
    }

    /// Parameters of several shapes, weight-decayed and not, in `dtype`; deterministic values.
    fn params(dtype: DType) -> Vec<(String, Var)> {
        [
            ("model.layers.0.mlp.up_proj.weight", 40_000usize),
            ("model.layers.0.input_layernorm.weight", 9),
            ("lm_head.weight", 1),
        ]
        .into_iter()
        .map(|(name, n)| {
            let t = Tensor::new(
                (0..n)
                    .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 700.0)
                    .collect::<Vec<_>>(),
                &Device::Cpu,
            )
            .unwrap();
            (
                name.to_string(),
                Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap(),
            )
        })
        .collect()
    }

    fn grads(vars: &[(String, Var)], step: usize, dtype: DType) -> Grads {
        vars.iter()
            .map(|(_, v)| {
                let n = v.elem_count();
                let g = (0..n)
                    .map(|i| ((i * 31 + step * 17) % 97) as f32 / 97.0 - 0.45)
                    .collect::<Vec<_>>();
                Some(
                    Tensor::new(g, &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
            })
            .collect()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn fused_update_equals_the_tensor_op_update() {
        // (weight dtype, gradient dtype): f32 training, bf16 with f32 master, and mixed.
        for (wd, gd) in [
            (DType::F32, DType::F32),
            (DType::BF16, DType::BF16),
            (DType::F32, DType::BF16),
            (DType::BF16, DType::F32),
        ] {
            let (a, b) = (params(wd), params(wd));
            let cfg = AdamWConfig {
                lr: 1e-2,
                weight_decay: 0.1,
                ..Default::default()
            };
            let mut fused = AdamW::new(a.clone(), cfg).unwrap();
            let mut composed = AdamW::new(b.clone(), cfg).unwrap();
            composed.fused = false;
            for (s, g) in fused.slots.iter().zip(grads(&a, 0, gd)) {
                let buf = Buffers {
                    grad: g.as_ref().unwrap(),
                    weight: s.var.as_tensor(),
                    master: s.master.as_ref(),
                    m: &s.m,
                    v: &s.v,
                };
                assert!(
                    buf.fusable(),
                    "{wd:?}/{gd:?}: {} would fall back to tensor ops",
                    s.name
                );
            }
            for step in 0..4 {
                // A gradient scale other than 1 (averaging and clipping) on some steps.
                let (lr, scale) = (
                    1e-2 * (step + 1) as f64,
                    if step % 2 == 0 { 1.0 } else { 0.37 },
                );
                fused.step(&grads(&a, step, gd), lr, scale).unwrap();
                composed.step(&grads(&b, step, gd), lr, scale).unwrap();
            }
            for (x, y) in fused.slots.iter().zip(&composed.slots) {
                let what = format!("{wd:?} weights, {gd:?} gradients, {}", x.name);
                assert_eq!(
                    values(x.var.as_tensor()),
                    values(y.var.as_tensor()),
                    "weights differ: {what}"
                );
                assert_eq!(values(&x.m), values(&y.m), "first moments differ: {what}");
                assert_eq!(values(&x.v), values(&y.v), "second moments differ: {what}");
                if let (Some(p), Some(q)) = (&x.master, &y.master) {
                    assert_eq!(values(p), values(q), "master weights differ: {what}");
                }
                assert_ne!(
                    values(x.var.as_tensor()),
                    values(
                        params(wd)
                            .iter()
                            .find(|(n, _)| *n == x.name)
                            .unwrap()
                            .1
                            .as_tensor()
                    ),
                    "no update: {what}"
                );
            }
        }
    }

    #[test]
    fn weights_the_fused_update_does_not_handle_fall_back_to_tensor_ops() {
        // f16 weights (a master copy, but no f16 kernel) and a strided gradient.
        let vars = params(DType::F16);
        let mut opt = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
        let before = values(vars[0].1.as_tensor());
        opt.step(&grads(&vars, 0, DType::F16), 1e-2, 1.0).unwrap();
        assert_ne!(values(vars[0].1.as_tensor()), before);
        let w =
            Var::from_tensor(&Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let g = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        let mut opt = AdamW::new(
            vec![("w".into(), w.clone())],
            AdamWConfig {
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        let s = &opt.slots[0];
        assert!(!Buffers {
            grad: &g,
            weight: w.as_tensor(),
            master: None,
            m: &s.m,
            v: &s.v
        }
        .fusable());
        opt.step(&vec![Some(g)], 0.5, 1.0).unwrap();
        // The first AdamW step moves every weight by lr against the gradient's sign.
        assert!(
            values(w.as_tensor()).iter().all(|x| (x + 0.5).abs() < 1e-6),
            "{:?}",
            values(w.as_tensor())
        );
    }

    #[test]
    fn a_gradient_sharing_the_weights_storage_is_an_error_not_a_hang() {
        // The fused update write-locks the weight; a gradient aliasing it must not be read-locked
        // too (that would wait forever). Candle sees the aliasing and the op refuses it.
        let w = Var::from_tensor(&Tensor::ones(8, DType::F32, &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        let err = opt
            .step(&vec![Some(w.as_tensor().clone())], 1e-3, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("aliased"), "{err}");
    }

    #[test]
    fn gradients_and_optimiser_state_hold_no_graph() {
        // A tensor computed from a `Var` records its graph. The optimiser's state must not:
        // bf16 master weights made from the variable did, so every step's master copy kept the
        // previous step's temporaries alive (a 3B-shaped model ran out of the 139 GiB of an H200 within its first steps).
        for dtype in [DType::F32, DType::BF16] {
            let w = Var::from_tensor(
                &Tensor::new(&[1f32, 2., 3.], &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let x = Tensor::new(&[0.5f32, -1., 2.], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let vars = vec![("w".to_string(), w.clone())];
            let mut opt = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
            for _ in 0..3 {
                let loss = (w.as_tensor() * &x)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let store = loss.backward().unwrap();
                let grads = collect_grads(&store, &vars);
                assert!(
                    !grads[0].as_ref().unwrap().track_op(),
                    "{dtype:?}: collected gradient still records a graph"
                );
                opt.step(&grads, 1e-3, 1.0).unwrap();
                let s = &opt.slots[0];
                assert!(
                    !s.m.track_op() && !s.v.track_op(),
                    "{dtype:?}: moments record a graph"
                );
                assert!(
                    s.master.as_ref().is_none_or(|m| !m.track_op()),
                    "{dtype:?}: master weights record a graph"
                );
            }
        }
    }

    #[test]
    fn gradient_norm_sums_every_element_once() {
        // Sizes below, at and above one reduction row, with and without a remainder, and empty.
        let sizes = [
            0usize,
            1,
            7,
            REDUCE_COLS,
            REDUCE_COLS + 3,
            3 * REDUCE_COLS,
            5 * REDUCE_COLS + 1234,
        ];
        let grads: Grads = sizes
            .iter()
            .map(|&n| {
                Some(
                    Tensor::new(
                        (0..n)
                            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                            .collect::<Vec<_>>(),
                        &Device::Cpu,
                    )
                    .unwrap(),
                )
            })
            .chain([
                None,
                Some(
                    Tensor::new(&[[3f32, 4.], [1., 2.]], &Device::Cpu)
                        .unwrap()
                        .to_dtype(DType::BF16)
                        .unwrap(),
                ),
            ])
            // f16 (and a strided view) take the tensor-op fallback.
            .chain([5 * REDUCE_COLS + 3, 2].map(|n| {
                Some(
                    Tensor::new(
                        (0..n).map(|i| (i % 13) as f32 - 6.0).collect::<Vec<_>>(),
                        &Device::Cpu,
                    )
                    .unwrap()
                    .to_dtype(DType::F16)
                    .unwrap(),
                )
            }))
            .chain([Some(
                Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)
                    .unwrap()
                    .t()
                    .unwrap(),
            )])
            .collect();
        let mut want = 0f64;
        for g in grads.iter().flatten() {
            let own = g
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                .iter()
                .map(|x| x * x)
                .sum::<f64>();
            let got = grad_norm(&vec![Some(g.clone())]).unwrap();
            assert!(
                (got - own.sqrt()).abs() <= 1e-6 * own.sqrt(),
                "{:?} {:?}: {got} vs {}",
                g.dtype(),
                g.shape(),
                own.sqrt()
            );
            // Float32 and bf16 take the one-pass kernel, the rest tensor ops.
            assert_eq!(
                SumOfSquares::handles(g),
                g.elem_count() > 0 && g.is_contiguous() && g.dtype() != DType::F16
            );
            want += own;
        }
        let got = grad_norm(&grads).unwrap();
        assert!(
            (got - want.sqrt()).abs() <= 1e-5 * want.sqrt(),
            "{got} vs {}",
            want.sqrt()
        );
        assert_eq!(grad_norm(&vec![None]).unwrap(), 0.0);
    }

    #[test]
    fn schedule_matches_hugging_face_linear_warmup() {
        let s = LinearSchedule {
            peak: 1.0,
            warmup_steps: 2,
            total_steps: 10,
        };
        let lrs: Vec<f64> = (0..11).map(|k| s.lr(k)).collect();
        assert_eq!(lrs[0], 0.0);
        assert_eq!(lrs[1], 0.5);
        assert_eq!(lrs[2], 1.0);
        assert!((lrs[6] - 0.5).abs() < 1e-12);
        assert_eq!(lrs[10], 0.0);
    }
}
