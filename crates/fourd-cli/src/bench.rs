//! `fourd bench model`: prefill and per-token decode timings on CPU (or GPU), side by side with
//! PyTorch + transformers on the same checkpoint and inputs in the same run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use clap::{Args, Subcommand};
use fourd_model::generation::{generate, GenerationConfig, Sampling};
use fourd_model::inputs::PromptInput;
use fourd_model::processor::load_image;
use fourd_model::text::LogitRows;
use fourd_model::tokenizer::{Content, Message};
use fourd_model::ModelBundle;
use fourd_train::optim::{clip_coefficient, grad_norm, AdamW, AdamWConfig, Grads};
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Prefill (image + text) and greedy decode of a Qwen2.5-VL checkpoint.
    Model(BenchModelArgs),
    /// Latent-imagery greedy decoding throughput at several batch sizes.
    Generate(BenchGenerateArgs),
    /// DIFT training-step throughput (forward + loss + backward + AdamW), tokens/s.
    Train(BenchTrainArgs),
    /// Gradient all-reduce over the data-parallel group (NCCL on GPUs): checks the sum and
    /// reports bandwidth, as nccl-tests does. One process is a world of one; more ranks come from
    /// a launcher's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.
    Allreduce(BenchAllreduceArgs),
    /// The optimiser phase of a training step (gradient norm, AdamW) on a language model's
    /// parameter shapes: checks that the fused update equals the tensor-op one, then times both.
    Optimizer(BenchOptimizerArgs),
    /// `fourd serve` under load, on this machine: generated tokens/s, time to first token and
    /// latency (p50, p99) at several numbers of concurrent clients, against one at a time.
    Serve(BenchServeArgs),
    /// Bytes per rank a training run holds, by category (weights, gradients, master weights,
    /// moments, reduction buffers, activations), from the model's real parameter shapes: full
    /// fine-tuning or LoRA, replicated or ZeRO-sharded, and whether it fits a GPU.
    Memory(BenchMemoryArgs),
}

/// The released sizes `bench memory` knows.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReleasedSize {
    #[value(name = "3b")]
    B3,
    #[value(name = "7b")]
    B7,
}

#[derive(Args, Debug)]
pub struct BenchMemoryArgs {
    /// Qwen2.5-VL-3B- or 7B-Instruct's shapes.
    #[arg(
        long,
        value_enum,
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub size: Option<ReleasedSize>,
    /// Or a checkpoint folder whose config.json gives the shapes.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data-parallel ranks.
    #[arg(long, default_value_t = 1)]
    pub world: usize,
    /// ZeRO stage (1 or 2) over the ranks.
    #[arg(long)]
    pub zero: Option<fourd_train::zero::ZeroStage>,
    /// Train a LoRA adapter of this rank (the default targets) instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    #[arg(long)]
    pub gradient_checkpointing: bool,
    #[arg(long, default_value = "bf16", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    /// Tokens of the sequence whose activations are counted (batch 1).
    #[arg(long, default_value_t = 4096)]
    pub seq_len: usize,
    /// The GPU's memory, in GB (10^9 bytes), for the "fits" line.
    #[arg(long, default_value_t = 80.0)]
    pub gpu_gb: f64,
}

#[derive(Args, Debug)]
pub struct BenchServeArgs {
    /// Checkpoint to serve (default: the tiny random latent-token checkpoint of the tests).
    #[arg(long, default_value = "tests/fixtures/latent/model")]
    pub model: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: fourd_model::DeviceSpec,
    #[arg(long, default_value = "f32", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    /// Comma-separated numbers of concurrent clients; 1 is the same requests one at a time.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Requests per run.
    #[arg(long, default_value_t = 48)]
    pub requests: usize,
    /// Generated tokens per request (imagery steps included).
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    #[arg(long, default_value_t = 4)]
    pub latent_size: usize,
    /// Seconds a run may take at most (requests not sent by then are left out).
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
}

/// Parameter shapes of a Qwen2-style language model; the defaults are Qwen2.5-VL-3B's (untied
/// lm_head, as `bench train --size 3b`). Random values: only the shapes matter.
#[derive(Args, Debug)]
pub struct BenchOptimizerArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cuda")]
    pub device: fourd_model::DeviceSpec,
    /// Weight dtype: bf16 (with float32 master weights) or f32.
    #[arg(long, default_value = "bf16", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    #[arg(long, default_value_t = 36)]
    pub layers: usize,
    #[arg(long, default_value_t = 2048)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = 11008)]
    pub intermediate_size: usize,
    /// Width of the key and value projections (key-value heads x head size).
    #[arg(long, default_value_t = 256)]
    pub kv_size: usize,
    #[arg(long, default_value_t = 151_936)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

