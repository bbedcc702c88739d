//! The optimiser's hot loops, each one pass over memory: the AdamW update and the gradient's
//! sum of squares (for the global norm). A CUDA kernel (`kernels/optim.cu`) on GPUs, a parallel
//! loop on CPU.
//!
//! Written with candle's tensor ops, an AdamW update reads and writes the moments and weights
//! about thirteen times and allocates a temporary for each op: for a 3B model on a GPU that was
//! three quarters of a training step. Here each element's gradient, moments and (master) weight
//! are read once and written once.
//!
//! Candle lends write access to one tensor per in-place op; an update writes three or four. Each
//! [`Level`] holds one tensor's write lock and asks for the next from inside, so the innermost
//! level holds them all at once and runs the update.

use std::cell::RefCell;

use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Device, InplaceOp1, InplaceOp2, Layout, Shape,
    Tensor,
};
use half::bf16;
use rayon::prelude::*;

use crate::optim::AdamWConfig;

/// The update's constants, in float32 as candle's scalar ops apply them (so the CPU loop is
/// bit-identical to the tensor-op form). `#[repr(C)]`: passed to the CUDA kernel by value.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Hyper {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    inv_bias_correction1: f32,
    inv_bias_correction2: f32,
    eps: f32,
    lr: f32,
    /// `1 - lr * weight_decay`, or 1 for tensors without decay.
    decay: f32,
    /// Multiplies the gradient first (averaging over examples and clipping, folded in).
    grad_scale: f32,
}

#[cfg(feature = "cuda")]
// SAFETY: plain old data of float32 fields, laid out as the kernel's `Hyper`.
unsafe impl candle_core::cuda_backend::cudarc::driver::DeviceRepr for Hyper {}

impl Hyper {
    /// Constants of optimiser step `step` (1-based) at learning rate `lr`.
    pub(crate) fn new(cfg: &AdamWConfig, step: u64, lr: f64, decay: bool, grad_scale: f64) -> Self {
        let bc1 = 1.0 - cfg.beta1.powi(step as i32);
        let bc2 = 1.0 - cfg.beta2.powi(step as i32);
        Hyper {
            beta1: cfg.beta1 as f32,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            beta2: cfg.beta2 as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            inv_bias_correction1: (1.0 / bc1) as f32,
            inv_bias_correction2: (1.0 / bc2) as f32,
            eps: cfg.eps as f32,
            lr: lr as f32,
            decay: if decay {
                (1.0 - lr * cfg.weight_decay) as f32
            } else {
                1.0
            },
            grad_scale: grad_scale as f32,
        }
    }

    /// One element: updates the moments in place and returns the new weight. The operations and
    /// their order are those of `AdamW::step_composed`.
    #[inline(always)]
    fn apply(&self, g: f32, w: f32, m: &mut f32, v: &mut f32) -> f32 {
        let g = g * self.grad_scale;
        *m = *m * self.beta1 + g * self.one_minus_beta1;
        *v = *v * self.beta2 + (g * g) * self.one_minus_beta2;
        let w = w * self.decay;
        let denom = (*v * self.inv_bias_correction2).sqrt() + self.eps;
        let update = (*m * self.inv_bias_correction1) / denom;
        w - update * self.lr
    }
}

/// The tensors of one parameter's update. `m`, `v` and `master` must be distinct allocations
/// (the optimiser creates them so): a tensor locked twice would wait for itself.
pub(crate) struct Buffers<'a> {
    pub grad: &'a Tensor,
    pub weight: &'a Tensor,
    /// Float32 master copy of a bf16 weight.
    pub master: Option<&'a Tensor>,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
}

impl Buffers<'_> {
    /// Whether the fused update handles these tensors; the caller falls back to tensor ops
    /// otherwise (f16 weights, strided views, devices other than CPU and CUDA).
    pub(crate) fn fusable(&self) -> bool {
        let n = self.weight.elem_count();
        let state: Vec<&Tensor> = [self.m, self.v].into_iter().chain(self.master).collect();
        let device_ok = match self.weight.device() {
            Device::Cpu => true,
            Device::Cuda(_) => cfg!(feature = "cuda"),
            _ => false,
        };
        let dtypes_ok = matches!(self.grad.dtype(), DType::F32 | DType::BF16)
            && state.iter().all(|t| t.dtype() == DType::F32)
            && matches!(
                (self.weight.dtype(), self.master),
                (DType::F32, None) | (DType::BF16, Some(_))
            );
        device_ok
            && dtypes_ok
            && state.iter().chain([&self.grad, &self.weight]).all(|t| {
                t.elem_count() == n
                    && t.is_contiguous()
                    && t.device().same_device(self.weight.device())
            })
    }

    /// Runs the update in place. Call only when [`Buffers::fusable`].
    pub(crate) fn update(&self, hyper: Hyper) -> candle_core::Result<()> {
        let rest: Vec<&Tensor> = [self.m, self.v].into_iter().chain(self.master).collect();
        let held = Held {
            hyper,
            grad_cpu: RefCell::default(),
            grad_cuda: RefCell::default(),
            cpu: RefCell::default(),
            cuda: RefCell::default(),
        };
        self.weight.inplace_op2(
            self.grad,
            &Level {
                held: &held,
                rest: &rest,
            },
        )
    }
}

