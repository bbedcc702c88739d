//! `fourd data`: the annotation-free data pipeline of `fourd_data` (see `docs/data.md`).
//!
//! `fourd data run` does every stage; `ingest`, `label`, `qa` and `export` run one (each
//! resumable: finished clips are left alone); `check FILE` validates a DIFT or 4DRL file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fourd_data::{
    check_file, CameraRule, MotionThresholds, PipelineConfig, QuestionKind, ReplyForm,
    SegmenterChoice,
};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Every stage: ingest, label, qa, export; prints agreement with truth.json when present.
    Run(PipelineArgs),
    /// Stage 1: check annotations, extract the annotated frames.
    Ingest(PipelineArgs),
    /// Stage 2: camera labels, objects, geometric motion labels, helper imagery.
    Label(PipelineArgs),
    /// Stage 3: questions and chains of thought per clip.
    Qa(PipelineArgs),
    /// Stage 4: balanced options and letters, dift.jsonl and 4drl.jsonl.
    Export(PipelineArgs),
    /// Validate a DIFT or 4DRL JSONL file (paths, tags, structure, options, answers) and print
    /// its label distribution; exits non-zero on any error.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The JSONL file.
    pub file: PathBuf,
    /// Folder that relative image paths resolve against (default: the file's folder), as for
    /// `fourd train --data-root`.
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Input root in the SpatialVID layout (`videos/`, `annotations/`, metadata CSV), e.g. the
    /// output of `fourd synth`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Clips with more annotated frames are skipped.
    #[arg(long, default_value_t = 50)]
    pub max_frames: usize,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Process only shard I of N (`I/N` with 0 <= I < N, clips taken round-robin in sorted
    /// order).
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Run seed (each clip derives its own from it and its id).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Masks: auto (instance_ids.npy if present, else dyn_masks.npz), dyn-masks, instances,
    /// mask-dir:PATH (PATH/<group>/<clip>/<object>/frame_XXXX.{npy,png}), or http (the
    /// segmentation service at --segment-url; see docs/api.md).
    #[arg(long, default_value = "auto", value_parser = parse_segmenter_name)]
    pub segmenter: SegmenterName,
    /// Base URL of the segmentation service (with --segmenter http).
    #[arg(long)]
    pub segment_url: Option<String>,
    /// Text prompt(s) for the segmentation service, one object each (repeatable); with
    /// --namer api the chat model names the moving object instead.
    #[arg(long)]
    pub segment_prompt: Vec<String>,
    /// Object names: none (colour and shape from the data) or api (the chat model, checked).
    #[arg(long, value_enum, default_value_t = ApiUse::None)]
    pub namer: ApiUse,
    /// Question and reasoning rewriting: none or api (the chat model; rewrites that change the
    /// structure, tag count or answer are rejected).
    #[arg(long, value_enum, default_value_t = ApiUse::None)]
    pub rewrite: ApiUse,
    /// Second opinion on object directions: none or api (the chat model judges each object from
    /// its overlays; recorded in labels.json and compared, never used as the answer).
    #[arg(long, value_enum, default_value_t = ApiUse::None)]
    pub second_opinion: ApiUse,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Camera rule used when instructions.json is absent: exact, original or enhanced.
    #[arg(long, default_value = "exact")]
    pub camera_rule: CameraRule,
    /// Question kinds, comma-separated: camera, direction, box_direction, distance, speed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "camera,direction,box_direction,distance,speed"
    )]
    pub kinds: Vec<QuestionKind>,
    /// Most overlays per object.
    #[arg(long, default_value_t = 4)]
    pub object_keyframes: usize,
    /// Keep the raw answer distribution (no 1/4 cap per label); option-only rules may then beat
    /// chance.
    #[arg(long)]
    pub no_balance: bool,
    /// How each DIFT reply closes: `letter` (`<answer>C. Pan Left</answer>`, the reference's),
    /// `option-check` (the reasoning closes with `A. label: no` ... `C. label: yes`, then the
    /// lettered answer) or `label` (`<answer>Pan Left</answer>`; evaluation and the accuracy
    /// reward map it to its option).
    #[arg(long, default_value = "letter")]
    pub reply: ReplyForm,
    /// Draw progress bars.
    #[arg(long)]
    pub progress: bool,
    /// Process the input from scratch in an --out that holds another input's clips (they are
    /// deleted) instead of stopping.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

