//! The optimiser of a run, replicated or sharded over the data-parallel group (ZeRO stages 1
//! and 2, Rajbhandari et al. 2020, as DeepSpeed runs them).
//!
//! The trained tensors are laid end to end in one flat float32 buffer, padded to
//! `world_size * chunk`; rank r owns elements `r*chunk..(r+1)*chunk`. It keeps the float32
//! master weights and the AdamW moments of that chunk only, so each rank holds 12/N bytes of
//! optimiser state per parameter instead of 12. Per optimiser step:
//!
//! 1. gradients are reduce-scattered: rank r receives the sum over ranks of its chunk (stage 1
//!    once per step, from the full gradient each rank accumulated over its micro-batches; stage 2
//!    after every micro-batch, so between micro-batches a rank keeps only its chunk's gradient);
//! 2. the clipping norm is the global one: each rank's sum of squares, summed over ranks;
//! 3. each rank updates its chunk with the fused AdamW kernel (the same update, element for
//!    element, as the replicated optimiser);
//! 4. the updated chunks are all-gathered and every rank writes them into its weights.
//!
//! Checkpoints hold the optimiser state consolidated, in the replicated optimiser's layout
//! (`m.<name>`, `v.<name>`, `master.<name>`, `step`): a run saved on N ranks, sharded or not,
//! resumes on M ranks, sharded or not. (DeepSpeed saves per-rank partitions and needs its
//! "universal checkpoint" conversion for that.) Saving gathers the state to every rank for the
//! moment it is written: one float32 copy of the moments and master weights, transiently.
//!
//! Stage 2's per-micro-batch reduction is a collective, so every rank must make the same number
//! of calls: a rank with fewer examples in a step passes `None` for the missing ones.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use crate::dist::ProcessGroup;
use crate::error::{Result, TrainError};
use crate::optim::{
    accumulate, clip_coefficient, composed_update, decays, grad_norm, sum_of_squares, AdamW,
    AdamWConfig, Grads,
};
use crate::optim_kernels::{Buffers, Hyper};

/// How optimiser state is spread over the data-parallel group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ZeroStage {
    /// Optimiser state sharded; gradients reduced once per step.
    One,
    /// Optimiser state and accumulated gradients sharded; gradients reduced per micro-batch.
    Two,
}

impl std::str::FromStr for ZeroStage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "1" => Ok(ZeroStage::One),
            "2" => Ok(ZeroStage::Two),
            other => Err(format!("`{other}`: ZeRO stage 1 or 2")),
        }
    }
}

/// Elements per reduction bucket: the float32 buffers that are reduce-scattered and
/// all-gathered at once hold at most this many (512 MiB), not the whole model's gradient.
pub const BUCKET_ELEMENTS: usize = 1 << 27;

/// A stretch of the flat buffer reduced at once; each rank owns one `chunk` of it.
#[derive(Clone, Debug)]
struct Bucket {
    /// First element in the flat buffer.
    start: usize,
    /// Elements (before padding to `world * chunk`).
    len: usize,
    chunk: usize,
    /// Where this rank's chunk of the bucket starts in its shard.
    shard_start: usize,
}

/// Where each trained tensor lies in the flat buffer, its buckets, and which chunks are this
/// rank's (its shard: its chunk of every bucket, in order).
#[derive(Clone, Debug)]
struct FlatLayout {
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    buckets: Vec<Bucket>,
    world: usize,
    rank: usize,
    /// Elements of this rank's shard (padding included).
    shard: usize,
}

impl FlatLayout {
    fn new(vars: &[(String, Var)], world: usize, rank: usize, bucket: usize) -> Self {
        let world = world.max(1);
        let sizes: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut total = 0;
        for n in &sizes {
            offsets.push(total);
            total += n;
        }
        let mut buckets = Vec::new();
        let mut shard = 0;
        let mut start = 0;
        while start < total {
            let len = bucket.min(total - start);
            let chunk = len.div_ceil(world);
            buckets.push(Bucket {
                start,
                len,
                chunk,
                shard_start: shard,
            });
            shard += chunk;
            start += len;
        }
        FlatLayout {
            offsets,
            sizes,
            buckets,
            world,
            rank,
            shard,
        }
    }

