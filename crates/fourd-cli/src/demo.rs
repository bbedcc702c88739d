//! `fourd demo`: the whole system end to end on CPU, with known ground truth. A composition of
//! library calls, one phase each:
//!
//! 1. `fourd_world` renders training and held-out clips (different seeds) in the SpatialVID
//!    layout from the demo's scene specs;
//! 2. `fourd_data` turns each set into camera-motion questions with imagery chains of thought
//!    (DIFT JSONL) and plain multiple-choice questions (4DRL JSONL);
//! 3. `fourd_train` initialises a tiny Qwen2.5-VL (tokenizer trained on the training text) from
//!    scratch, 4. trains it with DIFT, 6. then with GRPO;
//! 5. `fourd_eval` answers the held-out 4DRL questions with latent imagery (the evaluation of
//!    `fourd eval`), and the accuracies are printed against chance (25%), the untrained model and
//!    each other.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;

use fourd_data::ReplyForm;
use fourd_eval::compare::{paired, standard_errors_above_chance, Paired};
use fourd_eval::report::{read_jsonl, ResultFiles, SampleResult};
use fourd_eval::run::{evaluate, EvalConfig};
use fourd_model::generation::{GenerationConfig, Sampling};
use fourd_model::ModelBundle;
use fourd_records::prompt::FOUR_D_THINKER_SUFFIX;
use fourd_train::tiny::{init_tiny_checkpoint, TinySpec};
use fourd_train::{train_dift, DiftConfig, DiftSummary};
use fourd_world::demo_world::{demo_specs, DEMO_MOTIONS};

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
    /// Files of the synthetic world: `synth` (ours) or `release` (exactly SpatialVID's released
    /// files: depth archives, annotation every int(0.2·fps) frames), as `fourd synth --layout`.
    #[arg(long, default_value = "synth")]
    pub layout: fourd_world::Layout,
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
    pub reply: ReplyForm,
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

/// Where the demo keeps everything, under `--out`.
struct Layout {
    out: PathBuf,
}

impl Layout {
    fn world(&self, set: &str) -> PathBuf {
        self.out.join("world").join(set)
    }
    fn specs(&self, set: &str) -> PathBuf {
        self.out.join("specs").join(set)
    }
    fn data(&self, set: &str) -> PathBuf {
        self.out.join("data").join(set)
    }
    fn init(&self) -> PathBuf {
        self.out.join("model-init")
    }
    fn model(&self) -> PathBuf {
        self.out.join("model")
    }
    fn grpo_model(&self) -> PathBuf {
        self.out.join("model-grpo")
    }
    fn eval(&self, name: &str) -> PathBuf {
        self.out.join("eval").join(name)
    }
}

/// The two sets of clips: training and held-out (another seed).
const SETS: [(&str, u64); 2] = [("train", 0), ("heldout", 1_000_003)];

/// Greedy answers get at most this many new tokens (a reply is about 100).
const ANSWER_TOKENS: usize = 320;

/// The files the data pipeline wrote.
struct DemoData {
    train_dift: PathBuf,
    train_rl: PathBuf,
    heldout_rl: PathBuf,
}

/// What a finished DIFT stage reports (also kept in `model/demo_dift.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct DiftDone {
    key: serde_json::Value,
    steps: u64,
    seconds: f64,
    final_loss: f64,
}

/// What a model got right on a question set.
#[derive(Clone, Debug, Default)]
struct Scores {
    /// Fraction of answers whose letter is right.
    answer: f64,
    /// Fraction of replies whose reasoning concludes with the right motion.
    reasoning: f64,
    /// Per question, in order: whether the answer was right.
    right: Vec<bool>,
}

struct GrpoStage {
    steps: u64,
    seconds: f64,
    scores: Scores,
    vs_dift: Paired,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let dirs = Layout { out: a.out.clone() };
    std::fs::create_dir_all(&dirs.out)
        .with_context(|| format!("creating {}", dirs.out.display()))?;