/// The OpenAI-compatible chat API (for --namer api and --rewrite api).
#[derive(Args, Debug, Clone, Default)]
pub struct ApiArgs {
    /// Chat API base URL (everything before /chat/completions).
    #[arg(long, default_value = "https://api.openai.com/v1")]
    pub api_base_url: String,
    /// Chat model name.
    #[arg(long, default_value = "gpt-4.1")]
    pub api_model: String,
    /// Response cache folder (default: <out>/api_cache).
    #[arg(long)]
    pub api_cache: Option<PathBuf>,
    /// Seconds per request attempt.
    #[arg(long, default_value_t = 120)]
    pub api_timeout: u64,
    /// Retries on timeouts, 429 and 5xx.
    #[arg(long, default_value_t = 4)]
    pub api_retries: u32,
}

/// Overrides of `fourd_data::MotionThresholds` (defaults in docs/data.md).
#[derive(Args, Debug, Clone, Default)]
pub struct ThresholdArgs {
    /// Smallest visible mask, fraction of the frame [0.001].
    #[arg(long)]
    pub min_area_fraction: Option<f64>,
    /// Fraction of frames an object must be visible in [0.9].
    #[arg(long)]
    pub min_visible_fraction: Option<f64>,
    /// 3-D net displacement / first distance below which an object is Stationary [0.05].
    #[arg(long)]
    pub stationary_ratio: Option<f64>,
    /// Image-only: centroid shift / image diagonal below which an object is Stationary [0.03].
    #[arg(long)]
    pub stationary_image_fraction: Option<f64>,
    /// Image-only: area change for Toward/Away [0.25].
    #[arg(long)]
    pub area_change: Option<f64>,
    /// Relative distance change for Closer/Farther [0.1].
    #[arg(long)]
    pub distance_change: Option<f64>,
    /// Size fraction below which a frame counts as occluded [0.6].
    #[arg(long)]
    pub occlusion_ratio: Option<f64>,
    /// Varying-speed fit must beat the best other pattern by this factor [0.8].
    #[arg(long)]
    pub varying_margin: Option<f64>,
    /// Shortest image path (px) for a speed label [4].
    #[arg(long)]
    pub min_path_px: Option<f64>,
}

impl ThresholdArgs {
    fn apply(&self) -> MotionThresholds {
        let mut t = MotionThresholds::default();
        let set = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut t.min_area_fraction, self.min_area_fraction);
        set(&mut t.min_visible_fraction, self.min_visible_fraction);
        set(&mut t.stationary_ratio, self.stationary_ratio);
        set(
            &mut t.stationary_image_fraction,
            self.stationary_image_fraction,
        );
        set(&mut t.area_change, self.area_change);
        set(&mut t.distance_change, self.distance_change);
        set(&mut t.occlusion_ratio, self.occlusion_ratio);
        set(&mut t.varying_margin, self.varying_margin);
        set(&mut t.min_path_px, self.min_path_px);
        t
    }
}

/// Whether a step uses the chat API.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiUse {
    None,
    Api,
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("{s:?}: expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .with_context(|| format!("{s:?}: I is not a number"))?,
        n.trim()
            .parse()
            .with_context(|| format!("{s:?}: N is not a number"))?,
    );
    if n == 0 || i >= n {
        bail!("{s:?}: needs 0 <= I < N");
    }
    Ok((i, n))
}

