//! Writes a rendered clip in the SpatialVID layout (`preprocess.md` §2.1), plus exact ground truth.
//!
//! For `root`, `group`, `clip_id`:
//!
//! | file | content |
//! |---|---|
//! | `videos/<group>/<clip>.mp4` | the RGB frames, H.264 (libx264) or MPEG-4 Part 2, see [`fourd_video::encode_video`] |
//! | `annotations/<group>/<clip>/indexes.txt` | `seq frame_idx` per line: `i i` for every frame (every frame is annotated) |
//! | `.../poses.npy` | float32 `[N, 7]`: world-to-camera `[tx, ty, tz, qx, qy, qz, qw]` (SciPy quaternion order) |
//! | `.../intrinsics.npy` | float32 `[N, 4]`: `[fx/W, fy/H, cx/W, cy/H]` per frame (normalised, as upstream); pixel centres at integer coordinates, so `cx = (W-1)/2` before normalising |
//! | `.../instructions.json` | `{"a->b": [labels]}` from the SpatialVID rule ([`crate::label_poses`]) run on the float32 poses as written, with [`INSTRUCTION_RULE`] (no smoothing, every frame pair), consecutive equal lists merged; SpatialVID spelling (`Roll CW`/`Roll CCW`); keys in frame order |
//! | `.../caption.json` | `{"SceneSummary": ..., "CameraMotion": ...}` (the pipeline reads only `SceneSummary`) |
//! | `.../dyn_masks.npz` | SpatialVID's sparse layout (see below): per frame `f_{i}_data`, `f_{i}_indices`, `f_{i}_indptr` (CSR rows of the uint8 mask, 1 where a moving, non-Stationary object is visible) and `shape` = `(H, W)`; read back with [`crate::npy::read_dyn_masks_npz`] |
//! | `.../depth.npy` | float32 `[N, H, W]`: depth in metres along the optical axis (`inf` where nothing was hit) |
//! | `.../instance_ids.npy` | uint16 `[N, H, W]`: per-object masks as one id map; object `k`'s mask is `ids == k`, 0 = background; ids are listed in `truth.json` |
//! | `.../truth.json` | every generated label: camera labels per segment, per object id, name, direction (net displacement), speed pattern, `distance_change` (net, first vs last frame), `distance` (over all frames: the net label or a compound `First Getting Closer, Then Farther from Camera` / `First Getting Farther, Then Closer to Camera`), first-frame bbox |
//!
//! Every annotation file is a pure function of the clip (no timestamps, fixed key order), so the
//! same seed gives byte-identical annotations. The returned [`ClipRow`] is the clip's row of the
//! metadata CSV ([`ClipRow::HEADER`]).
//!
//! # Checked against the real SpatialVID layout
//!
//! Sources (public repository `NJU-3DV/SpatialVID`, read from the mirror `Stars1233/SpatialVID`,
//! and scripts that read the released `SpatialVID_HQ_metadata.csv`):
//!
//! - **`dyn_masks.npz`** is *not* one dense array: `camera_pose_annotation/dynamic_mask/
//!   inference_batch.py` (`compress`) saves each frame's mask as a SciPy `csr_matrix` under the
//!   keys `f_{i}_data`, `f_{i}_indices`, `f_{i}_indptr`, plus `shape` once, with
//!   `np.savez_compressed`; `utils/expand_npz.py` and `utils/evaluation.py` (`expand`) read it
//!   back with `num_frames = (len(npz) - 1) // 3`. We write the same keys and dtypes; members
//!   are stored rather than deflated (NumPy reads both; this keeps the crate free of a zip
//!   dependency and the bytes deterministic).
//! - **Metadata CSV columns** (`utils/evaluation.py` adds `moveDist`, `distLevel`, `rotAngle`,
//!   `trajTurns`, `dynamicRatio`; third-party readers of the released CSV use `id`,
//!   `group id` (an integer, folder `group_{:04d}`), `video path` (`videos/group_XXXX/<id>.mp4`),
//!   `annotation path` (`annotations/group_XXXX/<id>`), `num frames` (video frames), `fps`,
//!   `resolution` (`"WxH"`), plus scores such as `aesthetic score`, `luminance score`,
//!   `motion score`, `ocr score` that have no synthetic meaning and are not written). An earlier
//!   version of this module wrote `width`/`height` instead of `resolution`, no `group id` or
//!   `distLevel`, camera-centre travel as `moveDist`, `rotAngle` in degrees and a dense
//!   `dyn_masks` array; it now writes the real names with upstream's definitions:
//!   - `moveDist` = Σ ‖t_{i+1} − t_i‖ over the **translation part of the world-to-camera rows**
//!     of `poses.npy` (upstream `move_distance` uses `poses[:, :3]` as written; this is not the
//!     camera-centre travel [`crate::move_dist`] computes, which differs when the camera turns);
//!   - `distLevel` = 0..=4 from `moveDist` with upstream's thresholds 0.08 / 0.28 / 0.92 / 2.41;
//!   - `rotAngle` = Σ of the relative rotation angles between consecutive frames in **radians**
//!     (upstream `2·acos(w)` of `q_{i+1} q_i⁻¹`, taken here as `2·acos(|w|)`: our rows fix
//!     `qw >= 0`, and for a camera looking along +Z the world-to-camera `qw` is near 0, so
//!     consecutive rows can flip sign and the formula without `|w|` would add 2π per flip;
//!     checked with NumPy on a 100-clip run: equal to 1e-6);
//!   - `dynamicRatio` = mean of the dynamic mask over **every 5th frame** (upstream
//!     `masks[::5]`);
//!   - `trajTurns` (upstream stores a Python tuple of peak angles and their count) is not
//!     written; `codec` is ours (the encoder that wrote the mp4).

