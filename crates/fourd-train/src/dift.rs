//! `fourd train dift`: the training loop.
//!
//! Micro-batches hold one sequence (no padding waste; the reference's per-device batch is 1 as
//! well); `grad_accum` records per rank make one optimiser step, whose gradient is the mean over
//! the records that could be used on all ranks. Each epoch visits the records in a permutation
//! seeded by `(seed, epoch)`, cut into steps of `grad_accum * world_size` records, of which rank
//! r takes the r-th slice; so the data position alone (epoch, records consumed) restores the
//! order on resume, nothing else is random, and N ranks with `grad_accum` a train as one process
//! with `grad_accum` N*a.
//!
//! Phases: the settings are checked, the data read and its images found (a file with nothing to
//! train on stops here), the run folder taken ([`crate::run_folder`]), the model loaded
//! (`DiftTrainer::start`), the steps run (`DiftTrainer::train`), the outputs written
//! (`DiftTrainer::finish`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use fourd_model::weights::CheckpointWeights;
use fourd_model::{ModelBundle, Qwen25VL};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::checkpoint::{
    list_checkpoints, read_state, rotate_checkpoints, save_checkpoint, write_json, TrainerState,
};
use crate::dift_data::{
    check_files, read_dift_records, ExampleBuilder, LoadedRecord, Prefetcher, Skipped,
    DIFT_MAX_PIXELS,
};
use crate::dist::ProcessGroup;
use crate::error::{Result, TrainError};
use crate::loss::{dift_loss, LossWeights};
use crate::optim::{backward_grads, AdamWConfig, LinearSchedule};
use crate::params::{everything_trains, language_model_trains, TrainableWeights, WeightSource};
use crate::tensorboard::EventWriter;
use crate::zero::{Optimizer, StepGradients, SummedGradients, ZeroStage};

#[derive(Clone, Debug)]
pub struct DiftConfig {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Where the data file's relative paths resolve (default: its folder; `fourd_records::paths`).
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
    pub epochs: usize,
    pub max_steps: Option<u64>,
    pub optim: AdamWConfig,
    pub warmup_ratio: f64,
    pub warmup_steps: Option<u64>,
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub loss: LossWeights,
    pub latent_size: Option<usize>,
    pub compress: String,
    pub max_length: usize,
    pub max_pixels: usize,
    pub save_steps: Option<u64>,
    pub save_total_limit: Option<usize>,
    pub logging_steps: u64,
    pub seed: u64,
    /// Continue from this checkpoint folder (weights, optimiser, schedule, data position).
    pub resume: Option<PathBuf>,
    /// Start from fresh random weights (normal(0, std)) instead of the checkpoint's.
    pub from_scratch: Option<f64>,
    /// Recompute decoder layers in the backward pass instead of keeping their activations.
    pub gradient_checkpointing: bool,
    /// Train the vision tower too (the reference freezes it; a model trained from scratch
    /// needs it to learn).
    pub train_vision: bool,
    /// Stop after this many optimiser steps in this process, leaving the run resumable, as if
    /// it had been interrupted (the schedule still spans the whole run).
    pub halt_after: Option<u64>,
    pub workers: usize,
    /// Start afresh in a run folder that holds another run, deleting that run's files.
    pub overwrite: bool,
    pub dtype: DType,
    pub device: Device,
    pub progress: bool,
    /// The data-parallel group (one process by default); rank 0 writes all outputs.
    pub group: ProcessGroup,
    /// Train a LoRA adapter (and the latent tokens' rows) on the frozen model instead of the
    /// whole language model.
    pub lora: Option<fourd_model::lora::LoraSettings>,
    /// Shard the optimiser state (and, at stage 2, the accumulated gradients) over the group.
    pub zero: Option<ZeroStage>,
}

