//! `fourd eval`: DSR-Bench (or any multiple-choice video benchmark) evaluation of one or more
//! checkpoints, resumable and shardable; `fourd eval merge` combines shards.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fourd_eval::benchmark::ColumnMap;
use fourd_eval::report::{merge, EvalSummary, ResultFiles};
use fourd_eval::run::{evaluate, EvalConfig};
use fourd_model::generation::{GenerationConfig, Sampling, SamplingOverrides};
use fourd_model::{GenerationDefaults, ModelBundle};
use fourd_records::answer::Scoring;
use fourd_video::SamplingOptions;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    #[command(flatten)]
    pub run: Option<EvalRunArgs>,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Combine the shard files of one checkpoint's folder into dsr_eval.jsonl and its summary.
    Merge {
        /// The checkpoint's result folder (holding dsr_eval.shard-I-of-N.jsonl files).
        dir: PathBuf,
    },
    /// Score saved results again from their stored replies, without a model: every sample line,
    /// the summary, the table and the chart. DIR is a result folder (its dsr_eval.jsonl) or a
    /// per-sample JSONL file, ours or the reference's own (dsr_eval_<time>.jsonl).
    Rescore {
        dir: PathBuf,
        /// `strict` (ours) or `reference` (the benchmark's own rule; on DSR-Bench 4DThinker's
        /// dsr_eval.py extraction, with which the published figures were computed).
        #[arg(long, default_value = "strict")]
        scoring: Scoring,
    },
    /// Ask an LLM judge (any OpenAI-compatible API) for a verdict on each saved reply, with
    /// VLM4D's official judge request (its prompt, settings and answer schema); the verdicts are
    /// stored in the sample lines, and the summary, table and chart gain a `judge` row (scored by
    /// the judge once every sample has a verdict). Resumable: samples judged by this model are
    /// kept.
    Judge(JudgeArgs),
}

