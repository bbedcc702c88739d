//! `fourd train grpo`: 4DRL, GRPO with latent rollouts.
//!
//! Per optimiser step: `prompts_per_step` prompts from this rank's shard of the epoch order, each
//! answered `num_generations` times by the generation engine with explicit sampling settings
//! (temperature 1.0 unless set; never silently greedy), recording each completion's latent
//! hidden states. Rewards -> group-normalised advantages; groups whose rewards are all equal
//! are counted and dropped. The objective ([`crate::grpo_core`]) re-injects the recorded imagery
//! in the policy and reference passes; "old" log-probs are the sampling-time ones (equal to a
//! recomputation by construction, see the tests), and `num_iterations` passes over the same
//! rollouts make the ratio and clipping real. Each pass is one optimiser step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use fourd_model::generation::{generate, GenerationConfig, LatentTokens, Sampling, TokenKind};
use fourd_model::inputs::ModelInputs;
use fourd_model::{ModelBundle, Qwen25VL};
use serde::Serialize;

use crate::checkpoint::{rotate_checkpoints, save_checkpoint, write_json, TrainerState};
use crate::dift::epoch_order;
use crate::error::{Result, TrainError};
use crate::grpo_core::{completion_logprobs, grpo_term, Objective, Rollout};
use crate::optim::{backward_grads, AdamWConfig, LinearSchedule};
use crate::rewards::{default_rewards, group_advantages, AnswerKey, Reward};
use crate::rl_data::{load_rl_frames, read_rl_jsonl, rl_prompt};
use crate::tensorboard::EventWriter;
use fourd_records::McQuestion;

#[derive(Clone, Debug)]
pub struct GrpoConfig {
    pub model: PathBuf,
    /// Frozen reference for the KL term (default: the starting checkpoint).
    pub reference: Option<PathBuf>,
    pub data: PathBuf,
    /// Where the data file's relative paths resolve (default: its folder; `fourd_records::paths`).
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
    pub epochs: usize,
    pub max_steps: Option<u64>,
    pub prompts_per_step: usize,
    pub num_generations: usize,
    pub num_iterations: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub max_new_tokens: usize,
    pub epsilon: f64,
    pub beta: f64,
    /// Per-sequence averaging instead of token-level.
    pub per_sequence: bool,
    pub optim: AdamWConfig,
    pub warmup_steps: u64,
    pub max_grad_norm: f64,
    pub max_frames: usize,
    pub max_side: u32,
    pub save_steps: Option<u64>,
    pub save_total_limit: Option<usize>,
    pub logging_steps: u64,
    pub seed: u64,
    pub resume: Option<PathBuf>,
    pub halt_after: Option<u64>,
    /// The data-parallel group: each rank samples its own prompts (a sharded sampler) and
    /// rollouts; gradients are summed over ranks. Rank 0 writes all outputs.
    pub group: crate::dist::ProcessGroup,
    pub dtype: DType,
    pub device: Device,
    pub progress: bool,
    /// Start afresh in a run folder that holds another run, deleting that run's files.
    pub overwrite: bool,
    /// Recompute decoder layers in the backward pass instead of keeping their activations.
    pub gradient_checkpointing: bool,
    /// Reward functions, summed with their weights (default: accuracy 1.0 + format 0.2).
    pub rewards: Vec<Arc<dyn Reward>>,
    /// Train a LoRA adapter on the frozen `model`; the KL reference is then that model itself
    /// (the policy without its adapter, sharing its weights) unless `reference` says otherwise.
    pub lora: Option<fourd_model::lora::LoraSettings>,
    /// Shard the optimiser state (and, at stage 2, the accumulated gradients) over the group.
    pub zero: Option<crate::zero::ZeroStage>,
}

impl GrpoConfig {
    pub fn new(model: PathBuf, data: PathBuf, out: PathBuf) -> Self {
        GrpoConfig {
            model,
            reference: None,
            data,
            data_root: None,
            out,
            epochs: 1,
            max_steps: None,
            prompts_per_step: 1,
            num_generations: 8,
            num_iterations: 2,
            temperature: 1.0,
            top_p: None,
            top_k: None,
            max_new_tokens: 512,
            epsilon: 0.2,
            beta: 0.01,
            per_sequence: false,
            optim: AdamWConfig {
                lr: 1e-6,
                weight_decay: 0.0,
                ..Default::default()
            },
            warmup_steps: 0,
            max_grad_norm: 1.0,
            max_frames: 16,
            max_side: 448,
            save_steps: None,
            save_total_limit: None,
            logging_steps: 1,
            seed: 42,
            resume: None,
            halt_after: None,
            group: crate::dist::ProcessGroup::single(),
            dtype: DType::F32,
            device: Device::Cpu,
            progress: true,
            rewards: default_rewards(),
            overwrite: false,
            gradient_checkpointing: false,
            lora: None,
            zero: None,
        }
    }
}

