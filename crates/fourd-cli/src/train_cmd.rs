//! `fourd train dift` and `fourd train grpo`: the two training stages of 4DThinker.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fourd_train::{train_dift, train_grpo, DiftConfig, GrpoConfig};

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Dynamic-imagery fine-tuning: text cross-entropy + latent cosine loss on DIFT JSONL.
    Dift(DiftArgs),
    /// 4DRL: GRPO with latent rollouts (imagery re-injected), text-only policy gradients, k3 KL.
    Grpo(GrpoArgs),
}

/// Options both trainers share: run folder, length, checkpoints, resume, where it runs.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run folder: final checkpoint, checkpoint-<step>/, runs/ (TensorBoard), train_log.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides --epochs for the schedule).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Save a resumable checkpoint every N steps.
    #[arg(long)]
    pub save_steps: Option<u64>,
    /// Keep at most this many checkpoint-<step> folders (oldest deleted).
    #[arg(long)]
    pub save_total_limit: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Resume from a checkpoint folder, or from the newest checkpoint of a run folder; the run
    /// must have been started with the same model, data and settings.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start afresh in an --out that holds another run, deleting that run's checkpoints, log
    /// and TensorBoard events (without it such a folder is refused).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Stop after this many steps as if interrupted (resumable with --resume).
    #[arg(long, hide = true)]
    pub halt_after: Option<u64>,
    /// Recompute decoder layers in the backward pass (less memory, ~1/3 more compute).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    #[arg(long, default_value = "f32", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    /// `cpu`, `cuda` or `cuda:N`; with several ranks each uses `cuda:LOCAL_RANK` (choose the
    /// GPUs with CUDA_VISIBLE_DEVICES).
    #[arg(long, default_value = "cpu")]
    pub device: fourd_model::DeviceSpec,
    #[arg(long)]
    pub no_progress: bool,
    /// Data parallel over N processes on this machine (one per GPU), started here: each rank
    /// trains on its own shard and gradients are summed (NCCL on GPUs, TCP on CPU). An outer
    /// launcher (torchrun, Slurm) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT instead.
    #[arg(long, visible_alias = "gpus", default_value_t = 1)]
    pub nproc: usize,
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Shard the optimiser state over the ranks (ZeRO): 1 shards the float32 master weights
    /// and AdamW moments, 2 also the accumulated gradients. Checkpoints stay resumable on any
    /// number of ranks, sharded or not.
    #[arg(long)]
    pub zero: Option<fourd_train::zero::ZeroStage>,
}

/// LoRA: train a low-rank adapter (and the latent tokens' rows) on the frozen model instead of
/// every weight; the run writes PEFT's adapter folder.
#[derive(Args, Debug)]
pub struct LoraArgs {
    /// Train a LoRA adapter of this rank (PEFT's `r`) instead of the whole language model.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA alpha: updates are scaled by alpha / rank (default: 2 x rank).
    #[arg(long, requires = "lora_rank")]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' inputs while training.
    #[arg(long, default_value_t = 0.0, requires = "lora_rank")]
    pub lora_dropout: f64,
    /// Projections of the language model that get adapters, by PEFT's module names (comma
    /// separated; default: the attention and MLP projections).
    #[arg(long, value_enum, value_delimiter = ',', requires = "lora_rank")]
    pub lora_targets: Vec<LoraTarget>,
}

/// PEFT's module names of the language model's linear layers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraTarget {
    #[value(name = "q_proj")]
    QProj,
    #[value(name = "k_proj")]
    KProj,
    #[value(name = "v_proj")]
    VProj,
    #[value(name = "o_proj")]
    OProj,
    #[value(name = "gate_proj")]
    GateProj,
    #[value(name = "up_proj")]
    UpProj,
    #[value(name = "down_proj")]
    DownProj,
    #[value(name = "lm_head")]
    LmHead,
}

impl LoraArgs {
    fn settings(&self) -> Option<fourd_model::lora::LoraSettings> {
        let rank = self.lora_rank?;
        let mut s = fourd_model::lora::LoraSettings::new(
            rank,
            self.lora_alpha.unwrap_or(2.0 * rank as f64),
        );
        s.dropout = self.lora_dropout;
        if !self.lora_targets.is_empty() {
            s.targets = self
                .lora_targets
                .iter()
                .filter_map(|t| t.to_possible_value())
                .map(|v| v.get_name().to_string())
                .collect();
        }
        Some(s)
    }
}

