//! `fourd synth`: random synthetic clips in the SpatialVID layout (see `fourd_world::spatialvid_out`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fourd_world::{random_clip, write_clip, ClipRow, GenConfig, SplitMix64};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Clips per `videos/<group>/` folder.
const GROUP_SIZE: usize = 1000;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output root: `videos/`, `annotations/` and `metadata.csv` are written under it.
    #[arg(long)]
    pub out: PathBuf,
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

pub fn run(a: SynthArgs) -> Result<()> {
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
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create output folder {}", a.out.display()))?;

    let t0 = Instant::now();
    let pb = ProgressBar::new(a.clips as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} clips ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let rows: Vec<ClipRow> = (0..a.clips)
        .into_par_iter()
        .map(|i| -> Result<ClipRow> {
            let seed = clip_seed(a.seed, i);
            let (clip, truth) = random_clip(seed, &cfg).with_context(|| format!("clip {i}"))?;
            let group = format!("group_{:04}", i / GROUP_SIZE);
            let id = format!("clip_{i:06}");
            let row = write_clip(&a.out, &group, &id, &clip, &truth, a.fps)
                .with_context(|| format!("clip {i} (seed {seed})"))?;
            pb.inc(1);
            Ok(row)
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();

    let csv_path = a.out.join("metadata.csv");
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
        a.out.display(),
        dt,
        dt * 1e3 / rows.len() as f64
    );
    Ok(())
}
