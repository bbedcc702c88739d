//! `fourd synth`: random synthetic clips in the SpatialVID layout (see `fourd_world::spatialvid_out`);
//! `fourd synth bench`: the same clips as a DSR-Bench-format multiple-choice benchmark
//! (see `fourd_world::bench`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fourd_world::{random_clip, write_clip, ClipRow, ClipTruth, GenConfig, SplitMix64};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Clips per `videos/<group>/` folder.
const GROUP_SIZE: usize = 1000;

/// `fourd synth [--out DIR ...]` or `fourd synth bench --out DIR ...`.
#[derive(Args, Debug)]
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

/// Checks the common arguments; returns the generator config and the (created) output folder.
fn prepare(a: &SynthArgs) -> Result<(GenConfig, PathBuf)> {
    let out = a.out.clone().context("--out is required")?;
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
    let cfg = GenConfig {
        frames: a.frames,
        width,
        height,
        hfov_deg: a.hfov,
        max_objects: a.max_objects,
    };
    // Fail early on a bad config rather than once per clip.
    fourd_world::Intrinsics::from_fov(width, height, a.hfov)?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    Ok((cfg, out))
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
    let (cfg, out) = prepare(&a)?;
    let (width, height) = (cfg.width, cfg.height);
    let t0 = Instant::now();
    let pb = progress(a.clips);
    let rows: Vec<ClipRow> = (0..a.clips)
        .into_par_iter()
        .map(|i| -> Result<ClipRow> {
            let seed = clip_seed(a.seed, i);
            let (clip, truth) = random_clip(seed, &cfg).with_context(|| format!("clip {i}"))?;
            let group = format!("group_{:04}", i / GROUP_SIZE);
            let id = format!("clip_{i:06}");
            let row = write_clip(&out, &group, &id, &clip, &truth, a.fps)
                .with_context(|| format!("clip {i} (seed {seed})"))?;
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
    println!(
        "wrote {} clips ({} frames, {}x{}, {} fps, codec {}) to {} in {:.2} s ({:.0} ms/clip)",
        rows.len(),
        a.frames,
        width,
        height,
        a.fps,
        rows.first().map(|r| r.codec.as_str()).unwrap_or("?"),
        out.display(),
        dt,
        dt * 1e3 / rows.len() as f64
    );
    Ok(())
}

/// `fourd synth bench`: clip `i` (seed [`clip_seed`]) becomes `videos/synth_<i>.mp4`; the
/// questions come from the clips' truth via [`fourd_world::bench::build_benchmark`] seeded with
/// `--seed`, so a seed gives byte-identical `benchmark.parquet` and `truth.jsonl`.
fn run_bench(b: BenchArgs) -> Result<()> {
    let a = &b.gen;
    if b.questions_per_clip == 0 {
        bail!("--questions-per-clip must be at least 1");
    }
    let (cfg, out) = prepare(a)?;
    let videos = out.join("videos");
    std::fs::create_dir_all(&videos)
        .with_context(|| format!("cannot create output folder {}", videos.display()))?;
    let t0 = Instant::now();
    let pb = progress(a.clips);
    let truths: Vec<(String, ClipTruth)> = (0..a.clips)
        .into_par_iter()
        .map(|i| -> Result<(String, ClipTruth)> {
            let seed = clip_seed(a.seed, i);
            let (clip, truth) = random_clip(seed, &cfg).with_context(|| format!("clip {i}"))?;
            let id = format!("synth_{i:06}");
            let rgb: Vec<_> = clip
                .render_all()
                .with_context(|| format!("clip {i} (seed {seed})"))?
                .into_iter()
                .map(|f| f.rgb)
                .collect();
            let path = videos.join(format!("{id}.mp4"));
            fourd_video::encode_video(&path, &rgb, a.fps)
                .with_context(|| format!("cannot encode {}", path.display()))?;
            pb.inc(1);
            Ok((id, truth))
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();

    let qs = fourd_world::bench::build_benchmark(&truths, a.seed, b.questions_per_clip);
    let pq = out.join("benchmark.parquet");
    fourd_world::bench::write_parquet(&pq, &qs)?;
    let tj = out.join("truth.jsonl");
    std::fs::write(&tj, fourd_world::bench::truth_jsonl(&qs))
        .with_context(|| format!("cannot write {}", tj.display()))?;
    let mut per_type: std::collections::BTreeMap<&str, usize> = Default::default();
    for q in &qs {
        *per_type.entry(q.task_type).or_default() += 1;
    }
    println!(
        "wrote {} questions ({}) on {} clips ({} frames, {}x{}, {} fps) to {} in {:.2} s",
        qs.len(),
        per_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        truths.len(),
        a.frames,
        cfg.width,
        cfg.height,
        a.fps,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