/// `fourd eval judge`: an OpenAI-compatible judge's verdicts on saved results.
#[derive(Args, Debug)]
pub struct JudgeArgs {
    /// A result folder (its dsr_eval.jsonl) or a per-sample JSONL file.
    pub dir: PathBuf,
    /// The judge's OpenAI-compatible API, everything before /chat/completions. The key is read
    /// from OPENAI_API_KEY.
    #[arg(long, default_value = "https://api.openai.com/v1")]
    pub endpoint: String,
    /// The judge model (VLM4D's paper: o4-mini).
    #[arg(long, default_value = fourd_eval::judge::PAPER_JUDGE)]
    pub judge_model: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct EvalRunArgs {
    /// Checkpoint folder(s), evaluated one after another.
    #[arg(long, required = true, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// A LoRA adapter folder in PEFT's format, run on --model (one model); results go under
    /// the adapter's name.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Benchmark table (.parquet, .jsonl, .json or .tsv), e.g. DSR-Bench's benchmark.parquet,
    /// or a Dyn-Bench dataset folder.
    #[arg(long)]
    pub benchmark: PathBuf,
    /// The benchmark's layout, which also picks its scoring rule and table: `auto` (by the
    /// file's fields and extension; a folder is Dyn-Bench), `dsr` (DSR-Bench's parquet),
    /// `dsr-tsv` (VLMEvalKit's DSRBench.tsv), `vlm4d` (real_mc.json / synthetic_mc.json),
    /// `vsibench` (VSI-Bench's parquet; --video-root holds <dataset>/<scene>.mp4), `stibench`
    /// (STI-Bench's qa.parquet; only each question's time window is decoded), `dynbench`
    /// (a Dyn-Bench dataset folder with multi_json/ and frames/). See docs/eval.md.
    #[arg(long, default_value = "auto")]
    pub format: fourd_eval::benchmark::BenchmarkFormat,
    /// Folder holding <video id>.<ext> (not needed for a 4DRL JSONL, whose records name their
    /// frames).
    #[arg(long, default_value = ".")]
    pub video_root: PathBuf,
    /// Where a 4DRL JSONL's relative frame paths resolve (default: the file's folder).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    #[arg(long, default_value = "mp4")]
    pub video_ext: String,
    /// Results go to OUTPUT_DIR/<checkpoint folder name>-<model identity>/dsr_eval[.shard-I-of-N].jsonl
    /// (the identity: a hash of the config and weights, so two checkpoints never share a folder).
    #[arg(long, default_value = "eval-results")]
    pub output_dir: PathBuf,
    /// Evaluate only shard I of N (1-based): rows whose index % N == I - 1.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Samples per generation batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Frames sampled per second of video, from t = 0.
    #[arg(long, default_value_t = 1.0)]
    pub fps: f64,
    /// More frames than this are subsampled uniformly.
    #[arg(long, default_value_t = 50)]
    pub max_frames: usize,
    /// Frames larger than this many pixels are scaled down (sides multiples of 28).
    #[arg(long, default_value_t = fourd_video::DEFAULT_MAX_PIXELS)]
    pub max_pixels: usize,
    #[arg(long, default_value_t = 2048)]
    pub max_new_tokens: usize,
    /// Greedy decoding (the reference samples with temperature 0.7, top-p 0.9).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long)]
    pub latent_size: Option<usize>,
    /// Do not append the 4DThinker think/answer instruction.
    #[arg(long)]
    pub no_suffix: bool,
    #[arg(long, default_value = "bf16", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    #[arg(long, default_value = "cpu")]
    pub device: fourd_model::DeviceSpec,
    #[arg(long, default_value = "v4.50")]
    pub rope_index: fourd_model::RopeIndexStyle,
    /// Column names, for benchmarks other than DSR-Bench (comma-separated alternatives).
    #[arg(long, value_delimiter = ',', default_value = "videoID,video")]
    pub video_col: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "question")]
    pub question_col: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "options,candidates")]
    pub options_col: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "answer")]
    pub answer_col: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "type")]
    pub type_col: Vec<String>,
    /// How replies are scored: `strict` (ours: a standalone option letter or one option's text;
    /// a number from the answer) or `reference` (the benchmark's own rule; on DSR-Bench
    /// 4DThinker's dsr_eval.py, the first capital A-D anywhere, with which its figures were
    /// published). The summary, table and chart give both either way; `fourd eval rescore`
    /// switches later without the model.
    #[arg(long, default_value = "strict")]
    pub scoring: Scoring,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Replace results in the output folder that another benchmark or other settings made,
    /// instead of stopping (the same inputs always resume).
    #[arg(long)]
    pub overwrite: bool,
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("{s}: expected I/N"))?;
    let (i, n): (usize, usize) = (
        i.trim().parse().context("I is not a number")?,
        n.trim().parse().context("N is not a number")?,
    );
    if i == 0 || i > n {
        bail!("{s}: expected 1 <= I <= N");
    }
    Ok((i, n))
}

