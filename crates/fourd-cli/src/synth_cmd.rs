//! `fourd synth`: random synthetic clips in the SpatialVID layout (see `fourd_world::spatialvid_out`);
//! `fourd synth benchmark`: the same clips as a DSR-Bench-format multiple-choice benchmark
//! (see `fourd_world::benchmark`). With `--spec FILE.json` (repeatable) the clips are described
//! explicitly instead of drawn at random (format: `fourd_world::spec`, `docs/synth.md`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fourd_world::{ClipSource, FrameSize, GenConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// `fourd synth [--out DIR ...]` or `fourd synth benchmark --out DIR ...`. `Parser` (which also
/// implements `Args`) so that `fourd demo` can build one from an argument list.
#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SynthCmd {
    #[command(subcommand)]
    pub sub: Option<SynthSub>,
    #[command(flatten)]
    pub args: SynthArgs,
    #[command(flatten)]
    pub layout: LayoutArg,
}

#[derive(Subcommand, Debug)]
pub enum SynthSub {
    /// A DSR-Bench-format benchmark from synthetic clips: `videos/<videoID>.mp4`,
    /// `benchmark.parquet` (videoID, question, options, answer, type) and `truth.jsonl`.
    /// (`bench` is the old name, kept so existing scripts run.)
    #[command(alias = "bench")]
    Benchmark(BenchmarkArgs),
}

#[derive(Args, Debug)]
pub struct BenchmarkArgs {
    #[command(flatten)]
    pub gen: SynthArgs,
    /// Most questions per clip (chosen at random among the clip's candidates).
    #[arg(long, default_value_t = 4)]
    pub questions_per_clip: usize,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output root: `videos/`, `annotations/` and `metadata.csv` are written under it
    /// (`videos/`, `benchmark.parquet` and `truth.jsonl` for `fourd synth benchmark`).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Number of clips.
    #[arg(long, default_value_t = 100)]
    pub clips: usize,
    /// Frames per clip (at least 2).
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
    /// Frame size: `WxH` or one number for a square.
    #[arg(long, default_value = "224")]
    pub size: FrameSize,
    /// Frame rate of the written videos.
    #[arg(long, default_value_t = 8)]
    pub fps: u32,
    /// Seed; clip `i` uses a seed derived from it and `i`, so a run is reproducible clip by clip.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most objects per clip (at least 1).
    #[arg(long, default_value_t = 3)]
    pub max_objects: usize,
    /// Horizontal field of view in degrees.
    #[arg(long, default_value_t = 60.0)]
    pub hfov: f64,
    /// Scene spec (JSON) describing one clip explicitly; repeat for several clips. Frames, size,
    /// fps and field of view then come from each spec (see docs/synth.md).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["clips", "frames", "size", "fps", "max_objects", "hfov"])]
    pub spec: Vec<PathBuf>,
    /// Write over an --out that holds a data set made with other settings (without it such a
    /// folder is refused, so two data sets never mix).
    #[arg(long)]
    pub overwrite: bool,
}

/// `fourd synth` (not `benchmark`): which files each clip gets.
#[derive(Args, Debug)]
pub struct LayoutArg {
    /// `synth`: our layout (depth.npy in metres, instance ids, every frame annotated,
    /// metadata.csv). `release`: exactly SpatialVID's released files (depth archives of
    /// inverse depth, annotation every int(0.2·fps) frames, data/train/SpatialVID_HQ_metadata.csv),
    /// so the pipeline's real-data readers run on synthetic clips (docs/synth.md).
    #[arg(long, default_value = "synth")]
    pub layout: fourd_world::Layout,
}

pub fn run(c: SynthCmd) -> Result<()> {
    match c.sub {
        Some(SynthSub::Benchmark(b)) => run_benchmark(b),
        None => run_spatialvid(c.args, c.layout.layout),
    }
}