impl DiftConfig {
    pub fn new(model: PathBuf, data: PathBuf, out: PathBuf) -> Self {
        DiftConfig {
            model,
            data,
            data_root: None,
            out,
            epochs: 1,
            max_steps: None,
            optim: AdamWConfig::default(),
            warmup_ratio: 0.03,
            warmup_steps: None,
            grad_accum: 1,
            max_grad_norm: 1.0,
            loss: LossWeights::default(),
            latent_size: None,
            compress: "average".into(),
            max_length: 8192,
            max_pixels: DIFT_MAX_PIXELS,
            save_steps: None,
            save_total_limit: None,
            logging_steps: 10,
            seed: 42,
            resume: None,
            from_scratch: None,
            train_vision: false,
            gradient_checkpointing: false,
            halt_after: None,
            workers: 2,
            overwrite: false,
            dtype: DType::F32,
            device: Device::Cpu,
            progress: true,
            group: ProcessGroup::single(),
            lora: None,
            zero: None,
        }
    }
}

impl DiftConfig {
    /// Checks the settings before anything is read or loaded; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        use crate::flags::{at_least_one, data_file, finite_at_least as finite};
        finite("lr", self.optim.lr, 0.0)?;
        finite("weight-decay", self.optim.weight_decay, 0.0)?;
        finite("max-grad-norm", self.max_grad_norm, 0.0)?;
        finite("ce-weight", self.loss.ce, 0.0)?;
        finite("sim-weight", self.loss.sim, 0.0)?;
        finite("answer-weight", self.loss.answer, 0.0)?;
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(TrainError::Config(format!(
                "--warmup-ratio must be in [0, 1] (got {})",
                self.warmup_ratio
            )));
        }
        at_least_one(&[
            ("epochs", self.epochs),
            ("grad-accum", self.grad_accum),
            ("max-length", self.max_length),
            ("workers", self.workers),
        ])?;
        crate::trainable::check_lora_flags(
            self.lora.as_ref(),
            self.gradient_checkpointing,
            self.from_scratch.is_some(),
            self.train_vision,
        )?;
        crate::trainable::check_model_folder(&self.model)?;
        data_file(&self.data)
    }

    /// What a run is started with: the model's and the data's identities and every setting
    /// that changes the trained weights (not threads, progress, logging or checkpoint spacing).
    pub fn manifest(&self) -> Result<fourd_job::JobManifest> {
        Ok(fourd_job::JobManifest::new("fourd train dift")
            .input("model", fourd_job::identity::model_identity(&self.model)?)
            .input("data", fourd_job::identity::file_digest(&self.data)?)
            .setting("data_root", &self.data_root)
            .setting("epochs", self.epochs)
            .setting("max_steps", self.max_steps)
            .setting("optimizer", format!("{:?}", self.optim))
            .setting("warmup_ratio", self.warmup_ratio)
            .setting("warmup_steps", self.warmup_steps)
            // The records of a step depend on their number only (see the module docs), so a run
            // may resume on another number of ranks with the same total.
            .setting(
                "examples_per_step",
                self.grad_accum * self.group.world_size(),
            )
            .setting("max_grad_norm", self.max_grad_norm)
            .setting("loss", format!("{:?}", self.loss))
            .setting("latent_size", self.latent_size)
            .setting("compress", &self.compress)
            .setting("max_length", self.max_length)
            .setting("max_pixels", self.max_pixels)
            .setting("seed", self.seed)
            .setting("from_scratch", self.from_scratch)
            .setting("train_vision", self.train_vision)
            .setting("lora", self.lora.as_ref().map(|l| format!("{l:?}")))
            .setting("dtype", self.dtype.as_str()))
    }
}