/// What the levels have locked so far: raw pointers to storages whose guards are held by the
/// enclosing levels, valid until those return.
struct Held {
    hyper: Hyper,
    /// The gradient, read-locked by candle.
    grad_cpu: RefCell<Option<(*const CpuStorage, Layout)>>,
    grad_cuda: RefCell<Option<(*const CudaStorage, Layout)>>,
    /// Write-locked: weight, m, v, then the master copy.
    cpu: RefCell<Vec<(*mut CpuStorage, Layout)>>,
    cuda: RefCell<Vec<(*mut CudaStorage, Layout)>>,
}

struct Level<'a> {
    held: &'a Held,
    /// Tensors still to lock.
    rest: &'a [&'a Tensor],
}

impl Level<'_> {
    /// Locks the next tensor (whose level recurses in turn), or, once all are held, runs the update.
    fn next_or_run_cpu(&self) -> candle_core::Result<()> {
        if let Some((next, rest)) = self.rest.split_first() {
            return next.inplace_op1(&Level {
                held: self.held,
                rest,
            });
        }
        let (grad, held) = (self.held.grad_cpu.borrow(), self.held.cpu.borrow());
        let Some((g, gl)) = grad.as_ref() else {
            candle_core::bail!("fused AdamW: no gradient")
        };
        // SAFETY: every pointer comes from a storage guard that an enclosing level (candle, for
        // the gradient) holds for the duration of this call, and the storages are distinct.
        let grad = (unsafe { &**g }, gl);
        let mut storages: Vec<(&mut CpuStorage, &Layout)> =
            held.iter().map(|(p, l)| (unsafe { &mut **p }, l)).collect();
        cpu_update(&self.held.hyper, grad, &mut storages)
    }

    fn next_or_run_cuda(&self) -> candle_core::Result<()> {
        if let Some((next, rest)) = self.rest.split_first() {
            return next.inplace_op1(&Level {
                held: self.held,
                rest,
            });
        }
        #[cfg(feature = "cuda")]
        {
            let (grad, held) = (self.held.grad_cuda.borrow(), self.held.cuda.borrow());
            let Some((g, gl)) = grad.as_ref() else {
                candle_core::bail!("fused AdamW: no gradient")
            };
            // SAFETY: as in `next_or_run_cpu`.
            let grad = (unsafe { &**g }, gl);
            let mut storages: Vec<(&mut CudaStorage, &Layout)> =
                held.iter().map(|(p, l)| (unsafe { &mut **p }, l)).collect();
            cuda_update(&self.held.hyper, grad, &mut storages)
        }
        #[cfg(not(feature = "cuda"))]
        candle_core::bail!("fused AdamW: this build has no CUDA support")
    }
}

fn contiguous(l: &Layout) -> candle_core::Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused AdamW needs contiguous tensors".into()))
}

/// The outermost level: the weight, write-locked, and the gradient, read-locked by candle.
impl InplaceOp2 for Level<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        *self.held.grad_cpu.borrow_mut() = Some((g as *const _, gl.clone()));
        self.held.cpu.borrow_mut().push((w as *mut _, wl.clone()));
        self.next_or_run_cpu()
    }

    fn cuda_fwd(
        &self,
        w: &mut CudaStorage,
        wl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        *self.held.grad_cuda.borrow_mut() = Some((g as *const _, gl.clone()));
        self.held.cuda.borrow_mut().push((w as *mut _, wl.clone()));
        self.next_or_run_cuda()
    }
}

/// The inner levels: moments and master copy.
impl InplaceOp1 for Level<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        self.held.cpu.borrow_mut().push((s as *mut _, l.clone()));
        self.next_or_run_cpu()
    }

    fn cuda_fwd(&self, s: &mut CudaStorage, l: &Layout) -> candle_core::Result<()> {
        self.held.cuda.borrow_mut().push((s as *mut _, l.clone()));
        self.next_or_run_cuda()
    }
}

/// Elements per parallel chunk on CPU.
const CPU_CHUNK: usize = 1 << 14;

fn f32_mut<'s>(s: &'s mut CpuStorage, l: &Layout) -> candle_core::Result<&'s mut [f32]> {
    let (a, b) = contiguous(l)?;
    match s {
        CpuStorage::F32(v) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("fused AdamW: optimiser state must be float32"),
    }
}

