//! `fourd demo`: the whole system end to end on CPU, with known ground truth.
//!
//! 1. `fourd synth` renders training clips and held-out clips (different seeds) in the SpatialVID
//!    layout; 2. the data pipeline turns each set into camera-motion questions with imagery chains
//!    of thought (DIFT JSONL) and plain multiple-choice questions (4DRL JSONL); 3. a tiny
//!    Qwen2.5-VL (tokenizer trained on the training text) is initialised from scratch; 4. DIFT
//!    trains it; 5. it answers the held-out questions with latent imagery, and the accuracy is
//!    printed against chance (25%) and against the untrained model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Parser};

use fourd_eval::extract::extract_choice;
use fourd_eval::run::raw_text;
use fourd_model::generation::{generate, GenerationConfig, Sampling};
use fourd_model::inputs::{PromptInput, VideoFrames, FOUR_D_THINKER_SUFFIX};
use fourd_model::processor::load_image;
use fourd_model::tokenizer::{Content, Message};
use fourd_model::Pipeline;
use fourd_train::tiny::{init_tiny_checkpoint, TinySpec};
use fourd_train::{train_dift, DiftConfig};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Working folder (world, data, checkpoints, report).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1400)]
    pub train_clips: usize,
    #[arg(long, default_value_t = 200)]
    pub eval_clips: usize,
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Frame side in pixels (square).
    #[arg(long, default_value_t = 112)]
    pub size: u32,
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Peak learning rate (a model trained from scratch; the reference's 1e-5 fine-tunes).
    #[arg(long, default_value_t = 5e-3)]
    pub lr: f64,
    /// Cross-entropy weight (the reference's 0.1 assumes a pretrained model; from scratch the
    /// text needs more weight).
    #[arg(long, default_value_t = 1.0)]
    pub ce_weight: f64,
    /// Weight of the latent cosine loss (at 1.0, as the reference, the tiny model's reasoning
    /// learns more slowly; at 0.1 the cosine still reaches 0.99).
    #[arg(long, default_value_t = 0.1)]
    pub sim_weight: f64,
    /// Keep the vision tower frozen (the reference's setting; from scratch the demo trains it).
    #[arg(long)]
    pub frozen_vision: bool,
    /// Weight of the answer's tokens in the cross-entropy (see `fourd train dift --answer-weight`).
    #[arg(long, default_value_t = 1.0)]
    pub answer_weight: f64,
    /// How each training reply closes (`fourd data --reply`): `label` answers with the concluded
    /// motion (`<answer>Pan Left</answer>`), which evaluation maps to its option; `option-check`
    /// and `letter` answer with the letter, which takes reading the option list, a lookup the
    /// tiny model learns in some runs only (README, "The demo").
    #[arg(long, default_value = "label")]
    pub reply: String,
    /// Records per optimiser step.
    #[arg(long, default_value_t = 8)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decoder layers of the tiny model.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Hidden size of the tiny model's language model.
    #[arg(long, default_value_t = 96)]
    pub hidden: usize,
    /// GRPO prompts after DIFT (0 skips the stage).
    #[arg(long, default_value_t = 128)]
    pub grpo_prompts: usize,
    /// Completions per GRPO prompt.
    #[arg(long, default_value_t = 8)]
    pub grpo_generations: usize,
    /// GRPO learning rate (higher rates lowered the demo's accuracy; README, "The demo").
    #[arg(long, default_value_t = 5e-5)]
    pub grpo_lr: f64,
    /// Sampling temperature of the GRPO rollouts (the objective uses logits / T).
    #[arg(long, default_value_t = 0.7)]
    pub grpo_temperature: f64,
    /// Held-out questions to answer (all when larger than the set).
    #[arg(long, default_value_t = 200)]
    pub max_eval: usize,
}

#[derive(Debug, Default)]
struct DemoReport {
    train_questions: usize,
    heldout_questions: usize,
    train_steps: u64,
    train_seconds: f64,
    final_loss: f64,
    heldout_accuracy_untrained: f64,
    heldout_accuracy_trained: f64,
    train_accuracy_trained: f64,
    heldout_reasoning_untrained: f64,
    heldout_reasoning_trained: f64,
    heldout_reasoning_grpo: Option<f64>,
    grpo_steps: u64,
    grpo_seconds: f64,
    heldout_accuracy_grpo: Option<f64>,
    /// GRPO's model against DIFT's on the held-out questions.
    grpo_vs_dift: Option<Paired>,
    chance: f64,
    total_seconds: f64,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let reply = a
        .reply
        .parse::<fourd_data::ReplyForm>()
        .map_err(|e| anyhow::anyhow!("--reply: {e}"))?;
    let out = a.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let size = format!("{}x{}", a.size, a.size);