fn chat_client(a: &PipelineArgs) -> Result<fourd_data::fourd_api::ChatClient> {
    let cfg = fourd_data::fourd_api::ApiConfig {
        timeout: std::time::Duration::from_secs(a.api.api_timeout),
        max_retries: a.api.api_retries,
        cache_dir: Some(
            a.api
                .api_cache
                .clone()
                .unwrap_or_else(|| a.out.join("api_cache")),
        ),
        ..fourd_data::fourd_api::ApiConfig::new(&a.api.api_base_url, &a.api.api_model)
    };
    fourd_data::fourd_api::ChatClient::new(cfg).context("chat API (--api-base-url, --api-model)")
}

fn parse_segmenter(a: &PipelineArgs) -> Result<SegmenterChoice> {
    let namer = match a.namer {
        ApiUse::None => None,
        ApiUse::Api => Some(fourd_data::api::ApiNamer {
            client: chat_client(a)?,
        }),
    };
    let base = match &a.segmenter {
        SegmenterName::Local(choice) => choice.clone(),
        SegmenterName::Http => return http_segmenter(a, namer),
    };
    Ok(match namer {
        Some(n) => fourd_data::api::with_namer(base, n),
        None => base,
    })
}

/// The segmentation service at --segment-url.
fn http_segmenter(
    a: &PipelineArgs,
    namer: Option<fourd_data::api::ApiNamer>,
) -> Result<SegmenterChoice> {
    let url = a
        .segment_url
        .as_deref()
        .context("--segmenter http needs --segment-url")?;
    if a.segment_prompt.is_empty() && namer.is_none() {
        bail!("--segmenter http needs --segment-prompt TEXT or --namer api");
    }
    let client =
        fourd_data::fourd_api::SegmentClient::new(fourd_data::fourd_api::SegmentConfig::new(url))
            .context("--segment-url")?;
    Ok(SegmenterChoice::Custom(std::sync::Arc::new(
        fourd_data::api::HttpSegmenter {
            client,
            prompts: a.segment_prompt.clone(),
            namer,
        },
    )))
}

/// `--segmenter`: a local source of masks, or the HTTP service.
#[derive(Clone, Debug)]
pub enum SegmenterName {
    Local(SegmenterChoice),
    Http,
}

fn parse_segmenter_name(s: &str) -> Result<SegmenterName> {
    Ok(SegmenterName::Local(match s {
        "http" => return Ok(SegmenterName::Http),
        "auto" => SegmenterChoice::Auto,
        "dyn-masks" => SegmenterChoice::DynMasks,
        "instances" => SegmenterChoice::Instances,
        other => match other.strip_prefix("mask-dir:") {
            Some(p) if !p.is_empty() => SegmenterChoice::MaskDir(PathBuf::from(p)),
            _ => bail!("{other:?}: expected auto, dyn-masks, instances, mask-dir:PATH or http"),
        },
    }))
}

/// The library configuration from the flags.
pub fn config(a: &PipelineArgs) -> Result<PipelineConfig> {
    let mut cfg = PipelineConfig::new(&a.input, &a.out);
    cfg.max_frames = a.max_frames;
    cfg.jobs = a.jobs;
    cfg.shard = a.shard;
    cfg.seed = a.seed;
    cfg.segmenter = parse_segmenter(a)?;
    cfg.rewriter = match a.rewrite {
        ApiUse::None => None,
        ApiUse::Api => Some(std::sync::Arc::new(fourd_data::api::ChatRewriter {
            client: chat_client(a)?,
        })),
    };
    cfg.judge = match a.second_opinion {
        ApiUse::None => None,
        ApiUse::Api => Some(std::sync::Arc::new(fourd_data::api::ChatJudge {
            client: chat_client(a)?,
        })),
    };
    cfg.camera_rule = a.camera_rule;
    cfg.kinds = a.kinds.clone();
    cfg.object_keyframes = a.object_keyframes;
    cfg.balance_answers = !a.no_balance;
    cfg.reply = a.reply;
    cfg.progress = a.progress;
    cfg.overwrite = a.overwrite;
    cfg.motion = a.thresholds.apply();
    Ok(cfg)
}