#[derive(Args, Debug)]
pub struct BenchAllreduceArgs {
    /// cpu, cuda or cuda:N; with several ranks, `cuda` means cuda:LOCAL_RANK.
    #[arg(long, default_value = "cuda")]
    pub device: fourd_model::DeviceSpec,
    /// Float32 elements per all-reduce (the default is a 3B model's gradients in one buffer).
    #[arg(long, default_value_t = 3_090_000_000 / 8)]
    pub elements: usize,
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
}

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// Checkpoint with latent tokens. With --python, tools/reference/bench_train.py writes the
    /// small random one of `bench generate` here.
    #[arg(long, default_value = "/tmp/fourd-bench-train")]
    pub model: PathBuf,
    #[command(flatten)]
    pub common: BenchCommon,
    /// DIFT JSONL whose first record is trained on repeatedly.
    #[arg(long, default_value = "tests/fixtures/dift/record.jsonl")]
    pub data: PathBuf,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Recompute decoder layers in the backward pass (both stacks).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Train a LoRA adapter of this rank (alpha 2r, the default targets and the latent tokens'
    /// rows) instead of every weight, on both stacks (peft on the Python side).
    #[arg(long)]
    pub lora_rank: Option<usize>,
}

#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    /// Checkpoint with latent tokens. With --python, tools/reference/bench_generate.py (the Python
    /// latent loop on transformers) writes a small random one here.
    #[arg(long, default_value = "/tmp/fourd-bench-gen")]
    pub model: PathBuf,
    #[command(flatten)]
    pub common: BenchCommon,
    /// Comma-separated batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    /// New tokens per sequence (imagery steps included).
    #[arg(long, default_value_t = 48)]
    pub tokens: usize,
    #[arg(long, default_value_t = 4)]
    pub latent_size: usize,
}

/// The random model the reference script builds.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSize {
    Tiny,
    Small,
    /// Qwen2.5-VL-3B's shape.
    #[value(name = "3b")]
    ThreeB,
}

impl ModelSize {
    /// The name the reference scripts take.
    fn name(self) -> &'static str {
        match self {
            ModelSize::Tiny => "tiny",
            ModelSize::Small => "small",
            ModelSize::ThreeB => "3b",
        }
    }
}

/// Options every benchmark shares: the reference side and where candle runs.
#[derive(Args, Debug)]
pub struct BenchCommon {
    /// Also run the PyTorch + transformers reference script first, on the same checkpoint folder
    /// (it writes a small random model there) and inputs, and print the ratio.
    #[arg(long)]
    pub python: bool,
    /// Python interpreter for --python.
    #[arg(long, default_value = "python3")]
    pub python_bin: String,
    /// Model size the reference script builds: small, tiny, or 3b (Qwen2.5-VL-3B's shape, random
    /// weights).
    #[arg(long, value_enum, default_value_t = ModelSize::Small)]
    pub size: ModelSize,
    /// Threads for PyTorch (candle's CPU backend uses all cores).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Weight dtype of both stacks (the reference script saves the random model in it).
    #[arg(long, default_value = "f32", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    /// Where both stacks run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: fourd_model::DeviceSpec,
}

impl BenchCommon {
    /// The reference script's arguments every benchmark shares.
    fn script_args(&self, model: &std::path::Path) -> Vec<String> {
        vec![
            "--out".into(),
            model.to_string_lossy().into_owned(),
            "--threads".into(),
            self.threads.to_string(),
            "--size".into(),
            self.size.name().into(),
            "--device".into(),
            self.device.to_string(),
            "--dtype".into(),
            self.dtype.as_str().to_string(),
        ]
    }
}

#[derive(Args, Debug)]
pub struct BenchModelArgs {
    /// Checkpoint to time. With --python, tools/reference/bench_model.py writes a small random
    /// model here.
    #[arg(long, default_value = "/tmp/fourd-bench-model")]
    pub model: PathBuf,
    #[command(flatten)]
    pub common: BenchCommon,
    /// Image used in the prompt.
    #[arg(long, default_value = "tests/fixtures/qwen25vl/media/img_a.png")]
    pub image: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub decode_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Model(a) => bench_model(a),
        BenchCommand::Generate(a) => bench_generate(a),
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::Allreduce(a) => bench_allreduce(a),
        BenchCommand::Optimizer(a) => bench_optimizer(a),
        BenchCommand::Serve(a) => bench_serve(a),
        BenchCommand::Memory(a) => bench_memory(a),
    }
}