    println!(
        "[1/5] rendering {} training and {} held-out clips ({} frames, {size})",
        a.train_clips, a.eval_clips, a.frames
    );
    for (name, clips, seed) in [
        ("train", a.train_clips, a.seed),
        ("heldout", a.eval_clips, a.seed + 1_000_003),
    ] {
        let world = out.join("world").join(name);
        if !world.join("metadata.csv").exists() {
            let specs =
                write_demo_specs(&out.join("specs").join(name), clips, a.frames, a.size, seed)?;
            let mut args = vec![
                "fourd".to_string(),
                "synth".into(),
                "--out".into(),
                world.display().to_string(),
            ];
            for s in &specs {
                args.push("--spec".into());
                args.push(s.display().to_string());
            }
            match crate::Cli::try_parse_from(args)
                .context("synth arguments")?
                .command
            {
                crate::Command::Synth(cmd) => crate::synth_cmd::run(cmd)?,
                _ => unreachable!("parsed as synth"),
            }
        }
    }

    println!("[2/5] building camera-motion questions with imagery chains of thought");
    let mut files = Vec::new();
    for name in ["train", "heldout"] {
        let data = out.join("data").join(name);
        let mut pc = fourd_data::PipelineConfig::new(out.join("world").join(name), &data);
        pc.seed = a.seed;
        pc.kinds = vec![fourd_data::QuestionKind::Camera];
        pc.reply = reply;
        pc.progress = true;
        let s = fourd_data::run_pipeline(&pc)
            .with_context(|| format!("data pipeline on the {name} clips"))?;
        if !s.failures.is_empty() {
            println!(
                "      {}: {} clip(s) failed or skipped (see {})",
                name,
                s.failures.len(),
                data.join("manifest.json").display()
            );
        }
        files.push((s.dift_path.clone(), s.rl_path.clone()));
    }
    let (train_dift_file, train_rl) = files[0].clone();
    let (_, heldout_rl) = files[1].clone();
    let corpus = dift_corpus(&train_dift_file)?;
    if corpus.is_empty() {
        bail!(
            "the data pipeline produced no training questions in {}",
            train_dift_file.display()
        );
    }

    // A re-run with the same settings reuses the finished DIFT model (the demo resumes).
    let model_dir = out.join("model");
    let init = out.join("model-init");
    let dift_key = serde_json::json!({
        "train_clips": a.train_clips, "frames": a.frames, "size": a.size, "epochs": a.epochs, "lr": a.lr,
        "ce_weight": a.ce_weight, "sim_weight": a.sim_weight, "frozen_vision": a.frozen_vision, "answer_weight": a.answer_weight, "reply": a.reply,
        "grad_accum": a.grad_accum, "seed": a.seed, "layers": a.layers, "hidden": a.hidden,
    });
    let done_path = model_dir.join("demo_dift.json");
    let finished: Option<serde_json::Value> = std::fs::read_to_string(&done_path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| {
            v["key"] == dift_key
                && model_dir.join("model.safetensors").exists()
                && init.join("model.safetensors").exists()
        });

    println!(
        "[3/5] initialising a tiny Qwen2.5-VL from scratch ({} training questions)",
        corpus.len()
    );
    let spec = TinySpec {
        seed: a.seed,
        layers: a.layers,
        hidden_size: a.hidden,
        intermediate_size: a.hidden * 8 / 3,
        ..Default::default()
    };
    let mut texts: Vec<String> = corpus.clone();
    texts.push(FOUR_D_THINKER_SUFFIX.to_string());
    texts.push("system\nYou are a helpful assistant.\nuser\nassistant\n".to_string());
    if finished.is_none() {
        init_tiny_checkpoint(&init, &texts, &spec)?;
    }
    let eval_rows = read_rl(&heldout_rl)?;
    let eval_rows: Vec<RlRow> = eval_rows.into_iter().take(a.max_eval).collect();
    let before = accuracy(&init, &eval_rows, &heldout_rl, None)?;
    println!(
        "      untrained model: {:.1}% on {} held-out questions",
        100.0 * before.answer,
        eval_rows.len()
    );