/// Checks the common arguments; returns the clip source and the (created) output folder.
fn source(a: &SynthArgs) -> Result<(ClipSource, PathBuf)> {
    let out = a.out.clone().context("--out is required")?;
    let source = if a.spec.is_empty() {
        if a.clips == 0 {
            bail!("--clips must be at least 1");
        }
        if a.frames < 2 {
            bail!(
                "--frames must be at least 2 (got {}): camera labels need a pair of frames",
                a.frames
            );
        }
        if a.fps == 0 {
            bail!("--fps must be at least 1");
        }
        if a.max_objects == 0 {
            bail!("--max-objects must be at least 1");
        }
        let FrameSize { width, height } = a.size;
        // Fail early on a bad config rather than once per clip.
        fourd_world::Intrinsics::from_fov(width, height, a.hfov)?;
        ClipSource::Random {
            cfg: GenConfig {
                frames: a.frames,
                width,
                height,
                hfov_deg: a.hfov,
                max_objects: a.max_objects,
            },
            seed: a.seed,
            clips: a.clips,
            fps: a.fps,
        }
    } else {
        ClipSource::from_spec_files(&a.spec)?
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    Ok((source, out))
}

/// The clip source, the output folder, and its lock for the whole job.
fn prepare(
    a: &SynthArgs,
    job: fourd_job::JobManifest,
) -> Result<(ClipSource, PathBuf, fourd_job::OutputLock)> {
    let (source, out) = source(a)?;
    let mut manifest = source.manifest(&job.job);
    manifest.settings.extend(job.settings);
    let lock = fourd_world::source::open_output(&out, &manifest, a.overwrite)?;
    Ok((source, out, lock))
}

fn progress(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} clips ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

fn run_spatialvid(a: SynthArgs, layout: fourd_world::Layout) -> Result<()> {
    let mut job = fourd_job::JobManifest::new("fourd synth");
    if layout != fourd_world::Layout::Synth {
        // Only when not the default, so folders written before the flag existed stay valid.
        job = job.setting("layout", layout.as_str());
    }
    let (source, out, _lock) = prepare(&a, job)?;
    let t0 = Instant::now();
    let pb = progress(source.len());
    let rows = fourd_world::write_spatialvid_as(&out, &source, layout, || pb.inc(1))?;
    pb.finish_and_clear();
    let dt = t0.elapsed().as_secs_f64();
    let first = rows.first().context("no clips were written")?;
    println!(
        "wrote {} clips ({} video frames, {}x{}, {} fps, codec {}, {} layout) to {} in {:.2} s ({:.0} ms/clip)",
        rows.len(),
        first.num_frames,
        first.width,
        first.height,
        first.fps,
        first.codec,
        layout.as_str(),
        out.display(),
        dt,
        dt * 1e3 / rows.len() as f64
    );
    Ok(())
}

/// `fourd synth benchmark` (see `fourd_world::write_benchmark`).
fn run_benchmark(b: BenchmarkArgs) -> Result<()> {
    let a = &b.gen;
    if b.questions_per_clip == 0 {
        bail!("--questions-per-clip must be at least 1");
    }
    let job = fourd_job::JobManifest::new("fourd synth benchmark")
        .setting("questions_per_clip", b.questions_per_clip);
    let (source, out, _lock) = prepare(a, job)?;
    let t0 = Instant::now();
    let pb = progress(source.len());
    let written =
        fourd_world::write_benchmark(&out, &source, a.seed, b.questions_per_clip, || pb.inc(1))?;
    pb.finish_and_clear();
    let qs = &written.questions;
    let mut per_type: std::collections::BTreeMap<&str, usize> = Default::default();
    for q in qs {
        *per_type.entry(q.task_type()).or_default() += 1;
    }
    let (frames, width, height, fps) = written.clip_shape;
    let clips = written.clips;
    let cuts = written.cut_videos;
    println!(
        "wrote {} questions ({}) on {} clips ({} frames, {}x{}, {} fps; {} cut videos for prediction) to {} in {:.2} s",
        qs.len(),
        per_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        clips,
        frames,
        width,
        height,
        fps,
        cuts,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