fn bench_memory(a: BenchMemoryArgs) -> Result<()> {
    use fourd_train::memory::{estimate, released_config, MemorySetup};
    let (cfg, what) = match (&a.size, &a.model) {
        (Some(size), _) => {
            let name = match size {
                ReleasedSize::B3 => "3b",
                ReleasedSize::B7 => "7b",
            };
            let text = released_config(name).context("a released size")?;
            let raw: serde_json::Value = serde_json::from_str(text)?;
            let cfg = fourd_model::Qwen25VlConfig::from_value(raw, std::path::Path::new(name))?;
            (cfg, format!("Qwen2.5-VL-{}", name.to_uppercase()))
        }
        (None, Some(dir)) => {
            let path = fourd_model::model::config_file(dir)?;
            (
                fourd_model::Qwen25VlConfig::from_file(&path)?,
                dir.display().to_string(),
            )
        }
        (None, None) => bail!("give --size or --model"),
    };
    if a.world == 0 {
        bail!("--world must be at least 1");
    }
    if a.lora_rank == Some(0) {
        bail!("--lora-rank must be at least 1");
    }
    let setup = MemorySetup {
        world: a.world,
        zero: a.zero,
        lora_rank: a.lora_rank,
        gradient_checkpointing: a.gradient_checkpointing,
        dtype: a.dtype,
        seq_len: a.seq_len,
    };
    let e = estimate(&cfg, &setup);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "{what}: {} parameters, {} trained ({}); {} rank(s){}, {}, {} tokens{}",
        e.parameters,
        e.trained,
        match a.lora_rank {
            Some(r) => format!("LoRA rank {r}"),
            None => "full fine-tuning".into(),
        },
        a.world,
        match a.zero {
            Some(z) => format!(
                ", ZeRO-{}",
                if z == fourd_train::zero::ZeroStage::One {
                    1
                } else {
                    2
                }
            ),
            None => String::new(),
        },
        a.dtype.as_str(),
        a.seq_len,
        if a.gradient_checkpointing {
            ", gradient checkpointing"
        } else {
            ""
        }
    );
    println!("per rank:");
    for (name, bytes) in &e.categories {
        println!("  {name:<32} {:>9.2} GiB", gib(*bytes));
    }
    let total = e.total();
    println!("  {:<32} {:>9.2} GiB", "total", gib(total));
    let limit = a.gpu_gb * 1e9;
    println!(
        "fits a {} GB GPU: {} ({:.1} GB of {:.0} GB)",
        a.gpu_gb,
        if (total as f64) <= limit { "yes" } else { "no" },
        total as f64 / 1e9,
        a.gpu_gb
    );
    Ok(())
}

/// Names and shapes of the trainable language-model parameters for `bench optimizer` (an
/// untied `lm_head`, query width = hidden size, as in Qwen2.5-VL).
fn lm_shapes(a: &BenchOptimizerArgs) -> Vec<(String, Vec<usize>)> {
    fourd_train::memory::language_model_shapes(&fourd_train::memory::LanguageModelSizes {
        vocab: a.vocab_size,
        hidden: a.hidden_size,
        intermediate: a.intermediate_size,
        layers: a.layers,
        q: a.hidden_size,
        kv: a.kv_size,
        tied: false,
    })
}

fn bench_optimizer(a: BenchOptimizerArgs) -> Result<()> {
    let device = a.device.open()?;
    let dtype = a.dtype;
    if !matches!(dtype, DType::F32 | DType::BF16) {
        bail!("bench optimizer: --dtype must be f32 or bf16 (f16 weights take the tensor-op update: there is no fused one to compare)");
    }
    let shapes = lm_shapes(&a);
    let random = RandomTensors {
        device: &device,
        dtype,
    };
    let cfg = AdamWConfig {
        lr: 1e-4,
        ..Default::default()
    };
    check_fused_update(&random, &shapes, cfg)?;
    let times = time_optimizer(&random, &shapes, cfg, a.repeats)?;
    print_optimizer_times(&a, &random, &shapes, &times);
    Ok(())
}

/// Random parameters and gradients in the benchmark's dtype on its device: only their shapes
/// matter.
struct RandomTensors<'a> {
    device: &'a Device,
    dtype: DType,
}

impl RandomTensors<'_> {
    /// One variable per `(name, shape)`, normal with standard deviation `scale`.
    fn vars(&self, shapes: &[(String, Vec<usize>)], scale: f64) -> Result<Vec<(String, Var)>> {
        shapes
            .iter()
            .map(|(n, s)| {
                Ok((
                    n.clone(),
                    Var::from_tensor(
                        &(Tensor::randn(0f32, 1f32, s.as_slice(), self.device)? * scale)?
                            .to_dtype(self.dtype)?,
                    )?,
                ))
            })
            .collect()
    }

    /// A random gradient (standard deviation 1e-3) for every variable.
    fn grads(&self, vars: &[(String, Var)]) -> Result<Grads> {
        vars.iter()
            .map(|(_, v)| {
                Ok(Some(
                    (Tensor::randn(0f32, 1f32, v.shape(), self.device)? * 1e-3)?
                        .to_dtype(self.dtype)?,
                ))
            })
            .collect::<Result<_>>()
    }
}

