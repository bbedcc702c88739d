//! Stage 2, label: camera labels, objects, geometric object motion and helper imagery of one
//! ingested clip, written as `labels.json` plus an `overlays/` folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::arrays::{read_f32, read_file};
use crate::camera_labels::{camera_report, parse_labels, CameraReport, CameraRule};
use crate::error::{DataError, Result};
use crate::imagery::{landmark_masks, overlay, spread_keyframes};
use crate::ingest::IngestRecord;
use crate::masks::{Mask, SegmentInput, Segmenter, SegmenterChoice, TrackedObject};
use crate::object_motion::{
    measure_object, ClipGeometry, DirectionJudge, MotionThresholds, ObjectMeasurement, Pinhole,
    SecondOpinion,
};

/// Imagery of one object or camera segment: keyframes and their overlay files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imagery {
    pub frames: Vec<usize>,
    /// Relative to the output folder, one per frame.
    pub paths: Vec<String>,
}

/// The static landmark of a camera segment and what it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraImagery {
    pub start: usize,
    pub end: usize,
    pub imagery: Imagery,
    /// Landmark centroid shift (pixels, last keyframe − first) and area ratio.
    pub landmark_shift_px: [f64; 2],
    pub landmark_area_ratio: f64,
    /// Relative pose over the segment: yaw, pitch, roll (degrees) and translation (camera `start`
    /// axes, pose units) from `fourd_world::relative_motion`.
    pub rotation_deg: [f64; 3],
    pub translation: [f64; 3],
}

/// `labels.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    pub key: String,
    pub config_fingerprint: String,
    pub segmenter: String,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub has_depth: bool,
    pub camera: CameraReport,
    pub camera_imagery: Vec<CameraImagery>,
    pub objects: Vec<ObjectMeasurement>,
    /// Track id -> overlays of that object.
    pub object_imagery: BTreeMap<u32, Imagery>,
    /// Non-fatal problems (ignored depth, ...).
    pub warnings: Vec<String>,
}

/// Options of the label stage.
#[derive(Clone)]
pub struct LabelOptions {
    pub segmenter: SegmenterChoice,
    pub camera_rule: CameraRule,
    pub motion: MotionThresholds,
    /// Most overlays per object (the reference keeps 2-8; first and last always included).
    pub object_keyframes: usize,
    /// Optional second opinion on object directions, recorded in `labels.json`.
    pub judge: Option<std::sync::Arc<dyn DirectionJudge>>,
}

impl LabelOptions {
    pub fn fingerprint(&self) -> String {
        format!(
            "seg={};rule={};kf={};judge={};motion={}",
            self.segmenter.describe(),
            self.camera_rule.as_str(),
            self.object_keyframes,
            self.judge.as_ref().map_or("none".into(), |j| j.name()),
            serde_json::to_string(&self.motion).unwrap_or_default()
        )
    }
}

pub(crate) fn load_frames(record: &IngestRecord, out_root: &Path) -> Result<Vec<RgbImage>> {
    record
        .frames
        .iter()
        .map(|f| {
            let p = out_root.join(f);
            image::open(&p)
                .map(|i| i.to_rgb8())
                .map_err(|e| DataError::Image {
                    path: p.clone(),
                    msg: e.to_string(),
                })
        })
        .collect()
}

/// The clip's depth at video resolution, `[N, H, W]` row-major: our `depth.npy` (metres), else
/// SpatialVID's depth archive (inverse depth on the tracker's grid, non-metric, invalid values
/// NaN; [`fourd_world::depth_archive`]). Depth is optional: a file that does not fit the clip
/// is ignored with a warning, and the clip is measured in image space.
fn load_depth(record: &IngestRecord, warnings: &mut Vec<String>) -> Result<Option<Vec<f32>>> {
    let path = record.annotations.join("depth.npy");
    if path.is_file() {
        return load_depth_npy(record, &path, warnings);
    }
    match &record.depth_archive {
        Some(archive) => load_depth_archive(record, archive, warnings),
        None => Ok(None),
    }
}

