//! The Qwen2.5-VL vision tower: patch embedding, 2-D rotary, window partition, windowed and
//! full-attention blocks (both confined to one temporal slice), and the 2x2 patch merger.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::VisionConfig;
use crate::layers::{attention, linear, GatedMlp, RmsNorm};
use crate::lora::LoraLinear;
use crate::mrope::inv_freq;

/// Window partition of a batch of grids.
///
/// The tower attends within windows of `window_size` pixels (4x4 merged tokens for the released
/// models). Tokens are permuted so every window is contiguous; `index` is that permutation over
/// merged tokens, and `cu_seqlens` the window boundaries in patches (empty windows removed).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowIndex {
    pub index: Vec<usize>,
    pub cu_seqlens: Vec<usize>,
}

impl WindowIndex {
    pub fn new(grids: &[[usize; 3]], cfg: &VisionConfig) -> Self {
        let m = cfg.spatial_merge_size;
        let ws = cfg.window_size / m / cfg.patch_size;
        let unit = m * m;
        let mut index = Vec::new();
        let mut cu = vec![0usize];
        let mut offset = 0;
        for &[t, gh, gw] in grids {
            let (lh, lw) = (gh / m, gw / m);
            // transformers pads by `ws - n % ws`, i.e. a whole empty band when already divisible;
            // those windows are empty and vanish in the de-duplication below.
            let (nwh, nww) = ((lh + ws - lh % ws) / ws, (lw + ws - lw % ws) / ws);
            for tt in 0..t {
                for wr in 0..nwh {
                    for wc in 0..nww {
                        let mut count = 0;
                        for r in wr * ws..((wr + 1) * ws).min(lh) {
                            for c in wc * ws..((wc + 1) * ws).min(lw) {
                                index.push(offset + tt * lh * lw + r * lw + c);
                                count += 1;
                            }
                        }
                        let last = *cu.last().expect("starts with 0");
                        cu.push(last + count * unit);
                    }
                }
            }
            offset += t * lh * lw;
        }
        cu.dedup();
        WindowIndex {
            index,
            cu_seqlens: cu,
        }
    }
}

/// Boundaries of full attention: one segment per temporal slice of each item.
pub fn full_attention_seqlens(grids: &[[usize; 3]]) -> Vec<usize> {
    let mut cu = vec![0];
    for &[t, h, w] in grids {
        for _ in 0..t {
            cu.push(cu.last().copied().unwrap_or(0) + h * w);
        }
    }
    cu
}

/// Rotary angles `[patches, head_dim/2]` in patch order: row frequencies then column frequencies
/// of each patch's (row, col) in the patch grid.
pub fn rotary_angles(grids: &[[usize; 3]], cfg: &VisionConfig) -> Vec<Vec<f32>> {
    let freqs = inv_freq(cfg.head_dim() / 2, cfg.rope_theta);
    let m = cfg.spatial_merge_size;
    let mut out = Vec::new();
    for &[t, h, w] in grids {
        let mut one = Vec::with_capacity(h * w);
        for bh in 0..h / m {
            for bw in 0..w / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (r, c) = ((bh * m + mh) as f32, (bw * m + mw) as f32);
                        let mut a: Vec<f32> = freqs.iter().map(|f| r * f).collect();
                        a.extend(freqs.iter().map(|f| c * f));
                        one.push(a);
                    }
                }
            }
        }
        for _ in 0..t {
            out.extend(one.iter().cloned());
        }
    }
    out
}

#[derive(Clone)]
struct VisionAttention {
    qkv: LoraLinear,
    proj: LoraLinear,
    num_heads: usize,
    head_dim: usize,
}

impl VisionAttention {
    /// `x`: `[N, hidden]`; attention is block-diagonal over the segments `cu_seqlens`.
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cu_seqlens: &[usize],
    ) -> Result<Tensor> {
        let (n, hidden) = x.dims2()?;
        let dtype = x.dtype();
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((n, 3, self.num_heads, self.head_dim))?
            .permute((1, 2, 0, 3))?;
        // Rotary in float32, as transformers does, then back to the compute dtype.
        let rot = |t: Tensor| -> Result<Tensor> {
            let t = t.to_dtype(DType::F32)?.unsqueeze(0)?.contiguous()?;
            crate::grad_ops::rope(&t, cos, sin)?
                .squeeze(0)?
                .to_dtype(dtype)
        };
        let q = rot(qkv.i(0)?)?;
        let k = rot(qkv.i(1)?)?;
        let v = qkv.i(2)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // Runs of equal-length segments (e.g. full 8x8-patch windows) are batched together.
        let mut outs = Vec::new();
        let lens: Vec<usize> = cu_seqlens.windows(2).map(|w| w[1] - w[0]).collect();
        let (mut i, mut start) = (0, 0);
        while i < lens.len() {
            let len = lens[i];
            let mut j = i;
            while j < lens.len() && lens[j] == len {
                j += 1;
            }
            let count = j - i;
            if len > 0 {
                let seg = |t: &Tensor| -> Result<Tensor> {
                    t.narrow(1, start, count * len)?
                        .reshape((self.num_heads, count, len, self.head_dim))?
                        .transpose(0, 1)?
                        .contiguous()
                };
                let o = attention(&seg(&q)?, &seg(&k)?, &seg(&v)?, scale)?;
                outs.push(o.transpose(0, 1)?.reshape((
                    self.num_heads,
                    count * len,
                    self.head_dim,
                ))?);
            }
            start += count * len;
            i = j;
        }
        let o = Tensor::cat(&outs, 1)?
            .transpose(0, 1)?
            .reshape((n, hidden))?;
        self.proj.forward(&o)
    }
}

