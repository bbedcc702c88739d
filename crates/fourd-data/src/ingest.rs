//! Stage 1, ingest: finds SpatialVID-layout clips, reads and checks their annotations, and
//! extracts the annotated frames (the `indexes.txt` frame numbers) from the video with FFmpeg.
//!
//! Layout read (`preprocess.md` §2.1, `docs/spatialvid-release.md`; `fourd synth` writes the
//! same plus `depth.npy`, `instance_ids.npy` and `truth.json`, or with `--layout release` exactly
//! the released files):
//! `videos/<group>/<clip>.mp4`, `annotations/<group>/<clip>/{indexes.txt, poses.npy,
//! intrinsics.npy, instructions.json, caption.json, dyn_masks.npz, depth.npy}`,
//! `depths/<group>/<clip>.zip` (SpatialVID's released depth, [`fourd_world::depth_archive`]) and a
//! metadata CSV ([`fourd_world::METADATA_FILES`]: ours, or SpatialVID's
//! `data/train/SpatialVID_HQ_metadata.csv`) whose `fps` times the annotated frames and whose
//! `moveDist` feeds the "enhanced" camera rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fourd_world::CameraLabel;
use serde::{Deserialize, Serialize};

use crate::arrays::read_file;
use crate::error::{DataError, Result};

/// One clip of the input tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipRef {
    pub group: String,
    pub clip: String,
    pub video: PathBuf,
    pub annotations: PathBuf,
    /// `depths/<group>/<clip>.zip` (may not exist).
    #[serde(default)]
    pub depth_archive: PathBuf,
}

impl ClipRef {
    /// `group/clip`: unique within an input tree; used for output folders, seeds and ids.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.clip)
    }
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The folder holding `videos/` and `annotations/`: `root`, or `root/SpatialVID` when only that
/// has them (SpatialVID's archives unpack to `SpatialVID/<kind>/group_XXXX/`).
pub fn dataset_root(root: &Path) -> PathBuf {
    let has = |r: &Path| r.join("videos").is_dir() || r.join("annotations").is_dir();
    let nested = root.join("SpatialVID");
    if !has(root) && has(&nested) {
        nested
    } else {
        root.to_path_buf()
    }
}

/// macOS writes `._name` companions into archives it packs; they are not clips.
fn is_resource_fork(p: &Path) -> bool {
    name_of(p).starts_with("._")
}

/// Every clip under `root` (or `root/SpatialVID`, see [`dataset_root`]): the union of `videos/<group>/<clip>.mp4` files and
/// `annotations/<group>/<clip>/` folders, sorted by group then clip. A clip with only one of
/// the two is still listed, so that it fails with a clear reason instead of vanishing.
pub fn discover(root: &Path) -> Result<Vec<ClipRef>> {
    let root = &dataset_root(root);
    let videos = root.join("videos");
    let annotations = root.join("annotations");
    if !videos.is_dir() && !annotations.is_dir() {
        return Err(DataError::Missing { path: videos });
    }
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    for g in sorted_dirs(&videos) {
        for e in std::fs::read_dir(&g)
            .map_err(|e| DataError::io(&g, e))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("mp4")) && !is_resource_fork(&p)
            {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                keys.insert((name_of(&g), stem));
            }
        }
    }
    for g in sorted_dirs(&annotations) {
        for c in sorted_dirs(&g).iter().filter(|c| !is_resource_fork(c)) {
            keys.insert((name_of(&g), name_of(c)));
        }
    }
    Ok(keys
        .into_iter()
        .map(|(group, clip)| ClipRef {
            video: videos.join(&group).join(format!("{clip}.mp4")),
            annotations: annotations.join(&group).join(&clip),
            depth_archive: fourd_world::depth_archive::archive_path(root, &group, &clip),
            group,
            clip,
        })
        .collect())
}

/// Splits one CSV line, honouring double quotes (SpatialVID's metadata has quoted text fields).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// What the metadata CSV says about one clip.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClipMetadata {
    /// `moveDist` (the enhanced camera rule's input).
    pub move_dist: Option<f64>,
    /// `fps`: the video's frame rate, which times the annotated frames.
    pub fps: Option<f64>,
}

/// The metadata table under `root`: the first of [`fourd_world::METADATA_FILES`] that exists.
pub fn metadata_path(root: &Path) -> Option<PathBuf> {
    let root = dataset_root(root);
    fourd_world::METADATA_FILES
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
}