    /// The pieces of tensors in this rank's shard: `(tensor, start in the tensor, start in the
    /// shard, length)`, in shard order.
    fn pieces(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        for b in &self.buckets {
            let lo = b.start + self.rank * b.chunk;
            let hi = (lo + b.chunk).min(b.start + b.len);
            for (k, (&off, &n)) in self.offsets.iter().zip(&self.sizes).enumerate() {
                let (a, e) = (off.max(lo), (off + n).min(hi));
                if a < e {
                    out.push((k, a - off, b.shard_start + (a - lo), e - a));
                }
            }
        }
        out
    }

    /// One bucket of the gradients as a flat float32 buffer of `world * chunk` elements (zeros
    /// where a tensor had none, and in the padding).
    fn bucket_flat(&self, b: &Bucket, grads: Option<&Grads>, device: &Device) -> Result<Tensor> {
        let mut parts = Vec::new();
        for (k, (&off, &n)) in self.offsets.iter().zip(&self.sizes).enumerate() {
            let (a, e) = (off.max(b.start), (off + n).min(b.start + b.len));
            if a >= e {
                continue;
            }
            parts.push(match grads.and_then(|g| g.get(k).cloned().flatten()) {
                Some(g) => g
                    .flatten_all()?
                    .narrow(0, a - off, e - a)?
                    .to_dtype(DType::F32)?,
                None => Tensor::zeros(e - a, DType::F32, device)?,
            });
        }
        let pad = self.world * b.chunk - b.len;
        if pad > 0 {
            parts.push(Tensor::zeros(pad, DType::F32, device)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

/// One piece of a tensor in this rank's chunk, with its optimiser state.
struct Piece {
    var: usize,
    var_start: usize,
    shard_start: usize,
    len: usize,
    decay: bool,
    /// Float32 master weights of the piece (kept for float32 tensors too: the rank updates
    /// these and all-gathers them).
    master: Tensor,
    m: Tensor,
    v: Tensor,
}

/// AdamW with its state sharded over the group.
pub struct ShardedAdamW {
    pub cfg: AdamWConfig,
    pub step: u64,
    pub stage: ZeroStage,
    vars: Vec<(String, Var)>,
    layout: FlatLayout,
    pieces: Vec<Piece>,
    group: ProcessGroup,
    device: Device,
}

impl ShardedAdamW {
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: AdamWConfig,
        stage: ZeroStage,
        group: ProcessGroup,
    ) -> Result<Self> {
        Self::with_buckets(vars, cfg, stage, group, BUCKET_ELEMENTS)
    }

    /// [`ShardedAdamW::new`] with buckets of `bucket` elements.
    pub fn with_buckets(
        vars: Vec<(String, Var)>,
        cfg: AdamWConfig,
        stage: ZeroStage,
        group: ProcessGroup,
        bucket: usize,
    ) -> Result<Self> {
        let device = vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(Device::Cpu);
        let layout = FlatLayout::new(&vars, group.world_size(), group.rank(), bucket.max(1));
        let mut pieces = Vec::new();
        for (var, var_start, shard_start, len) in layout.pieces() {
            let (name, v) = &vars[var];
            let master = v
                .as_tensor()
                .detach()
                .flatten_all()?
                .narrow(0, var_start, len)?
                .to_dtype(DType::F32)?
                .copy()?;
            pieces.push(Piece {
                var,
                var_start,
                shard_start,
                len,
                decay: decays(name),
                master,
                m: Tensor::zeros(len, DType::F32, &device)?,
                v: Tensor::zeros(len, DType::F32, &device)?,
            });
        }
        Ok(ShardedAdamW {
            cfg,
            step: 0,
            stage,
            vars,
            layout,
            pieces,
            group,
            device,
        })
    }

    fn reduce_scatter(&self, flat: &Tensor) -> Result<Tensor> {
        match self.group.collective() {
            Some(c) => c.reduce_scatter_tensor(flat),
            None => Ok(flat.clone()),
        }
    }

    fn all_gather(&self, chunk: &Tensor) -> Result<Tensor> {
        match self.group.collective() {
            Some(c) => c.all_gather_tensor(chunk),
            None => Ok(chunk.clone()),
        }
    }

    /// The shard's gradient summed over ranks (bucket by bucket), and which tensors any rank
    /// had a gradient for.
    fn reduce(&self, local: Option<&Grads>) -> Result<ShardGrads> {
        let mut parts = Vec::with_capacity(self.layout.buckets.len());
        for b in &self.layout.buckets {
            let flat = self.layout.bucket_flat(b, local, &self.device)?;
            parts.push(self.reduce_scatter(&flat)?);
        }
        let chunk = match parts.len() {
            0 => Tensor::zeros(0, DType::F32, &self.device)?,
            _ => Tensor::cat(&parts, 0)?,
        };
        let mut present: Vec<f64> = (0..self.vars.len())
            .map(|k| match local.and_then(|g| g.get(k)) {
                Some(Some(_)) => 1.0,
                _ => 0.0,
            })
            .collect();
        self.group.sum_f64(&mut present)?;
        Ok(ShardGrads {
            chunk,
            present: present.into_iter().map(|p| p > 0.0).collect(),
        })
    }

    /// The global L2 norm of the summed gradient (each rank's chunk, summed over ranks).
    fn norm(&self, g: &ShardGrads) -> Result<f64> {
        let mut total = [sum_of_squares(&g.chunk)?.to_scalar::<f32>()? as f64];
        self.group.sum_f64(&mut total)?;
        Ok(total[0].sqrt())
    }

    /// The update of this rank's pieces, then every rank's pieces written into the weights.
    fn update(&mut self, g: &ShardGrads, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let (cfg, step) = (self.cfg, self.step);
        for p in &mut self.pieces {
            if !g.present[p.var] {
                continue;
            }
            let grad = g.chunk.narrow(0, p.shard_start, p.len)?;
            let buffers = Buffers {
                grad: &grad,
                weight: &p.master,
                master: None,
                m: &p.m,
                v: &p.v,
            };
            if buffers.fusable() {
                buffers.update(Hyper::new(&cfg, step, lr, p.decay, grad_scale))?;
            } else {
                let (m, v, w) = composed_update(
                    &cfg,
                    step,
                    &grad,
                    lr,
                    grad_scale,
                    p.decay,
                    &p.m,
                    &p.v,
                    p.master.clone(),
                )?;
                (p.m, p.v, p.master) = (m, v, w);
            }
        }
        let vars = &self.vars;
        self.gather_tensors(&self.shard_of(|p| &p.master)?, |k, full| {
            if g.present[k] {
                let var = &vars[k].1;
                var.set(&full.reshape(var.shape())?.to_dtype(var.dtype())?)?;
            }
            Ok(())
        })
    }

    /// This rank's shard of one kind of state, with zeros in the padding.
    fn shard_of(&self, pick: impl Fn(&Piece) -> &Tensor) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(self.pieces.len() + self.layout.buckets.len());
        let mut at = 0;
        for p in &self.pieces {
            if p.shard_start > at {
                parts.push(Tensor::zeros(p.shard_start - at, DType::F32, &self.device)?);
            }
            parts.push(pick(p).clone());
            at = p.shard_start + p.len;
        }
        if self.layout.shard > at {
            parts.push(Tensor::zeros(
                self.layout.shard - at,
                DType::F32,
                &self.device,
            )?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// All-gathers every rank's `shard` bucket by bucket and hands each trained tensor's whole
    /// flat float32 value to `f(index, value)` as soon as its last bucket arrives (so at most one
    /// bucket and the tensors it completes are held at once).
    fn gather_tensors(
        &self,
        shard: &Tensor,
        mut f: impl FnMut(usize, Tensor) -> Result<()>,
    ) -> Result<()> {
        let mut next = 0;
        let mut pending: Vec<Tensor> = Vec::new();
        for b in &self.layout.buckets {
            let full = self.all_gather(&shard.narrow(0, b.shard_start, b.chunk)?)?;
            while next < self.vars.len() {
                let (off, n) = (self.layout.offsets[next], self.layout.sizes[next]);
                let (a, e) = (off.max(b.start), (off + n).min(b.start + b.len));
                if a < e {
                    pending.push(full.narrow(0, a - b.start, e - a)?);
                }
                if off + n > b.start + b.len {
                    break;
                }
                let value = match pending.len() {
                    0 => Tensor::zeros(0, DType::F32, &self.device)?,
                    1 => pending.remove(0),
                    _ => Tensor::cat(&std::mem::take(&mut pending), 0)?,
                };
                f(next, value)?;
                next += 1;
            }
        }
        Ok(())
    }

    /// The whole state, gathered from every rank (a collective: every rank calls it), in the
    /// replicated optimiser's layout.
    pub fn consolidated_state(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        for (kind, pick) in [
            ("m", (|p: &Piece| &p.m) as fn(&Piece) -> &Tensor),
            ("v", |p: &Piece| &p.v),
            ("master", |p: &Piece| &p.master),
        ] {
            let vars = &self.vars;
            self.gather_tensors(&self.shard_of(pick)?, |k, full| {
                let (name, var) = &vars[k];
                // Float32 tensors have no master copy in the replicated layout.
                if kind != "master" || var.dtype() != DType::F32 {
                    let t = full.reshape(var.shape())?.to_device(&Device::Cpu)?;
                    map.insert(format!("{kind}.{name}"), t);
                }
                Ok(())
            })?;
        }
        map.insert(
            "step".into(),
            Tensor::new(&[self.step as i64], &Device::Cpu)?,
        );
        Ok(map)
    }

    /// Takes this rank's pieces of a consolidated state file (saved by any world size, sharded
    /// or not).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let state = crate::optim::StateFile::read(path)?;
        let (map, get) = (&state.map, |k: &str| state.get(k));
        for p in &mut self.pieces {
            let (name, var) = &self.vars[p.var];
            let piece = |t: &Tensor, key: &str| -> Result<Tensor> {
                if t.elem_count() != var.elem_count() {
                    return Err(TrainError::checkpoint(
                        path,
                        format!(
                            "`{key}` has shape {:?}, the parameter {:?}",
                            t.shape(),
                            var.shape()
                        ),
                    ));
                }
                Ok(t.flatten_all()?
                    .narrow(0, p.var_start, p.len)?
                    .to_dtype(DType::F32)?
                    .to_device(&self.device)?
                    .copy()?)
            };
            let (mk, vk) = (format!("m.{name}"), format!("v.{name}"));
            p.m = piece(get(&mk)?, &mk)?;
            p.v = piece(get(&vk)?, &vk)?;
            let master_key = format!("master.{name}");
            if let Some(t) = map.get(&master_key) {
                p.master = piece(t, &master_key)?;
            }
        }
        self.step = state.step()?;
        Ok(())
    }
}

/// A step's gradient on one rank of a sharded optimiser: its chunk, summed over ranks.
pub struct ShardGrads {
    chunk: Tensor,
    present: Vec<bool>,
}

/// What a step's micro-batches accumulate.
#[derive(Default)]
pub struct StepGradients {
    /// Replicated and ZeRO-1: this rank's full gradients.
    local: Option<Grads>,
    /// ZeRO-2: the reduced chunk so far.
    shard: Option<ShardGrads>,
}

/// A step's gradient summed over ranks, as the optimiser takes it.
pub enum SummedGradients {
    Full(Grads),
    Shard(ShardGrads),
}

/// The optimiser of a run: replicated on every rank, or sharded (ZeRO).
pub enum Optimizer {
    Replicated(AdamW, ProcessGroup),
    Sharded(ShardedAdamW),
}

impl Optimizer {
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: AdamWConfig,
        zero: Option<ZeroStage>,
        group: &ProcessGroup,
    ) -> Result<Self> {
        Ok(match zero {
            None => Optimizer::Replicated(AdamW::new(vars, cfg)?, group.clone()),
            Some(stage) => Optimizer::Sharded(ShardedAdamW::new(vars, cfg, stage, group.clone())?),
        })
    }

    /// Adds one micro-batch's gradients of this rank (`None`: it had none in this slot). Under
    /// ZeRO-2 this reduces over ranks, so every rank must call it equally often per step.
    pub fn accumulate(&self, acc: &mut StepGradients, local: Option<Grads>) -> Result<()> {
        match self {
            Optimizer::Sharded(s) if s.stage == ZeroStage::Two => {
                let g = s.reduce(local.as_ref())?;
                acc.shard = Some(match acc.shard.take() {
                    None => g,
                    Some(prev) => ShardGrads {
                        chunk: (prev.chunk + g.chunk)?,
                        present: prev
                            .present
                            .iter()
                            .zip(&g.present)
                            .map(|(a, b)| *a || *b)
                            .collect(),
                    },
                });
                Ok(())
            }
            _ => match local {
                Some(g) => accumulate(&mut acc.local, g),
                None => Ok(()),
            },
        }
    }

    /// The step's gradient summed over ranks (a collective), or `None` when no rank had one.
    pub fn sum(&self, acc: StepGradients) -> Result<Option<SummedGradients>> {
        match self {
            Optimizer::Replicated(opt, group) => Ok(group
                .sum_grads(acc.local, &opt.vars())?
                .map(SummedGradients::Full)),
            Optimizer::Sharded(s) => {
                let g = match (s.stage, acc.shard) {
                    (ZeroStage::Two, Some(g)) => g,
                    (ZeroStage::Two, None) => s.reduce(None)?,
                    (ZeroStage::One, _) => s.reduce(acc.local.as_ref())?,
                };
                Ok(g.present
                    .iter()
                    .any(|&p| p)
                    .then_some(SummedGradients::Shard(g)))
            }
        }
    }

    /// The global L2 norm of a summed gradient (a collective when sharded).
    pub fn grad_norm(&self, g: &SummedGradients) -> Result<f64> {
        match (self, g) {
            (Optimizer::Sharded(s), SummedGradients::Shard(g)) => s.norm(g),
            (_, SummedGradients::Full(g)) => grad_norm(g),
            _ => Err(TrainError::Config("gradients of another optimiser".into())),
        }
    }

    /// One update: the gradient times `mean`, clipped to `max_norm` by its global norm
    /// (`norm`, already times `mean`).
    pub fn step(
        &mut self,
        g: &SummedGradients,
        lr: f64,
        mean: f64,
        norm: f64,
        max_norm: f64,
    ) -> Result<()> {
        let scale = mean * clip_coefficient(norm, max_norm);
        match (self, g) {
            (Optimizer::Replicated(opt, _), SummedGradients::Full(g)) => opt.step(g, lr, scale),
            (Optimizer::Sharded(s), SummedGradients::Shard(g)) => s.update(g, lr, scale),
            _ => Err(TrainError::Config("gradients of another optimiser".into())),
        }
    }

    /// The whole state as a checkpoint saves it, on the rank that writes (`main`); `None` on
    /// the others. A collective when sharded: every rank calls it.
    pub fn state_for_save(&self, main: bool) -> Result<Option<HashMap<String, Tensor>>> {
        match self {
            Optimizer::Replicated(opt, _) => main.then(|| opt.state()).transpose(),
            Optimizer::Sharded(s) => {
                let state = s.consolidated_state()?;
                Ok(main.then_some(state))
            }
        }
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        match self {
            Optimizer::Replicated(opt, _) => opt.load(path),
            Optimizer::Sharded(s) => s.load(path),
        }
    }

    /// Whether a micro-batch slot must be accumulated on every rank (ZeRO-2 reduces per slot).
    pub fn reduces_per_micro_batch(&self) -> bool {
        matches!(self, Optimizer::Sharded(s) if s.stage == ZeroStage::Two)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn vars(dev: &Device) -> Vec<(String, Var)> {
        // Sizes that straddle buckets of 4 in every way; one without decay.
        [
            ("a.weight", 7),
            ("b.bias", 5),
            ("c.weight", 13),
            ("d.weight", 1),
        ]
        .iter()
        .map(|(n, k)| {
            let init: Vec<f32> = (0..*k).map(|i| 0.1 * i as f32 - 0.3).collect();
            (
                n.to_string(),
                Var::from_tensor(&Tensor::new(init.as_slice(), dev).unwrap()).unwrap(),
            )
        })
        .collect()
    }

    fn grads(rank: usize, step: usize, vars: &[(String, Var)]) -> Grads {
        vars.iter()
            .enumerate()
            .map(|(k, (_, v))| {
                // Tensor "b" gets a gradient from rank 1 only.
                if k == 1 && rank != 1 {
                    return None;
                }
                let g: Vec<f32> = (0..v.elem_count())
                    .map(|i| ((i * 7 + k * 3 + rank * 11 + step * 5) % 13) as f32 / 13.0 - 0.4)
                    .collect();
                Some(Tensor::new(g.as_slice(), v.device()).unwrap())
            })
            .collect()
    }

    /// Sharded over 3 ranks with buckets of 4 elements (tensors split across buckets and
    /// ranks), both stages, against one replicated optimiser on the summed gradients: the same
    /// weights and the same consolidated state, bit for bit.
    #[test]
    fn sharded_steps_equal_the_replicated_optimiser() {
        let dev = Device::Cpu;
        let cfg = AdamWConfig {
            lr: 0.05,
            ..Default::default()
        };
        let reference = vars(&dev);
        let mut opt = AdamW::new(reference.clone(), cfg).unwrap();
        for step in 0..3 {
            let mut sum: Option<Grads> = None;
            for rank in 0..3 {
                accumulate(&mut sum, grads(rank, step, &reference)).unwrap();
            }
            let sum = sum.unwrap();
            let norm = grad_norm(&sum).unwrap();
            opt.step(&sum, cfg.lr, 0.5 * clip_coefficient(norm * 0.5, 1.0))
                .unwrap();
        }
        let want: Vec<Vec<f32>> = reference
            .iter()
            .map(|(_, v)| v.as_tensor().to_vec1().unwrap())
            .collect();
        let want_state = opt.state().unwrap();
        for stage in [ZeroStage::One, ZeroStage::Two] {
            let handles: Vec<_> = crate::dist::test_groups(3)
                .into_iter()
                .map(|g| {
                    std::thread::spawn(move || {
                        let group = ProcessGroup::new(Arc::new(g));
                        let rank = group.rank();
                        let vs = vars(&Device::Cpu);
                        let mut o = Optimizer::Sharded(
                            ShardedAdamW::with_buckets(vs.clone(), cfg, stage, group, 4).unwrap(),
                        );
                        for step in 0..3 {
                            let mut acc = StepGradients::default();
                            o.accumulate(&mut acc, Some(grads(rank, step, &vs)))
                                .unwrap();
                            let g = o.sum(acc).unwrap().unwrap();
                            let norm = o.grad_norm(&g).unwrap() * 0.5;
                            o.step(&g, cfg.lr, 0.5, norm, 1.0).unwrap();
                        }
                        let state = o.state_for_save(true).unwrap().unwrap();
                        let got: Vec<Vec<f32>> = vs
                            .iter()
                            .map(|(_, v)| v.as_tensor().to_vec1().unwrap())
                            .collect();
                        (got, state)
                    })
                })
                .collect();
            for h in handles {
                let (got, state) = h.join().unwrap();
                assert_eq!(got, want, "{stage:?}");
                for (k, t) in &want_state {
                    let a = t
                        .flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap();
                    let b = state[k]
                        .flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap();
                    assert_eq!(a, b, "{stage:?} {k}");
                }
            }
        }
    }
}
