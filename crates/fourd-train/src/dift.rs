//! `fourd train dift`: the training loop.
//!
//! Micro-batches hold one sequence (no padding waste; the reference's per-device batch is 1 as
//! well); `grad_accum` records per rank make one optimiser step, whose gradient is the mean over
//! the records that could be used on all ranks. Each epoch visits the records in a permutation
//! seeded by `(seed, epoch)`, cut into steps of `grad_accum * world_size` records, of which rank
//! r takes the r-th slice; so the data position alone (epoch, records consumed) restores the
//! order on resume, nothing else is random, and N ranks with `grad_accum` a train as one process
//! with `grad_accum` N*a.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use fourd_model::weights::CheckpointWeights;
use fourd_model::{Pipeline, Qwen25VL};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::checkpoint::{
    list_checkpoints, read_state, rotate_checkpoints, save_checkpoint, write_json, TrainerState,
};
use crate::dift_data::{read_dift_jsonl, ExampleBuilder, Prefetcher, Skipped, DIFT_MAX_PIXELS};
use crate::dist::ProcessGroup;
use crate::error::{Result, TrainError};
use crate::loss::{dift_loss, LossWeights};
use crate::optim::{
    accumulate, backward_grads, clip_coefficient, grad_norm, AdamW, AdamWConfig, LinearSchedule,
};
use crate::params::{everything_trains, language_model_trains, TrainableWeights, WeightSource};
use crate::tensorboard::EventWriter;

#[derive(Clone, Debug)]
pub struct DiftConfig {
    pub model: PathBuf,
    pub data: PathBuf,
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
    pub dtype: DType,
    pub device: Device,
    pub progress: bool,
    /// The data-parallel group (one process by default); rank 0 writes all outputs.
    pub group: ProcessGroup,
}

impl DiftConfig {
    pub fn new(model: PathBuf, data: PathBuf, out: PathBuf) -> Self {
        DiftConfig {
            model,
            data,
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
            dtype: DType::F32,
            device: Device::Cpu,
            progress: true,
            group: ProcessGroup::single(),
        }
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
) -> Result<(Pipeline, Arc<TrainableWeights>)> {
    load_trainable_with(dir, from_scratch, seed, dtype, device, false)
}

pub fn load_trainable_with(
    dir: &Path,
    from_scratch: Option<f64>,
    seed: u64,
    dtype: DType,
    device: &Device,
    train_vision: bool,
) -> Result<(Pipeline, Arc<TrainableWeights>)> {
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
    let pipeline = Pipeline::load_with(dir, |config| Qwen25VL::new(config, vb))?;
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
    let group = &cfg.group;
    let main = group.is_main();
    std::fs::create_dir_all(&cfg.out).map_err(|e| TrainError::io(&cfg.out, e))?;
    let resume_dir = cfg.resume.as_deref().map(resolve_resume).transpose()?;
    let mut state = match &resume_dir {
        Some(d) => read_state(d)?,
        None => TrainerState {
            global_step: 0,
            epoch: 0,
            position: 0,
            seed: cfg.seed,
            nan_skipped: 0,
            examples_seen: 0,
            tokens_seen: 0,
        },
    };
    if resume_dir.is_some() && state.seed != cfg.seed {
        tracing::warn!(
            "resuming with the checkpoint's seed {} (given {})",
            state.seed,
            cfg.seed
        );
    }
    let (weights_dir, scratch) = match &resume_dir {
        Some(d) => (d.clone(), None),
        None => (cfg.model.clone(), cfg.from_scratch),
    };
    let (mut pipeline, weights) = load_trainable_with(
        &weights_dir,
        scratch,
        state.seed,
        cfg.dtype,
        &cfg.device,
        cfg.train_vision,
    )?;
    let checkpoint_grads = cfg
        .gradient_checkpointing
        .then(fourd_model::text::CheckpointGrads::default);
    pipeline.model.text.grad_checkpoint = checkpoint_grads.clone();
    let latent = pipeline.latent_tokens(cfg.latent_size)?.ok_or_else(|| {
        TrainError::Config(format!(
            "the tokenizer of {} has no latent tokens; add them with `fourd model add-latent-tokens`",
            weights_dir.display()
        ))
    })?;
    let vars = weights.vars();
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    tracing::info!(
        "{} trainable tensors, {n_params} parameters; vision tower {}",
        vars.len(),
        if cfg.train_vision {
            "trained"
        } else {
            "frozen"
        }
    );
    let mut opt = AdamW::new(vars.clone(), cfg.optim)?;
    if let Some(d) = &resume_dir {
        opt.load(&d.join("optimizer.safetensors"))?;
        tracing::info!("resumed from {} at step {}", d.display(), state.global_step);
    }

    let records = Arc::new(read_dift_jsonl(&cfg.data)?);
    group.check_same("the number of trainable parameters", n_params as u64)?;
    group.check_same("the number of records", records.len() as u64)?;
    group.check_same("the starting step", state.global_step)?;
    let accum = cfg.grad_accum.max(1);
    let (rank, world) = (group.rank(), group.world_size());
    let per_step = accum * world;
    let steps_per_epoch = records.len().div_ceil(per_step) as u64;
    let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs as u64);
    let warmup = cfg
        .warmup_steps
        .unwrap_or((cfg.warmup_ratio * total_steps as f64).ceil() as u64);
    let schedule = LinearSchedule {
        peak: cfg.optim.lr,
        warmup_steps: warmup,
        total_steps,
    };
    let pipeline = Arc::new(pipeline);
    let builder = Arc::new(ExampleBuilder {
        pipeline: pipeline.clone(),
        latent,
        max_length: cfg.max_length,
        max_pixels: cfg.max_pixels,
        fps: 1.0,
    });
    let params = pipeline.rope_params();
    let compress = pipeline
        .model
        .config
        .latent
        .compress_strategy
        .clone()
        .unwrap_or_else(|| cfg.compress.clone());