/// Per clip id, the metadata CSV's `moveDist` and `fps` (both optional columns); empty when
/// there is no table. Rows are keyed by `id` (SpatialVID's clip id, the mp4 stem and the
/// annotation folder), or by the stem of `video path` in a table without `id`.
pub fn read_metadata(root: &Path) -> Result<BTreeMap<String, ClipMetadata>> {
    let Some(path) = metadata_path(root) else {
        return Ok(BTreeMap::new());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let mut lines = text.lines();
    let header = split_csv_line(lines.next().unwrap_or_default());
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (id_col, video_col) = (col("id"), col("video path"));
    if id_col.is_none() && video_col.is_none() {
        tracing::warn!(
            "{}: neither an `id` nor a `video path` column; metadata ignored",
            path.display()
        );
        return Ok(BTreeMap::new());
    }
    let (move_col, fps_col) = (col("moveDist"), col("fps"));
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 2;
        let f = split_csv_line(line);
        if f.len() < header.len() {
            return Err(DataError::malformed(
                &path,
                format!(
                    "line {line_no}: {} fields, the header has {}",
                    f.len(),
                    header.len()
                ),
            ));
        }
        let key = match id_col {
            Some(c) => f[c].trim().to_string(),
            None => Path::new(f[video_col.unwrap_or_default()].trim())
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let number = |c: Option<usize>, name: &str| -> Result<Option<f64>> {
            let Some(c) = c else { return Ok(None) };
            let v = f[c].trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    DataError::malformed(
                        &path,
                        format!("line {line_no}: {name} {v:?} is not a number"),
                    )
                })
        };
        let fps = number(fps_col, "fps")?;
        if fps.is_some_and(|x| x <= 0.0) {
            return Err(DataError::malformed(
                &path,
                format!("line {line_no}: fps must be positive"),
            ));
        }
        out.insert(
            key,
            ClipMetadata {
                move_dist: number(move_col, "moveDist")?,
                fps,
            },
        );
    }
    Ok(out)
}

/// `indexes.txt`: `(seq, source frame index)` pairs in file order. As in the reference, lines
/// starting with `#` and lines without exactly two tokens are skipped; a two-token line that is
/// not two integers is an error (the reference would crash on it).
pub fn parse_indexes(path: &Path) -> Result<Vec<(usize, usize)>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::open(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if line.trim_start().starts_with('#') || t.len() != 2 {
            continue;
        }
        match (t[0].parse(), t[1].parse()) {
            (Ok(a), Ok(b)) => out.push((a, b)),
            _ => {
                return Err(DataError::malformed(
                    path,
                    format!(
                        "line {}: {line:?} is not two integers `seq frame_idx`",
                        i + 1
                    ),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(DataError::malformed(path, "no `seq frame_idx` lines"));
    }
    Ok(out)
}

/// One `instructions.json` entry, labels in 4DThinker's spelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionSegment {
    pub start: usize,
    pub end: usize,
    pub labels: Vec<String>,
}

/// Parses `instructions.json` (`{"a->b": [labels]}`), checking `a < b < frames` and every label.
pub fn parse_instructions(path: &Path, frames: usize) -> Result<Vec<InstructionSegment>> {
    let bytes = read_file(path)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::malformed(path, format!("invalid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| {
        DataError::malformed(path, "expected an object of \"start->end\": [labels]")
    })?;
    let mut out = Vec::new();
    for (key, labels) in obj {
        let bad = |what: String| DataError::malformed(path, format!("key {key:?}: {what}"));
        let (a, b) = key
            .split_once("->")
            .ok_or_else(|| bad("not of the form \"start->end\"".into()))?;
        let (a, b): (usize, usize) = match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(bad("start and end must be frame numbers".into())),
        };
        if a >= b || b >= frames {
            return Err(bad(format!(
                "needs start < end < {frames} (the number of annotated frames)"
            )));
        }
        let list = labels
            .as_array()
            .ok_or_else(|| bad("value is not a list of labels".into()))?;
        let mut parsed = Vec::new();
        for l in list {
            let s = l
                .as_str()
                .ok_or_else(|| bad(format!("label {l} is not a string")))?;
            let label: CameraLabel = s
                .parse()
                .map_err(|e: fourd_world::WorldError| bad(e.to_string()))?;
            parsed.push(label);
        }
        if parsed.is_empty() {
            return Err(bad("empty label list".into()));
        }
        parsed.sort();
        parsed.dedup();
        out.push(InstructionSegment {
            start: a,
            end: b,
            labels: parsed.iter().map(|l| l.as_str().to_string()).collect(),
        });
    }
    out.sort_by_key(|s| (s.start, s.end));
    Ok(out)
}

/// What stage 1 records about a clip (`ingest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRecord {
    pub key: String,
    pub group: String,
    pub clip: String,
    pub video: PathBuf,
    pub annotations: PathBuf,
    /// Extracted frames, relative to the output folder, in annotated order (`frame_<seq>.png`).
    pub frames: Vec<String>,
    /// Source video frame number of each extracted frame.
    pub source_indices: Vec<usize>,
    pub width: u32,
    pub height: u32,
    /// `poses.npy` rows: world-to-camera `[tx, ty, tz, qx, qy, qz, qw]`, one per frame.
    pub poses: Vec<[f64; 7]>,
    /// `intrinsics.npy` rows, normalised `[fx/W, fy/H, cx/W, cy/H]`, one per frame.
    pub intrinsics: Option<Vec<[f64; 4]>>,
    pub instructions: Option<Vec<InstructionSegment>>,
    /// `caption.json`'s `SceneSummary`.
    pub scene_summary: Option<String>,
    /// The metadata CSV's `moveDist`.
    pub move_dist: Option<f64>,
    /// The video's frame rate: the metadata CSV's `fps`, else the video stream's. Annotated
    /// frame `k` is at `source_indices[k] / fps` seconds ([`IngestRecord::seconds`]).
    #[serde(default)]
    pub fps: Option<f64>,
    /// SpatialVID's depth archive for the clip, when there is one.
    #[serde(default)]
    pub depth_archive: Option<PathBuf>,
}