use std::path::{Path, PathBuf};

use crate::camera::{CameraLabel, Intrinsics};
use crate::error::{Result, WorldError};
use crate::generate::ClipTruth;
use crate::motion::Direction;
use crate::npy::{dyn_masks_npz_bytes, npy_bytes};
use crate::scene::{Clip, Frame};
use crate::spatialvid::{label_poses, merge_instructions, RuleParams};

/// The rule behind `instructions.json`: SpatialVID's thresholds (τ_t = 0.02, τ_r = 0.5°) on every
/// consecutive frame pair without EMA smoothing, so segment boundaries are exact.
pub const INSTRUCTION_RULE: RuleParams = RuleParams {
    interval: 1,
    alpha: 1.0,
    tau_t: 0.02,
    tau_r_deg: 0.5,
};

/// Which files a written clip has.
///
/// * `Synth` (default): the table above, every video frame annotated, metadata in
///   `metadata.csv`.
/// * `Release`: the files exactly as SpatialVID releases them (`docs/spatialvid-release.md`), so
///   the synthetic world exercises the real readers: depth as `depths/<group>/<clip>.zip`
///   ([`crate::depth_archive`]: inverse depth on the tracker's grid, float16), no `depth.npy` and
///   no `instance_ids.npy` (objects then come from `dyn_masks.npz`, as on real data), every
///   [`annotation_interval`]-th video frame annotated with `indexes.txt` headed
///   `# total N indexes`, and the metadata in `data/train/SpatialVID_HQ_metadata.csv`. The
///   in-between video frames repeat the last annotated one (the world is rendered at annotated
///   frames only). `truth.json` is kept (ours, not SpatialVID's) so labels can be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    Synth,
    Release,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Synth => "synth",
            Layout::Release => "release",
        }
    }

    /// The metadata table, relative to the root.
    pub fn metadata_file(self) -> &'static str {
        match self {
            Layout::Synth => METADATA_FILES[0],
            Layout::Release => METADATA_FILES[2],
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = WorldError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "synth" => Ok(Layout::Synth),
            "release" => Ok(Layout::Release),
            _ => Err(WorldError::InvalidParameter(format!(
                "unknown layout {s:?} (expected synth or release)"
            ))),
        }
    }
}