fn model_name(p: &Path) -> String {
    p.canonicalize()
        .ok()
        .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

pub fn run(a: EvalArgs) -> Result<()> {
    match (a.command, a.run) {
        (Some(EvalCommand::Merge { dir }), _) => run_merge(&dir),
        (Some(EvalCommand::Rescore { dir, scoring }), _) => run_rescore(&dir, scoring),
        (Some(EvalCommand::Judge(a)), _) => run_judge(&a),
        (None, Some(r)) => run_eval(r),
        (None, None) => {
            bail!(
                "give --model, --benchmark and --video-root, or a subcommand (merge, rescore, \
                 judge)"
            )
        }
    }
}

fn run_eval(a: EvalRunArgs) -> Result<()> {
    // Everything is checked before the first model loads: flags, the benchmark, the videos.
    let mut cfg = base_config(&a);
    cfg.validate()?;
    for model in &a.model {
        if let Err(e) = fourd_model::model::config_file(model) {
            bail!("--model {}: {e}", model.display());
        }
    }
    if let Some(dir) = &a.adapter {
        if a.model.len() > 1 {
            bail!(
                "--adapter runs on one --model; {} were given",
                a.model.len()
            );
        }
        if !fourd_model::peft::is_adapter_dir(dir) {
            bail!(
                "--adapter {}: no {} (not a PEFT adapter folder)",
                dir.display(),
                fourd_model::peft::CONFIG_FILE
            );
        }
    }
    let records = fourd_eval::run::select_records(&cfg)?.questions;
    fourd_eval::run::check_media(&records, &cfg)?;
    let file = match a.shard {
        Some((i, n)) => format!("dsr_eval.shard-{i}-of-{n}.jsonl"),
        None => "dsr_eval.jsonl".into(),
    };
    for model in &a.model {
        // Results go where the model's identity says: two checkpoints with one folder name
        // never share a results folder.
        let identity =
            fourd_job::identity::model_with_adapter_identity(model, a.adapter.as_deref())?;
        let name = format!(
            "{}-{}",
            model_name(a.adapter.as_ref().unwrap_or(model)),
            fourd_job::identity::short(&identity, 8)
        );
        let mut pipe = ModelBundle::load(model, a.dtype, &a.device.open()?)
            .with_context(|| format!("loading {}", model.display()))?;
        if let Some(dir) = &a.adapter {
            pipe.attach_adapter(dir)
                .with_context(|| format!("--adapter {}", dir.display()))?;
        }
        pipe.model.config.rope_index = a.rope_index;
        cfg.generation.latent = pipe.latent_tokens(a.latent_size)?;
        cfg.generation.stop_ids = pipe.stop_ids();
        cfg.output = a.output_dir.join(&name).join(&file);
        cfg.title = name.clone();
        eprintln!(
            "evaluating {} -> {} ({}; latent size {}; max {} new tokens)",
            model.display(),
            cfg.output.display(),
            cfg.generation.sampling.describe(),
            cfg.generation
                .latent
                .map_or("none".into(), |l| l.size.to_string()),
            a.max_new_tokens
        );
        let summary = evaluate(&pipe, &cfg)?;
        print_summary(&name, &summary, &ResultFiles::new(&cfg.output));
    }
    Ok(())
}

/// The evaluation settings of the flags; the model's own parts (stop tokens, latent tokens,
/// output folder) are filled in per model.
fn base_config(a: &EvalRunArgs) -> EvalConfig {
    // The reference's settings, not the checkpoint's generation_config.json (whose top_k=1 would
    // silently turn sampling into argmax); explicit flags only.
    let sampling = Sampling::resolve(
        &GenerationDefaults::default(),
        &SamplingOverrides {
            greedy: Some(a.greedy),
            temperature: Some(a.temperature),
            top_p: Some(a.top_p),
            top_k: a.top_k,
            repetition_penalty: a.repetition_penalty,
            seed: Some(a.seed),
        },
    );
    EvalConfig {
        benchmark: a.benchmark.clone(),
        format: a.format,
        columns: a.format.columns(
            &a.benchmark,
            ColumnMap {
                video: a.video_col.clone(),
                question: a.question_col.clone(),
                options: a.options_col.clone(),
                answer: a.answer_col.clone(),
                task_type: a.type_col.clone(),
                index: vec![],
            },
        ),
        data_root: a.data_root.clone(),
        video_root: a.video_root.clone(),
        video_ext: a.video_ext.clone(),
        output: PathBuf::new(),
        shard: a.shard,
        max_samples: a.max_samples,
        video: SamplingOptions {
            fps: a.fps,
            max_frames: a.max_frames,
            max_pixels: a.max_pixels,
            ..SamplingOptions::default()
        },
        generation: GenerationConfig {
            max_new_tokens: a.max_new_tokens,
            sampling,
            stop_ids: vec![],
            latent: None,
        },
        batch_size: a.batch_size,
        suffix: !a.no_suffix,
        overwrite: a.overwrite,
        progress: !a.quiet,
        title: String::new(),
        scoring: a.scoring,
    }
}

fn print_summary(name: &str, s: &EvalSummary, files: &ResultFiles) {
    println!(
        "{name}: accuracy {:.2}% ({} / {}), macro {:.2}%, skipped {} of {} ({} scoring)",
        s.accuracy * 100.0,
        s.correct,
        s.eval_count,
        s.subtask_macro_avg * 100.0,
        s.skipped,
        s.total,
        s.scoring
    );
    for (mode, m) in s.by_scoring.iter().filter(|(m, _)| **m != s.scoring) {
        println!(
            "  {mode} scoring: accuracy {:.2}% ({} / {}), macro {:.2}%",
            m.accuracy * 100.0,
            m.correct,
            s.eval_count,
            m.subtask_macro_avg * 100.0
        );
    }
    println!(
        "  {}\n  {}\n  {}",
        files.summary.display(),
        files.table.display(),
        files.chart.display()
    );
}

fn run_merge(dir: &Path) -> Result<()> {
    let mut shards: Vec<(usize, usize, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(rest) = name
            .strip_prefix("dsr_eval.shard-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        {
            if let Some((i, n)) = rest.split_once("-of-") {
                if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
                    shards.push((i, n, p));
                }
            }
        }
    }
    shards.sort();
    let Some(&(_, n, _)) = shards.first() else {
        bail!("no dsr_eval.shard-I-of-N.jsonl files in {}", dir.display())
    };
    if shards.iter().any(|s| s.1 != n) {
        bail!("{}: shard files of different N", dir.display());
    }
    let have: Vec<usize> = shards.iter().map(|s| s.0).collect();
    if have != (1..=n).collect::<Vec<_>>() {
        bail!(
            "{}: have shards {have:?} of {n}; all are needed",
            dir.display()
        );
    }
    // Each shard's summary knows how many rows it was responsible for, and how it scored them.
    let mut total = 0;
    let mut scoring = None;
    for (_, _, p) in &shards {
        let f = ResultFiles::new(p);
        let text = std::fs::read_to_string(&f.summary).with_context(|| {
            format!(
                "{} (did shard {} finish?)",
                f.summary.display(),
                p.display()
            )
        })?;
        let s: EvalSummary = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an evaluation summary", f.summary.display()))?;
        total += s.total;
        scoring.get_or_insert(s.scoring);
    }
    let paths: Vec<PathBuf> = shards.into_iter().map(|s| s.2).collect();
    let out = dir.join("dsr_eval.jsonl");
    let summary = merge(
        &paths,
        &out,
        total,
        &model_name(dir),
        scoring.unwrap_or_default(),
    )?;
    print_summary(&model_name(dir), &summary, &ResultFiles::new(&out));
    Ok(())
}