impl IngestRecord {
    /// Time of each annotated frame in seconds (`source frame / fps`); the annotated position
    /// (the reference's convention, `preprocess.md` §2.2) when the frame rate is unknown.
    pub fn seconds(&self) -> Vec<f64> {
        match self.fps {
            Some(fps) if fps > 0.0 => self
                .source_indices
                .iter()
                .map(|&i| i as f64 / fps)
                .collect(),
            _ => (0..self.source_indices.len()).map(|k| k as f64).collect(),
        }
    }
}

/// Options of the ingest stage.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    /// Clips with more annotated frames are dropped (the reference's `MAX_FRAMES = 50`).
    pub max_frames: usize,
}

fn read_intrinsics(path: &Path, frames: usize) -> Result<Option<Vec<[f64; 4]>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let a = crate::arrays::read_f32(&read_file(path)?, path)?;
    match a.shape.as_slice() {
        [n, 4] if *n == frames => Ok(Some(a.data.chunks_exact(4).map(|c| std::array::from_fn(|j| c[j] as f64)).collect())),
        // Some releases store one row for the whole clip.
        [4] | [1, 4] => Ok(Some(vec![std::array::from_fn(|j| a.data[j] as f64); frames])),
        s => Err(DataError::inconsistent(path, format!("shape {s:?}, expected [{frames}, 4] (one normalised fx, fy, cx, cy row per annotated frame)"))),
    }
}