/// `storages`: weight, m, v, then the master copy of a bf16 weight.
fn cpu_update(
    h: &Hyper,
    (g, gl): (&CpuStorage, &Layout),
    storages: &mut [(&mut CpuStorage, &Layout)],
) -> candle_core::Result<()> {
    let [(w, wl), (m, ml), (v, vl), master @ ..] = storages else {
        candle_core::bail!("fused AdamW: expected gradient, weight and two moments")
    };
    let (m, v) = (f32_mut(m, ml)?, f32_mut(v, vl)?);
    let (ga, gb) = contiguous(gl)?;
    let (wa, wb) = contiguous(wl)?;
    match (g, &mut **w, master) {
        (CpuStorage::F32(g), CpuStorage::F32(w), []) => {
            cpu_loop(h, &g[ga..gb], &mut w[wa..wb], m, v)
        }
        (CpuStorage::BF16(g), CpuStorage::F32(w), []) => {
            cpu_loop(h, &g[ga..gb], &mut w[wa..wb], m, v)
        }
        (CpuStorage::F32(g), CpuStorage::BF16(w), [(p, pl)]) => {
            cpu_loop_master(h, &g[ga..gb], &mut w[wa..wb], f32_mut(p, pl)?, m, v)
        }
        (CpuStorage::BF16(g), CpuStorage::BF16(w), [(p, pl)]) => {
            cpu_loop_master(h, &g[ga..gb], &mut w[wa..wb], f32_mut(p, pl)?, m, v)
        }
        _ => candle_core::bail!("fused AdamW: unsupported gradient/weight dtypes"),
    }
    Ok(())
}

fn cpu_loop<G: Copy + Into<f32> + Sync>(
    h: &Hyper,
    g: &[G],
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    (
        g.par_chunks(CPU_CHUNK),
        w.par_chunks_mut(CPU_CHUNK),
        m.par_chunks_mut(CPU_CHUNK),
        v.par_chunks_mut(CPU_CHUNK),
    )
        .into_par_iter()
        .for_each(|(g, w, m, v)| {
            for (((g, w), m), v) in g.iter().zip(w).zip(m).zip(v) {
                *w = h.apply((*g).into(), *w, m, v);
            }
        });
}

fn cpu_loop_master<G: Copy + Into<f32> + Sync>(
    h: &Hyper,
    g: &[G],
    w: &mut [bf16],
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    (
        g.par_chunks(CPU_CHUNK),
        w.par_chunks_mut(CPU_CHUNK),
        p.par_chunks_mut(CPU_CHUNK),
        m.par_chunks_mut(CPU_CHUNK),
        v.par_chunks_mut(CPU_CHUNK),
    )
        .into_par_iter()
        .for_each(|(g, w, p, m, v)| {
            for ((((g, w), p), m), v) in g.iter().zip(w).zip(p).zip(m).zip(v) {
                *p = h.apply((*g).into(), *p, m, v);
                // Round to nearest even, as `Tensor::to_dtype` does.
                *w = bf16::from_f32(*p);
            }
        });
}

/// Name under which candle caches the loaded module.
#[cfg(feature = "cuda")]
const PTX_MODULE: &str = "fourd_optim";
#[cfg(feature = "cuda")]
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/optim.ptx"));