#[derive(Args, Debug)]
pub struct GrpoArgs {
    /// Starting checkpoint (a DIFT checkpoint).
    #[arg(long)]
    pub model: PathBuf,
    /// Frozen reference for the KL term (default: --model).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// 4DRL JSONL (`Question`, `A`-`D`, `Correct`, `frame_paths` or `video_path`, `Type`);
    /// relative paths resolve against the file's folder, or --data-root.
    #[arg(long)]
    pub data: PathBuf,
    /// Folder the data file's relative paths resolve against, for files written relative to
    /// another folder (the released 4DThinker JSONL: its repository root).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Prompts per rollout batch (per rank).
    #[arg(long, default_value_t = 1)]
    pub prompts_per_step: usize,
    /// Completions sampled per prompt (the group).
    #[arg(long, default_value_t = 8)]
    pub num_generations: usize,
    /// Optimiser passes over each rollout batch (>1 makes the PPO ratio and clipping real).
    #[arg(long, default_value_t = 2)]
    pub num_iterations: usize,
    /// Sampling temperature of the rollouts (explicit; never taken from generation_config.json).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0.2)]
    pub epsilon: f64,
    /// KL weight (k3 estimator against the reference); 0 skips the reference model.
    #[arg(long, default_value_t = 0.01)]
    pub beta: f64,
    /// Average per completion, then over completions (default: over all text tokens).
    #[arg(long)]
    pub per_sequence: bool,
    #[arg(long, default_value_t = 1e-6)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// At most this many frames per prompt (chosen evenly).
    #[arg(long, default_value_t = 16)]
    pub max_frames: usize,
    /// Long side of a frame at most this many pixels.
    #[arg(long, default_value_t = 448)]
    pub max_side: u32,
    #[arg(long, default_value_t = 1)]
    pub logging_steps: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DiftArgs {
    /// Checkpoint to start from (needs the latent tokens: `fourd model add-latent-tokens`).
    #[arg(long)]
    pub model: PathBuf,
    /// DIFT JSONL (`id`, `text_input`, `text_output`, `image_input`, `image_output`); relative
    /// image paths resolve against the file's folder, or --data-root.
    #[arg(long)]
    pub data: PathBuf,
    /// Folder the data file's relative paths resolve against, for files written relative to
    /// another folder (the released 4DThinker JSONL: its repository root).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Fraction of the steps spent warming up linearly from 0.
    #[arg(long, default_value_t = 0.03)]
    pub warmup_ratio: f64,
    /// Warmup steps (overrides --warmup-ratio).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Records per optimiser step (each record is one sequence).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 0.1)]
    pub ce_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    pub sim_weight: f64,
    /// Weight of the answer's tokens in the cross-entropy (a weighted mean; 1 = the reference).
    #[arg(long, default_value_t = 1.0)]
    pub answer_weight: f64,
    /// Latent steps per `<output_image>` (default: the checkpoint's latent_size).
    #[arg(long)]
    pub latent_size: Option<usize>,
    /// Records longer than this many tokens are skipped and reported.
    #[arg(long, default_value_t = 8192)]
    pub max_length: usize,
    /// Pixel cap per frame and per helper image (reference: 256*28*28).
    #[arg(long, default_value_t = fourd_train::dift_data::DIFT_MAX_PIXELS)]
    pub max_pixels: usize,
    #[arg(long, default_value_t = 10)]
    pub logging_steps: u64,
    /// Train from fresh random weights (normal with this std) instead of the checkpoint's.
    #[arg(long)]
    pub from_scratch: Option<f64>,
    /// Train the vision tower too (the reference keeps it frozen).
    #[arg(long)]
    pub train_vision: bool,
    /// Threads preparing records ahead of the model.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    let nproc = match &cmd {
        TrainCommand::Dift(a) => a.run.nproc,
        TrainCommand::Grpo(a) => a.run.nproc,
    };
    if nproc > 1 && std::env::var_os("WORLD_SIZE").is_none() {
        return launch(nproc);
    }
    match cmd {
        TrainCommand::Dift(a) => {
            let cfg = dift_config(&a)?;
            let s =
                train_dift(&cfg).with_context(|| format!("training on {}", a.data.display()))?;
            if !cfg.group.is_main() {
                return Ok(());
            }
            if let Some(l) = &s.last {
                println!(
                    "{} steps in {:.1} s ({:.0} tokens/s): loss {:.4} (ce {:.4}, sim {:.4}, cos {:.3})",
                    s.steps, s.seconds, s.tokens_per_s, l.loss, l.ce, l.sim, l.cos
                );
            }
            println!(
                "trained on {} example(s) from {} record(s) of {}",
                s.examples_used,
                s.records,
                a.data.display()
            );
            print_output(&s.output, &a.model, a.run.lora.lora_rank.is_some());
            // Skips go on the last line, where a user looks, not only into a file.
            if !s.skipped.is_empty() || s.nan_skipped > 0 {
                let first = s.skipped.first().map_or(String::new(), |k| {
                    format!("; first: {}: {}", k.id, k.reason)
                });
                println!(
                    "warning: {} record(s) skipped, {} batch(es) with a non-finite loss (see {}){first}",
                    s.skipped.len(),
                    s.nan_skipped,
                    s.output.join("skipped.jsonl").display(),
                );
            }
            Ok(())
        }
        TrainCommand::Grpo(a) => {
            let cfg = grpo_config(&a)?;
            let s = train_grpo(&cfg).with_context(|| format!("GRPO on {}", a.data.display()))?;
            if !cfg.group.is_main() {
                return Ok(());
            }
            let n = s.logs.len().max(1) as f64;
            let reward = s.logs.iter().map(|l| l.reward).sum::<f64>() / n;
            let acc = s.logs.iter().map(|l| l.accuracy).sum::<f64>() / n;
            println!(
                "{} steps over {} rollouts in {:.1} s: mean reward {:.3}, accuracy {:.3}; {} flat group(s), {} prompt(s) skipped",
                s.steps, s.rollouts, s.seconds, reward, acc, s.zero_variance_groups, s.skipped_prompts.len()
            );
            print_output(&s.output, &a.model, a.run.lora.lora_rank.is_some());
            if let Some((id, reason)) = s.skipped_prompts.first() {
                println!(
                    "warning: {} prompt(s) skipped; first: {id}: {reason}",
                    s.skipped_prompts.len()
                );
            }
            Ok(())
        }
    }
}