/// One line of `train_log.jsonl` per rollout batch.
#[derive(Clone, Debug, Serialize, Default)]
pub struct GrpoLog {
    pub step: u64,
    pub rollout: u64,
    pub reward: f64,
    pub reward_std: f64,
    pub rewards: Vec<(String, f64, f64)>,
    pub accuracy: f64,
    pub format: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub ratio_mean: f64,
    pub loss: f64,
    pub completion_length: f64,
    pub imagery_segments: f64,
    pub zero_variance_groups: usize,
    pub skipped_prompts: usize,
    pub lr: f64,
    pub grad_norm: f64,
}

impl GrpoConfig {
    /// Checks the settings before anything is read or loaded; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        if self.num_generations < 2 {
            return Err(TrainError::Config(
                "--num-generations must be at least 2 (advantages are relative within a group)"
                    .into(),
            ));
        }
        use crate::flags::{at_least_one, data_file, finite_at_least as finite};
        finite("lr", self.optim.lr, 0.0)?;
        finite("weight-decay", self.optim.weight_decay, 0.0)?;
        finite("max-grad-norm", self.max_grad_norm, 0.0)?;
        finite("epsilon", self.epsilon, 0.0)?;
        finite("beta", self.beta, 0.0)?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::Config(format!(
                "--temperature must be a finite number > 0 (got {}): rollouts sample",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(TrainError::Config(format!(
                    "--top-p must be in (0, 1] (got {p})"
                )));
            }
        }
        at_least_one(&[
            ("epochs", self.epochs),
            ("prompts-per-step", self.prompts_per_step),
            ("num-iterations", self.num_iterations),
            ("max-new-tokens", self.max_new_tokens),
            ("max-frames", self.max_frames),
        ])?;
        crate::trainable::check_lora_flags(
            self.lora.as_ref(),
            self.gradient_checkpointing,
            false,
            false,
        )?;
        crate::trainable::check_model_folder(&self.model)?;
        data_file(&self.data)
    }

    /// What a run is started with: model, reference and data identities and every setting that
    /// changes the trained weights.
    pub fn manifest(&self) -> Result<fourd_job::JobManifest> {
        let id = |p: &std::path::Path| fourd_job::identity::model_identity(p);
        Ok(fourd_job::JobManifest::new("fourd train grpo")
            .input("model", id(&self.model)?)
            .input(
                "reference",
                id(self.reference.as_deref().unwrap_or(&self.model))?,
            )
            .input("data", fourd_job::identity::file_digest(&self.data)?)
            .setting("data_root", &self.data_root)
            .setting("epochs", self.epochs)
            .setting("max_steps", self.max_steps)
            .setting("prompts_per_step", self.prompts_per_step)
            .setting("num_generations", self.num_generations)
            .setting("num_iterations", self.num_iterations)
            .setting("temperature", self.temperature)
            .setting("top_p", self.top_p)
            .setting("top_k", self.top_k)
            .setting("max_new_tokens", self.max_new_tokens)
            .setting("epsilon", self.epsilon)
            .setting("beta", self.beta)
            .setting("per_sequence", self.per_sequence)
            .setting("optimizer", format!("{:?}", self.optim))
            .setting("warmup_steps", self.warmup_steps)
            .setting("max_grad_norm", self.max_grad_norm)
            .setting("max_frames", self.max_frames)
            .setting("lora", self.lora.as_ref().map(|l| format!("{l:?}")))
            .setting("max_side", self.max_side)
            .setting("world_size", self.group.world_size())
            .setting("seed", self.seed)
            .setting(
                "rewards",
                self.rewards
                    .iter()
                    .map(|r| format!("{}*{}", r.name(), r.weight()))
                    .collect::<Vec<_>>(),
            )
            .setting("dtype", self.dtype.as_str()))
    }
}

/// A prompt whose frames could not be read: its id and why.
pub type SkippedPrompt = (String, String);

#[derive(Clone, Debug, Serialize)]
pub struct GrpoSummary {
    pub steps: u64,
    pub rollouts: u64,
    pub skipped_prompts: Vec<SkippedPrompt>,
    pub zero_variance_groups: u64,
    pub logs: Vec<GrpoLog>,
    pub seconds: f64,
    pub output: PathBuf,
}