    println!(
        "[1/6] rendering {} training and {} held-out clips ({} frames, {}x{})",
        a.train_clips, a.eval_clips, a.frames, a.size, a.size
    );
    render_worlds(&a, &dirs)?;
    println!("[2/6] building camera-motion questions with imagery chains of thought");
    let data = build_questions(&a, &dirs)?;
    let corpus = dift_corpus(&data.train_dift)?;

    // A re-run with the same settings reuses the finished DIFT model (the demo resumes).
    let key = dift_key(&a);
    let finished = finished_dift(&dirs, &key);
    println!(
        "[3/6] initialising a tiny Qwen2.5-VL from scratch ({} training questions)",
        corpus.len()
    );
    if finished.is_none() {
        init_model(&a, &dirs, corpus.clone())?;
    }
    let heldout = |model: &Path, name: &str, predictions: Option<&str>| {
        answer_questions(
            model,
            &data.heldout_rl,
            a.max_eval,
            &dirs,
            name,
            predictions,
        )
    };
    let before = heldout(&dirs.init(), "untrained", None)?;
    println!(
        "      untrained model: {:.1}% on {} held-out questions",
        100.0 * before.answer,
        before.right.len()
    );

    println!(
        "[4/6] DIFT: {} epochs over {} records",
        a.epochs,
        corpus.len()
    );
    let dift = match finished {
        Some(done) => {
            println!(
                "      reusing the DIFT model in {} (same settings)",
                dirs.model().display()
            );
            done
        }
        None => run_dift(&a, &dirs, &data, key)?,
    };

    println!("[5/6] answering held-out questions with latent imagery");
    let after = heldout(&dirs.model(), "dift", Some("heldout_predictions.jsonl"))?;
    let train_acc = answer_questions(
        &dirs.model(),
        &data.train_rl,
        a.max_eval.min(100),
        &dirs,
        "dift-train",
        Some("train_predictions.jsonl"),
    )?;
    println!(
        "      after DIFT: answers {:.1}% held-out ({:.1}% on training questions); the reasoning names the right motion for {:.1}% held-out",
        100.0 * after.answer,
        100.0 * train_acc.answer,
        100.0 * after.reasoning
    );
    let dift_curve = read_curve(&dirs.model().join("train_log.jsonl"), "loss")?;
    chart(
        &dirs.out.join("dift_loss.png"),
        "DIFT loss (tiny model, from scratch)",
        "loss",
        &[("total", dift_curve)],
    );

    let grpo = if a.grpo_prompts > 0 {
        Some(run_grpo(&a, &dirs, &data, &after)?)
    } else {
        None
    };
    let report = DemoReport {
        dift,
        before,
        after,
        train_acc,
        grpo,
        train_questions: corpus.len(),
        total_seconds: t0.elapsed().as_secs_f64(),
    };
    report.write(&a, &dirs.out.join("demo_report.json"))?;
    report.print(&dirs);
    Ok(())
}