    println!(
        "[4/5] DIFT: {} epochs over {} records",
        a.epochs,
        corpus.len()
    );
    let mut cfg = DiftConfig::new(init.clone(), train_dift_file.clone(), model_dir.clone());
    cfg.epochs = a.epochs;
    cfg.optim.lr = a.lr;
    cfg.optim.weight_decay = 0.0;
    cfg.warmup_ratio = 0.05;
    cfg.loss.ce = a.ce_weight;
    cfg.loss.sim = a.sim_weight;
    cfg.loss.answer = a.answer_weight;
    cfg.logging_steps = 50;
    cfg.seed = a.seed;
    cfg.grad_accum = a.grad_accum;
    cfg.train_vision = !a.frozen_vision;
    let (steps, seconds, final_loss) = match &finished {
        Some(v) => {
            println!(
                "      reusing the DIFT model in {} (same settings)",
                model_dir.display()
            );
            (
                v["steps"].as_u64().unwrap_or(0),
                v["seconds"].as_f64().unwrap_or(0.0),
                v["final_loss"].as_f64().unwrap_or(f64::NAN),
            )
        }
        None => {
            // A fresh start: nothing of an earlier run (its logs append) stays in the folder.
            let _ = std::fs::remove_dir_all(&model_dir);
            let summary = train_dift(&cfg)?;
            let final_loss = summary.last.as_ref().map_or(f64::NAN, |l| l.loss);
            let done = serde_json::json!({"key": dift_key, "steps": summary.steps, "seconds": summary.seconds, "final_loss": final_loss});
            std::fs::write(&done_path, serde_json::to_string_pretty(&done)?)
                .with_context(|| format!("writing {}", done_path.display()))?;
            (summary.steps, summary.seconds, final_loss)
        }
    };

    println!("[5/6] answering held-out questions with latent imagery");
    let after = accuracy(
        &model_dir,
        &eval_rows,
        &heldout_rl,
        Some(&out.join("heldout_predictions.jsonl")),
    )?;
    let train_rows: Vec<RlRow> = read_rl(&train_rl)?
        .into_iter()
        .take(a.max_eval.min(100))
        .collect();
    let train_acc = accuracy(
        &model_dir,
        &train_rows,
        &train_rl,
        Some(&out.join("train_predictions.jsonl")),
    )?;
    println!(
        "      after DIFT: answers {:.1}% held-out ({:.1}% on training questions); the reasoning names the right motion for {:.1}% held-out",
        100.0 * after.answer,
        100.0 * train_acc.answer,
        100.0 * after.reasoning
    );
    let dift_curve = read_curve(&model_dir.join("train_log.jsonl"), "loss")?;
    chart(
        &out.join("dift_loss.png"),
        "DIFT loss (tiny model, from scratch)",
        "loss",
        &[("total", dift_curve)],
    );