/// Independent copies of `vars`, so two optimisers can start from the same values.
fn copy_vars(vars: &[(String, Var)]) -> Result<Vec<(String, Var)>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?)))
        .collect()
}

/// Phase 1, correctness: the fused update against the tensor-op one, three steps of one layer's
/// tensors (plus a norm) from the same start, then every saved state tensor compared. Also checks
/// the one-pass gradient norm against a float64 reduction. Fails when either differs.
fn check_fused_update(
    random: &RandomTensors,
    shapes: &[(String, Vec<usize>)],
    cfg: AdamWConfig,
) -> Result<()> {
    let sample: Vec<(String, Vec<usize>)> = shapes
        .iter()
        .filter(|(n, _)| n.starts_with("model.layers.0.") || n == "model.norm.weight")
        .cloned()
        .collect();
    let start = random.vars(&sample, 0.02)?;
    let (va, vb) = (copy_vars(&start)?, copy_vars(&start)?);
    let (mut fused, mut composed) = (AdamW::new(va.clone(), cfg)?, AdamW::new(vb, cfg)?);
    composed.fused = false;
    let norm_error = step_both(random, &va, &mut fused, &mut composed)?;
    println!("gradient norm vs a float64 reduction: relative difference {norm_error:.2e}");
    if norm_error > 1e-5 {
        bail!("the gradient norm differs from a float64 reduction by {norm_error:.2e}");
    }
    let worst = largest_state_difference(&fused, &composed)?;
    // Float32 state after three steps: a few ulps apart where the GPU fuses multiply-adds.
    println!("fused vs tensor-op AdamW, 3 steps, {} tensors on {:?}: largest difference {:.2e} of the tensor's largest value ({})",
        sample.len(), random.device, worst.0, worst.1);
    if worst.0 > 1e-5 {
        bail!(
            "the fused AdamW update differs from the tensor-op one by {:.2e} in `{}`",
            worst.0,
            worst.1
        );
    }
    Ok(())
}