/// Reads and checks the annotations of `clip` (no video decoding): the cheap half of ingest.
pub fn read_annotations(
    clip: &ClipRef,
    meta: ClipMetadata,
    opts: &IngestOptions,
) -> Result<(IngestRecord, Vec<(usize, usize)>)> {
    let ann = &clip.annotations;
    if !ann.is_dir() {
        return Err(DataError::Missing { path: ann.clone() });
    }
    if !clip.video.is_file() {
        return Err(DataError::Missing {
            path: clip.video.clone(),
        });
    }
    let indexes = parse_indexes(&ann.join("indexes.txt"))?;
    if indexes.len() > opts.max_frames {
        return Err(DataError::Skipped(format!(
            "{} annotated frames, more than --max-frames {}",
            indexes.len(),
            opts.max_frames
        )));
    }
    let n = indexes.len();
    if n < 2 {
        return Err(DataError::malformed(
            ann.join("indexes.txt"),
            "needs at least 2 annotated frames",
        ));
    }
    let poses_path = ann.join("poses.npy");
    let poses = fourd_world::npy::read_poses_npy(&read_file(&poses_path)?).ok_or_else(|| {
        DataError::malformed(
            &poses_path,
            "expected a float32/float64 [N, 7] array of tx, ty, tz, qx, qy, qz, qw rows",
        )
    })?;
    if poses.len() != n {
        return Err(DataError::inconsistent(
            &poses_path,
            format!("{} pose rows but indexes.txt lists {n} frames", poses.len()),
        ));
    }
    if let Some(i) = poses.iter().position(|r| {
        r.iter().any(|v| !v.is_finite()) || r[3..].iter().map(|v| v * v).sum::<f64>() < 1e-12
    }) {
        return Err(DataError::malformed(
            &poses_path,
            format!("row {i} has a non-finite value or a zero quaternion"),
        ));
    }
    let instructions_path = ann.join("instructions.json");
    let instructions = if instructions_path.is_file() {
        Some(parse_instructions(&instructions_path, n)?)
    } else {
        None
    };
    let caption_path = ann.join("caption.json");
    let scene_summary = if caption_path.is_file() {
        let v: serde_json::Value = crate::fsio::read_json(&caption_path)?;
        v.get("SceneSummary")
            .and_then(|s| s.as_str())
            .map(str::to_string)
    } else {
        None
    };
    let record = IngestRecord {
        key: clip.key(),
        group: clip.group.clone(),
        clip: clip.clip.clone(),
        video: clip.video.clone(),
        annotations: ann.clone(),
        frames: Vec::new(),
        source_indices: indexes.iter().map(|x| x.1).collect(),
        width: 0,
        height: 0,
        poses,
        intrinsics: read_intrinsics(&ann.join("intrinsics.npy"), n)?,
        instructions,
        scene_summary,
        move_dist: meta.move_dist,
        fps: meta.fps,
        depth_archive: clip
            .depth_archive
            .is_file()
            .then(|| clip.depth_archive.clone()),
    };
    Ok((record, indexes))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The frame rate to ask `fourd_video::decode_video` for so that it keeps a superset of
/// `wanted` (its sampling rule is `fourd_video::sample_indices`, checked here exactly): every
/// `g`-th frame when all wanted numbers are multiples of `g` (SpatialVID annotates every 6th
/// frame of a 30 fps video, for example), else every frame (`0.0`).
fn covering_fps(info: &fourd_video::VideoInfo, wanted: &[usize]) -> f64 {
    let g = wanted.iter().fold(0, |a, &b| gcd(a, b));
    if g >= 2 && info.fps.is_finite() && info.fps > 0.0 {
        let base = info.fps / g as f64;
        for fps in [base, base * (1.0 + 1e-9), base * (1.0 - 1e-9)] {
            let kept = fourd_video::sample_indices(info.frames, info.fps, fps, 0);
            if wanted.iter().all(|w| kept.binary_search(w).is_ok()) {
                return fps;
            }
        }
    }
    0.0
}

/// Decodes the annotated frames of `video` (source frame numbers `wanted`, any order).
///
/// fourd-video decodes front to back once and keeps the frames its sampling rule picks; the
/// rule is aimed at every `g`-th frame when the wanted numbers share a divisor `g` (see
/// `covering_fps`), otherwise every frame is kept, at full size, until the wanted ones are
/// picked out. The latter holds a whole clip in memory: fine for SpatialVID's 3-15 s clips,
/// heavy for long videos with irregular annotation (a decode-by-index in fourd-video would fix it).
pub fn extract_frames(video: &Path, wanted: &[usize]) -> Result<Vec<image::RgbImage>> {
    Ok(extract_frames_with_rate(video, wanted)?.0)
}

/// [`extract_frames`], and the video's frame rate.
fn extract_frames_with_rate(video: &Path, wanted: &[usize]) -> Result<(Vec<image::RgbImage>, f64)> {
    let info = fourd_video::probe(video)?;
    let opts = fourd_video::SamplingOptions {
        fps: covering_fps(&info, wanted),
        max_frames: 0,
        max_pixels: usize::MAX,
        factor: 1,
    };
    let decoded = fourd_video::decode_video(video, &opts)?;
    let by_index: BTreeMap<usize, usize> = decoded
        .indices
        .iter()
        .enumerate()
        .map(|(pos, &k)| (k, pos))
        .collect();
    let frames = wanted
        .iter()
        .map(|k| {
            by_index
                .get(k)
                .map(|&pos| decoded.frames[pos].clone())
                .ok_or_else(|| {
                    DataError::inconsistent(
                        video,
                        format!(
                            "indexes.txt asks for frame {k} but the video has {} frames",
                            info.frames
                        ),
                    )
                })
        })
        .collect::<Result<_>>()?;
    Ok((frames, info.fps))
}

/// The whole ingest of one clip: annotations, frames written as PNG under
/// `<out>/clips/<group>/<clip>/frames/` (atomically, as one folder), and the record.
pub fn ingest_clip(
    clip: &ClipRef,
    meta: ClipMetadata,
    opts: &IngestOptions,
    out_root: &Path,
) -> Result<IngestRecord> {
    let (mut record, indexes) = read_annotations(clip, meta, opts)?;
    let (frames, video_fps) = extract_frames_with_rate(&clip.video, &record.source_indices)?;
    if record.fps.is_none() && video_fps.is_finite() && video_fps > 0.0 {
        record.fps = Some(video_fps);
    }
    let (w, h) = frames[0].dimensions();
    let rel_dir = crate::pipeline::clip_dir_rel(&record.key).join("frames");
    let mut files = Vec::with_capacity(frames.len());
    for ((seq, _), img) in indexes.iter().zip(&frames) {
        let name = format!("frame_{seq:04}.png");
        files.push((name.clone(), crate::fsio::png_bytes(img, &clip.video)?));
        record
            .frames
            .push(rel_dir.join(&name).to_string_lossy().into_owned());
    }
    crate::fsio::write_dir_atomic(&out_root.join(&rel_dir), &files)?;
    record.width = w;
    record.height = h;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_instructions_errors() {
        assert_eq!(split_csv_line(r#"a,"b, c",d"#), vec!["a", "b, c", "d"]);
        assert_eq!(
            split_csv_line(r#""say ""hi""",2"#),
            vec![r#"say "hi""#, "2"]
        );
        let dir = std::env::temp_dir().join(format!("fourd-data-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("instructions.json");
        std::fs::write(&p, r#"{"0->3": ["Pan Left", "Roll CW"], "3->5": ["Stay"]}"#).unwrap();
        let s = parse_instructions(&p, 6).unwrap();
        assert_eq!(s[0].labels, vec!["Pan Left", "Roll Clockwise"]);
        assert!(parse_instructions(&p, 5)
            .unwrap_err()
            .to_string()
            .contains("3->5"));
        std::fs::write(&p, r#"{"0->3": ["Pan Sideways"]}"#).unwrap();
        assert!(parse_instructions(&p, 6)
            .unwrap_err()
            .to_string()
            .contains("Pan Sideways"));
        std::fs::write(&p, r#"["0->3"]"#).unwrap();
        assert!(parse_instructions(&p, 6)
            .unwrap_err()
            .to_string()
            .contains("instructions.json"));
        let ix = dir.join("indexes.txt");
        std::fs::write(&ix, "# header\n0 0\n1 6\nextra line here\n").unwrap();
        assert_eq!(parse_indexes(&ix).unwrap(), vec![(0, 0), (1, 6)]);
        std::fs::write(&ix, "0 x\n").unwrap();
        // Frames by number, from a video whose annotation takes every third frame, and from an
        // irregular list.
        let shades: Vec<image::RgbImage> = (0..12u8)
            .map(|i| image::RgbImage::from_pixel(16, 16, image::Rgb([i * 20, 100, 255 - i * 20])))
            .collect();
        let video = dir.join("v.mp4");
        fourd_video::encode_video(&video, &shades, 6).unwrap();
        let info = fourd_video::probe(&video).unwrap();
        assert!(covering_fps(&info, &[0, 3, 6, 9]) > 0.0);
        assert_eq!(covering_fps(&info, &[0, 5, 7]), 0.0);
        for wanted in [vec![0, 3, 6, 9], vec![0, 5, 7], vec![11, 2]] {
            let got = extract_frames(&video, &wanted).unwrap();
            for (img, &k) in got.iter().zip(&wanted) {
                let red = img.get_pixel(8, 8).0[0] as i32;
                assert!((red - k as i32 * 20).abs() <= 6, "frame {k}: red {red}");
            }
        }
        let err = extract_frames(&video, &[0, 40]).unwrap_err().to_string();
        assert!(err.contains("frame 40") && err.contains("v.mp4"), "{err}");
        assert!(parse_indexes(&ix).is_err());
    }
}