struct Sampled {
    rollout: Rollout,
    text: String,
    record: usize,
    segments: usize,
}

pub fn train_grpo(cfg: &GrpoConfig) -> Result<GrpoSummary> {
    let started = Instant::now();
    cfg.validate()?;
    // Rank 0 owns the run folder for the whole run.
    let _lock = match cfg.group.is_main() {
        true => Some(crate::run_folder::open(
            &cfg.out,
            &cfg.manifest()?,
            cfg.resume.is_some(),
            cfg.overwrite,
        )?),
        false => None,
    };
    let mut trainer = GrpoTrainer::start(cfg)?;
    trainer.train()?;
    trainer.finish(started)
}

/// One rollout batch, ready for the policy passes: the completions that carry signal with their
/// video features, reference and "old" log-probs, text masks, and counts over all ranks.
struct PreparedBatch {
    /// Indices into the sampled completions of the rows with an advantage.
    active: Vec<usize>,
    feats: Vec<Tensor>,
    refs: Vec<Option<Vec<f32>>>,
    olds: Vec<Vec<f32>>,
    masks: Vec<Vec<bool>>,
    /// Over all ranks: rows with an advantage, and their text tokens.
    n_active: f64,
    n_tokens: f64,
}

/// One GRPO run while it trains: policy, frozen reference, optimiser, prompts and schedule.
struct GrpoTrainer<'a> {
    cfg: &'a GrpoConfig,
    state: TrainerState,
    /// The policy and what of it trains.
    model: crate::trainable::TrainingModel,
    pipe: Arc<ModelBundle>,
    vars: Vec<(String, candle_core::Var)>,
    checkpoint_grads: Option<fourd_model::text::CheckpointGrads>,
    reference: Option<Qwen25VL>,
    latent: LatentTokens,
    opt: crate::zero::Optimizer,
    records: Vec<McQuestion>,
    schedule: LinearSchedule,
    total_steps: u64,
    /// Prompts per rank and epoch (every shard has the same length).
    shard_len: usize,
    tb: Option<EventWriter>,
    bar: Option<indicatif::ProgressBar>,
    summary: GrpoSummary,
    first_step: u64,
    halted: bool,
}

