//! Where a synthetic data set's clips come from, and how a data set is written: the logic behind
//! `fourd synth` and `fourd synth benchmark`, shared with `fourd demo` and the tests.
//!
//! Clip `i` of a random data set is drawn with the seed [`clip_seed`]`(seed, i)`, so a data set is
//! reproducible clip by clip and a test can regenerate any one clip without the others.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::benchmark::{build_benchmark, truth_jsonl, write_parquet, BenchmarkQuestion};
use crate::error::{Result, WorldError};
use crate::generate::{random_clip, ClipTruth, GenConfig, SplitMix64};
use crate::scene::Clip;
use crate::spatialvid_out::{write_clip_as, ClipRow, Layout};
use crate::spec::{load_scene_spec, SceneSpec};

/// Clips per `videos/<group>/` folder of a SpatialVID-layout data set.
pub const GROUP_SIZE: usize = 1000;

/// Name of the metadata table of a SpatialVID-layout data set.
pub const METADATA_FILE: &str = crate::spatialvid_out::METADATA_FILES[0];

/// Seed of clip `i` of a random data set drawn with `seed`.
pub fn clip_seed(seed: u64, i: usize) -> u64 {
    SplitMix64::new(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// A frame size, `WxH` or one number for a square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for FrameSize {
    type Err = WorldError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            WorldError::InvalidParameter(format!(
                "frame size {s:?}: expected WxH (e.g. 224x160) or one number (e.g. 224)"
            ))
        };
        let parse = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let (width, height) = match s.split_once(['x', 'X']) {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let v = parse(s)?;
                (v, v)
            }
        };
        if width == 0 || height == 0 {
            return Err(WorldError::ZeroSize { width, height });
        }
        Ok(FrameSize { width, height })
    }
}

/// One clip of a data set: its id, the clip, its truth and its frame rate.
pub struct SourcedClip {
    pub id: String,
    pub clip: Clip,
    pub truth: ClipTruth,
    pub fps: u32,
}

/// Seeded random draws or scene specs.
pub enum ClipSource {
    Random {
        cfg: GenConfig,
        seed: u64,
        clips: usize,
        fps: u32,
    },
    /// Specs with their ids, and the digest of each spec file.
    Specs(Vec<(String, SceneSpec)>, Vec<String>),
}