/// Where a metadata table may be, relative to the root, in the order readers look: ours, the
/// old SpatialVID name, then the released ones (`utils/download_SpatialVID.py` l.42).
pub const METADATA_FILES: [&str; 4] = [
    "metadata.csv",
    "SpatialVID_metadata.csv",
    "data/train/SpatialVID_HQ_metadata.csv",
    "data/train/SpatialVID_metadata.csv",
];

/// SpatialVID annotates every `int(0.2 * fps)`-th video frame (`scripts/annotation.sh` runs
/// `utils/extract_frames.py --interval 0.2`, which sets `interval = int(0.2 * fps)`, l.60-64);
/// at least 1.
pub fn annotation_interval(fps: f64) -> usize {
    ((0.2 * fps) as usize).max(1)
}

/// One row of the metadata CSV (column names as in SpatialVID's released CSV; see the module
/// docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRow {
    /// Clip id (`id`).
    pub id: String,
    /// The `group id` column: the number of a `group_NNNN` folder, otherwise the folder name.
    pub group_id: String,
    /// `videos/<group>/<clip>.mp4`, relative to the root (`video path`).
    pub video_path: String,
    /// `annotations/<group>/<clip>`, relative to the root (`annotation path`).
    pub annotation_path: String,
    /// Video frames (`num frames`); every frame is annotated here.
    pub num_frames: usize,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    /// Upstream `moveDist`: travel of the world-to-camera translation rows ([`spatialvid_move_dist`]).
    pub move_dist: f64,
    /// Upstream `distLevel` ([`dist_level`]).
    pub dist_level: u8,
    /// Upstream `rotAngle`: sum of the rotation angles between consecutive frames, radians.
    pub rot_angle: f64,
    /// Upstream `dynamicRatio`: fraction of dynamic pixels over every 5th frame.
    pub dynamic_ratio: f64,
    /// The video encoder used.
    pub codec: String,
}

impl ClipRow {
    /// The CSV header line (no newline).
    pub const HEADER: &'static str = "id,group id,video path,annotation path,num frames,fps,resolution,moveDist,distLevel,rotAngle,dynamicRatio,codec";

    /// The row as a CSV line (no newline). Fields never contain commas or quotes (ids are checked).
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}x{},{:.6},{},{:.6},{:.6},{}",
            self.id,
            self.group_id,
            self.video_path,
            self.annotation_path,
            self.num_frames,
            self.fps,
            self.width,
            self.height,
            self.move_dist,
            self.dist_level,
            self.rot_angle,
            self.dynamic_ratio,
            self.codec
        )
    }
}

/// Upstream `moveDist` (`utils/evaluation.py`, `move_distance`): Σ ‖t_{i+1} − t_i‖ over the
/// translation part `[tx, ty, tz]` of the world-to-camera pose rows as written.
pub fn spatialvid_move_dist(rows: &[[f64; 7]]) -> f64 {
    rows.windows(2)
        .map(|p| {
            let d = [p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]];
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        })
        .sum()
}

/// Upstream `distLevel` from `moveDist`: 4 from 2.41, 3 from 0.92, 2 from 0.28, 1 from 0.08.
pub fn dist_level(move_dist: f64) -> u8 {
    match move_dist {
        d if d >= 2.41 => 4,
        d if d >= 0.92 => 3,
        d if d >= 0.28 => 2,
        d if d >= 0.08 => 1,
        _ => 0,
    }
}