fn load_depth_npy(
    record: &IngestRecord,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<f32>>> {
    let a = read_f32(&read_file(path)?, path)?;
    let want = [
        record.frames.len(),
        record.height as usize,
        record.width as usize,
    ];
    if a.shape != want {
        warnings.push(format!(
            "{}: shape {:?}, expected {:?}; depth ignored",
            path.display(),
            a.shape,
            want
        ));
        return Ok(None);
    }
    Ok(Some(a.data))
}

fn load_depth_archive(
    record: &IngestRecord,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<f32>>> {
    use fourd_world::depth_archive::{depth_at_video_size, read, TrackingGrid};
    let frames = match read(path) {
        Ok(f) => f,
        Err(e) => {
            warnings.push(format!("{e}; depth ignored"));
            return Ok(None);
        }
    };
    if frames.len() != record.frames.len() {
        warnings.push(format!(
            "{}: {} depth frames, indexes.txt lists {}; depth ignored",
            path.display(),
            frames.len(),
            record.frames.len()
        ));
        return Ok(None);
    }
    let (w, h) = (record.width as usize, record.height as usize);
    let mut grid = TrackingGrid::for_video(w, h);
    let size = (frames[0].width, frames[0].height);
    if size != grid.size {
        // Not the tracker's grid for this video (another annotation setup): scale the archive
        // over the whole frame, without the crop.
        warnings.push(format!(
            "{}: depth is {}x{}, the tracker's grid for {w}x{h} is {}x{}; scaled to the frame",
            path.display(),
            size.0,
            size.1,
            grid.size.0,
            grid.size.1
        ));
        grid = TrackingGrid {
            video: (w, h),
            scaled: size,
            size,
        };
    }
    let map = grid.video_to_grid();
    Ok(Some(
        frames
            .iter()
            .flat_map(|f| depth_at_video_size(f, &map))
            .collect(),
    ))
}

/// Labels one clip and writes its overlays (atomically, as one folder) under
/// `<out>/clips/<key>/overlays/`.
pub fn label_clip(
    record: &IngestRecord,
    opts: &LabelOptions,
    out_root: &Path,
) -> Result<LabelRecord> {
    let frames = load_frames(record, out_root)?;
    let n = frames.len();
    let (w, h) = (record.width, record.height);
    let mut warnings = Vec::new();
    let camera = camera_report(
        &record.poses,
        record.instructions.as_deref(),
        record.move_dist,
        opts.camera_rule,
    )?;
    let segmenter = opts.segmenter.for_clip(record);
    let tracks = segment_tracks(segmenter.as_ref(), record, &frames)?;
    let depth = load_depth(record, &mut warnings)?;
    let pinhole = record
        .intrinsics
        .as_ref()
        .map(|k| Pinhole::from_normalised(&k[0], w, h));
    if depth.is_some() && pinhole.is_none() {
        warnings.push("depth without intrinsics.npy: depth ignored".into());
    }
    let still = camera_still(&camera, n)?;
    let geo = ClipGeometry {
        poses: &record.poses,
        pinhole,
        depth: if pinhole.is_some() {
            depth.as_deref()
        } else {
            None
        },
        width: w,
        height: h,
        camera_still: &still,
    };
    let mut objects: Vec<ObjectMeasurement> = tracks
        .iter()
        .map(|t| measure_object(t, &geo, &opts.motion))
        .collect();

    let mut overlays = Overlays::new(crate::pipeline::clip_dir_rel(&record.key).join("overlays"));
    let object_imagery = object_imagery(&tracks, &mut objects, &frames, opts, &mut overlays)?;
    let camera_imagery = match (geo.depth, pinhole) {
        (Some(d), Some(k)) => camera_imagery(
            record,
            &camera,
            &frames,
            &tracks,
            (d, &k),
            &mut overlays,
            &mut warnings,
        )?,
        _ => Vec::new(),
    };
    crate::fsio::write_dir_atomic(&out_root.join(&overlays.dir), &overlays.files)?;
    Ok(LabelRecord {
        key: record.key.clone(),
        config_fingerprint: opts.fingerprint(),
        segmenter: segmenter.name(),
        frames: n,
        width: w,
        height: h,
        has_depth: geo.depth.is_some(),
        camera,
        camera_imagery,
        objects,
        object_imagery,
        warnings,
    })
}

/// Runs the segmenter on the clip and checks its output: one mask slot per frame, every mask
/// the size of the frames (a backend that breaks this fails the clip, naming itself).
fn segment_tracks(
    segmenter: &dyn Segmenter,
    record: &IngestRecord,
    frames: &[RgbImage],
) -> Result<Vec<TrackedObject>> {
    let (n, w, h) = (frames.len(), record.width, record.height);
    let tracks = segmenter.segment(&SegmentInput { record, frames })?;
    for t in &tracks {
        if t.masks.len() != n {
            return Err(DataError::Segmenter {
                backend: segmenter.name(),
                msg: format!(
                    "track {} has {} masks for {n} frames",
                    t.track_id,
                    t.masks.len()
                ),
            });
        }
        if let Some(m) = t
            .masks
            .iter()
            .flatten()
            .find(|m| (m.width, m.height) != (w, h))
        {
            return Err(DataError::Segmenter {
                backend: segmenter.name(),
                msg: format!("mask of {}x{} for {w}x{h} frames", m.width, m.height),
            });
        }
    }
    Ok(tracks)
}

/// Per unit step (`n - 1` of them): is the camera still, i.e. is its segment labelled `Stay`
/// alone? Image-space object measurement is only valid there.
fn camera_still(camera: &CameraReport, n: usize) -> Result<Vec<bool>> {
    let mut still = vec![false; n - 1];
    for s in &camera.segments {
        let labels = parse_labels(&s.labels)?;
        let is_still = labels == [fourd_world::CameraLabel::Stay];
        for x in still.iter_mut().take(s.end).skip(s.start) {
            *x = is_still;
        }
    }
    Ok(still)
}

/// The overlay images of one clip, encoded in memory and written together at the end (one
/// atomic folder), so a clip's `overlays/` is either complete or absent.
struct Overlays {
    /// `clips/<key>/overlays`, relative to the output folder.
    dir: PathBuf,
    /// File name and PNG bytes.
    files: Vec<(String, Vec<u8>)>,
}

impl Overlays {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Vec::new(),
        }
    }

    /// Encodes `img` as `name`; returns its path relative to the output folder.
    fn add(&mut self, name: String, img: RgbImage) -> Result<String> {
        let rel = self.dir.join(&name);
        self.files.push((name, crate::fsio::png_bytes(&img, &rel)?));
        Ok(rel.to_string_lossy().into_owned())
    }
}