impl<'a> GrpoTrainer<'a> {
    /// Loads the policy (fresh or resumed), the reference, the optimiser, the prompts and the
    /// schedule.
    fn start(cfg: &'a GrpoConfig) -> Result<Self> {
        let (state, resume_dir) = crate::dift::starting_state(cfg.resume.as_deref(), cfg.seed)?;
        let model = crate::trainable::load(&crate::trainable::LoadSpec {
            model: &cfg.model,
            resume: resume_dir.as_deref(),
            from_scratch: None,
            seed: state.seed,
            dtype: cfg.dtype,
            device: &cfg.device,
            train_vision: false,
            lora: cfg.lora.as_ref(),
            gradient_checkpointing: cfg.gradient_checkpointing,
        })?;
        let weights_dir = model.weights_dir.clone();
        let pipe = model.bundle.clone();
        let checkpoint_grads = model.checkpoint_grads.clone();
        let reference = match (&cfg.reference, model.is_adapter()) {
            _ if cfg.beta == 0.0 => None,
            // The frozen starting model is the policy without its adapter: no second copy.
            (None, true) => Some(pipe.model.without_adapter()),
            (given, _) => Some(Qwen25VL::load(
                given.as_deref().unwrap_or(&cfg.model),
                cfg.dtype,
                &cfg.device,
            )?),
        };
        let latent = pipe.latent_tokens(None)?.ok_or_else(|| {
            TrainError::Config(format!(
                "{} has no latent tokens; 4DRL starts from a DIFT checkpoint",
                weights_dir.display()
            ))
        })?;
        let vars = model.vars.clone();
        let mut opt = crate::zero::Optimizer::new(vars.clone(), cfg.optim, cfg.zero, &cfg.group)?;
        if let Some(d) = &resume_dir {
            opt.load(&d.join("optimizer.safetensors"))?;
        }
        let records = read_rl_jsonl(&cfg.data, cfg.data_root.as_deref())?;
        let group = &cfg.group;
        group.check_same("the number of prompts", records.len() as u64)?;
        group.check_same("the starting step", state.global_step)?;
        // Sharded sampler: rank r takes every world_size-th prompt of the epoch order, the order
        // wrapping round so that every shard has the same length (ranks must take the same
        // number of steps).
        let shard_len = records.len().div_ceil(group.world_size());
        let per_step = cfg.prompts_per_step.max(1);
        let steps_per_epoch = (shard_len.div_ceil(per_step) * cfg.num_iterations.max(1)) as u64;
        let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs as u64);
        let main = group.is_main();
        let resumed_at = resume_dir.is_some().then_some(state.global_step);
        let tb = match main {
            true => Some(crate::dift::open_log(&cfg.out, resumed_at)?),
            false => None,
        };
        Ok(GrpoTrainer {
            schedule: LinearSchedule {
                peak: cfg.optim.lr,
                warmup_steps: cfg.warmup_steps,
                total_steps,
            },
            tb,
            bar: (cfg.progress && main).then(|| indicatif::ProgressBar::new(total_steps)),
            summary: GrpoSummary {
                steps: 0,
                rollouts: 0,
                skipped_prompts: vec![],
                zero_variance_groups: 0,
                logs: vec![],
                seconds: 0.0,
                output: cfg.out.clone(),
            },
            first_step: state.global_step,
            cfg,
            state,
            model,
            pipe,
            vars,
            checkpoint_grads,
            reference,
            latent,
            opt,
            records,
            total_steps,
            shard_len,
            halted: false,
        })
    }

    /// The epochs from the starting position on: rollout batches until the schedule ends or
    /// the run halts.
    fn train(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let (rank, world) = (cfg.group.rank(), cfg.group.world_size());
        let per_step = cfg.prompts_per_step.max(1);
        for epoch in self.state.epoch..cfg.epochs.max(1) {
            let full = epoch_order(self.records.len(), self.state.seed, epoch);
            let order: Vec<usize> = if world == 1 || full.is_empty() {
                full
            } else {
                (0..self.shard_len)
                    .map(|k| full[(rank + k * world) % full.len()])
                    .collect()
            };
            let mut position = if epoch == self.state.epoch {
                self.state.position
            } else {
                0
            };
            while position < order.len() {
                if self.state.global_step >= self.total_steps {
                    return Ok(());
                }
                let batch = &order[position..(position + per_step).min(order.len())];
                position += batch.len();
                self.batch(batch)?;
                self.state.epoch = epoch;
                self.state.position = position;
                if self.after_batch()? {
                    return Ok(());
                }
            }
            self.state.epoch = epoch + 1;
            self.state.position = 0;
        }
        Ok(())
    }

    /// One rollout batch: sample, score, then `num_iterations` policy steps on it.
    fn batch(&mut self, batch: &[usize]) -> Result<()> {
        let cfg = self.cfg;
        // Rollouts, seeded by (seed, step, rank): a resumed run samples the same completions.
        let rollout_seed = self
            .state
            .seed
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(self.state.global_step * 7919 + cfg.group.rank() as u64);
        let (sampled, skipped) = rollouts(
            &self.pipe,
            &self.records,
            batch,
            cfg,
            self.latent,
            rollout_seed,
        )?;
        // Rollout statistics, pooled over ranks (every rank computes the same numbers).
        let mut counts = [sampled.len() as f64, skipped.len() as f64];
        cfg.group.sum_f64(&mut counts)?;
        self.summary.rollouts += counts[0] as u64;
        for s in &skipped {
            tracing::warn!("prompt {} skipped: {}", s.0, s.1);
        }
        let mut log = GrpoLog {
            rollout: self.summary.rollouts,
            skipped_prompts: counts[1] as usize,
            ..Default::default()
        };
        self.summary.skipped_prompts.extend(skipped);
        if counts[0] == 0.0 {
            return Ok(());
        }
        let adv = self.score(&sampled, &mut log)?;
        let prepared = self.prepare(&sampled, &adv, &mut log)?;
        for _iteration in 0..cfg.num_iterations.max(1) {
            if self.state.global_step >= self.total_steps || prepared.n_active == 0.0 {
                break;
            }
            if !self.policy_step(&sampled, &adv, &prepared, &mut log)? {
                break;
            }
        }
        if prepared.n_active == 0.0 {
            // Nothing to learn from this batch: log the rollout statistics at the current step.
            log.step = self.state.global_step;
            if let Some(tb) = self.tb.as_mut() {
                write_log(tb, &cfg.out.join("train_log.jsonl"), &log)?;
            }
            self.summary.logs.push(log);
        }
        Ok(())
    }

    /// Rewards and their statistics into `log`; returns the group-normalised advantages
    /// (within a group, so within a rank).
    fn score(&self, sampled: &[Sampled], log: &mut GrpoLog) -> Result<Vec<Option<f64>>> {
        let (cfg, group, rewards) = (self.cfg, &self.cfg.group, &self.cfg.rewards);
        let mut total_rewards = Vec::with_capacity(sampled.len());
        let mut per_reward = vec![Vec::with_capacity(sampled.len()); rewards.len()];
        for s in sampled {
            let rec = &self.records[s.record];
            let key = AnswerKey {
                correct: &rec.answer,
                options: &rec.options,
            };
            let mut r = 0.0;
            for (k, rw) in rewards.iter().enumerate() {
                let v = rw.score(&s.text, key);
                per_reward[k].push(v);
                r += rw.weight() * v;
            }
            total_rewards.push(r);
        }
        let adv = group_advantages(&total_rewards, cfg.num_generations);
        let (mean, std) = pooled_mean_std(group, &total_rewards)?;
        log.reward = mean;
        log.reward_std = std;
        for (k, rw) in rewards.iter().enumerate() {
            let (m, s) = pooled_mean_std(group, &per_reward[k])?;
            log.rewards.push((rw.name().to_string(), m, s));
            if rw.name() == "accuracy" {
                log.accuracy = m;
            }
            if rw.name() == "format" {
                log.format = m;
            }
        }
        let lengths: Vec<f64> = sampled
            .iter()
            .map(|s| s.rollout.text_mask().iter().filter(|&&m| m).count() as f64)
            .collect();
        let segments: Vec<f64> = sampled.iter().map(|s| s.segments as f64).collect();
        log.completion_length = pooled_mean_std(group, &lengths)?.0;
        log.imagery_segments = pooled_mean_std(group, &segments)?.0;
        Ok(adv)
    }

    /// The rows that carry signal, with their video features (frozen tower, computed once),
    /// reference log-probs, "old" log-probs and masks; zero-variance groups counted into `log`.
    fn prepare(
        &mut self,
        sampled: &[Sampled],
        adv: &[Option<f64>],
        log: &mut GrpoLog,
    ) -> Result<PreparedBatch> {
        let cfg = self.cfg;
        let params = self.pipe.rope_params();
        let zero_groups = adv
            .chunks(cfg.num_generations)
            .filter(|g| g.iter().all(Option::is_none))
            .count();
        let active: Vec<usize> = (0..sampled.len()).filter(|&i| adv[i].is_some()).collect();
        let feats: Vec<Tensor> = active
            .iter()
            .map(|&i| {
                let v = &sampled[i].rollout.video;
                let px = ModelInputs::pixel_tensor(std::slice::from_ref(v), &cfg.device)?
                    .expect("one video");
                Ok(self.pipe.model.encode_vision(&px, &[v.grid_thw])?.detach())
            })
            .collect::<Result<_>>()?;
        let logprobs = |model: &Qwen25VL, i: usize, f: &Tensor| -> Result<Vec<f32>> {
            Ok(completion_logprobs(
                model,
                &params,
                &self.latent,
                &sampled[i].rollout,
                f,
                true,
                cfg.temperature,
            )?
            .detach()
            .to_vec1::<f32>()?)
        };
        let refs: Vec<Option<Vec<f32>>> = match &self.reference {
            Some(m) => active
                .iter()
                .zip(&feats)
                .map(|(&i, f)| logprobs(m, i, f).map(Some))
                .collect::<Result<_>>()?,
            None => vec![None; active.len()],
        };
        let masks: Vec<Vec<bool>> = active
            .iter()
            .map(|&i| sampled[i].rollout.text_mask())
            .collect();
        // "Old" log-probs: the sampling-time ones, which the re-injected pass reproduces; with a
        // temperature other than 1 the objective uses logits / T, so they are recomputed once
        // (without a graph) under the sampling policy before any update.
        let olds: Vec<Vec<f32>> = if (cfg.temperature - 1.0).abs() < 1e-12 {
            active
                .iter()
                .map(|&i| {
                    let lp = &sampled[i].rollout.sample_logprobs;
                    lp.iter().map(|x| x.unwrap_or(0.0)).collect()
                })
                .collect()
        } else {
            active
                .iter()
                .zip(&feats)
                .map(|(&i, f)| logprobs(&self.pipe.model, i, f))
                .collect::<Result<_>>()?
        };
        // The normaliser is over all ranks' completions, so summing the ranks' gradients
        // gives exactly the single-process objective on the union of their rollouts.
        let tokens = masks
            .iter()
            .map(|m| m.iter().filter(|&&x| x).count())
            .sum::<usize>();
        let mut totals = [zero_groups as f64, active.len() as f64, tokens as f64];
        cfg.group.sum_f64(&mut totals)?;
        let [zero_groups, n_active, n_tokens] = totals;
        self.summary.zero_variance_groups += zero_groups as u64;
        log.zero_variance_groups = zero_groups as usize;
        Ok(PreparedBatch {
            active,
            feats,
            refs,
            olds,
            masks,
            n_active,
            n_tokens,
        })
    }

    /// The forward and backward passes of one policy step: gradients into `acc`, statistics
    /// (loss, kl, clipped, ratio, tokens) into `stats`.
    fn policy_passes(
        &mut self,
        sampled: &[Sampled],
        adv: &[Option<f64>],
        b: &PreparedBatch,
        obj: Objective,
        acc: &mut crate::zero::StepGradients,
        stats: &mut [f64; 5],
    ) -> Result<()> {
        let cfg = self.cfg;
        let params = self.pipe.rope_params();
        // ZeRO-2 reduces after every pass, a collective: every rank takes as many slots as the
        // rank with the most rows, empty ones past its own.
        if self.opt.reduces_per_micro_batch() {
            let most = cfg
                .group
                .counts(b.active.len())?
                .into_iter()
                .max()
                .unwrap_or(0);
            for _ in b.active.len()..most {
                self.opt.accumulate(acc, None)?;
            }
        }
        for (k, &i) in b.active.iter().enumerate() {
            let logp = completion_logprobs(
                &self.pipe.model,
                &params,
                &self.latent,
                &sampled[i].rollout,
                &b.feats[k],
                true,
                cfg.temperature,
            )?;
            let row_tokens = b.masks[k].iter().filter(|&&x| x).count();
            let normalizer = if cfg.per_sequence {
                row_tokens.max(1) as f64 * b.n_active
            } else {
                b.n_tokens.max(1.0)
            };
            let (term, st) = grpo_term(
                &logp,
                &b.olds[k],
                b.refs[k].as_deref(),
                &b.masks[k],
                adv[i].unwrap_or(0.0),
                obj,
                normalizer,
            )?;
            let value = term.to_scalar::<f32>()?;
            if !value.is_finite() {
                self.state.nan_skipped += 1;
                tracing::warn!(
                    "non-finite loss on a completion; skipped ({} so far)",
                    self.state.nan_skipped
                );
                self.opt.accumulate(acc, None)?;
                continue;
            }
            let parts = [
                value as f64,
                st.kl_sum,
                st.clipped as f64,
                st.ratio_sum,
                st.tokens as f64,
            ];
            for (s, v) in stats.iter_mut().zip(parts) {
                *s += v;
            }
            let grads = backward_grads(
                &term.backward()?,
                self.checkpoint_grads.as_ref(),
                &self.vars,
            )?;
            self.opt.accumulate(acc, Some(grads))?;
        }
        Ok(())
    }

    /// One pass of the clipped objective over the batch and one optimiser step, logged; false
    /// when no rank had a finite term (nothing to step on).
    fn policy_step(
        &mut self,
        sampled: &[Sampled],
        adv: &[Option<f64>],
        b: &PreparedBatch,
        log: &mut GrpoLog,
    ) -> Result<bool> {
        let cfg = self.cfg;
        let obj = Objective {
            epsilon: cfg.epsilon,
            beta: cfg.beta,
        };
        let mut acc = crate::zero::StepGradients::default();
        // loss, kl, clipped, ratio, tokens
        let mut stats = [0f64; 5];
        // LoRA dropout in the training passes only (rollouts and the reference never drop).
        self.model.set_dropout(true);
        let passes = self.policy_passes(sampled, adv, b, obj, &mut acc, &mut stats);
        self.model.set_dropout(false);
        passes?;
        cfg.group.sum_f64(&mut stats)?;
        let Some(grads) = self.opt.sum(acc)? else {
            return Ok(false);
        };
        let [loss_sum, kl_sum, clipped, ratio_sum, toks] = stats;
        let norm = self.opt.grad_norm(&grads)?;
        let lr = self.schedule.lr(self.state.global_step);
        self.opt.step(&grads, lr, 1.0, norm, cfg.max_grad_norm)?;
        self.state.global_step += 1;
        self.state.examples_seen += b.n_active as u64;
        log.step = self.state.global_step;
        log.loss = loss_sum;
        log.kl = kl_sum / toks.max(1.0);
        log.clip_fraction = clipped / toks.max(1.0);
        log.ratio_mean = ratio_sum / toks.max(1.0);
        log.lr = lr;
        log.grad_norm = norm;
        self.record_step(log)?;
        Ok(true)
    }

    /// The step's line in TensorBoard, `train_log.jsonl`, the progress bar and the log.
    fn record_step(&mut self, log: &GrpoLog) -> Result<()> {
        let cfg = self.cfg;
        if let Some(tb) = self.tb.as_mut() {
            write_log(tb, &cfg.out.join("train_log.jsonl"), log)?;
        }
        self.summary.logs.push(log.clone());
        if let Some(b) = &self.bar {
            b.set_position(self.state.global_step);
            b.set_message(format!(
                "reward {:.3} acc {:.2} kl {:.4}",
                log.reward, log.accuracy, log.kl
            ));
        }
        let step = self.state.global_step;
        if cfg.group.is_main() && cfg.logging_steps > 0 && step.is_multiple_of(cfg.logging_steps) {
            tracing::info!(
                "step {}: reward {:.3} (std {:.3}), accuracy {:.2}, format {:.2}, kl {:.5}, clip {:.3}, ratio {:.4}, length {:.1}, imagery {:.2}",
                log.step, log.reward, log.reward_std, log.accuracy, log.format, log.kl, log.clip_fraction, log.ratio_mean,
                log.completion_length, log.imagery_segments
            );
        }
        Ok(())
    }

    /// Saves a checkpoint when one is due or the run halts; true when the run ends here.
    fn after_batch(&mut self) -> Result<bool> {
        let cfg = self.cfg;
        let at = crate::checkpoint::StepOutcome::at(
            self.state.global_step,
            self.total_steps,
            self.first_step,
            cfg.halt_after,
            cfg.save_steps,
        );
        self.halted = at.halted;
        // Every rank takes part: a sharded optimiser's state is gathered first.
        if at.checkpoint_due || at.halted {
            save(cfg, &self.model, &self.latent, &self.opt, &self.state)?;
        }
        Ok(at.finished || at.halted)
    }

    /// After the last batch: a run whose every prompt was skipped is an error; otherwise the
    /// final model (unless halted) and the summary.
    fn finish(mut self, started: Instant) -> Result<GrpoSummary> {
        let cfg = self.cfg;
        if let Some(b) = &self.bar {
            b.finish();
        }
        let skipped = &self.summary.skipped_prompts;
        if self.summary.rollouts == 0 && !skipped.is_empty() {
            return Err(TrainError::NothingToTrain {
                path: cfg.data.clone(),
                count: skipped.len(),
                reasons: crate::dift_data::first_reasons(
                    skipped.iter().map(|(id, reason)| (id, reason)),
                ),
            });
        }
        if !self.halted && cfg.group.is_main() {
            self.model.write(&cfg.out, &self.latent)?;
        }
        self.summary.steps = self.state.global_step;
        self.summary.seconds = started.elapsed().as_secs_f64();
        Ok(self.summary)
    }
}