    let mut tb = if main {
        Some(EventWriter::create(&cfg.out.join("runs"))?)
    } else {
        None
    };
    let log_path = cfg.out.join("train_log.jsonl");
    let mut skipped: Vec<SkippedRecord> = Vec::new();
    let bar = progress_bar(cfg.progress && main, total_steps, state.global_step);
    let mut last: Option<StepLog> = None;
    let mut window_tokens = 0u64;
    let mut window_start = Instant::now();
    let mut tokens_total = 0u64;
    let first_step = state.global_step;
    let mut halted = false;

    'epochs: for epoch in state.epoch..cfg.epochs.max(1) {
        if state.global_step >= total_steps {
            break;
        }
        let order = epoch_order(records.len(), state.seed, epoch);
        let start = if epoch == state.epoch {
            state.position
        } else {
            0
        };
        // This rank's records of each remaining step (a slice may be empty at the epoch's end).
        let steps: Vec<(usize, Vec<usize>)> = order[start..]
            .chunks(per_step)
            .scan(start, |pos, chunk| {
                *pos += chunk.len();
                Some((
                    *pos,
                    chunk
                        .iter()
                        .skip(rank * accum)
                        .take(accum)
                        .copied()
                        .collect(),
                ))
            })
            .collect();
        let todo: Vec<usize> = steps
            .iter()
            .flat_map(|(_, mine)| mine.iter().copied())
            .collect();
        let mut prefetch =
            Prefetcher::start(builder.clone(), records.clone(), todo, cfg.workers, 4);
        let mut acc = None;
        let mut sample: Option<(String, String, String)> = None;
        for (position, mine) in steps {
            // used, total, ce, sim, cos, tokens, token hits/count, answer hits/count: summed over
            // ranks below.
            let mut sums = [0f64; 10];
            // Where a step's time goes (forward, backward, optimiser), with `RUST_LOG=...=debug`:
            // the device is synchronised at each mark only then, so normal runs keep queueing.
            let timing = tracing::enabled!(tracing::Level::DEBUG);
            let mut phase = [0f64; 3];
            let mut clock = Instant::now();
            let mut mark = |k: usize| -> Result<()> {
                if timing {
                    cfg.device.synchronize()?;
                    phase[k] += clock.elapsed().as_secs_f64();
                    clock = Instant::now();
                }
                Ok(())
            };
            for _ in 0..mine.len() {
                let Some((_, item)) = prefetch.next() else {
                    return Err(TrainError::Config(
                        "the record loader stopped early (a worker thread failed)".into(),
                    ));
                };
                match item {
                    Err(Skipped { id, reason }) => {
                        if epoch == 0 || !skipped.iter().any(|s| s.id == id) {
                            tracing::warn!("skipping record {id}: {reason}");
                            skipped.push(SkippedRecord { id, reason });
                        }
                    }
                    Ok(ex) => {
                        let loss =
                            dift_loss(&pipeline.model, &params, &latent, &compress, cfg.loss, &ex)?;
                        let total = loss.total.to_scalar::<f32>()?;
                        mark(0)?;
                        if !total.is_finite() {
                            state.nan_skipped += 1;
                            tracing::warn!(
                                "non-finite loss on record {}; batch skipped ({} so far)",
                                ex.id,
                                state.nan_skipped
                            );
                        } else {
                            let grads = loss.total.backward()?;
                            accumulate(
                                &mut acc,
                                backward_grads(&grads, checkpoint_grads.as_ref(), &vars)?,
                            )?;
                            drop(grads);
                            mark(1)?;
                            let tokens = ex.input_ids.len() as f64;
                            let (th, tn) = loss.token_hits;
                            let (ah, an) = loss.answer_hits;
                            let parts = [
                                1.0,
                                total as f64,
                                loss.ce as f64,
                                loss.sim as f64,
                                loss.cos as f64,
                                tokens,
                            ];
                            let hits = [th as f64, tn as f64, ah as f64, an as f64];
                            for (s, v) in sums.iter_mut().zip(parts.into_iter().chain(hits)) {
                                *s += v;
                            }
                            sample = Some((
                                ex.question.clone(),
                                pipeline
                                    .tokenizer
                                    .decode(&loss.targets, false)
                                    .unwrap_or_default(),
                                pipeline
                                    .tokenizer
                                    .decode(&loss.predicted, false)
                                    .unwrap_or_default(),
                            ));
                        }
                    }
                }
            }
            group.sum_f64(&mut sums)?;
            let Some(grads) = group.sum_grads(acc.take(), &vars)? else {
                continue;
            };
            let used = sums[0] as usize;
            window_tokens += sums[5] as u64;
            tokens_total += sums[5] as u64;
            state.examples_seen += used as u64;
            state.tokens_seen += sums[5] as u64;
            // The mean over the examples used, and clipping, are applied inside the update.
            let mean = 1.0 / used.max(1) as f64;
            let norm = grad_norm(&grads)? * mean;
            let lr = schedule.lr(state.global_step);
            opt.step(&grads, lr, mean * clip_coefficient(norm, cfg.max_grad_norm))?;
            mark(2)?;
            if timing {
                tracing::debug!(
                    "step {}: forward {:.3} s, backward {:.3} s, gradient sync + clipping + optimiser {:.3} s",
                    state.global_step + 1, phase[0], phase[1], phase[2]
                );
            }
            state.global_step += 1;
            state.epoch = epoch;
            state.position = position;
            if position == order.len() {
                state.epoch = epoch + 1;
                state.position = 0;
            }
            let n = used.max(1) as f64;
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            let log = StepLog {
                step: state.global_step,
                epoch,
                loss: sums[1] / n,
                ce: sums[2] / n,
                sim: sums[3] / n,
                cos: sums[4] / n,
                lr,
                grad_norm: norm,
                tokens_per_s: window_tokens as f64 / secs,
                token_acc: sums[6] / sums[7].max(1.0),
                answer_acc: sums[8] / sums[9].max(1.0),
            };
            window_tokens = 0;
            window_start = Instant::now();
            if let Some(b) = &bar {
                b.set_position(state.global_step);
                b.set_message(format!(
                    "loss {:.4} ce {:.4} sim {:.4}",
                    log.loss, log.ce, log.sim
                ));
            }
            if let Some(tb) = tb.as_mut() {
                tb.scalars(
                    state.global_step,
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
                append_jsonl(&log_path, &log)?;
            }
            if main && cfg.logging_steps > 0 && state.global_step % cfg.logging_steps == 0 {
                tracing::info!(
                    "step {} loss {:.4} (ce {:.4}, sim {:.4}, cos {:.3}) lr {:.2e} grad norm {:.3} token acc {:.3} answer acc {:.3}",
                    log.step, log.loss, log.ce, log.sim, log.cos, log.lr, log.grad_norm, log.token_acc, log.answer_acc
                );
                if let Some((q, t, p)) = &sample {
                    tracing::info!("sample question: {q}\n  target:     {t}\n  prediction: {p}");
                }
            }
            last = Some(log);
            let finished = state.global_step >= total_steps;
            halted = !finished
                && cfg
                    .halt_after
                    .is_some_and(|h| state.global_step - first_step >= h);
            if main
                && cfg
                    .save_steps
                    .is_some_and(|s| s > 0 && state.global_step % s == 0)
                && !finished
                && !halted
            {
                save_training_checkpoint(
                    cfg,
                    &weights_dir,
                    &pipeline,
                    &latent,
                    &weights,
                    &opt,
                    &state,
                )?;
            }
            if finished || halted {
                break 'epochs;
            }
        }
        state.epoch = epoch + 1;
        state.position = 0;
    }
    if halted && main {
        // An interruption: keep what a crash would keep (the last saved checkpoint) and a
        // checkpoint of this very step so the stop is resumable without loss.
        save_training_checkpoint(
            cfg,
            &weights_dir,
            &pipeline,
            &latent,
            &weights,
            &opt,
            &state,
        )?;
        tracing::info!(
            "halted after {} steps at step {}",
            state.global_step - first_step,
            state.global_step
        );
    }
    if let Some(b) = &bar {
        b.finish();
    }
    // Final model in the run folder itself (what `fourd infer --model OUT` loads), plus a
    // resumable checkpoint when checkpoints were asked for.
    let tensors = weights.tensors();
    if !halted && main {
        crate::checkpoint::write_model_files(
            &cfg.out,
            &weights_dir,
            &pipeline.model.config.raw,
            &latent,
            &tensors,
        )?;
    }
    if cfg.save_steps.is_some() && !halted && main {
        save_training_checkpoint(
            cfg,
            &weights_dir,
            &pipeline,
            &latent,
            &weights,
            &opt,
            &state,
        )?;
    }
    // Each rank reports the records of its own shard.
    let skipped_path = cfg.out.join(if main {
        "skipped.jsonl".to_string()
    } else {
        format!("skipped-rank{rank}.jsonl")
    });
    let _ = std::fs::remove_file(&skipped_path);
    for s in &skipped {
        append_jsonl(&skipped_path, s)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(DiftSummary {
        steps: state.global_step,
        skipped,
        nan_skipped: state.nan_skipped,
        last,
        seconds,
        tokens_per_s: tokens_total as f64 / seconds.max(1e-9),
        output: cfg.out.clone(),
    })
}

fn save_training_checkpoint(
    cfg: &DiftConfig,
    source: &Path,
    pipeline: &Pipeline,
    latent: &fourd_model::generation::LatentTokens,
    weights: &TrainableWeights,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<()> {
    let dir = cfg.out.join(format!("checkpoint-{}", state.global_step));
    save_checkpoint(
        &dir,
        source,
        &pipeline.model.config.raw,
        latent,
        &weights.tensors(),
        |tmp| {
            opt.save(&tmp.join("optimizer.safetensors"))?;
            write_json(&tmp.join("trainer_state.json"), state)
        },
    )?;
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