/// Phase 1: both sets of clips, from the demo's scene specs (kept under `specs/`). A set made
/// from the same specs is reused; other settings render it again.
fn render_worlds(a: &DemoArgs, dirs: &Layout) -> Result<()> {
    for (set, seed_offset) in SETS {
        let clips = if set == "train" {
            a.train_clips
        } else {
            a.eval_clips
        };
        let specs_dir = dirs.specs(set);
        let _ = std::fs::remove_dir_all(&specs_dir);
        std::fs::create_dir_all(&specs_dir)
            .with_context(|| format!("creating {}", specs_dir.display()))?;
        let mut paths = Vec::with_capacity(clips);
        for spec in demo_specs(clips, a.frames, a.size, a.seed + seed_offset) {
            let path = specs_dir.join(format!("{}.json", spec["id"].as_str().unwrap_or("clip")));
            std::fs::write(&path, serde_json::to_string_pretty(&spec)?)
                .with_context(|| format!("writing {}", path.display()))?;
            paths.push(path);
        }
        let source = fourd_world::ClipSource::from_spec_files(&paths)?;
        let world = dirs.world(set);
        let mut manifest = source.manifest("fourd demo world");
        if a.layout != fourd_world::Layout::Synth {
            manifest = manifest.setting("layout", a.layout.as_str());
        }
        let job_file = world.join(fourd_world::source::JOB_FILE);
        let rendered = world.join(a.layout.metadata_file()).exists()
            && fourd_job::manifest::read(&job_file).ok().flatten() == Some(manifest.clone());
        if rendered {
            continue;
        }
        // Clips of other settings go: a set never mixes two worlds.
        let _ = std::fs::remove_dir_all(&world);
        let _lock = fourd_world::source::open_output(&world, &manifest, true)?;
        let bar = indicatif::ProgressBar::new(source.len() as u64);
        fourd_world::write_spatialvid_as(&world, &source, a.layout, || bar.inc(1))
            .with_context(|| format!("rendering the {set} clips"))?;
        bar.finish_and_clear();
    }
    Ok(())
}

/// Phase 2: the data pipeline over both sets, camera questions only.
fn build_questions(a: &DemoArgs, dirs: &Layout) -> Result<DemoData> {
    let mut files = Vec::new();
    for (set, _) in SETS {
        let data = dirs.data(set);
        let mut pc = fourd_data::PipelineConfig::new(dirs.world(set), &data);
        pc.seed = a.seed;
        pc.kinds = vec![fourd_data::QuestionKind::Camera];
        pc.reply = a.reply;
        pc.progress = true;
        // The demo owns its folder: a world rendered again replaces the old one's questions.
        pc.overwrite = true;
        let s = fourd_data::run_pipeline(&pc)
            .with_context(|| format!("data pipeline on the {set} clips"))?;
        if !s.failures.is_empty() {
            println!(
                "      {set}: {} clip(s) failed or skipped (see {})",
                s.failures.len(),
                data.join("manifest.json").display()
            );
        }
        files.push((s.dift_path, s.rl_path));
    }
    let (heldout_rl, train) = (files.remove(1).1, files.remove(0));
    Ok(DemoData {
        train_dift: train.0,
        train_rl: train.1,
        heldout_rl,
    })
}

/// The settings that decide the DIFT model: a finished model with the same key is reused.
fn dift_key(a: &DemoArgs) -> serde_json::Value {
    let mut key = serde_json::json!({
        "train_clips": a.train_clips, "frames": a.frames, "size": a.size, "epochs": a.epochs,
        "lr": a.lr, "ce_weight": a.ce_weight, "sim_weight": a.sim_weight,
        "frozen_vision": a.frozen_vision, "answer_weight": a.answer_weight, "reply": a.reply,
        "grad_accum": a.grad_accum, "seed": a.seed, "layers": a.layers, "hidden": a.hidden,
    });
    // Only when not the default, so models trained before the flag existed are still reused.
    if a.layout != fourd_world::Layout::Synth {
        key["layout"] = a.layout.as_str().into();
    }
    key
}

const DIFT_DONE_FILE: &str = "demo_dift.json";

fn finished_dift(dirs: &Layout, key: &serde_json::Value) -> Option<DiftDone> {
    let text = std::fs::read_to_string(dirs.model().join(DIFT_DONE_FILE)).ok()?;
    let done: DiftDone = serde_json::from_str(&text).ok()?;
    (done.key == *key
        && dirs.model().join("model.safetensors").exists()
        && dirs.init().join("model.safetensors").exists())
    .then_some(done)
}