/// Overlays of every labelled object at keyframes spread over its measured span, and the
/// judge's second opinion on its direction when there is a judge.
fn object_imagery(
    tracks: &[TrackedObject],
    objects: &mut [ObjectMeasurement],
    frames: &[RgbImage],
    opts: &LabelOptions,
    overlays: &mut Overlays,
) -> Result<BTreeMap<u32, Imagery>> {
    let mut object_imagery = BTreeMap::new();
    for (t, m) in tracks.iter().zip(objects.iter_mut()) {
        if m.direction.is_none() {
            continue;
        }
        let visible: Vec<usize> = m
            .observations
            .iter()
            .map(|o| o.frame)
            .filter(|f| (m.span[0]..=m.span[1]).contains(f))
            .collect();
        let keys = spread_keyframes(&visible, opts.object_keyframes.max(2));
        let mut paths = Vec::new();
        let mut images = Vec::new();
        for &f in &keys {
            let mask = t.masks[f].as_ref().expect("visible frames have masks");
            let img = overlay(&frames[f], mask);
            images.push(img.clone());
            paths.push(overlays.add(format!("obj{}_f{f:04}.png", t.track_id), img)?);
        }
        if let Some(j) = &opts.judge {
            let verdict = j.direction(&images, &keys, &m.name);
            m.second_opinion = Some(SecondOpinion {
                judge: j.name(),
                direction: verdict.as_ref().ok().map(|d| d.as_str().to_string()),
                error: verdict.err().map(|e| e.to_string()),
            });
        }
        object_imagery.insert(
            t.track_id,
            Imagery {
                frames: keys,
                paths,
            },
        );
    }
    Ok(object_imagery)
}

/// Per camera segment (needs depth and intrinsics): overlays of a static landmark at a few
/// keyframes, with its image shift and the segment's relative pose. A segment where no
/// landmark stays visible gets a warning and no imagery.
fn camera_imagery(
    record: &IngestRecord,
    camera: &CameraReport,
    frames: &[RgbImage],
    tracks: &[TrackedObject],
    (depth, k): (&[f32], &Pinhole),
    overlays: &mut Overlays,
    warnings: &mut Vec<String>,
) -> Result<Vec<CameraImagery>> {
    let dynamic = dynamic_masks(tracks, frames.len(), record.width, record.height);
    let mut camera_imagery = Vec::new();
    for s in &camera.segments {
        let span: Vec<usize> = (s.start..=s.end).collect();
        let count = 2 + ((s.end - s.start) / 4).min(2);
        let keys = spread_keyframes(&span, count);
        let Some(masks) = landmark_masks(
            &frames[s.start],
            s.start,
            &keys,
            depth,
            &record.poses,
            k,
            &dynamic,
        ) else {
            warnings.push(format!(
                "segment {}->{}: no static landmark stays visible; no imagery",
                s.start, s.end
            ));
            continue;
        };
        let mut paths = Vec::new();
        for (&f, m) in keys.iter().zip(&masks) {
            paths.push(overlays.add(
                format!("cam_{}_{}_f{f:04}.png", s.start, s.end),
                overlay(&frames[f], m),
            )?);
        }
        let (c0, c1) = (
            masks[0].centroid().unwrap_or_default(),
            masks[masks.len() - 1].centroid().unwrap_or_default(),
        );
        let rel = fourd_world::relative_motion(&record.poses[s.start], &record.poses[s.end]);
        camera_imagery.push(CameraImagery {
            start: s.start,
            end: s.end,
            imagery: Imagery {
                frames: keys,
                paths,
            },
            landmark_shift_px: [c1.0 - c0.0, c1.1 - c0.1],
            landmark_area_ratio: masks[masks.len() - 1].area() as f64
                / masks[0].area().max(1) as f64,
            rotation_deg: [rel.yaw_deg, rel.pitch_deg, rel.roll_deg],
            translation: rel.translation.to_array(),
        });
    }
    Ok(camera_imagery)
}

/// Per frame, the union of every track's mask: pixels a landmark must avoid.
fn dynamic_masks(tracks: &[TrackedObject], n: usize, w: u32, h: u32) -> Vec<Option<Mask>> {
    (0..n)
        .map(|f| {
            let mut bits = vec![false; (w * h) as usize];
            for t in tracks {
                if let Some(m) = &t.masks[f] {
                    for (b, v) in bits.iter_mut().zip(&m.bits) {
                        *b |= *v;
                    }
                }
            }
            Some(Mask::new(w, h, bits))
        })
        .collect()
}