/// One line of `train_log.jsonl` (also what goes to TensorBoard).
#[derive(Clone, Debug, Serialize)]
pub struct StepLog {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    pub ce: f64,
    pub sim: f64,
    pub cos: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// Teacher-forced accuracy of the next-token argmax over the labelled tokens of the step.
    pub token_acc: f64,
    /// The same over the answers' tokens (after the last `<answer>`): whether the model picks the
    /// right option given the reasoning, long before its own reasoning is good enough to get there.
    pub answer_acc: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiftSummary {
    pub steps: u64,
    /// Records in the data file.
    pub records: usize,
    /// Examples this run trained on, all ranks (a record counts once per epoch).
    pub examples_used: usize,
    pub skipped: Vec<SkippedRecord>,
    pub nan_skipped: u64,
    pub last: Option<StepLog>,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub output: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct SkippedRecord {
    pub id: String,
    pub reason: String,
}

/// Loads the model for training: weights from `source` (or fresh), language model trainable.
pub fn load_trainable(
    dir: &Path,
    from_scratch: Option<f64>,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(ModelBundle, Arc<TrainableWeights>)> {
    load_trainable_with(dir, from_scratch, seed, dtype, device, false)
}

pub fn load_trainable_with(
    dir: &Path,
    from_scratch: Option<f64>,
    seed: u64,
    dtype: DType,
    device: &Device,
    train_vision: bool,
) -> Result<(ModelBundle, Arc<TrainableWeights>)> {
    let source = match from_scratch {
        Some(std) => WeightSource::Random { seed, std },
        None => WeightSource::Checkpoint(CheckpointWeights::open(dir)?),
    };
    let weights = TrainableWeights::new(
        source,
        if train_vision {
            everything_trains
        } else {
            language_model_trains
        },
    );
    let vb = weights.var_builder(dtype, device);
    let pipeline = ModelBundle::load_with(dir, |config| Qwen25VL::new(config, vb))?;
    Ok((pipeline, weights))
}

/// Resolves `--resume`: a checkpoint folder, or the run folder (its newest checkpoint).
pub fn resolve_resume(path: &Path) -> Result<PathBuf> {
    if path.join("trainer_state.json").exists() {
        return Ok(path.to_path_buf());
    }
    list_checkpoints(path).pop().map(|(_, p)| p).ok_or_else(|| {
        TrainError::checkpoint(
            path,
            "no checkpoint-<step> folder with trainer_state.json to resume from",
        )
    })
}

pub fn train_dift(cfg: &DiftConfig) -> Result<DiftSummary> {
    let started = Instant::now();
    cfg.validate()?;
    // The data first: a file whose images cannot be found fails before the model loads.
    let records = read_dift_records(&cfg.data, cfg.data_root.as_deref())?;
    check_files(&cfg.data, &records)?;
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
    let mut trainer = DiftTrainer::start(cfg, records)?;
    trainer.train()?;
    trainer.finish(started)
}

/// The run's TensorBoard writer. A resumed run's logs continue from the checkpoint's step: the
/// log file loses its later lines and TensorBoard is told of the restart (`crate::run_folder`).
pub(crate) fn open_log(out: &Path, resumed_at: Option<u64>) -> Result<EventWriter> {
    let mut tb = EventWriter::create(&out.join("runs"))?;
    if let Some(step) = resumed_at {
        crate::run_folder::truncate_log(out, step)?;
        tb.restart_at(step + 1)?;
    }
    Ok(tb)
}

/// The state or the fresh start of a run: `--resume`'s checkpoint (and its folder), or step 0.
pub(crate) fn starting_state(
    resume: Option<&Path>,
    seed: u64,
) -> Result<(TrainerState, Option<PathBuf>)> {
    let resume_dir = resume.map(resolve_resume).transpose()?;
    let state = match &resume_dir {
        Some(d) => read_state(d)?,
        None => TrainerState {
            global_step: 0,
            epoch: 0,
            position: 0,
            seed,
            nan_skipped: 0,
            examples_seen: 0,
            tokens_seen: 0,
        },
    };
    if resume_dir.is_some() && state.seed != seed {
        tracing::warn!(
            "resuming with the checkpoint's seed {} (given {seed})",
            state.seed,
        );
    }
    Ok((state, resume_dir))
}

/// Sums over the examples of one step, in the order the ranks add them up.
#[derive(Clone, Copy, Default)]
struct StepSums {
    /// used, total, ce, sim, cos, tokens, token hits/count, answer hits/count.
    values: [f64; 10],
}

impl StepSums {
    fn used(&self) -> usize {
        self.values[0] as usize
    }
    fn tokens(&self) -> u64 {
        self.values[5] as u64
    }
}

/// One DIFT run while it trains: the model and its optimiser, the data and the schedule, and
/// what has been logged so far.
struct DiftTrainer<'a> {
    cfg: &'a DiftConfig,
    state: TrainerState,
    /// The model and what of it trains.
    model: crate::trainable::TrainingModel,
    pipeline: Arc<ModelBundle>,
    vars: Vec<(String, candle_core::Var)>,
    checkpoint_grads: Option<fourd_model::text::CheckpointGrads>,
    latent: fourd_model::generation::LatentTokens,
    compress: String,
    opt: Optimizer,
    records: Arc<Vec<LoadedRecord>>,
    builder: Arc<ExampleBuilder>,
    schedule: LinearSchedule,
    total_steps: u64,
    tb: Option<EventWriter>,
    bar: Option<indicatif::ProgressBar>,
    skipped: Vec<SkippedRecord>,
    last: Option<StepLog>,
    /// The last logged question, target and prediction.
    sample: Option<(String, String, String)>,
    window_tokens: u64,
    window_start: Instant,
    tokens_total: u64,
    /// Examples this run trained on (all ranks): none at all is an error, not a model.
    used_this_run: usize,
    first_step: u64,
    halted: bool,
}

impl<'a> DiftTrainer<'a> {
    /// Loads the model (fresh or resumed), the optimiser and the schedule.
    fn start(cfg: &'a DiftConfig, records: Vec<LoadedRecord>) -> Result<Self> {
        let group = &cfg.group;
        let (state, resume_dir) = starting_state(cfg.resume.as_deref(), cfg.seed)?;
        let model = crate::trainable::load(&crate::trainable::LoadSpec {
            model: &cfg.model,
            resume: resume_dir.as_deref(),
            from_scratch: cfg.from_scratch,
            seed: state.seed,
            dtype: cfg.dtype,
            device: &cfg.device,
            train_vision: cfg.train_vision,
            lora: cfg.lora.as_ref(),
            gradient_checkpointing: cfg.gradient_checkpointing,
        })?;
        let pipeline = model.bundle.clone();
        let checkpoint_grads = model.checkpoint_grads.clone();
        let latent = pipeline.latent_tokens(cfg.latent_size)?.ok_or_else(|| {
            TrainError::Config(format!(
                "the tokenizer of {} has no latent tokens; add them with `fourd model add-latent-tokens`",
                model.weights_dir.display()
            ))
        })?;
        // DIFT only trains: dropout (if any) stays on.
        model.set_dropout(true);
        let vars = model.vars.clone();
        let n_params = model.parameter_count();
        tracing::info!(
            "{} trainable tensors, {n_params} parameters; {}",
            vars.len(),
            match (model.is_adapter(), cfg.train_vision) {
                (true, _) => "a LoRA adapter on the frozen model",
                (false, true) => "vision tower trained",
                (false, false) => "vision tower frozen",
            }
        );
        let mut opt = Optimizer::new(vars.clone(), cfg.optim, cfg.zero, group)?;
        if let Some(d) = &resume_dir {
            opt.load(&d.join("optimizer.safetensors"))?;
            tracing::info!("resumed from {} at step {}", d.display(), state.global_step);
        }
        let resumed_at = resume_dir.is_some().then_some(state.global_step);
        group.check_same("the number of trainable parameters", n_params as u64)?;
        group.check_same("the number of records", records.len() as u64)?;
        group.check_same("the starting step", state.global_step)?;
        let per_step = cfg.grad_accum.max(1) * group.world_size();
        let steps_per_epoch = records.len().div_ceil(per_step) as u64;
        let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs as u64);
        let warmup = cfg
            .warmup_steps
            .unwrap_or((cfg.warmup_ratio * total_steps as f64).ceil() as u64);
        let compress = pipeline
            .model
            .config
            .latent
            .compress_strategy
            .clone()
            .unwrap_or_else(|| cfg.compress.clone());
        let main = group.is_main();
        let tb = match main {
            true => Some(open_log(&cfg.out, resumed_at)?),
            false => None,
        };
        Ok(DiftTrainer {
            builder: Arc::new(ExampleBuilder {
                pipeline: pipeline.clone(),
                latent,
                max_length: cfg.max_length,
                max_pixels: cfg.max_pixels,
                fps: 1.0,
            }),
            schedule: LinearSchedule {
                peak: cfg.optim.lr,
                warmup_steps: warmup,
                total_steps,
            },
            tb,
            bar: progress_bar(cfg.progress && main, total_steps, state.global_step),
            first_step: state.global_step,
            cfg,
            state,
            model,
            pipeline,
            vars,
            checkpoint_grads,
            latent,
            compress,
            opt,
            records: Arc::new(records),
            total_steps,
            skipped: Vec::new(),
            last: None,
            sample: None,
            window_tokens: 0,
            window_start: Instant::now(),
            tokens_total: 0,
            used_this_run: 0,
            halted: false,
        })
    }

    /// The epochs from the starting position on, until the schedule ends or the run halts.
    fn train(&mut self) -> Result<()> {
        let (rank, accum) = (self.cfg.group.rank(), self.cfg.grad_accum.max(1));
        let per_step = accum * self.cfg.group.world_size();
        for epoch in self.state.epoch..self.cfg.epochs.max(1) {
            if self.state.global_step >= self.total_steps {
                break;
            }
            let order = epoch_order(self.records.len(), self.state.seed, epoch);
            let start = if epoch == self.state.epoch {
                self.state.position
            } else {
                0
            };
            // This rank's records of each remaining step (a slice may be empty at the epoch's
            // end), with the data position after the step.
            let steps: Vec<(usize, Vec<usize>)> = order[start..]
                .chunks(per_step)
                .scan(start, |pos, chunk| {
                    *pos += chunk.len();
                    let mine = chunk.iter().skip(rank * accum).take(accum).copied();
                    Some((*pos, mine.collect()))
                })
                .collect();
            let todo: Vec<usize> = steps
                .iter()
                .flat_map(|(_, mine)| mine.iter().copied())
                .collect();
            let mut prefetch = Prefetcher::start(
                self.builder.clone(),
                self.records.clone(),
                todo,
                self.cfg.workers,
                4,
            );
            for (position, mine) in steps {
                let Some((grads, sums)) = self.accumulate_step(&mut prefetch, mine.len(), epoch)?
                else {
                    continue;
                };
                let log = self.optimise(&grads, sums, epoch)?;
                self.state.global_step += 1;
                self.state.epoch = epoch;
                self.state.position = position;
                if position == order.len() {
                    self.state.epoch = epoch + 1;
                    self.state.position = 0;
                }
                self.record_step(log)?;
                if self.after_step()? {
                    return Ok(());
                }
            }
            self.state.epoch = epoch + 1;
            self.state.position = 0;
        }
        Ok(())
    }

    /// Forward and backward passes over this rank's `count` examples of a step; the gradients
    /// summed over ranks, or `None` when no rank could use any example.
    fn accumulate_step(
        &mut self,
        prefetch: &mut Prefetcher,
        count: usize,
        epoch: usize,
    ) -> Result<Option<(SummedGradients, StepSums)>> {
        let cfg = self.cfg;
        let mut sums = StepSums::default();
        let mut acc = StepGradients::default();
        // Where a step's time goes (forward, backward), with `RUST_LOG=...=debug`: the device is
        // synchronised at each mark only then, so normal runs keep queueing.
        let mut clock = StepClock::new(&cfg.device);
        // ZeRO-2 reduces after every micro-batch, a collective: every rank takes the same
        // number of slots, empty ones where it has fewer records (the epoch's last step).
        let slots = match self.opt.reduces_per_micro_batch() {
            true => cfg.grad_accum.max(1),
            false => count,
        };
        for slot in 0..slots {
            let local = match slot < count {
                true => self.micro_batch(prefetch, epoch, &mut sums, &mut clock)?,
                false => None,
            };
            self.opt.accumulate(&mut acc, local)?;
        }
        cfg.group.sum_f64(&mut sums.values)?;
        let grads = self.opt.sum(acc)?;
        clock.report_passes(self.state.global_step + 1);
        Ok(grads.map(|g| (g, sums)))
    }

    /// One example's forward and backward pass: its gradients (`None` when the record was
    /// skipped or its loss was not finite), its figures added to `sums`.
    fn micro_batch(
        &mut self,
        prefetch: &mut Prefetcher,
        epoch: usize,
        sums: &mut StepSums,
        clock: &mut StepClock,
    ) -> Result<Option<crate::optim::Grads>> {
        let cfg = self.cfg;
        let params = self.pipeline.rope_params();
        let Some((_, item)) = prefetch.next() else {
            return Err(TrainError::Config(
                "the record loader stopped early (a worker thread failed)".into(),
            ));
        };
        let ex = match item {
            Ok(ex) => ex,
            Err(Skipped { id, reason }) => {
                if epoch == 0 || !self.skipped.iter().any(|s| s.id == id) {
                    tracing::warn!("skipping record {id}: {reason}");
                    self.skipped.push(SkippedRecord { id, reason });
                }
                return Ok(None);
            }
        };
        let loss = dift_loss(
            &self.pipeline.model,
            &params,
            &self.latent,
            &self.compress,
            cfg.loss,
            &ex,
        )?;
        let total = loss.total.to_scalar::<f32>()?;
        clock.mark(0)?;
        if !total.is_finite() {
            self.state.nan_skipped += 1;
            tracing::warn!(
                "non-finite loss on record {}; batch skipped ({} so far)",
                ex.id,
                self.state.nan_skipped
            );
            return Ok(None);
        }
        let store = loss.total.backward()?;
        let grads = backward_grads(&store, self.checkpoint_grads.as_ref(), &self.vars)?;
        drop(store);
        clock.mark(1)?;
        let (th, tn) = loss.token_hits;
        let (ah, an) = loss.answer_hits;
        let parts = [
            1.0,
            total as f64,
            loss.ce as f64,
            loss.sim as f64,
            loss.cos as f64,
            ex.input_ids.len() as f64,
            th as f64,
            tn as f64,
            ah as f64,
            an as f64,
        ];
        for (s, v) in sums.values.iter_mut().zip(parts) {
            *s += v;
        }
        let decode = |ids: &[u32]| {
            self.pipeline
                .tokenizer
                .decode(ids, false)
                .unwrap_or_default()
        };
        self.sample = Some((
            ex.question.clone(),
            decode(&loss.targets),
            decode(&loss.predicted),
        ));
        Ok(Some(grads))
    }

    /// The optimiser step on the summed gradients (their mean over the examples used, clipped
    /// inside the update); returns the step's log line.
    fn optimise(
        &mut self,
        grads: &SummedGradients,
        sums: StepSums,
        epoch: usize,
    ) -> Result<StepLog> {
        let mut clock = StepClock::new(&self.cfg.device);
        let used = sums.used();
        self.used_this_run += used;
        self.window_tokens += sums.tokens();
        self.tokens_total += sums.tokens();
        self.state.examples_seen += used as u64;
        self.state.tokens_seen += sums.tokens();
        let mean = 1.0 / used.max(1) as f64;
        let norm = self.opt.grad_norm(grads)? * mean;
        let lr = self.schedule.lr(self.state.global_step);
        self.opt
            .step(grads, lr, mean, norm, self.cfg.max_grad_norm)?;
        clock.mark(2)?;
        clock.report_optimiser(self.state.global_step + 1);
        let v = &sums.values;
        let n = used.max(1) as f64;
        let secs = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let log = StepLog {
            step: self.state.global_step + 1,
            epoch,
            loss: v[1] / n,
            ce: v[2] / n,
            sim: v[3] / n,
            cos: v[4] / n,
            lr,
            grad_norm: norm,
            tokens_per_s: self.window_tokens as f64 / secs,
            token_acc: v[6] / v[7].max(1.0),
            answer_acc: v[8] / v[9].max(1.0),
        };
        self.window_tokens = 0;
        self.window_start = Instant::now();
        Ok(log)
    }

    /// The step's line in the progress bar, TensorBoard, `train_log.jsonl` and the log.
    fn record_step(&mut self, log: StepLog) -> Result<()> {
        if let Some(b) = &self.bar {
            b.set_position(self.state.global_step);
            b.set_message(format!(
                "loss {:.4} ce {:.4} sim {:.4}",
                log.loss, log.ce, log.sim
            ));
        }
        if let Some(tb) = self.tb.as_mut() {
            tb.scalars(
                self.state.global_step,
                &[
                    ("train/loss", log.loss),
                    ("train/ce_loss", log.ce),
                    ("train/sim_loss", log.sim),
                    ("train/cos", log.cos),
                    ("train/lr", log.lr),
                    ("train/grad_norm", log.grad_norm),
                    ("train/tokens_per_s", log.tokens_per_s),
                    ("train/token_acc", log.token_acc),
                    ("train/answer_acc", log.answer_acc),
                ],
            )?;
            append_jsonl(&self.cfg.out.join("train_log.jsonl"), &log)?;
        }
        let logging = self.cfg.logging_steps;
        if self.cfg.group.is_main() && logging > 0 && self.state.global_step.is_multiple_of(logging)
        {
            tracing::info!(
                "step {} loss {:.4} (ce {:.4}, sim {:.4}, cos {:.3}) lr {:.2e} grad norm {:.3} token acc {:.3} answer acc {:.3}",
                log.step, log.loss, log.ce, log.sim, log.cos, log.lr, log.grad_norm, log.token_acc, log.answer_acc
            );
            if let Some((q, t, p)) = &self.sample {
                tracing::info!("sample question: {q}\n  target:     {t}\n  prediction: {p}");
            }
        }
        self.last = Some(log);
        Ok(())
    }

    /// Saves a checkpoint when one is due; true when the run ends here (the schedule is done,
    /// or `halt_after` steps were taken).
    fn after_step(&mut self) -> Result<bool> {
        let cfg = self.cfg;
        let at = crate::checkpoint::StepOutcome::at(
            self.state.global_step,
            self.total_steps,
            self.first_step,
            cfg.halt_after,
            cfg.save_steps,
        );
        self.halted = at.halted;
        // The last step's checkpoint (and a halt's) is written by `finish`. Every rank takes
        // part: a sharded optimiser's state is gathered first.
        if at.checkpoint_due && !at.finished && !at.halted {
            self.save_checkpoint()?;
        }
        Ok(at.finished || at.halted)
    }

    /// Writes `checkpoint-<step>/` (rank 0); every rank calls it (see [`Optimizer::save`]).
    fn save_checkpoint(&self) -> Result<()> {
        save_training_checkpoint(self.cfg, &self.model, &self.latent, &self.opt, &self.state)
    }

    /// After the last step: the checkpoint of a halt, the final model (what `fourd infer --model
    /// OUT` loads) plus a resumable checkpoint when checkpoints were asked for, the skip list.
    fn finish(self, started: Instant) -> Result<DiftSummary> {
        let cfg = self.cfg;
        let main = cfg.group.is_main();
        if self.halted {
            // An interruption: keep what a crash would keep (the last saved checkpoint) and a
            // checkpoint of this very step so the stop is resumable without loss.
            self.save_checkpoint()?;
            tracing::info!(
                "halted after {} steps at step {}",
                self.state.global_step - self.first_step,
                self.state.global_step
            );
        }
        if let Some(b) = &self.bar {
            b.finish();
        }
        if self.used_this_run == 0 && self.state.global_step > self.first_step {
            return Err(nothing_to_train(&cfg.data, &self.skipped));
        }
        if !self.halted && main {
            self.model.write(&cfg.out, &self.latent)?;
        }
        if !self.halted && cfg.save_steps.is_some() {
            self.save_checkpoint()?;
        }
        // Each rank reports the records of its own shard.
        let skipped_path = cfg.out.join(if main {
            "skipped.jsonl".to_string()
        } else {
            format!("skipped-rank{}.jsonl", cfg.group.rank())
        });
        let _ = std::fs::remove_file(&skipped_path);
        for s in &self.skipped {
            append_jsonl(&skipped_path, s)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(DiftSummary {
            steps: self.state.global_step,
            records: self.records.len(),
            examples_used: self.used_this_run,
            nan_skipped: self.state.nan_skipped,
            skipped: self.skipped,
            last: self.last,
            seconds,
            tokens_per_s: self.tokens_total as f64 / seconds.max(1e-9),
            output: cfg.out.clone(),
        })
    }
}

/// Where a step's time goes, measured only with debug logging on (each mark synchronises the
/// device, which normal runs must not do).
struct StepClock<'d> {
    device: &'d Device,
    on: bool,
    /// forward, backward, optimiser (seconds)
    phase: [f64; 3],
    at: Instant,
}

impl<'d> StepClock<'d> {
    fn new(device: &'d Device) -> Self {
        StepClock {
            device,
            on: tracing::enabled!(tracing::Level::DEBUG),
            phase: [0.0; 3],
            at: Instant::now(),
        }
    }
    fn mark(&mut self, k: usize) -> Result<()> {
        if self.on {
            self.device.synchronize()?;
            self.phase[k] += self.at.elapsed().as_secs_f64();
            self.at = Instant::now();
        }
        Ok(())
    }
    fn report_passes(&self, step: u64) {
        if self.on {
            tracing::debug!(
                "step {step}: forward {:.3} s, backward {:.3} s",
                self.phase[0],
                self.phase[1]
            );
        }
    }
    fn report_optimiser(&self, step: u64) {
        if self.on {
            tracing::debug!(
                "step {step}: gradient sync + clipping + optimiser {:.3} s",
                self.phase[2]
            );
        }
    }
}

/// The error of a run in which every record was skipped, with the first reasons.
fn nothing_to_train(data: &Path, skipped: &[SkippedRecord]) -> TrainError {
    TrainError::NothingToTrain {
        path: data.to_path_buf(),
        count: skipped.len(),
        reasons: crate::dift_data::first_reasons(skipped.iter().map(|s| (&s.id, &s.reason))),
    }
}

fn save_training_checkpoint(
    cfg: &DiftConfig,
    model: &crate::trainable::TrainingModel,
    latent: &fourd_model::generation::LatentTokens,
    opt: &Optimizer,
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
    tracing::info!("saved {}", dir.display());
    if let Some(limit) = cfg.save_total_limit {
        rotate_checkpoints(&cfg.out, limit.max(1))?;
    }
    Ok(())
}

/// The record order of one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    order.shuffle(&mut rng);
    order
}

fn append_jsonl(path: &Path, v: &impl Serialize) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    let line = serde_json::to_string(v).map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| TrainError::io(path, e))
}

fn progress_bar(show: bool, total: u64, at: u64) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} train [{bar:30}] {pos}/{len} steps {elapsed}<{eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(at);
    Some(bar)
}