/// Phase 3: a tiny model from scratch, its tokenizer trained on the training text.
fn init_model(a: &DemoArgs, dirs: &Layout, mut texts: Vec<String>) -> Result<()> {
    let spec = TinySpec {
        seed: a.seed,
        layers: a.layers,
        hidden_size: a.hidden,
        intermediate_size: a.hidden * 8 / 3,
        ..Default::default()
    };
    texts.push(FOUR_D_THINKER_SUFFIX.to_string());
    texts.push("system\nYou are a helpful assistant.\nuser\nassistant\n".to_string());
    init_tiny_checkpoint(&dirs.init(), &texts, &spec)?;
    Ok(())
}

/// Phase 4: DIFT from the initial model.
fn run_dift(
    a: &DemoArgs,
    dirs: &Layout,
    data: &DemoData,
    key: serde_json::Value,
) -> Result<DiftDone> {
    let mut cfg = DiftConfig::new(dirs.init(), data.train_dift.clone(), dirs.model());
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
    // A fresh start: nothing of an earlier run (its logs append) stays in the folder.
    let _ = std::fs::remove_dir_all(dirs.model());
    let summary: DiftSummary = train_dift(&cfg)?;
    if !summary.skipped.is_empty() {
        bail!(
            "DIFT skipped {} of the demo's records (first: {}: {})",
            summary.skipped.len(),
            summary.skipped[0].id,
            summary.skipped[0].reason
        );
    }
    let done = DiftDone {
        key,
        steps: summary.steps,
        seconds: summary.seconds,
        final_loss: summary.last.as_ref().map_or(f64::NAN, |l| l.loss),
    };
    let path = dirs.model().join(DIFT_DONE_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&done)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(done)
}