/// A run that exported no question has nothing for training: an error, with the likely causes.
fn nothing_written(questions: usize, cfg: &PipelineConfig) -> Result<()> {
    if questions > 0 {
        return Ok(());
    }
    bail!(
        "no questions were written to {} (see manifest.json there for failed clips; with few \
         clips the answer balancing can drop them all: try more clips or --no-balance)",
        cfg.output.display()
    )
}

fn print_stage(name: &str, s: &fourd_data::StageSummary) {
    println!(
        "{name:<7} {} clips: {} processed, {} already done, {} failed, {} skipped, {} blocked ({:.2} s)",
        s.clips, s.processed, s.reused, s.failed, s.skipped, s.blocked, s.seconds
    );
}

pub fn run(c: DataCommand) -> Result<()> {
    match c {
        DataCommand::Check(a) => {
            let report = check_file(&a.file, a.data_root.as_deref())?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if !report.ok() {
                bail!("{} error(s) in {}", report.error_count, a.file.display());
            }
            Ok(())
        }
        DataCommand::Run(a) => {
            let cfg = config(&a)?;
            let t0 = std::time::Instant::now();
            let s = fourd_data::run_pipeline(&cfg)?;
            for stage in ["ingest", "label", "qa", "export"] {
                if let Some(x) = s.stages.get(stage) {
                    print_stage(stage, x);
                }
            }
            for (k, r) in &s.failures {
                println!("  {k}: {r}");
            }
            println!(
                "wrote {} questions ({} DIFT records) to {} and {} in {:.2} s",
                s.export.questions,
                s.export.dift_records,
                s.dift_path.display(),
                s.rl_path.display(),
                t0.elapsed().as_secs_f64()
            );
            for (kind, n) in &s.export.per_kind {
                println!("  {kind}: {n}");
            }
            for (kind, n) in &s.export.dropped_for_balance {
                println!(
                    "  {kind}: {n} dropped to keep every answer label at most 1/4 of its kind"
                );
            }
            if let Some(b) = &s.export.baselines {
                let (rule, acc) = b.best();
                println!("best option-only baseline: {rule} {acc:.1}% (chance 25%)");
            }
            for (rule, [same, total]) in &s.camera_vs_instructions {
                if *total > 0 {
                    println!(
                        "camera {rule} rule vs instructions.json: {:.1}% of {total} steps",
                        100.0 * *same as f64 / *total as f64
                    );
                }
            }
            if s.clips_without_depth > 0 {
                println!(
                    "{} clip(s) without usable depth: no camera imagery (their camera questions are 4DRL-only), object motion measured in the image",
                    s.clips_without_depth
                );
            }
            if let Some(ag) = &s.agreement {
                print!("{}", ag.render());
            }
            nothing_written(s.export.questions, &cfg)
        }
        DataCommand::Ingest(a) => {
            print_stage("ingest", &fourd_data::run_ingest(&config(&a)?)?);
            Ok(())
        }
        DataCommand::Label(a) => {
            print_stage("label", &fourd_data::run_label(&config(&a)?)?);
            Ok(())
        }
        DataCommand::Qa(a) => {
            print_stage("qa", &fourd_data::run_qa(&config(&a)?)?);
            Ok(())
        }
        DataCommand::Export(a) => {
            let cfg = config(&a)?;
            let e = fourd_data::run_export(&cfg)?;
            print_stage("export", &e.summary);
            println!(
                "{} questions, {} DIFT records",
                e.stats.questions, e.stats.dift_records
            );
            if let Some(ag) = e.agreement {
                print!("{}", ag.render());
            }
            nothing_written(e.stats.questions, &cfg)
        }
    }
}