fn save(
    cfg: &GrpoConfig,
    model: &crate::trainable::TrainingModel,
    latent: &LatentTokens,
    opt: &crate::zero::Optimizer,
    state: &TrainerState,
) -> Result<()> {
    let Some(opt_state) = opt.state_for_save(cfg.group.is_main())? else {
        return Ok(());
    };
    let dir = cfg.out.join(format!("checkpoint-{}", state.global_step));
    save_checkpoint(&dir, |tmp| {
        model.write(tmp, latent)?;
        crate::optim::save_state(&opt_state, &tmp.join("optimizer.safetensors"))?;
        write_json(&tmp.join("trainer_state.json"), state)
    })?;
    if let Some(limit) = cfg.save_total_limit {
        rotate_checkpoints(&cfg.out, limit.max(1))?;
    }
    Ok(())
}

fn write_log(tb: &mut EventWriter, path: &std::path::Path, log: &GrpoLog) -> Result<()> {
    let mut scalars: Vec<(String, f64)> = vec![
        ("rl/reward".into(), log.reward),
        ("rl/reward_std".into(), log.reward_std),
        ("rl/accuracy".into(), log.accuracy),
        ("rl/format_rate".into(), log.format),
        ("rl/kl".into(), log.kl),
        ("rl/clip_fraction".into(), log.clip_fraction),
        ("rl/ratio_mean".into(), log.ratio_mean),
        ("rl/loss".into(), log.loss),
        ("rl/completion_length".into(), log.completion_length),
        ("rl/imagery_segments".into(), log.imagery_segments),
        (
            "rl/zero_variance_groups".into(),
            log.zero_variance_groups as f64,
        ),
        ("rl/skipped_prompts".into(), log.skipped_prompts as f64),
        ("rl/lr".into(), log.lr),
        ("rl/grad_norm".into(), log.grad_norm),
    ];
    for (name, m, s) in &log.rewards {
        scalars.push((format!("rewards/{name}_mean"), *m));
        scalars.push((format!("rewards/{name}_std"), *s));
    }
    let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    tb.scalars(log.step, &refs)?;
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    let line =
        serde_json::to_string(log).map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| TrainError::io(path, e))
}