/// Starts `nproc` copies of this command as ranks 0..nproc of one data-parallel run on this
/// machine, and waits for them; when one fails the others are stopped and the error names it.
fn launch(nproc: usize) -> Result<()> {
    let exe = std::env::current_exe().context("locating the fourd executable")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip_value = false;
    for a in std::env::args_os().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        let text = a.to_string_lossy();
        if text == "--nproc" || text == "--gpus" {
            skip_value = true;
            continue;
        }
        if text.starts_with("--nproc=") || text.starts_with("--gpus=") {
            continue;
        }
        args.push(a);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("finding a free port for the ranks to meet on")?;
    tracing::info!("starting {nproc} ranks (rendezvous 127.0.0.1:{port})");
    let mut children = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = std::process::Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank} ({})", exe.display()))?;
        children.push(Some(child));
    }
    loop {
        let mut running = 0;
        for rank in 0..nproc {
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            match child
                .try_wait()
                .with_context(|| format!("waiting for rank {rank}"))?
            {
                None => running += 1,
                Some(status) if status.success() => children[rank] = None,
                Some(status) => {
                    for c in children.iter_mut().flatten() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    anyhow::bail!(
                        "rank {rank} of {nproc} failed ({status}); the other ranks were stopped"
                    );
                }
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The shared options, parsed: dtype and device resolved, the process group joined when a
/// launcher started this process as one rank of several.
/// Where the trained model is, and for an adapter how to run it.
fn print_output(out: &std::path::Path, model: &std::path::Path, adapter: bool) {
    match adapter {
        true => println!(
            "checkpoint: {} (a LoRA adapter in PEFT's format: --model {} --adapter {})",
            out.display(),
            model.display(),
            out.display()
        ),
        false => println!("checkpoint: {}", out.display()),
    }
}

struct Run {
    dtype: candle_core::DType,
    device: candle_core::Device,
    group: fourd_train::ProcessGroup,
}

impl RunArgs {
    fn resolve(&self) -> Result<Run> {
        let dtype = self.dtype;
        let Some(rv) = fourd_train::dist::Rendezvous::from_env()? else {
            return Ok(Run {
                dtype,
                device: self.device.open()?,
                group: fourd_train::ProcessGroup::single(),
            });
        };
        if self.nproc > 1 && self.nproc != rv.world_size {
            anyhow::bail!(
                "--nproc {} but WORLD_SIZE={}: give one or the other",
                self.nproc,
                rv.world_size
            );
        }
        let device = self.device.for_local_rank(rv.local_rank).open()?;
        let group = fourd_train::dist::join(&rv, &device).with_context(|| {
            format!(
                "joining the data-parallel group as rank {} of {}",
                rv.rank, rv.world_size
            )
        })?;
        Ok(Run {
            dtype,
            device,
            group,
        })
    }
}

/// Sets the fields both configurations share.
macro_rules! apply_run {
    ($c:expr, $r:expr, $run:expr) => {{
        $c.epochs = $r.epochs;
        $c.max_steps = $r.max_steps;
        $c.save_steps = $r.save_steps;
        $c.save_total_limit = $r.save_total_limit;
        $c.seed = $r.seed;
        $c.resume = $r.resume.clone();
        $c.overwrite = $r.overwrite;
        $c.halt_after = $r.halt_after;
        $c.gradient_checkpointing = $r.gradient_checkpointing;
        $c.dtype = $run.dtype;
        $c.device = $run.device;
        $c.progress = !$r.no_progress;
        $c.group = $run.group.clone();
        $c.lora = $r.lora.settings();
        $c.zero = $r.zero;
    }};
}

pub fn grpo_config(a: &GrpoArgs) -> Result<GrpoConfig> {
    let run = a.run.resolve()?;
    let mut c = GrpoConfig::new(a.model.clone(), a.data.clone(), a.run.out.clone());
    apply_run!(c, a.run, run);
    c.reference = a.reference.clone();
    c.data_root = a.data_root.clone();
    c.prompts_per_step = a.prompts_per_step;
    c.num_generations = a.num_generations;
    c.num_iterations = a.num_iterations;
    c.temperature = a.temperature;
    c.top_p = a.top_p;
    c.top_k = a.top_k;
    c.max_new_tokens = a.max_new_tokens;
    c.epsilon = a.epsilon;
    c.beta = a.beta;
    c.per_sequence = a.per_sequence;
    c.optim.lr = a.lr;
    c.optim.weight_decay = a.weight_decay;
    c.warmup_steps = a.warmup_steps;
    c.max_grad_norm = a.max_grad_norm;
    c.max_frames = a.max_frames;
    c.max_side = a.max_side;
    c.logging_steps = a.logging_steps;
    Ok(c)
}

pub fn dift_config(a: &DiftArgs) -> Result<DiftConfig> {
    let run = a.run.resolve()?;
    let mut c = DiftConfig::new(a.model.clone(), a.data.clone(), a.run.out.clone());
    apply_run!(c, a.run, run);
    c.data_root = a.data_root.clone();
    c.optim.lr = a.lr;
    c.optim.weight_decay = a.weight_decay;
    c.optim.beta1 = a.beta1;
    c.optim.beta2 = a.beta2;
    c.warmup_ratio = a.warmup_ratio;
    c.warmup_steps = a.warmup_steps;
    c.grad_accum = a.grad_accum;
    c.max_grad_norm = a.max_grad_norm;
    c.loss.ce = a.ce_weight;
    c.loss.sim = a.sim_weight;
    c.loss.answer = a.answer_weight;
    c.latent_size = a.latent_size;
    c.max_length = a.max_length;
    c.max_pixels = a.max_pixels;
    c.logging_steps = a.logging_steps;
    c.from_scratch = a.from_scratch;
    c.train_vision = a.train_vision;
    c.workers = a.workers;
    Ok(c)
}