/// Phase 5: `fourd eval`'s evaluation of `model` on the first `max` questions of a 4DRL file
/// (greedy, latent imagery, frames as a 1 fps video), into `eval/<name>/`; every question must
/// be answered. With `predictions`, the replies and what their reasoning concluded are written
/// to that file under `--out` too.
fn answer_questions(
    model: &Path,
    questions: &Path,
    max: usize,
    dirs: &Layout,
    name: &str,
    predictions: Option<&str>,
) -> Result<Scores> {
    let out = dirs.eval(name);
    // The model may have been retrained since: its old answers are not its answers.
    let _ = std::fs::remove_dir_all(&out);
    let pipe = ModelBundle::load(model, DType::F32, &Device::Cpu)?;
    let cfg = EvalConfig {
        benchmark: questions.to_path_buf(),
        format: Default::default(),
        columns: Default::default(),
        data_root: None,
        video_root: PathBuf::new(),
        video_ext: "mp4".into(),
        output: out.join("dsr_eval.jsonl"),
        shard: None,
        max_samples: Some(max),
        video: fourd_video::SamplingOptions {
            fps: 1.0,
            max_pixels: fourd_train::dift_data::DIFT_MAX_PIXELS,
            ..Default::default()
        },
        generation: GenerationConfig {
            max_new_tokens: ANSWER_TOKENS,
            sampling: Sampling::default(),
            stop_ids: pipe.stop_ids(),
            latent: pipe.latent_tokens(None)?,
        },
        batch_size: 8,
        suffix: true,
        overwrite: false,
        progress: true,
        title: name.to_string(),
        scoring: fourd_records::answer::Scoring::Strict,
    };
    let summary = evaluate(&pipe, &cfg)?;
    if let Some(s) = summary.skipped_samples.first() {
        bail!(
            "{}: {} question(s) could not be answered (first: {}: {})",
            questions.display(),
            summary.skipped,
            s.video_id,
            s.reason
        );
    }
    if summary.eval_count == 0 {
        bail!("no questions in {}", questions.display());
    }
    let asked = fourd_eval::benchmark::load(questions, &Default::default())?;
    let mut results: Vec<SampleResult> = read_jsonl(&ResultFiles::new(&cfg.output).samples)?;
    results.sort_by_key(|r| r.index);
    let mut lines = String::new();
    let mut scores = Scores::default();
    let mut reasoned = 0usize;
    for r in &results {
        let q = asked.get(r.index).with_context(|| {
            format!("result for question {} of {}", r.index, questions.display())
        })?;
        let concluded = reasoning_label(&r.raw, &q.options);
        reasoned += usize::from(concluded.is_some() && concluded == q.answer_text());
        scores.right.push(r.hit == 1);
        lines += &serde_json::json!({"question": q.question, "options": q.options, "gt": r.gt,
            "pred": r.pred, "reasoning_label": concluded, "raw": r.raw})
        .to_string();
        lines.push('\n');
    }
    let n = results.len() as f64;
    scores.answer = scores.right.iter().filter(|&&r| r).count() as f64 / n;
    scores.reasoning = reasoned as f64 / n;
    if let Some(file) = predictions {
        let path = dirs.out.join(file);
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(scores)
}

/// Phase 6: GRPO from the DIFT model on the first training prompts, then the held-out answers
/// again, compared question by question with DIFT's.
fn run_grpo(a: &DemoArgs, dirs: &Layout, data: &DemoData, dift: &Scores) -> Result<GrpoStage> {
    println!(
        "[6/6] GRPO: {} prompts x {} completions, imagery re-injected",
        a.grpo_prompts, a.grpo_generations
    );
    let grpo_dir = dirs.grpo_model();
    let _ = std::fs::remove_dir_all(&grpo_dir);
    // The prompts are lines of the training 4DRL file: their paths stay relative to its folder.
    let prompts = dirs.out.join("grpo_prompts.jsonl");
    let text = std::fs::read_to_string(&data.train_rl)
        .with_context(|| format!("reading {}", data.train_rl.display()))?;
    let subset: String = text
        .lines()
        .take(a.grpo_prompts)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&prompts, subset).with_context(|| format!("writing {}", prompts.display()))?;
    let mut g = fourd_train::GrpoConfig::new(dirs.model(), prompts, grpo_dir.clone());
    g.data_root = data.train_rl.parent().map(Path::to_path_buf);
    g.num_generations = a.grpo_generations;
    g.max_new_tokens = ANSWER_TOKENS;
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
        &dirs.out.join("grpo_reward.png"),
        &format!("GRPO rollouts: mean of the last {CURVE_WINDOW} batches"),
        "per completion",
        &[
            ("reward", moving_mean(&rewards, CURVE_WINDOW)),
            ("accuracy", moving_mean(&accuracies, CURVE_WINDOW)),
        ],
    );
    let scores = answer_questions(
        &grpo_dir,
        &data.heldout_rl,
        a.max_eval,
        dirs,
        "grpo",
        Some("heldout_predictions_grpo.jsonl"),
    )?;
    Ok(GrpoStage {
        steps: gs.steps,
        seconds: gs.seconds,
        vs_dift: paired(&dift.right, &scores.right),
        scores,
    })
}

/// Chance of a guesser among four options.
const CHANCE: f64 = 0.25;

struct DemoReport {
    dift: DiftDone,
    before: Scores,
    after: Scores,
    train_acc: Scores,
    grpo: Option<GrpoStage>,
    train_questions: usize,
    total_seconds: f64,
}

impl DemoReport {
    fn heldout_questions(&self) -> usize {
        self.after.right.len()
    }