    let mut report = DemoReport {
        train_questions: corpus.len(),
        heldout_questions: eval_rows.len(),
        train_steps: steps,
        train_seconds: seconds,
        final_loss,
        heldout_accuracy_untrained: before.answer,
        heldout_accuracy_trained: after.answer,
        train_accuracy_trained: train_acc.answer,
        heldout_reasoning_untrained: before.reasoning,
        heldout_reasoning_trained: after.reasoning,
        chance: 0.25,
        ..Default::default()
    };
    let mut final_model = model_dir.clone();
    if a.grpo_prompts > 0 {
        println!(
            "[6/6] GRPO: {} prompts x {} completions, imagery re-injected",
            a.grpo_prompts, a.grpo_generations
        );
        let grpo_dir = out.join("model-grpo");
        let _ = std::fs::remove_dir_all(&grpo_dir);
        let subset = out.join("data").join("grpo_prompts.jsonl");
        let text = std::fs::read_to_string(&train_rl)?;
        std::fs::write(
            &subset,
            text.lines()
                .take(a.grpo_prompts)
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )?;
        let mut g = fourd_train::GrpoConfig::new(model_dir.clone(), subset, grpo_dir.clone());
        g.num_generations = a.grpo_generations;
        g.max_new_tokens = 320;
        g.optim.lr = a.grpo_lr;
        g.temperature = a.grpo_temperature;
        g.seed = a.seed;
        g.logging_steps = 8;
        let gs = fourd_train::train_grpo(&g)?;
        // One rollout batch is one prompt's group: its reward is mostly noise, the moving mean
        // shows the trend.
        let rewards: Vec<f64> = gs.logs.iter().map(|l| l.reward).collect();
        let accuracies: Vec<f64> = gs.logs.iter().map(|l| l.accuracy).collect();
        chart(
            &out.join("grpo_reward.png"),
            &format!("GRPO rollouts: mean of the last {CURVE_WINDOW} batches"),
            "per completion",
            &[
                ("reward", moving_mean(&rewards, CURVE_WINDOW)),
                ("accuracy", moving_mean(&accuracies, CURVE_WINDOW)),
            ],
        );
        let after_grpo = accuracy(
            &grpo_dir,
            &eval_rows,
            &heldout_rl,
            Some(&out.join("heldout_predictions_grpo.jsonl")),
        )?;
        report.grpo_steps = gs.steps;
        report.grpo_seconds = gs.seconds;
        report.heldout_accuracy_grpo = Some(after_grpo.answer);
        report.heldout_reasoning_grpo = Some(after_grpo.reasoning);
        report.grpo_vs_dift = Some(paired(&after.right, &after_grpo.right));
        final_model = grpo_dir;
    }
    report.total_seconds = t0.elapsed().as_secs_f64();
    let json = serde_json::json!({
        "train_questions": report.train_questions, "heldout_questions": report.heldout_questions,
        "train_steps": report.train_steps, "train_seconds": report.train_seconds, "final_loss": report.final_loss,
        "heldout_accuracy_untrained": report.heldout_accuracy_untrained,
        "heldout_accuracy_trained": report.heldout_accuracy_trained,
        "train_accuracy_trained": report.train_accuracy_trained,
        "grpo_steps": report.grpo_steps, "grpo_seconds": report.grpo_seconds,
        "heldout_accuracy_grpo": report.heldout_accuracy_grpo,
        "heldout_reasoning_label_untrained": report.heldout_reasoning_untrained,
        "heldout_reasoning_label_trained": report.heldout_reasoning_trained,
        "heldout_reasoning_label_grpo": report.heldout_reasoning_grpo,
        "reasoning_label_chance": 1.0 / DEMO_MOTIONS.len() as f64,
        "chance": report.chance, "total_seconds": report.total_seconds, "reply": a.reply,
        "heldout_standard_errors_above_chance": above_chance(report.heldout_accuracy_trained, report.chance, report.heldout_questions),
        "grpo_vs_dift": report.grpo_vs_dift.as_ref().map(|p| serde_json::json!({"gained": p.gained, "lost": p.lost, "mcnemar_p": p.p_value})),
    });
    std::fs::write(
        out.join("demo_report.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    println!();
    println!(
        "held-out accuracy: {:.1}% after DIFT ({:.1} standard errors above chance){} (untrained {:.1}%, chance 25.0%) on {} questions",
        100.0 * after.answer,
        above_chance(after.answer, report.chance, eval_rows.len()),
        report.heldout_accuracy_grpo.map_or(String::new(), |g| format!(", {:.1}% after GRPO", 100.0 * g)),
        100.0 * before.answer,
        eval_rows.len()
    );
    if let Some(p) = &report.grpo_vs_dift {
        println!(
            "GRPO against DIFT on the same held-out questions: {} now right, {} now wrong (exact McNemar p = {:.4})",
            p.gained, p.lost, p.p_value
        );
    }
    println!(
        "reasoning names the right camera motion: {:.1}% after DIFT{} (untrained {:.1}%, chance {:.1}% over {} motions)",
        100.0 * after.reasoning,
        report.heldout_reasoning_grpo.map_or(String::new(), |g| format!(", {:.1}% after GRPO", 100.0 * g)),
        100.0 * before.reasoning,
        100.0 / DEMO_MOTIONS.len() as f64,
        DEMO_MOTIONS.len()
    );
    println!(
        "training accuracy: {:.1}%; {} DIFT steps in {:.0} s, {} GRPO steps in {:.0} s; whole demo {:.0} s",
        100.0 * train_acc.answer, report.train_steps, report.train_seconds, report.grpo_steps, report.grpo_seconds, report.total_seconds
    );
    let model_dir = final_model;
    println!(
        "model: {}  report: {}",
        model_dir.display(),
        out.join("demo_report.json").display()
    );
    Ok(())
}

/// How many binomial standard errors of a chance-level guesser over `n` questions `accuracy` lies
/// above `chance`.
fn above_chance(accuracy: f64, chance: f64, n: usize) -> f64 {
    (accuracy - chance) / (chance * (1.0 - chance) / n.max(1) as f64).sqrt()
}

/// Camera motions of the demo world: one motion over the whole clip, strong enough to see at
/// 112 px, from seven classes (a tiny model trained for minutes from scratch cannot be expected
/// to separate all 12 labels and their combinations; `fourd synth` without specs renders those).
const DEMO_MOTIONS: &[(&str, f64)] = &[
    ("Pan Left", 3.5),
    ("Pan Right", 3.5),
    ("Tilt Up", 2.5),
    ("Tilt Down", 2.5),
    ("Dolly In", 0.35),
    ("Dolly Out", 0.35),
    ("Stay", 0.0),
];

/// Writes one scene spec per clip (random room, camera start, motion class and static objects)
/// and returns their paths. Deterministic for a seed.
fn write_demo_specs(
    dir: &Path,
    clips: usize,
    frames: usize,
    size: u32,
    seed: u64,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let shapes = [
        serde_json::json!({"type": "sphere", "radius": 0.45}),
        serde_json::json!({"type": "box", "half_extents": [0.4, 0.4, 0.4]}),
        serde_json::json!({"type": "cylinder", "radius": 0.3, "half_height": 0.7}),
    ];
    let textures = ["checker", "stripes", "noise"];
    let mut paths = Vec::with_capacity(clips);
    for i in 0..clips {
        let (label, magnitude) = DEMO_MOTIONS[i % DEMO_MOTIONS.len()];
        let motion = if label == "Stay" {
            serde_json::json!("Stay")
        } else {
            serde_json::json!([{"label": label, "magnitude": magnitude * (0.8 + 0.4 * next())}])
        };
        let objects: Vec<serde_json::Value> = (0..2)
            .map(|k| {
                let c1 = [next(), next(), next()];
                serde_json::json!({
                    "name": format!("object{k}"),
                    "shape": shapes[(next() * 3.0) as usize % 3],
                    "texture": {"type": textures[(next() * 3.0) as usize % 3], "colors": [c1, [1.0, 1.0, 1.0]], "scale": 0.2},
                    "position": [-2.0 + 4.0 * next(), 0.9, 4.5 + 3.0 * next()],
                })
            })
            .collect();
        let spec = serde_json::json!({
            "id": format!("demo_{i:05}"),
            "frames": frames,
            "size": format!("{size}x{size}"),
            "fps": 1,
            "hfov_deg": 60,
            "room": {"half_width": 6, "depth": 12, "seed": (next() * 1e6) as u64},
            "camera": {
                "start": {"eye": [-0.5 + next(), 1.4 + 0.3 * next(), 0.5 * next()], "look_at": [-1.0 + 2.0 * next(), 1.1, 6.0]},
                "segments": [{"from": 0, "to": frames - 1, "motion": motion}]
            },
            "objects": objects,
        });
        let path = dir.join(format!("demo_{i:05}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&spec)?)
            .with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// `(step, value)` of a field of a train_log.jsonl.
fn read_curve(path: &Path, field: &str) -> Result<Vec<(f64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v.get("step")?.as_f64()?, v.get(field)?.as_f64()?)))
        .collect())
}

/// A PNG curve; a missing font costs the picture, not the run.
/// Rollout batches averaged in the GRPO curve.
const CURVE_WINDOW: usize = 16;

/// `(i + 1, mean of values[i + 1 - window ..= i])` from the first full window on (all values
/// when there are fewer than `window`).
fn moving_mean(values: &[f64], window: usize) -> Vec<(f64, f64)> {
    let w = window.clamp(1, values.len().max(1));
    (w..=values.len())
        .map(|end| {
            (
                end as f64,
                values[end - w..end].iter().sum::<f64>() / w as f64,
            )
        })
        .collect()
}

fn chart(path: &Path, title: &str, y: &str, series: &[(&str, Vec<(f64, f64)>)]) {
    if let Err(e) = fourd_eval::report::line_chart(path, title, "step", y, series) {
        tracing::warn!("no chart {}: {e}", path.display());
    }
}

/// `text_input` and `text_output` of every DIFT record (the tokenizer's training text).
fn dift_corpus(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let ti = v["text_input"].as_str().unwrap_or_default();
        let to = v["text_output"].as_str().unwrap_or_default();
        out.push(format!("{ti}\n{to}"));
    }
    Ok(out)
}

struct RlRow {
    question: String,
    options: Vec<String>,
    correct: String,
    frames: Vec<PathBuf>,
}

fn read_rl(path: &Path) -> Result<Vec<RlRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let frames = v["frame_paths"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str())
                    .map(|p| base.join(p))
                    .collect()
            })
            .unwrap_or_default();
        rows.push(RlRow {
            question: s("Question"),
            options: ["A", "B", "C", "D"]
                .iter()
                .map(|l| format!("{l}. {}", s(l)))
                .collect(),
            correct: s("Correct")
                .chars()
                .next()
                .map(|c| c.to_ascii_uppercase().to_string())
                .unwrap_or_default(),
            frames,
        });
    }
    Ok(rows)
}

