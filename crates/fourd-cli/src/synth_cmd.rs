//! `fourd synth`: random synthetic clips in the SpatialVID layout (see `fourd_world::spatialvid_out`);
//! `fourd synth bench`: the same clips as a DSR-Bench-format multiple-choice benchmark
//! (see `fourd_world::bench`). With `--spec FILE.json` (repeatable) the clips are described
//! explicitly instead of drawn at random (format: `fourd_world::spec`, `docs/synth.md`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fourd_world::{
    load_scene_spec, random_clip, write_clip, Clip, ClipRow, ClipTruth, GenConfig, SceneSpec,
    SplitMix64,
};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Clips per `videos/<group>/` folder.
const GROUP_SIZE: usize = 1000;

/// `fourd synth [--out DIR ...]` or `fourd synth bench --out DIR ...`. `Parser` (which also
/// implements `Args`) so that `fourd demo` can build one from an argument list.
#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SynthCmd {
    #[command(subcommand)]
    pub sub: Option<SynthSub>,
    #[command(flatten)]
    pub args: SynthArgs,
}

#[derive(Subcommand, Debug)]
pub enum SynthSub {
    /// A DSR-Bench-format benchmark from synthetic clips: `videos/<videoID>.mp4`,
    /// `benchmark.parquet` (videoID, question, options, answer, type) and `truth.jsonl`.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub gen: SynthArgs,
    /// Most questions per clip (chosen at random among the clip's candidates).
    #[arg(long, default_value_t = 4)]
    pub questions_per_clip: usize,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output root: `videos/`, `annotations/` and `metadata.csv` are written under it
    /// (`videos/`, `benchmark.parquet` and `truth.jsonl` for `fourd synth bench`).
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
    pub size: String,
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
}

/// Where the clips come from: seeded random draws or scene specs.
enum ClipSource {
    Random {
        cfg: GenConfig,
        seed: u64,
        clips: usize,
        fps: u32,
    },
    Specs(Vec<(String, SceneSpec)>),
}

impl ClipSource {
    fn len(&self) -> usize {
        match self {
            Self::Random { clips, .. } => *clips,
            Self::Specs(s) => s.len(),
        }
    }

    /// Clip `i`: its id in the given naming, clip, truth and frame rate.
    fn clip(
        &self,
        i: usize,
        random_id: impl Fn(usize) -> String,
    ) -> Result<(String, Clip, ClipTruth, u32)> {
        match self {
            Self::Random { cfg, seed, fps, .. } => {
                let s = clip_seed(*seed, i);
                let (clip, truth) =
                    random_clip(s, cfg).with_context(|| format!("clip {i} (seed {s})"))?;
                Ok((random_id(i), clip, truth, *fps))
            }
            Self::Specs(specs) => {
                let (id, spec) = &specs[i];
                Ok((id.clone(), spec.clip.clone(), spec.truth.clone(), spec.fps))
            }
        }
    }
}

/// Loads the scene specs; ids come from each spec's `id` or its file stem and must be unique.
fn load_specs(paths: &[PathBuf]) -> Result<Vec<(String, SceneSpec)>> {
    let mut out: Vec<(String, SceneSpec)> = Vec::with_capacity(paths.len());
    for p in paths {
        let spec = load_scene_spec(p).with_context(|| p.display().to_string())?;
        let id = spec
            .id
            .clone()
            .with_context(|| format!("scene spec {}: no id and no file stem", p.display()))?;
        if out.iter().any(|(other, _)| *other == id) {
            bail!(
                "scene spec {}: clip id {id:?} is used by another spec; give each an \"id\"",
                p.display()
            );
        }
        out.push((id, spec));
    }
    Ok(out)
}

/// `WxH` or `S`.
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let parse = |t: &str| -> Result<u32> {
        t.trim().parse::<u32>().with_context(|| {
            format!("invalid --size {s:?}: expected WxH (e.g. 224x160) or one number (e.g. 224)")
        })
    };
    let (w, h) = match s.split_once(['x', 'X']) {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let v = parse(s)?;
            (v, v)
        }
    };
    if w == 0 || h == 0 {
        bail!("invalid --size {s:?}: width and height must both be at least 1");
    }
    Ok((w, h))
}