/// `fourd eval rescore DIR --scoring MODE`.
fn run_rescore(dir: &Path, scoring: Scoring) -> Result<()> {
    let samples = fourd_eval::report::results_file(dir)?;
    let name = samples
        .parent()
        .map(model_name)
        .unwrap_or_else(|| "model".into());
    let summary = fourd_eval::report::rescore(&samples, &name, scoring)?;
    print_summary(&name, &summary, &ResultFiles::new(&samples));
    Ok(())
}

/// `fourd eval judge DIR`.
fn run_judge(a: &JudgeArgs) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let samples = fourd_eval::report::results_file(&a.dir)?;
    let name = samples
        .parent()
        .map(model_name)
        .unwrap_or_else(|| "model".into());
    let mut cfg = fourd_api::ApiConfig::new(a.endpoint.clone(), a.judge_model.clone());
    cfg.timeout = std::time::Duration::from_secs(a.timeout);
    let client = fourd_api::ChatClient::new(cfg).context("--endpoint / --judge-model")?;
    let run = fourd_eval::judge::judge(&samples, &client, a.jobs, &name)?;
    println!(
        "{name}: {} judged by {}, {} already judged, {} left unjudged",
        run.judged,
        a.judge_model,
        run.kept,
        run.unjudged.len()
    );
    for (index, why) in run.unjudged.iter().take(5) {
        println!("  sample {index}: {why}");
    }
    let summary = fourd_eval::report::read_summary(&ResultFiles::new(&samples).summary)
        .context("the summary was not written")?;
    print_summary(&name, &summary, &ResultFiles::new(&samples));
    if !run.unjudged.is_empty() {
        bail!(
            "{} sample(s) left unjudged; run `fourd eval judge` again to retry them",
            run.unjudged.len()
        );
    }
    Ok(())
}