/// Greedy answers with latent imagery; the fraction whose extracted letter is correct. The
/// prompt is the evaluator's (question, blank line, options, 4DThinker suffix; frames as a video).
/// What a model got right: the answer letter, and the label its reasoning concluded with.
#[derive(Clone, Debug, Default)]
struct Scores {
    answer: f64,
    reasoning: f64,
    /// Per question, in order: whether the answer was right.
    right: Vec<bool>,
}

/// A paired comparison of two models on the same questions: how many each got right that the
/// other did not, and the exact two-sided McNemar p-value (binomial, p = 1/2, over the questions
/// on which they disagree).
#[derive(Debug, PartialEq)]
struct Paired {
    gained: usize,
    lost: usize,
    p_value: f64,
}

fn paired(before: &[bool], after: &[bool]) -> Paired {
    let gained = before
        .iter()
        .zip(after)
        .filter(|(b, a)| !**b && **a)
        .count();
    let lost = before
        .iter()
        .zip(after)
        .filter(|(b, a)| **b && !**a)
        .count();
    let n = gained + lost;
    // P(X <= min) for X ~ Binomial(n, 1/2), summed in log space so large n cannot overflow.
    let ln_choose =
        |n: usize, k: usize| -> f64 { (1..=k).map(|i| ((n + 1 - i) as f64 / i as f64).ln()).sum() };
    let tail: f64 = (0..=gained.min(lost))
        .map(|k| (ln_choose(n, k) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    Paired {
        gained,
        lost,
        p_value: if n == 0 { 1.0 } else { (2.0 * tail).min(1.0) },
    }
}

/// The option label that the reasoning (text before `<answer>`) names last, when any.
fn reasoning_label<'a>(raw: &str, options: &'a [String]) -> Option<&'a str> {
    let think = raw.split("<answer>").next().unwrap_or(raw);
    // The option check names every option; the conclusion comes before it.
    let think = think
        .split(fourd_data::cot::OPTION_CHECK_LEAD)
        .next()
        .unwrap_or(think);
    options
        .iter()
        .map(|o| o.get(3..).unwrap_or(""))
        .filter(|label| !label.is_empty())
        .filter_map(|label| think.rfind(label).map(|i| (i + label.len(), label)))
        .max()
        .map(|(_, l)| l)
}