/// The `group id` column for a group folder name: `group_0007` -> `7`, anything else verbatim.
fn group_id_of(group: &str) -> String {
    group
        .strip_prefix("group_")
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n.to_string())
        .unwrap_or_else(|| group.to_string())
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s == "."
        || s == ".."
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(WorldError::InvalidParameter(format!(
            "{what} {s:?} must be non-empty and use only ASCII letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn label_list(labels: &[CameraLabel], spatialvid: bool) -> String {
    let items: Vec<String> = labels
        .iter()
        .map(|l| {
            json_str(if spatialvid {
                l.spatialvid_str()
            } else {
                l.as_str()
            })
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Verb phrase for a camera label list, for the caption.
fn camera_phrase(labels: &[CameraLabel]) -> String {
    if labels.iter().all(|l| *l == CameraLabel::Stay) {
        return "stays still".into();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            let s = l.as_str().to_ascii_lowercase();
            match s.split_once(' ') {
                Some((verb, rest)) => format!("{verb}s {rest}"),
                None => s,
            }
        })
        .collect();
    parts.join(" and ")
}

/// `instructions.json` pairs from pose rows (the rule of [`INSTRUCTION_RULE`]).
pub fn instructions_from_poses(rows: &[[f64; 7]]) -> Result<Vec<(String, Vec<CameraLabel>)>> {
    Ok(merge_instructions(&label_poses(rows, &INSTRUCTION_RULE)?))
}

/// Renders `clip` and writes it under `root` in the SpatialVID layout (see the module docs).
/// Returns the metadata CSV row.
pub fn write_clip(
    root: &Path,
    group: &str,
    clip_id: &str,
    clip: &Clip,
    truth: &ClipTruth,
    fps: u32,
) -> Result<ClipRow> {
    write_clip_as(root, group, clip_id, clip, truth, fps, Layout::Synth)
}

/// [`write_clip`] in either [`Layout`].
pub fn write_clip_as(
    root: &Path,
    group: &str,
    clip_id: &str,
    clip: &Clip,
    truth: &ClipTruth,
    fps: u32,
    layout: Layout,
) -> Result<ClipRow> {
    check_name("group", group)?;
    check_name("clip id", clip_id)?;
    if fps == 0 {
        return Err(WorldError::InvalidParameter(
            "fps must be at least 1".into(),
        ));
    }
    let frames = clip.render_all()?;
    let n = frames.len();
    let k = clip.intrinsics;
    let video_rel = format!("videos/{group}/{clip_id}.mp4");
    let ann_rel = format!("annotations/{group}/{clip_id}");
    let video_path = root.join(&video_rel);
    let ann: PathBuf = root.join(&ann_rel);
    mkdir(video_path.parent().expect("has a parent"))?;
    mkdir(&ann)?;

    let interval = match layout {
        Layout::Synth => 1,
        Layout::Release => annotation_interval(fps as f64),
    };
    let video_frames = (n - 1) * interval + 1;
    let rgb: Vec<&Frame> = (0..video_frames).map(|j| &frames[j / interval]).collect();
    let codec = write_video(&video_path, &rgb, fps)?;
    let mut idx = match layout {
        Layout::Synth => String::new(),
        Layout::Release => format!("# total {n} indexes\n"),
    };
    idx.extend((0..n).map(|i| format!("{i} {}\n", i * interval)));
    write(&ann.join("indexes.txt"), idx.as_bytes())?;
    let rows = write_poses(&ann, clip, n)?;
    write_intrinsics(&ann, &k, n)?;
    write_instructions(&ann, &rows)?;
    write_caption(&ann, truth)?;
    let size = (k.width, k.height);
    let dynamic_ratio = write_masks(&ann, &frames, truth, size)?;
    match layout {
        Layout::Synth => write_depth_and_ids(&ann, &frames, size)?,
        Layout::Release => write_depth_archive(
            &crate::depth_archive::archive_path(root, group, clip_id),
            &frames,
            size,
        )?,
    }
    write_truth(&ann, truth, (n, k.width, k.height, fps))?;

    let move_dist = spatialvid_move_dist(&rows);
    Ok(ClipRow {
        id: clip_id.to_string(),
        group_id: group_id_of(group),
        video_path: video_rel,
        annotation_path: ann_rel,
        num_frames: video_frames,
        fps,
        width: k.width,
        height: k.height,
        move_dist,
        dist_level: dist_level(move_dist),
        rot_angle: rot_angle(&rows),
        dynamic_ratio,
        codec: codec.to_string(),
    })
}

/// Encodes the RGB frames as the clip's mp4; returns the encoder that wrote it.
fn write_video(path: &Path, frames: &[&Frame], fps: u32) -> Result<&'static str> {
    let rgb: Vec<image::RgbImage> = frames.iter().map(|f| f.rgb.clone()).collect();
    fourd_video::encode_video(path, &rgb, fps).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Writes `poses.npy` (float32, `[n, 7]`) and returns its rows as written, back in f64: everything
/// derived from the poses (instructions, `moveDist`, `rotAngle`) is computed from what a reader
/// of the file sees.
fn write_poses(ann: &Path, clip: &Clip, n: usize) -> Result<Vec<[f64; 7]>> {
    let poses32: Vec<f32> = clip
        .poses_w2c()
        .iter()
        .flat_map(|r| r.iter().map(|&v| v as f32))
        .collect();
    write(&ann.join("poses.npy"), &npy_bytes(&[n, 7], &poses32))?;
    Ok(poses32
        .chunks_exact(7)
        .map(|c| std::array::from_fn(|j| c[j] as f64))
        .collect())
}

/// Writes `intrinsics.npy`: normalised `[fx/W, fy/H, cx/W, cy/H]`, the same for all `n` frames.
fn write_intrinsics(ann: &Path, k: &Intrinsics, n: usize) -> Result<()> {
    let (w, h) = (k.width, k.height);
    let kn = [
        (k.fx / w as f64) as f32,
        (k.fy / h as f64) as f32,
        (k.cx / w as f64) as f32,
        (k.cy / h as f64) as f32,
    ];
    let intr: Vec<f32> = (0..n).flat_map(|_| kn).collect();
    write(&ann.join("intrinsics.npy"), &npy_bytes(&[n, 4], &intr))
}

/// Writes `instructions.json` from the pose rows as written ([`INSTRUCTION_RULE`]).
fn write_instructions(ann: &Path, rows: &[[f64; 7]]) -> Result<()> {
    let instr = instructions_from_poses(rows)?;
    let body: Vec<String> = instr
        .iter()
        .map(|(key, labels)| format!("  {}: {}", json_str(key), label_list(labels, true)))
        .collect();
    write(
        &ann.join("instructions.json"),
        format!("{{\n{}\n}}\n", body.join(",\n")).as_bytes(),
    )
}

/// Writes `caption.json`: a scene summary naming every object and its motion, and the camera
/// motion segment by segment.
fn write_caption(ann: &Path, truth: &ClipTruth) -> Result<()> {
    let objs: Vec<String> = truth
        .objects
        .iter()
        .map(|o| match o.direction {
            Direction::Stationary => format!("a {} that stays in place", o.name),
            d => format!(
                "a {} {} ({})",
                o.name,
                d.as_str().to_ascii_lowercase(),
                o.speed.as_str().to_ascii_lowercase()
            ),
        })
        .collect();
    let summary = format!(
        "A synthetic room with a textured floor and walls and {} object{}: {}.",
        objs.len(),
        if objs.len() == 1 { "" } else { "s" },
        objs.join("; ")
    );
    let cam: Vec<String> = truth
        .camera
        .iter()
        .map(|(a, b, l)| format!("from frame {a} to {b} the camera {}", camera_phrase(l)))
        .collect();
    let caption = serde_json::json!({
        "SceneSummary": summary,
        "CameraMotion": format!("{}.", cam.join("; then ")),
    });
    write(
        &ann.join("caption.json"),
        (serde_json::to_string_pretty(&caption).expect("json") + "\n").as_bytes(),
    )
}

/// Writes `dyn_masks.npz` (moving, non-Stationary objects), `instance_ids.npy` and
/// `depth.npy`; returns upstream's `dynamicRatio` of the dynamic masks.
fn write_masks(ann: &Path, frames: &[Frame], truth: &ClipTruth, (w, h): (u32, u32)) -> Result<f64> {
    let n = frames.len();
    let moving: Vec<u16> = truth
        .objects
        .iter()
        .filter(|o| o.direction != Direction::Stationary)
        .map(|o| o.id)
        .collect();
    let px = (w * h) as usize;
    let mut dyn_mask = Vec::with_capacity(n * px);
    for f in frames {
        dyn_mask.extend(f.ids.iter().map(|i| moving.contains(i) as u8));
    }
    // Upstream's dynamicRatio looks at every 5th frame only.
    let sampled: Vec<&[u8]> = dyn_mask.chunks_exact(px.max(1)).step_by(5).collect();
    let dyn_count: usize = sampled
        .iter()
        .map(|f| f.iter().filter(|&&m| m != 0).count())
        .sum();
    let sampled_px = sampled.len() * px;
    write(
        &ann.join("dyn_masks.npz"),
        &dyn_masks_npz_bytes(&dyn_mask, n, h as usize, w as usize),
    )?;
    Ok(dyn_count as f64 / sampled_px.max(1) as f64)
}

/// Our layout's `depth.npy` (metres) and `instance_ids.npy`.
fn write_depth_and_ids(ann: &Path, frames: &[Frame], (w, h): (u32, u32)) -> Result<()> {
    let shape = [frames.len(), h as usize, w as usize];
    let ids: Vec<u16> = frames.iter().flat_map(|f| f.ids.iter().copied()).collect();
    let depth: Vec<f32> = frames
        .iter()
        .flat_map(|f| f.depth.iter().copied())
        .collect();
    write(&ann.join("instance_ids.npy"), &npy_bytes(&shape, &ids))?;
    write(&ann.join("depth.npy"), &npy_bytes(&shape, &depth))
}

/// The released layout's depth: inverse depth on the tracker's grid (nearest video pixel),
/// `Z = 0` (invalid) where nothing was hit.
fn write_depth_archive(path: &Path, frames: &[Frame], (w, h): (u32, u32)) -> Result<()> {
    use crate::depth_archive::{InverseDepth, TrackingGrid};
    let grid = TrackingGrid::for_video(w as usize, h as usize);
    let (gw, gh) = grid.size;
    let map = grid.grid_to_video();
    let inverse: Vec<InverseDepth> = frames
        .iter()
        .map(|f| InverseDepth {
            width: gw,
            height: gh,
            z: map
                .iter()
                .map(|&i| {
                    let d = f.depth[i];
                    if d.is_finite() && d > 0.0 {
                        1.0 / d
                    } else {
                        0.0
                    }
                })
                .collect(),
        })
        .collect();
    crate::depth_archive::write(path, &inverse).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Writes `truth.json`: every generated label, and the rule behind `instructions.json`.
fn write_truth(
    ann: &Path,
    truth: &ClipTruth,
    (n, w, h, fps): (usize, u32, u32, u32),
) -> Result<()> {
    let truth_json = serde_json::json!({
        "frames": n,
        "width": w,
        "height": h,
        "fps": fps,
        "camera": truth.camera.iter().map(|(a, b, l)| serde_json::json!({
            "start": a, "end": b,
            "labels": l.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "objects": truth.objects.iter().map(|o| serde_json::json!({
            "id": o.id,
            "name": o.name,
            "direction": o.direction.as_str(),
            "speed": o.speed.as_str(),
            "distance_change": o.distance_change.as_str(),
            "distance": o.distance_profile.as_str(),
            "first_bbox": o.first_bbox,
        })).collect::<Vec<_>>(),
        "instruction_rule": {
            "interval": INSTRUCTION_RULE.interval,
            "alpha": INSTRUCTION_RULE.alpha,
            "tau_t": INSTRUCTION_RULE.tau_t,
            "tau_r_deg": INSTRUCTION_RULE.tau_r_deg,
        },
    });
    write(
        &ann.join("truth.json"),
        (serde_json::to_string_pretty(&truth_json).expect("json") + "\n").as_bytes(),
    )
}

/// Upstream `rotAngle`: the sum of the rotation angles between consecutive pose rows, radians.
fn rot_angle(rows: &[[f64; 7]]) -> f64 {
    rows.windows(2)
        .map(|p| {
            let qa = glam::DQuat::from_xyzw(p[0][3], p[0][4], p[0][5], p[0][6]).normalize();
            let qb = glam::DQuat::from_xyzw(p[1][3], p[1][4], p[1][5], p[1][6]).normalize();
            qa.angle_between(qb)
        })
        .sum()
}