/// Seed of clip `i`.
pub fn clip_seed(seed: u64, i: usize) -> u64 {
    SplitMix64::new(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

pub fn run(c: SynthCmd) -> Result<()> {
    match c.sub {
        Some(SynthSub::Bench(b)) => run_bench(b),
        None => run_spatialvid(c.args),
    }
}

/// Checks the common arguments; returns the clip source and the (created) output folder.
fn prepare(a: &SynthArgs) -> Result<(ClipSource, PathBuf)> {
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
        let (width, height) = parse_size(&a.size)?;
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
        ClipSource::Specs(load_specs(&a.spec)?)
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    Ok((source, out))
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

fn run_spatialvid(a: SynthArgs) -> Result<()> {
    let (source, out) = prepare(&a)?;
    let t0 = Instant::now();
    let n = source.len();
    let pb = progress(n);
    let rows: Vec<ClipRow> = (0..n)
        .into_par_iter()
        .map(|i| -> Result<ClipRow> {
            let (id, clip, truth, fps) = source.clip(i, |i| format!("clip_{i:06}"))?;
            let group = format!("group_{:04}", i / GROUP_SIZE);
            let row = write_clip(&out, &group, &id, &clip, &truth, fps)
                .with_context(|| format!("clip {i} ({id})"))?;
            pb.inc(1);
            Ok(row)
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();

    let csv_path = out.join("metadata.csv");
    let mut csv = String::from(ClipRow::HEADER);
    csv.push('\n');
    for r in &rows {
        csv.push_str(&r.to_csv());
        csv.push('\n');
    }
    std::fs::File::create(&csv_path)
        .and_then(|mut f| f.write_all(csv.as_bytes()))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let dt = t0.elapsed().as_secs_f64();
    let first = rows.first().context("no clips were written")?;
    println!(
        "wrote {} clips ({} frames, {}x{}, {} fps, codec {}) to {} in {:.2} s ({:.0} ms/clip)",
        rows.len(),
        first.num_frames,
        first.width,
        first.height,
        first.fps,
        first.codec,
        out.display(),
        dt,
        dt * 1e3 / rows.len() as f64
    );
    Ok(())
}

/// `fourd synth bench`: clip `i` (seed [`clip_seed`], or the `i`-th `--spec`) becomes
/// `videos/<videoID>.mp4` (`synth_<i>` or the spec's id); the questions come from the clips' truth
/// via [`fourd_world::bench::build_benchmark`] seeded with `--seed`, so a seed gives
/// byte-identical `benchmark.parquet` and `truth.jsonl`. Prediction questions get a second video
/// with only the clip's first frames, rendered again from the clip after the questions are
/// chosen (keeping every clip's frames in memory instead would cost far more).
fn run_bench(b: BenchArgs) -> Result<()> {
    let a = &b.gen;
    if b.questions_per_clip == 0 {
        bail!("--questions-per-clip must be at least 1");
    }
    let (source, out) = prepare(a)?;
    let videos = out.join("videos");
    std::fs::create_dir_all(&videos)
        .with_context(|| format!("cannot create output folder {}", videos.display()))?;
    let t0 = Instant::now();
    let n = source.len();
    let pb = progress(n);
    let clips: Vec<(String, Clip, ClipTruth, u32)> = (0..n)
        .into_par_iter()
        .map(|i| -> Result<(String, Clip, ClipTruth, u32)> {
            let (id, clip, truth, fps) = source.clip(i, |i| format!("synth_{i:06}"))?;
            let rgb: Vec<_> = clip
                .render_all()
                .with_context(|| format!("clip {i} ({id})"))?
                .into_iter()
                .map(|f| f.rgb)
                .collect();
            let path = videos.join(format!("{id}.mp4"));
            fourd_video::encode_video(&path, &rgb, fps)
                .with_context(|| format!("cannot encode {}", path.display()))?;
            pb.inc(1);
            Ok((id, clip, truth, fps))
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();

    let truths: Vec<(String, ClipTruth)> = clips
        .iter()
        .map(|(id, _, t, _)| (id.clone(), t.clone()))
        .collect();
    let qs = fourd_world::bench::build_benchmark(&truths, a.seed, b.questions_per_clip);

    // Cut videos of the prediction questions: (videoID, clip index, frames shown), each once.
    let mut cuts: Vec<(String, usize, usize)> = Vec::new();
    for q in &qs {
        if let Some(k) = q.shown_frames {
            if !cuts.iter().any(|(v, _, _)| *v == q.video_id) {
                let i = clips
                    .iter()
                    .position(|(id, _, _, _)| *id == q.clip_id)
                    .context("question refers to an unknown clip")?;
                cuts.push((q.video_id.clone(), i, k));
            }
        }
    }
    cuts.par_iter()
        .map(|(video_id, i, k)| -> Result<()> {
            let (_, clip, _, fps) = &clips[*i];
            let rgb = (0..*k)
                .map(|f| clip.render(f).map(|fr| fr.rgb))
                .collect::<fourd_world::Result<Vec<_>>>()
                .with_context(|| format!("rendering {video_id}"))?;
            let path = videos.join(format!("{video_id}.mp4"));
            fourd_video::encode_video(&path, &rgb, *fps)
                .with_context(|| format!("cannot encode {}", path.display()))?;
            Ok(())
        })
        .collect::<Result<Vec<()>>>()?;

    let pq = out.join("benchmark.parquet");
    fourd_world::bench::write_parquet(&pq, &qs)?;
    let tj = out.join("truth.jsonl");
    std::fs::write(&tj, fourd_world::bench::truth_jsonl(&qs))
        .with_context(|| format!("cannot write {}", tj.display()))?;
    let mut per_type: std::collections::BTreeMap<&str, usize> = Default::default();
    for q in &qs {
        *per_type.entry(q.task_type).or_default() += 1;
    }
    let (frames, width, height, fps) = clips
        .first()
        .map(|(_, c, _, f)| (c.num_frames(), c.intrinsics.width, c.intrinsics.height, *f))
        .context("no clips were generated")?;
    println!(
        "wrote {} questions ({}) on {} clips ({} frames, {}x{}, {} fps; {} cut videos for prediction) to {} in {:.2} s",
        qs.len(),
        per_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        clips.len(),
        frames,
        width,
        height,
        fps,
        cuts.len(),
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