fn accuracy(model: &Path, rows: &[RlRow], source: &Path, record: Option<&Path>) -> Result<Scores> {
    if rows.is_empty() {
        bail!("no questions in {}", source.display());
    }
    let pipe = Pipeline::load(model, DType::F32, &Device::Cpu)?;
    let latent = pipe.latent_tokens(None)?;
    let gen = GenerationConfig {
        max_new_tokens: 320,
        sampling: Sampling::default(),
        stop_ids: pipe.stop_ids(),
        latent,
    };
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    let mut correct = 0usize;
    let mut right = Vec::with_capacity(rows.len());
    let mut reasoned = 0usize;
    let mut lines = String::new();
    for chunk in rows.chunks(8) {
        let mut prompts = Vec::with_capacity(chunk.len());
        for r in chunk {
            let text = format!(
                "{}\n\n{}{}",
                r.question,
                r.options.join("\n"),
                FOUR_D_THINKER_SUFFIX
            );
            let rendered = pipe.tokenizer.apply_chat_template(
                &[Message::new(
                    "user",
                    vec![Content::Video, Content::Text(text)],
                )],
                true,
            )?;
            let frames = r
                .frames
                .iter()
                .map(|p| {
                    load_image(p, 1 << 26).map(|im| {
                        fourd_video::resize_for_model(
                            &im,
                            fourd_train::dift_data::DIFT_MAX_PIXELS,
                            28,
                        )
                    })
                })
                .collect::<fourd_model::Result<Vec<_>>>()?;
            prompts.push(PromptInput {
                text: rendered,
                images: vec![],
                videos: vec![VideoFrames { frames, fps: 1.0 }],
            });
        }
        let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts)?;
        let outs = generate(
            &pipe.model,
            &inputs,
            &pipe.rope_params(),
            &gen,
            |_, _, _| {},
        )?;
        for (r, o) in chunk.iter().zip(outs) {
            let raw = raw_text(&pipe.tokenizer.decode(&o.token_ids, false)?);
            let pred = extract_choice(&raw, &r.options);
            let is_right = !pred.is_empty() && pred == r.correct;
            right.push(is_right);
            correct += usize::from(is_right);
            let truth = r
                .options
                .iter()
                .find(|o| o.starts_with(&r.correct))
                .and_then(|o| o.get(3..));
            let concluded = reasoning_label(&raw, &r.options);
            reasoned += usize::from(concluded.is_some() && concluded == truth);
            lines += &serde_json::json!({"question": r.question, "options": r.options, "gt": r.correct, "pred": pred,
                "reasoning_label": concluded, "raw": raw}).to_string();
            lines.push('\n');
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(path) = record {
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    let n = rows.len() as f64;
    Ok(Scores {
        answer: correct as f64 / n,
        reasoning: reasoned as f64 / n,
        right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_comparison_counts_disagreements_and_gives_the_exact_p_value() {
        let t = true;
        let f = false;
        // Four gained, none lost: p = 2 * (1/2)^4.
        let p = paired(&[f, f, f, f, t], &[t, t, t, t, t]);
        assert_eq!((p.gained, p.lost), (4, 0));
        assert!((p.p_value - 0.125).abs() < 1e-12, "{p:?}");
        // Three gained, one lost: p = 2 * (1 + 4) / 16.
        let p = paired(&[f, f, f, t], &[t, t, t, f]);
        assert!((p.p_value - 0.625).abs() < 1e-12, "{p:?}");
        // No disagreement: nothing to test.
        assert_eq!(paired(&[t, f], &[t, f]).p_value, 1.0);
        // Symmetric, never above 1, and finite for many questions.
        let before: Vec<bool> = (0..2000).map(|i| i % 3 == 0).collect();
        let after: Vec<bool> = (0..2000).map(|i| i % 2 == 0).collect();
        let (a, b) = (paired(&before, &after), paired(&after, &before));
        assert_eq!((a.gained, a.lost), (b.lost, b.gained));
        assert!((a.p_value - b.p_value).abs() < 1e-12 && a.p_value <= 1.0 && a.p_value.is_finite());
    }

    #[test]
    fn moving_mean_starts_at_the_first_full_window() {
        assert_eq!(
            moving_mean(&[1.0, 3.0, 5.0, 7.0], 2),
            vec![(2.0, 2.0), (3.0, 4.0), (4.0, 6.0)]
        );
        // Fewer values than the window: one mean over all of them.
        assert_eq!(moving_mean(&[1.0, 2.0], 16), vec![(2.0, 1.5)]);
        assert!(moving_mean(&[], 16).is_empty());
    }

    #[test]
    fn chance_margin_in_standard_errors() {
        // 200 questions at chance 1/4: one standard error is sqrt(3/16/200).
        let se = (0.1875f64 / 200.0).sqrt();
        assert!((above_chance(0.25 + 2.0 * se, 0.25, 200) - 2.0).abs() < 1e-9);
        assert_eq!(above_chance(0.25, 0.25, 200), 0.0);
    }
}