/// Three steps of both optimisers with the same random gradients (drawn for `vars`); returns
/// the largest relative difference of the one-pass gradient norm from a float64 reduction with
/// tensor ops.
fn step_both(
    random: &RandomTensors,
    vars: &[(String, Var)],
    fused: &mut AdamW,
    composed: &mut AdamW,
) -> Result<f64> {
    let mut norm_error = 0f64;
    for _ in 0..3 {
        let grads = random.grads(vars)?;
        fused.step(&grads, 1e-3, 0.5)?;
        composed.step(&grads, 1e-3, 0.5)?;
        let mut want = 0f64;
        for g in grads.iter().flatten() {
            want += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        norm_error = norm_error.max((grad_norm(&grads)? - want.sqrt()).abs() / want.sqrt());
    }
    Ok(norm_error)
}

/// Saves both optimisers' states to a temporary folder and reads them back, so what is compared
/// is exactly what a checkpoint would hold; returns the largest difference of a state tensor,
/// relative to that tensor's largest value, with the tensor's name.
fn largest_state_difference(fused: &AdamW, composed: &AdamW) -> Result<(f64, String)> {
    let dir = std::env::temp_dir().join(format!("fourd-bench-optimizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (pa, pb) = (
        dir.join("fused.safetensors"),
        dir.join("composed.safetensors"),
    );
    fused.save(&pa)?;
    composed.save(&pb)?;
    let (sa, sb) = (
        candle_core::safetensors::load(&pa, &Device::Cpu)?,
        candle_core::safetensors::load(&pb, &Device::Cpu)?,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut worst = (0f64, String::new());
    for (k, x) in &sa {
        if k == "step" {
            continue;
        }
        let y = sb
            .get(k)
            .with_context(|| format!("state `{k}` missing from the tensor-op optimiser"))?;
        let d = (x.to_dtype(DType::F64)? - y.to_dtype(DType::F64)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        let r = d / y
            .to_dtype(DType::F64)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?
            .max(1e-30);
        if r > worst.0 || worst.1.is_empty() {
            worst = (r, k.clone());
        }
    }
    Ok(worst)
}

/// Best-of-`repeats` seconds of the optimiser phase's parts.
struct OptimizerTimes {
    norm: f64,
    fused: f64,
    composed: f64,
}

/// Phase 2, timing on every parameter: the gradient norm, then the fused and the tensor-op
/// AdamW step with the clip coefficient that norm gives.
fn time_optimizer(
    random: &RandomTensors,
    shapes: &[(String, Vec<usize>)],
    cfg: AdamWConfig,
    repeats: usize,
) -> Result<OptimizerTimes> {
    let vars = random.vars(shapes, 0.02)?;
    let grads = random.grads(&vars)?;
    let mut opt = AdamW::new(vars, cfg)?;
    let time = |f: &mut dyn FnMut() -> Result<()>| best_time(random.device, repeats, f);
    let mut norm = 0.0;
    let t_norm = time(&mut || {
        norm = grad_norm(&grads)?;
        Ok(())
    })?;
    let scale = clip_coefficient(norm, 1.0);
    opt.fused = true;
    let t_fused = time(&mut || Ok(opt.step(&grads, 1e-6, scale)?))?;
    opt.fused = false;
    let t_composed = time(&mut || Ok(opt.step(&grads, 1e-6, scale)?))?;
    Ok(OptimizerTimes {
        norm: t_norm,
        fused: t_fused,
        composed: t_composed,
    })
}

/// Shortest of `repeats` (at least one) synchronised runs of `f`, after one warm-up run.
fn best_time(device: &Device, repeats: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    device.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let s = Instant::now();
        f()?;
        device.synchronize()?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// The timing table: milliseconds and parameters per second of each part, and the speed-up.
fn print_optimizer_times(
    a: &BenchOptimizerArgs,
    random: &RandomTensors,
    shapes: &[(String, Vec<usize>)],
    t: &OptimizerTimes,
) {
    let n: usize = shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "{} parameters in {} tensors ({} weights, float32 moments{}) on {:?}, best of {}:",
        n,
        shapes.len(),
        a.dtype.as_str(),
        if random.dtype == DType::F32 {
            ""
        } else {
            " and master weights"
        },
        random.device,
        a.repeats.max(1)
    );
    println!("  gradient norm          {:>9.1} ms", t.norm * 1e3);
    println!(
        "  AdamW, fused           {:>9.1} ms  ({:.1} G parameters/s)",
        t.fused * 1e3,
        n as f64 / t.fused / 1e9
    );
    println!(
        "  AdamW, tensor ops      {:>9.1} ms  ({:.1} G parameters/s)",
        t.composed * 1e3,
        n as f64 / t.composed / 1e9
    );
    println!(
        "  speed-up of the fused update: {:.1}x",
        t.composed / t.fused
    );
}

fn bench_allreduce(a: BenchAllreduceArgs) -> Result<()> {
    use fourd_train::dist::{connect, Rendezvous};
    let rv = Rendezvous::from_env()?.unwrap_or(Rendezvous {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master: "127.0.0.1:0".into(),
        timeout: std::time::Duration::from_secs(60),
    });
    // A plain `cuda` means each rank's own GPU.
    let device = match a.device {
        fourd_model::DeviceSpec::Cuda(None) => a.device.for_local_rank(rv.local_rank),
        d => d,
    }
    .open()?;
    if a.elements == 0 {
        bail!("--elements must be at least 1");
    }
    let group = connect(&rv, &device)?;
    let (rank, world) = (group.rank(), group.world_size());
    // Rank r contributes r + 1 everywhere, so every element of the sum is world (world + 1) / 2.
    let x = candle_core::Tensor::full((rank + 1) as f32, a.elements, &device)?;
    let expected = (world * (world + 1) / 2) as f32;
    let check = |t: &candle_core::Tensor| -> Result<()> {
        let (lo, hi) = (t.min(0)?.to_scalar::<f32>()?, t.max(0)?.to_scalar::<f32>()?);
        if lo != expected || hi != expected {
            bail!("all-reduce gave values in [{lo}, {hi}], expected {expected} everywhere");
        }
        Ok(())
    };
    check(&group.all_reduce_tensor(&x)?)?; // warm-up (and the communicator's first use)
    let mut best = f64::INFINITY;
    for _ in 0..a.repeats.max(1) {
        let s = Instant::now();
        let y = group.all_reduce_tensor(&x)?;
        device.synchronize()?;
        best = best.min(s.elapsed().as_secs_f64());
        check(&y)?;
    }
    let bytes = (a.elements * 4) as f64;
    // nccl-tests' bus bandwidth: what each link carries in a ring all-reduce, 2 (n - 1) / n.
    let bus = bytes * 2.0 * (world as f64 - 1.0) / world as f64 / best;
    if rank == 0 {
        println!("all-reduce of {} float32 ({:.2} GB) over {world} rank(s) on {:?}: sum correct, best {:.2} ms, algbw {:.1} GB/s, busbw {:.1} GB/s",
            a.elements, bytes / 1e9, device, best * 1e3, bytes / best / 1e9, bus / 1e9);
    }
    Ok(())
}

fn bench_train(a: BenchTrainArgs) -> Result<()> {
    let reference = if a.common.python {
        let mut args = a.common.script_args(&a.model);
        args.extend(["--steps".into(), a.steps.to_string()]);
        if a.gradient_checkpointing {
            args.push("--gradient-checkpointing".into());
        }
        if let Some(r) = a.lora_rank {
            args.extend(["--lora-rank".into(), r.to_string()]);
        }
        Some(run_reference(
            &a.common.python_bin,
            "tools/reference/bench_train.py",
            &args,
        )?)
    } else {
        None
    };
    if !a.model.join("config.json").exists() {
        bail!(
            "{} has no checkpoint; run with --python once to create the benchmark model",
            a.model.display()
        );
    }
    // The record repeated: one warm-up step plus the timed ones, each its own optimiser step.
    let text = std::fs::read_to_string(&a.data)
        .with_context(|| format!("reading {}", a.data.display()))?;
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .context("empty data file")?;
    let mut rec: Value = serde_json::from_str(line)?;
    let base = a.data.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    for k in ["image_input", "image_output"] {
        if let Some(list) = rec[k].as_array_mut() {
            for p in list.iter_mut() {
                let abs = base.join(p.as_str().unwrap_or_default());
                *p = Value::String(abs.canonicalize().unwrap_or(abs).display().to_string());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("fourd-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data.jsonl");
    std::fs::write(
        &data,
        (0..=a.steps)
            .map(|_| rec.to_string() + "\n")
            .collect::<String>(),
    )?;
    let mut cfg = fourd_train::DiftConfig::new(a.model.clone(), data, dir.join("out"));
    cfg.dtype = a.common.dtype;
    cfg.device = a.common.device.open()?;
    cfg.progress = false;
    cfg.warmup_steps = Some(0);
    cfg.logging_steps = 0;
    cfg.max_length = 1 << 20;
    cfg.gradient_checkpointing = a.gradient_checkpointing;
    cfg.lora = a
        .lora_rank
        .map(|r| fourd_model::lora::LoraSettings::new(r, 2.0 * r as f64));
    let s = fourd_train::train_dift(&cfg)?;
    let log = std::fs::read_to_string(dir.join("out/train_log.jsonl"))?;
    let rates: Vec<f64> = log
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()?
                .get("tokens_per_s")?
                .as_f64()
        })
        .collect();
    // The first step includes start-up; time the rest (each window is one step since logging is off).
    let timed = &rates[1.min(rates.len())..];
    let ours = timed.iter().map(|r| 1.0 / r).sum::<f64>();
    let ours = timed.len() as f64 / ours.max(1e-12);
    println!(
        "fourd (candle 0.11, {:?}): {:.0} tokens/s over {} steps",
        cfg.device,
        ours,
        timed.len()
    );
    if let Some(r) = reference {
        let py = r["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
        let peak = r["peak_gib"]
            .as_f64()
            .map(|g| format!(", peak {g:.1} GiB allocated"))
            .unwrap_or_default();
        println!(
            "{} ({}): {:.0} tokens/s (seq {} tokens{peak})",
            r["stack"].as_str().unwrap_or("PyTorch"),
            reference_where(&r),
            py,
            r["seq_len"]
        );
        if let Some(p) = r["phases_s"].as_object().filter(|p| !p.is_empty()) {
            let part = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            println!("  PyTorch per step (synchronised between parts): forward {:.3} s, backward {:.3} s, clipping + optimiser {:.3} s",
                part("forward"), part("backward"), part("optimizer"));
        }
        println!("ratio fourd / PyTorch: {:.2}x", ours / py);
    }
    let _ = s;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Where the reference ran, from its JSON line: "2 threads" on the CPU, else "cuda, bf16".
fn reference_where(r: &Value) -> String {
    match r["device"].as_str() {
        Some(d) if d != "cpu" => format!("{d}, {}", r["dtype"].as_str().unwrap_or("?")),
        _ => format!("{} threads", r["threads"]),
    }
}

/// Runs a reference script and parses the JSON object on its last stdout line.
fn run_reference(python: &str, script: &str, args: &[String]) -> Result<Value> {
    let script = PathBuf::from(script);
    if !script.exists() {
        bail!(
            "{} not found: run from the repository root",
            script.display()
        );
    }
    eprintln!("running the PyTorch reference ({})...", script.display());
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("starting {python}"))?;
    if !out.status.success() {
        bail!(
            "reference script failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .context("reference script printed nothing")?;
    serde_json::from_str(line).context("reference script output")
}

const PROMPT_WORDS: &str =
    "the red fox jumps over a blue circle while the camera moves to the left and the ball rolls";

fn bench_generate(a: BenchGenerateArgs) -> Result<()> {
    let batches = a.batches.clone();
    let reference = if a.common.python {
        let mut args = a.common.script_args(&a.model);
        args.extend([
            "--batches".into(),
            batches
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "--tokens".into(),
            a.tokens.to_string(),
            "--latent-size".into(),
            a.latent_size.to_string(),
        ]);
        Some(run_reference(
            &a.common.python_bin,
            "tools/reference/bench_generate.py",
            &args,
        )?)
    } else {
        None
    };
    let device = a.common.device.open()?;
    let pipe = ModelBundle::load(&a.model, a.common.dtype, &device)?;
    let latent = pipe.latent_tokens(Some(a.latent_size))?;
    let words: Vec<&str> = PROMPT_WORDS.split(' ').collect();
    println!(
        "model {} (latent_size {}, {} new tokens per sequence, dtype {}, device {})",
        a.model.display(),
        a.latent_size,
        a.tokens,
        a.common.dtype.as_str(),
        a.common.device
    );
    println!(
        "{:<7} {:>18} {:>22} {:>8} {:>14}",
        "batch", "fourd (tokens/s)", "PyTorch loop (tokens/s)", "ratio", "same ids"
    );
    for &bs in &batches {
        let prompts = (0..bs)
            .map(|i| {
                let text = words[..(6 + 2 * i).min(words.len())].join(" ");
                let rendered = pipe.tokenizer.apply_chat_template(
                    &[Message::new("user", vec![Content::Text(text)])],
                    true,
                )?;
                Ok(PromptInput {
                    text: rendered,
                    images: vec![],
                    videos: vec![],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts)?;
        let params = pipe.rope_params();
        let warm = GenerationConfig {
            max_new_tokens: 4,
            sampling: Sampling::default(),
            stop_ids: vec![],
            latent,
        };
        generate(&pipe.model, &inputs, &params, &warm, |_, _, _| {})?;
        let cfg = GenerationConfig {
            max_new_tokens: a.tokens,
            ..warm
        };
        let s = Instant::now();
        let out = generate(&pipe.model, &inputs, &params, &cfg, |_, _, _| {})?;
        let tps = (bs * a.tokens) as f64 / s.elapsed().as_secs_f64();
        let (rt, same) = match reference.as_ref().map(|r| &r["batches"][bs.to_string()]) {
            Some(r) if !r.is_null() => {
                let ids: Vec<Vec<u32>> = r["generated"]
                    .as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|row| {
                                row.as_array()
                                    .map(|x| {
                                        x.iter()
                                            .filter_map(|t| t.as_u64().map(|t| t as u32))
                                            .collect()
                                    })
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ours: Vec<Vec<u32>> = out.iter().map(|o| o.token_ids.clone()).collect();
                (
                    r["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                    (ids == ours).to_string(),
                )
            }
            _ => (f64::NAN, "-".to_string()),
        };
        let latent_steps: usize = out
            .iter()
            .map(|o| o.latent_segments.iter().map(|s| s.len).sum::<usize>())
            .sum();
        println!(
            "{:<7} {:>18.1} {:>22.1} {:>8.2} {:>14}   ({} latent steps)",
            bs,
            tps,
            rt,
            tps / rt,
            same,
            latent_steps
        );
    }
    Ok(())
}

const DEFAULT_QUESTION_REPEATS: usize = 24;

fn bench_model(a: BenchModelArgs) -> Result<()> {
    let question = "Describe the picture in detail. ".repeat(DEFAULT_QUESTION_REPEATS);
    let reference = if a.common.python {
        let mut args = a.common.script_args(&a.model);
        args.extend([
            "--decode-tokens".into(),
            a.decode_tokens.to_string(),
            "--repeats".into(),
            a.repeats.to_string(),
            "--question".into(),
            question.clone(),
        ]);
        Some(run_reference(
            &a.common.python_bin,
            "tools/reference/bench_model.py",
            &args,
        )?)
    } else {
        None
    };

    let device = a.common.device.open()?;
    let pipe = ModelBundle::load(&a.model, a.common.dtype, &device)?;
    let image = load_image(&a.image, pipe.processor.image_processor.pixel_cap)?;
    let text = pipe.tokenizer.apply_chat_template(
        &[Message::new(
            "user",
            vec![Content::Image, Content::Text(question.clone())],
        )],
        true,
    )?;
    let prompt = PromptInput {
        text,
        images: vec![image],
        videos: vec![],
    };
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &[prompt])?;
    let params = pipe.rope_params();

    let prefill_once = || -> Result<f64> {
        let mut cache = pipe.model.new_cache();
        let s = Instant::now();
        let out = pipe
            .model
            .prefill(&inputs, &params, &mut cache, &LogitRows::Last)?;
        out.output.logits.to_vec3::<f32>()?; // wait for the device
        Ok(s.elapsed().as_secs_f64())
    };
    prefill_once()?;
    let prefill_s = (0..a.repeats)
        .map(|_| prefill_once())
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);

    let cfg = GenerationConfig {
        max_new_tokens: a.decode_tokens,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent: None,
    };
    let mut generated = vec![];
    let mut decode_once = || -> Result<f64> {
        let s = Instant::now();
        let out = generate(&pipe.model, &inputs, &params, &cfg, |_, _, _| {})?;
        generated = out[0].token_ids.clone();
        Ok(s.elapsed().as_secs_f64())
    };
    decode_once()?;
    let total = (0..a.repeats)
        .map(|_| decode_once())
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let per_token = (total - prefill_s) / (a.decode_tokens.saturating_sub(1).max(1)) as f64;

    println!(
        "model {} ({} prompt tokens incl. {} image tokens, {} decode tokens, dtype {}, device {})",
        a.model.display(),
        inputs.seq_len(),
        inputs.images[0].llm_tokens(2),
        a.decode_tokens,
        a.common.dtype.as_str(),
        a.common.device
    );
    println!(
        "{:<28} {:>14} {:>18}",
        "stack", "prefill (ms)", "decode (ms/token)"
    );
    println!(
        "{:<28} {:>14.1} {:>18.2}",
        "fourd (candle)",
        prefill_s * 1e3,
        per_token * 1e3
    );
    if let Some(r) = reference {
        let rp = r["prefill_s"].as_f64().unwrap_or(f64::NAN);
        let rd = r["decode_s_per_token"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<28} {:>14.1} {:>18.2}",
            format!("PyTorch ({})", reference_where(&r)),
            rp * 1e3,
            rd * 1e3
        );
        println!(
            "{:<28} {:>14.2} {:>18.2}",
            "ratio fourd / PyTorch",
            prefill_s / rp,
            per_token / rd
        );
        let ref_ids: Vec<u32> = r["generated"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as u32))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "greedy tokens identical to transformers: {}",
            ref_ids == generated
        );
    }
    Ok(())
}

/// `fourd bench serve`: starts the server on a loopback port, then runs the same requests with
/// each number of clients.
fn bench_serve(a: BenchServeArgs) -> Result<()> {
    if a.clients.is_empty() || a.clients.contains(&0) || a.requests == 0 || a.tokens == 0 {
        bail!("--clients, --requests and --tokens must be at least 1");
    }
    let max_clients = a.clients.iter().copied().max().unwrap_or(1);
    let cfg = fourd_serve::ServeConfig {
        model: a.model.clone(),
        adapter: None,
        served_name: "bench".into(),
        dtype: a.dtype,
        device: a.device,
        rope_index: fourd_model::RopeIndexStyle::default(),
        limits: fourd_serve::engine::EngineLimits {
            max_batch: max_clients,
            max_model_len: 32_768,
            latent_size: Some(a.latent_size),
        },
        max_model_len: None,
        max_queue: max_clients * 4,
        max_body_bytes: 1 << 20,
        api_key: None,
        media: fourd_serve::MediaPolicy::default(),
        shutdown_timeout: std::time::Duration::from_secs(5),
    };
    let server = fourd_serve::start(cfg, "127.0.0.1:0".parse()?, None)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("serving {}", a.model.display()))?;
    // Greedy requests of a fixed length (no stop token: `ignore_eos` is not OpenAI's, so the
    // prompts differ and the limit is what ends most answers).
    let words: Vec<&str> = PROMPT_WORDS.split(' ').collect();
    let bodies: Vec<String> = (0..a.requests)
        .map(|i| {
            let question = words[..(4 + i % 12).min(words.len())].join(" ");
            serde_json::json!({
                "messages": [{"role": "user", "content": question}],
                "temperature": 0,
                "max_tokens": a.tokens,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
            .to_string()
        })
        .collect();
    println!(
        "serving {} on {} ({}, {}), {} requests of up to {} tokens per run, latent size {}",
        a.model.display(),
        a.device,
        a.dtype.as_str(),
        server.addr,
        a.requests,
        a.tokens,
        a.latent_size
    );
    println!(
        "{:>7} {:>9} {:>8} {:>10} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "clients",
        "requests",
        "tokens",
        "tokens/s",
        "x one",
        "ttft p50",
        "ttft p99",
        "e2e p50",
        "e2e p99"
    );
    let limit = std::time::Duration::from_secs(a.seconds);
    let mut one = None;
    for &clients in &a.clients {
        let r = fourd_serve::load::run(server.addr, &bodies, clients, a.requests, limit)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let tps = r.tokens_per_second();
        if clients == 1 {
            one = Some(tps);
        }
        let q = fourd_serve::load::quantile;
        println!(
            "{:>7} {:>9} {:>8} {:>10.1} {:>7} {:>9.3}s {:>9.3}s {:>9.3}s {:>9.3}s",
            clients,
            r.requests,
            r.tokens,
            tps,
            one.map_or("-".into(), |o| format!("{:.2}", tps / o)),
            q(&r.ttft, 0.5),
            q(&r.ttft, 0.99),
            q(&r.latency, 0.5),
            q(&r.latency, 0.99),
        );
    }
    server.stop()?;
    Ok(())
}