impl ClipSource {
    /// Scene specs from files; ids come from each spec's `id` or its file stem and must be
    /// unique.
    pub fn from_spec_files(paths: &[PathBuf]) -> Result<Self> {
        let mut out: Vec<(String, SceneSpec)> = Vec::with_capacity(paths.len());
        let mut digests = Vec::with_capacity(paths.len());
        for p in paths {
            digests.push(
                fourd_job::identity::file_digest(p).map_err(|e| WorldError::Read {
                    path: p.clone(),
                    msg: e.to_string(),
                })?,
            );
            // The spec's own errors name the field; the file is named here.
            let spec = load_scene_spec(p).map_err(|e| match e {
                WorldError::Read { .. } => e,
                other => WorldError::Read {
                    path: p.clone(),
                    msg: other.to_string(),
                },
            })?;
            let id = spec.id.clone().ok_or_else(|| WorldError::Read {
                path: p.clone(),
                msg: "the scene spec has no id and the file no stem".into(),
            })?;
            if out.iter().any(|(other, _)| *other == id) {
                return Err(WorldError::Read {
                    path: p.clone(),
                    msg: format!("clip id {id:?} is used by another spec; give each an \"id\""),
                });
            }
            out.push((id, spec));
        }
        Ok(ClipSource::Specs(out, digests))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Random { clips, .. } => *clips,
            Self::Specs(s, _) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clip `i`; a random clip's id is `random_id(i)`, a spec's its own.
    pub fn clip(&self, i: usize, random_id: impl Fn(usize) -> String) -> Result<SourcedClip> {
        match self {
            Self::Random { cfg, seed, fps, .. } => {
                let (clip, truth) = random_clip(clip_seed(*seed, i), cfg)?;
                Ok(SourcedClip {
                    id: random_id(i),
                    clip,
                    truth,
                    fps: *fps,
                })
            }
            Self::Specs(specs, _) => {
                let (id, spec) = &specs[i];
                Ok(SourcedClip {
                    id: id.clone(),
                    clip: spec.clip.clone(),
                    truth: spec.truth.clone(),
                    fps: spec.fps,
                })
            }
        }
    }
}

impl ClipSource {
    /// What a data set is made from: the generator's settings, or the spec files.
    pub fn manifest(&self, job: &str) -> fourd_job::JobManifest {
        let m = fourd_job::JobManifest::new(job);
        match self {
            Self::Random {
                cfg,
                seed,
                clips,
                fps,
            } => m
                .setting("clips", clips)
                .setting("frames", cfg.frames)
                .setting("size", format!("{}x{}", cfg.width, cfg.height))
                .setting("hfov", cfg.hfov_deg)
                .setting("max_objects", cfg.max_objects)
                .setting("fps", fps)
                .setting("seed", seed),
            Self::Specs(_, digests) => m.setting("specs", digests),
        }
    }
}

/// Takes the output folder for writing a data set: locks it (one writer at a time) and checks
/// that what it holds was made with the same settings, so that two data sets never mix; with
/// `overwrite`, a folder made otherwise is written over.
pub fn open_output(
    out: &Path,
    manifest: &fourd_job::JobManifest,
    overwrite: bool,
) -> Result<fourd_job::OutputLock> {
    let err = |e: fourd_job::JobError| WorldError::Io {
        path: out.to_path_buf(),
        msg: e.to_string(),
    };
    let lock = fourd_job::OutputLock::folder(out, &manifest.job).map_err(err)?;
    let hint = "give --overwrite to write over it, or another --out";
    manifest
        .begin(&out.join(JOB_FILE), overwrite, hint)
        .map_err(err)?;
    Ok(lock)
}

/// The job file of a data set's folder.
pub const JOB_FILE: &str = "fourd_job.json";

/// Writes every clip of `source` under `out` in the SpatialVID layout (`clip_<i>` ids in
/// `group_<i / GROUP_SIZE>` folders) and the metadata table; `done` is called once per written
/// clip (progress). Clips are rendered in parallel; the rows come back in clip order.
pub fn write_spatialvid(
    out: &Path,
    source: &ClipSource,
    done: impl Fn() + Sync,
) -> Result<Vec<ClipRow>> {
    write_spatialvid_as(out, source, Layout::Synth, done)
}

/// [`write_spatialvid`] in either [`Layout`] (the metadata table goes to
/// [`Layout::metadata_file`]).
pub fn write_spatialvid_as(
    out: &Path,
    source: &ClipSource,
    layout: Layout,
    done: impl Fn() + Sync,
) -> Result<Vec<ClipRow>> {
    let rows: Vec<ClipRow> = (0..source.len())
        .into_par_iter()
        .map(|i| -> Result<ClipRow> {
            let c = source.clip(i, |i| format!("clip_{i:06}"))?;
            let group = format!("group_{:04}", i / GROUP_SIZE);
            let row = write_clip_as(out, &group, &c.id, &c.clip, &c.truth, c.fps, layout)?;
            done();
            Ok(row)
        })
        .collect::<Result<_>>()?;
    let mut csv = String::from(ClipRow::HEADER);
    csv.push('\n');
    for r in &rows {
        csv.push_str(&r.to_csv());
        csv.push('\n');
    }
    let path = out.join(layout.metadata_file());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    std::fs::write(&path, csv).map_err(|e| io_error(&path, e))?;
    Ok(rows)
}

/// What [`write_benchmark`] wrote.
pub struct WrittenBenchmark {
    pub questions: Vec<BenchmarkQuestion>,
    pub clips: usize,
    /// Videos holding only a clip's first frames, for the prediction questions.
    pub cut_videos: usize,
    /// Frames, width, height and frame rate of the first clip.
    pub clip_shape: (usize, u32, u32, u32),
}

/// `fourd synth benchmark`: clip `i` ([`clip_seed`], or the `i`-th spec) becomes
/// `videos/<videoID>.mp4` (`synth_<i>` or the spec's id); the questions come from the clips'
/// truth via [`build_benchmark`] seeded with `seed`, so a seed gives byte-identical
/// `benchmark.parquet` and `truth.jsonl`. Prediction questions get a second video with only the
/// clip's first frames, rendered again from the clip after the questions are chosen (keeping
/// every clip's frames in memory instead would cost far more). `done` is called once per clip.
pub fn write_benchmark(
    out: &Path,
    source: &ClipSource,
    seed: u64,
    per_clip: usize,
    done: impl Fn() + Sync,
) -> Result<WrittenBenchmark> {
    let videos = out.join("videos");
    std::fs::create_dir_all(&videos).map_err(|e| io_error(&videos, e))?;
    let clips: Vec<SourcedClip> = (0..source.len())
        .into_par_iter()
        .map(|i| -> Result<SourcedClip> {
            let c = source.clip(i, |i| format!("synth_{i:06}"))?;
            let rgb: Vec<_> = c.clip.render_all()?.into_iter().map(|f| f.rgb).collect();
            encode(&videos.join(format!("{}.mp4", c.id)), &rgb, c.fps)?;
            done();
            Ok(c)
        })
        .collect::<Result<_>>()?;
    let truths: Vec<(String, ClipTruth)> = clips
        .iter()
        .map(|c| (c.id.clone(), c.truth.clone()))
        .collect();
    let questions = build_benchmark(&truths, seed, per_clip);
    let cut_videos = write_cut_videos(&videos, &clips, &questions)?;
    write_parquet(&out.join("benchmark.parquet"), &questions)?;
    let truth = out.join("truth.jsonl");
    std::fs::write(&truth, truth_jsonl(&questions)).map_err(|e| io_error(&truth, e))?;
    let first = clips.first().ok_or_else(|| {
        WorldError::InvalidParameter("a benchmark needs at least one clip".into())
    })?;
    Ok(WrittenBenchmark {
        clip_shape: (
            first.clip.num_frames(),
            first.clip.intrinsics.width,
            first.clip.intrinsics.height,
            first.fps,
        ),
        clips: clips.len(),
        cut_videos,
        questions,
    })
}

/// The cut videos of the prediction questions, each once; returns how many.
fn write_cut_videos(
    videos: &Path,
    clips: &[SourcedClip],
    questions: &[BenchmarkQuestion],
) -> Result<usize> {
    // (videoID, clip index, frames shown)
    let mut cuts: Vec<(&str, usize, usize)> = Vec::new();
    for q in questions {
        if let Some(k) = q.shown_frames {
            if !cuts.iter().any(|(v, _, _)| *v == q.video_id()) {
                let i = clips
                    .iter()
                    .position(|c| c.id == q.clip_id)
                    .ok_or_else(|| {
                        WorldError::InvalidParameter(format!(
                            "question on {} refers to an unknown clip",
                            q.video_id()
                        ))
                    })?;
                cuts.push((q.video_id(), i, k));
            }
        }
    }
    cuts.par_iter()
        .map(|(video_id, i, k)| -> Result<()> {
            let c = &clips[*i];
            let rgb = (0..*k)
                .map(|f| c.clip.render(f).map(|fr| fr.rgb))
                .collect::<Result<Vec<_>>>()?;
            encode(&videos.join(format!("{video_id}.mp4")), &rgb, c.fps)
        })
        .collect::<Result<Vec<()>>>()?;
    Ok(cuts.len())
}

fn encode(path: &Path, rgb: &[image::RgbImage], fps: u32) -> Result<()> {
    fourd_video::encode_video(path, rgb, fps)
        .map(|_codec| ())
        .map_err(|e| WorldError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

fn io_error(path: &Path, e: std::io::Error) -> WorldError {
    WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_parse() {
        let s: FrameSize = "224x160".parse().unwrap();
        assert_eq!((s.width, s.height), (224, 160));
        let s: FrameSize = "64".parse().unwrap();
        assert_eq!((s.width, s.height), (64, 64));
        assert!("0x4".parse::<FrameSize>().is_err());
        assert!("big".parse::<FrameSize>().is_err());
    }

    #[test]
    fn clip_seeds_differ_per_clip_and_repeat_per_seed() {
        assert_eq!(clip_seed(7, 3), clip_seed(7, 3));
        assert_ne!(clip_seed(7, 3), clip_seed(7, 4));
        assert_ne!(clip_seed(7, 3), clip_seed(8, 3));
    }
}