    /// `demo_report.json`.
    fn write(&self, a: &DemoArgs, path: &Path) -> Result<()> {
        let grpo = self.grpo.as_ref();
        let json = serde_json::json!({
            "train_questions": self.train_questions, "heldout_questions": self.heldout_questions(),
            "train_steps": self.dift.steps, "train_seconds": self.dift.seconds,
            "final_loss": self.dift.final_loss,
            "heldout_accuracy_untrained": self.before.answer,
            "heldout_accuracy_trained": self.after.answer,
            "train_accuracy_trained": self.train_acc.answer,
            "grpo_steps": grpo.map_or(0, |g| g.steps), "grpo_seconds": grpo.map_or(0.0, |g| g.seconds),
            "heldout_accuracy_grpo": grpo.map(|g| g.scores.answer),
            "heldout_reasoning_label_untrained": self.before.reasoning,
            "heldout_reasoning_label_trained": self.after.reasoning,
            "heldout_reasoning_label_grpo": grpo.map(|g| g.scores.reasoning),
            "reasoning_label_chance": 1.0 / DEMO_MOTIONS.len() as f64,
            "chance": CHANCE, "total_seconds": self.total_seconds, "reply": a.reply,
            "layout": a.layout.as_str(),
            "heldout_standard_errors_above_chance": standard_errors_above_chance(self.after.answer, CHANCE, self.heldout_questions()),
            "grpo_vs_dift": grpo.map(|g| &g.vs_dift),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    fn print(&self, dirs: &Layout) {
        let grpo = self.grpo.as_ref();
        let n = self.heldout_questions();
        println!();
        println!(
            "held-out accuracy: {:.1}% after DIFT ({:.1} standard errors above chance){} (untrained {:.1}%, chance 25.0%) on {n} questions",
            100.0 * self.after.answer,
            standard_errors_above_chance(self.after.answer, CHANCE, n),
            grpo.map_or(String::new(), |g| format!(", {:.1}% after GRPO", 100.0 * g.scores.answer)),
            100.0 * self.before.answer,
        );
        if let Some(g) = grpo {
            println!(
                "GRPO against DIFT on the same held-out questions: {} now right, {} now wrong (exact McNemar p = {:.4})",
                g.vs_dift.gained, g.vs_dift.lost, g.vs_dift.p_value
            );
        }
        println!(
            "reasoning names the right camera motion: {:.1}% after DIFT{} (untrained {:.1}%, chance {:.1}% over {} motions)",
            100.0 * self.after.reasoning,
            grpo.map_or(String::new(), |g| format!(", {:.1}% after GRPO", 100.0 * g.scores.reasoning)),
            100.0 * self.before.reasoning,
            100.0 / DEMO_MOTIONS.len() as f64,
            DEMO_MOTIONS.len()
        );
        println!(
            "training accuracy: {:.1}%; {} DIFT steps in {:.0} s, {} GRPO steps in {:.0} s; whole demo {:.0} s",
            100.0 * self.train_acc.answer,
            self.dift.steps,
            self.dift.seconds,
            grpo.map_or(0, |g| g.steps),
            grpo.map_or(0.0, |g| g.seconds),
            self.total_seconds
        );
        let model = if grpo.is_some() {
            dirs.grpo_model()
        } else {
            dirs.model()
        };
        println!(
            "model: {}  report: {}",
            model.display(),
            dirs.out.join("demo_report.json").display()
        );
    }
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

/// A PNG curve; a missing font costs the picture, not the run.
fn chart(path: &Path, title: &str, y: &str, series: &[(&str, Vec<(f64, f64)>)]) {
    if let Err(e) = fourd_eval::report::line_chart(path, title, "step", y, series) {
        tracing::warn!("no chart {}: {e}", path.display());
    }
}

/// `text_input` and `text_output` of every DIFT record (the tokenizer's training text).
fn dift_corpus(path: &Path) -> Result<Vec<String>> {
    let records = fourd_records::dift::read_file(path)
        .context("the data pipeline produced no training questions")?;
    Ok(records
        .into_iter()
        .map(|(_, r)| format!("{}\n{}", r.text_input, r.text_output))
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_reasoning_label_is_the_last_option_named_before_the_answer() {
        let options: Vec<String> = ["A. Pan Left", "B. Stay", "C. Tilt Up", "D. Dolly In"]
            .map(String::from)
            .to_vec();
        let raw = "<think>Not Tilt Up; the view shifts: Pan Left.</think><answer>Stay</answer>";
        assert_eq!(reasoning_label(raw, &options), Some("Pan Left"));
        assert_eq!(reasoning_label("<answer>Stay</answer>", &options), None);
    }
}