/// Mean and sample standard deviation of values spread over the ranks.
fn pooled_mean_std(group: &crate::dist::ProcessGroup, v: &[f64]) -> Result<(f64, f64)> {
    if group.world_size() == 1 {
        return Ok(mean_std(v));
    }
    let mut s = [
        v.len() as f64,
        v.iter().sum(),
        v.iter().map(|x| x * x).sum(),
    ];
    group.sum_f64(&mut s)?;
    let [n, sum, sq] = s;
    if n == 0.0 {
        return Ok((0.0, 0.0));
    }
    let m = sum / n;
    let var = if n > 1.0 {
        ((sq - n * m * m) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    Ok((m, var.sqrt()))
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Generates `num_generations` completions for each readable prompt of `batch`.
fn rollouts(
    pipe: &ModelBundle,
    records: &[McQuestion],
    batch: &[usize],
    cfg: &GrpoConfig,
    latent: LatentTokens,
    seed: u64,
) -> Result<(Vec<Sampled>, Vec<SkippedPrompt>)> {
    let mut prompts = Vec::new();
    let mut owners = Vec::new();
    let mut skipped = Vec::new();
    for &i in batch {
        match load_rl_frames(&records[i], cfg.max_frames, cfg.max_side) {
            Ok(frames) => {
                let p = rl_prompt(&pipe.tokenizer, &records[i], frames)?;
                for _ in 0..cfg.num_generations {
                    prompts.push(p.clone());
                    owners.push(i);
                }
            }
            Err(reason) => skipped.push((records[i].id.clone(), reason.to_string())),
        }
    }
    if prompts.is_empty() {
        return Ok((vec![], skipped));
    }
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts)?;
    let gen = GenerationConfig {
        max_new_tokens: cfg.max_new_tokens,
        sampling: Sampling {
            greedy: false,
            temperature: cfg.temperature,
            top_k: cfg.top_k,
            top_p: cfg.top_p,
            repetition_penalty: None,
            seed,
        },
        stop_ids: pipe.stop_ids(),
        latent: Some(latent),
    };
    let outs = generate(
        &pipe.model,
        &inputs,
        &pipe.rope_params(),
        &gen,
        |_, _, _| {},
    )?;
    let mut sampled = Vec::with_capacity(outs.len());
    for (row, o) in outs.into_iter().enumerate() {
        let prompt_ids: Vec<u32> = inputs.input_ids[row]
            .iter()
            .zip(&inputs.attention_mask[row])
            .filter(|(_, &m)| m != 0)
            .map(|(&t, _)| t)
            .collect();
        let hidden = if o.latent_segments.is_empty() {
            None
        } else {
            Some(Tensor::cat(
                &o.latent_segments
                    .iter()
                    .map(|s| s.hidden.clone())
                    .collect::<Vec<_>>(),
                0,
            )?)
        };
        let text = pipe.tokenizer.decode(&o.token_ids, false)?;
        let text = fourd_records::answer::reply_text(&text);
        tracing::debug!(
            "rollout {row} (prompt {}): {} tokens: {text:?}",
            records[owners[row]].id,
            o.token_ids.len()
        );
        let segments = o
            .kinds
            .iter()
            .filter(|k| **k == TokenKind::LatentStart)
            .count();
        sampled.push(Sampled {
            rollout: Rollout {
                prompt_ids,
                video: inputs.videos[row].clone(),
                second_per_grid: inputs.second_per_grid[row],
                completion: o.token_ids,
                kinds: o.kinds,
                latent_hidden: hidden,
                sample_logprobs: o.logprobs,
            },
            text,
            record: owners[row],
            segments,
        });
    }
    Ok((sampled, skipped))
}