/// `storages` as in [`cpu_update`].
#[cfg(feature = "cuda")]
fn cuda_update(
    h: &Hyper,
    (g, gl): (&CudaStorage, &Layout),
    storages: &mut [(&mut CudaStorage, &Layout)],
) -> candle_core::Result<()> {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;

    let [(w, wl), (m, ml), (v, vl), master @ ..] = storages else {
        candle_core::bail!("fused AdamW: expected gradient, weight and two moments")
    };
    let (ga, gb) = contiguous(gl)?;
    let (wa, wb) = contiguous(wl)?;
    let (ma, mb) = contiguous(ml)?;
    let (va, vb) = contiguous(vl)?;
    let n = wb - wa;
    let name = match (w.dtype(), g.dtype(), master.len()) {
        (DType::F32, DType::F32, 0) => "adamw_f32_grad_f32",
        (DType::F32, DType::BF16, 0) => "adamw_f32_grad_bf16",
        (DType::BF16, DType::F32, 1) => "adamw_bf16_grad_f32",
        (DType::BF16, DType::BF16, 1) => "adamw_bf16_grad_bf16",
        other => candle_core::bail!("fused AdamW: unsupported weight/gradient dtypes {other:?}"),
    };
    let func = w.device.get_or_load_custom_func(name, PTX_MODULE, PTX)?;
    // A grid-stride loop: enough blocks to fill the GPU, each thread then walks the tensor.
    let threads = 256u32;
    let blocks = (n.div_ceil(threads as usize)).clamp(1, 65_535) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = func.builder();
    let (g_f32, g_bf16);
    match g.dtype() {
        DType::F32 => {
            g_f32 = g.as_cuda_slice::<f32>()?.slice(ga..gb);
            builder.arg(&g_f32);
        }
        _ => {
            g_bf16 = g.as_cuda_slice::<bf16>()?.slice(ga..gb);
            builder.arg(&g_bf16);
        }
    }
    let (mut w_f32, mut w_bf16, mut p);
    match master {
        [] => {
            w_f32 = w.as_cuda_slice_mut::<f32>()?.slice_mut(wa..wb);
            builder.arg(&mut w_f32);
        }
        [(pm, pl), ..] => {
            let (pa, pb) = contiguous(pl)?;
            w_bf16 = w.as_cuda_slice_mut::<bf16>()?.slice_mut(wa..wb);
            p = pm.as_cuda_slice_mut::<f32>()?.slice_mut(pa..pb);
            builder.arg(&mut w_bf16);
            builder.arg(&mut p);
        }
    }
    let mut m = m.as_cuda_slice_mut::<f32>()?.slice_mut(ma..mb);
    let mut v = v.as_cuda_slice_mut::<f32>()?.slice_mut(va..vb);
    builder.arg(&mut m);
    builder.arg(&mut v);
    builder.arg(&n);
    builder.arg(h);
    // SAFETY: the kernel's signature matches the arguments pushed above; every buffer holds n
    // elements (checked by `Buffers::fusable`).
    unsafe { builder.launch(cfg) }.w()?;
    Ok(())
}

/// The sum of squares of a float32 or bf16 tensor, as a 1-D float32 tensor of partial sums
/// (summing them is left to candle: a few hundred elements). Accumulates in float64.
pub(crate) struct SumOfSquares;

impl SumOfSquares {
    /// Whether [`SumOfSquares`] handles `t` (else the caller reduces with tensor ops).
    pub(crate) fn handles(t: &Tensor) -> bool {
        let device_ok = match t.device() {
            Device::Cpu => true,
            Device::Cuda(_) => cfg!(feature = "cuda"),
            _ => false,
        };
        device_ok
            && matches!(t.dtype(), DType::F32 | DType::BF16)
            && t.is_contiguous()
            && t.elem_count() > 0
    }
}

/// Threads per block and the largest grid of the CUDA reduction.
#[cfg(feature = "cuda")]
const REDUCE_THREADS: u32 = 256;
#[cfg(feature = "cuda")]
const REDUCE_MAX_BLOCKS: usize = 4096;

fn squares<T: Copy + Into<f32> + Sync>(x: &[T]) -> Vec<f32> {
    x.par_chunks(CPU_CHUNK)
        .map(|c| {
            c.iter()
                .map(|&v| {
                    let v: f32 = v.into();
                    (v * v) as f64
                })
                .sum::<f64>() as f32
        })
        .collect()
}

impl CustomOp1 for SumOfSquares {
    fn name(&self) -> &'static str {
        "sum-of-squares"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous(l)?;
        let parts = match s {
            CpuStorage::F32(v) => squares(&v[a..b]),
            CpuStorage::BF16(v) => squares(&v[a..b]),
            _ => candle_core::bail!("sum of squares: expected float32 or bf16"),
        };
        let n = parts.len();
        Ok((CpuStorage::F32(parts), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;

        let (a, b) = contiguous(l)?;
        let n = b - a;
        let blocks = n
            .div_ceil(REDUCE_THREADS as usize)
            .clamp(1, REDUCE_MAX_BLOCKS);
        let dev = s.device().clone();
        // SAFETY: every block writes its slot.
        let partial = unsafe { dev.alloc::<f32>(blocks)? };
        let name = match s.dtype() {
            DType::F32 => "sum_of_squares_f32",
            DType::BF16 => "sum_of_squares_bf16",
            other => candle_core::bail!("sum of squares: expected float32 or bf16, got {other:?}"),
        };
        let func = dev.get_or_load_custom_func(name, PTX_MODULE, PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = func.builder();
        let (x_f32, x_bf16);
        if s.dtype() == DType::F32 {
            x_f32 = s.as_cuda_slice::<f32>()?.slice(a..b);
            builder.arg(&x_f32);
        } else {
            x_bf16 = s.as_cuda_slice::<bf16>()?.slice(a..b);
            builder.arg(&x_bf16);
        }
        builder.arg(&partial);
        builder.arg(&n);
        // SAFETY: the arguments match the kernel's signature; `partial` has one slot per block.
        unsafe { builder.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(partial, dev),
            Shape::from(blocks),
        ))
    }
}