#[derive(Clone)]
struct VisionBlock {
    norm1: RmsNorm,
    norm2: RmsNorm,
    attn: VisionAttention,
    mlp: GatedMlp,
}

impl VisionBlock {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cu_seqlens: &[usize],
    ) -> Result<Tensor> {
        let x = (x + self
            .attn
            .forward(&self.norm1.forward(x)?, cos, sin, cu_seqlens)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// RMSNorm per patch, then each 2x2 group of patches concatenated and projected to the LLM width.
#[derive(Clone)]
struct PatchMerger {
    ln_q: RmsNorm,
    fc1: LoraLinear,
    fc2: LoraLinear,
    group: usize,
}

impl PatchMerger {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, h) = x.dims2()?;
        let x = self
            .ln_q
            .forward(x)?
            .reshape((n / self.group, h * self.group))?;
        self.fc2.forward(&self.fc1.forward(&x)?.gelu_erf()?)
    }
}

#[derive(Clone)]
pub struct VisionTower {
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    cfg: VisionConfig,
}

impl VisionTower {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (h, p, tp, c) = (
            cfg.hidden_size,
            cfg.patch_size,
            cfg.temporal_patch_size,
            cfg.in_channels,
        );
        // Conv3d with kernel = stride is a matmul over flattened patches.
        let patch_embed = vb
            .get((h, c, tp, p, p), "patch_embed.proj.weight")?
            .reshape((h, cfg.patch_dim()))?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = vb.pp(format!("blocks.{i}"));
            blocks.push(VisionBlock {
                norm1: RmsNorm::new(h, 1e-6, b.pp("norm1"))?,
                norm2: RmsNorm::new(h, 1e-6, b.pp("norm2"))?,
                attn: VisionAttention {
                    qkv: linear(h, 3 * h, true, b.pp("attn.qkv"))?,
                    proj: linear(h, h, true, b.pp("attn.proj"))?,
                    num_heads: cfg.num_heads,
                    head_dim: cfg.head_dim(),
                },
                mlp: GatedMlp::new(h, cfg.intermediate_size, true, b.pp("mlp"))?,
            });
        }
        let group = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let merger = PatchMerger {
            ln_q: RmsNorm::new(h, 1e-6, vb.pp("merger.ln_q"))?,
            fc1: linear(h * group, h * group, true, vb.pp("merger.mlp.0"))?,
            fc2: linear(h * group, cfg.out_hidden_size, true, vb.pp("merger.mlp.2"))?,
            group,
        };
        Ok(VisionTower {
            patch_embed,
            blocks,
            merger,
            cfg: cfg.clone(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.patch_embed.dtype()
    }

    /// Every linear layer, in checkpoint order.
    pub fn linears(&self) -> Vec<&LoraLinear> {
        let mut v = Vec::new();
        for b in &self.blocks {
            v.extend([&b.attn.qkv, &b.attn.proj]);
            v.extend(b.mlp.linears());
        }
        v.extend([&self.merger.fc1, &self.merger.fc2]);
        v
    }

    pub fn linears_mut(&mut self) -> Vec<&mut LoraLinear> {
        let mut v = Vec::new();
        for b in &mut self.blocks {
            v.extend([&mut b.attn.qkv, &mut b.attn.proj]);
            v.extend(b.mlp.linears_mut());
        }
        v.extend([&mut self.merger.fc1, &mut self.merger.fc2]);
        v
    }

    pub fn device(&self) -> &Device {
        self.patch_embed.device()
    }

    /// `pixels`: `[patches, patch_dim]` for all items; returns `[patches / 4, out_hidden]` in raster
    /// order of each item's merged grid, items in input order.
    pub fn forward(&self, pixels: &Tensor, grids: &[[usize; 3]]) -> Result<Tensor> {
        let n: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
        let (rows, dim) = pixels.dims2()?;
        if rows != n || dim != self.cfg.patch_dim() {
            candle_core::bail!(
                "pixel values {:?} do not match grids {:?} (expected [{n}, {}])",
                pixels.dims(),
                grids,
                self.cfg.patch_dim()
            );
        }
        let dev = self.device();
        let group = self.merger.group;
        let x = pixels
            .to_dtype(self.dtype())?
            .matmul(&self.patch_embed.t()?)?;

        let windows = WindowIndex::new(grids, &self.cfg);
        // Merged-token permutation expanded to patches.
        let patch_perm: Vec<u32> = windows
            .index
            .iter()
            .flat_map(|&j| (0..group).map(move |k| (j * group + k) as u32))
            .collect();
        let perm = Tensor::new(patch_perm.as_slice(), dev)?;
        let x = x.index_select(&perm, 0)?;

        let angles = rotary_angles(grids, &self.cfg);
        let half = angles.first().map_or(0, Vec::len);
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for &p in &patch_perm {
            for &a in &angles[p as usize] {
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (n, half), dev)?;
        let sin = Tensor::from_vec(sin, (n, half), dev)?;

        let full = full_attention_seqlens(grids);
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let cu = if self.cfg.fullatt_block_indexes.contains(&i) {
                &full
            } else {
                &windows.cu_seqlens
            };
            x = block.forward(&x, &cos, &sin, cu)?;
        }
        let merged = self.merger.forward(&x)?;
        // Undo the window permutation: output row j holds merged token windows.index[j].
        let mut inverse = vec![0u32; windows.index.len()];
        for (pos, &j) in windows.index.iter().enumerate() {
            inverse[j] = pos as u32;
        }
        merged.index_select(&Tensor::new(inverse.as_slice(), dev)?, 0)
    }
}
