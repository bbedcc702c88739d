//! Stage 2c, object motion ground truth from geometry.
//!
//! Semantics follow `fourd_world::motion` (the labels of `truth.json`): a direction is the
//! object's own displacement (camera motion removed) expressed in the axes of the camera at
//! the first frame: Left/Right along its x axis, Up/Down along y (image down), the diagonals
//! along the normalised sums, Toward/Away along the line from the object to that camera's
//! centre; the distance label compares the object-to-camera distance at the first and last
//! frame; the speed pattern is the shape of the per-step speed profile.
//!
//! With depth and poses (the default whenever `depth.npy` exists): every mask pixel with a depth
//! is back-projected, the mean of those camera-frame points is the object's position `P_cam(t)`,
//! and `P_world(t) = Rᵀ (P_cam(t) − t)` with the frame's world-to-camera pose. Without depth the
//! measurement falls back to the image: centroid shift for lateral motion, mask area change for
//! toward/away and `1/sqrt(area)` as the distance proxy; because image motion then mixes object
//! and camera motion, objects are only measured where the camera labels are `Stay` over the
//! object's span.

use std::collections::BTreeMap;

use fourd_world::glam::{DMat3, DQuat, DVec3};
use fourd_world::{Direction, SpeedPattern};
use serde::{Deserialize, Serialize};

use crate::masks::{Mask, TrackedObject};

/// Thresholds of the measurement. Defaults are what the synthetic checks in `docs/data.md` use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionThresholds {
    /// A mask smaller than this fraction of the frame counts as "not visible" (reference: 0.1%).
    pub min_area_fraction: f64,
    /// An object must be visible in at least this fraction of the frames to be measured.
    pub min_visible_fraction: f64,
    /// 3-D: net displacement below this fraction of the object's first distance to the camera is
    /// `Stationary`.
    pub stationary_ratio: f64,
    /// Image only: centroid shift below this fraction of the image diagonal is `Stationary`.
    pub stationary_image_fraction: f64,
    /// Image only: an area ratio (last / first) above `1 + area_change` is `Toward`, below
    /// `1 / (1 + area_change)` `Away`.
    pub area_change: f64,
    /// Relative change of the camera distance for Closer/Farther (the 10% rule of `truth.json`).
    pub distance_change: f64,
    /// A frame whose mask size (area × distance², or area without depth) is below this fraction
    /// of the track's largest counts as occluded and is not used for the labels.
    pub occlusion_ratio: f64,
    /// `Moving at Varying Speeds` is chosen only when its fit error is below this fraction of the
    /// best fit among the other five patterns: the phase-free oscillation template can fit noise.
    pub varying_margin: f64,
    /// Speed patterns are only labelled when the object's image path (centroid travel plus the
    /// change of the square root of its area, in pixels) is at least this long; shorter paths are
    /// mostly quantisation noise.
    pub min_path_px: f64,
}

impl Default for MotionThresholds {
    fn default() -> Self {
        Self {
            min_area_fraction: 0.001,
            min_visible_fraction: 0.9,
            stationary_ratio: 0.05,
            stationary_image_fraction: 0.03,
            area_change: 0.25,
            distance_change: 0.1,
            occlusion_ratio: 0.6,
            varying_margin: 0.8,
            min_path_px: 4.0,
        }
    }
}

/// Camera geometry of a clip in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pinhole {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Pinhole {
    /// From a normalised `intrinsics.npy` row `[fx/W, fy/H, cx/W, cy/H]`.
    pub fn from_normalised(row: &[f64; 4], width: u32, height: u32) -> Self {
        Self {
            fx: row[0] * width as f64,
            fy: row[1] * height as f64,
            cx: row[2] * width as f64,
            cy: row[3] * height as f64,
        }
    }
    pub fn back_project(&self, u: f64, v: f64, z: f64) -> DVec3 {
        DVec3::new((u - self.cx) / self.fx * z, (v - self.cy) / self.fy * z, z)
    }
    pub fn project(&self, p: DVec3) -> Option<(f64, f64)> {
        (p.z > 1e-9).then(|| (self.fx * p.x / p.z + self.cx, self.fy * p.y / p.z + self.cy))
    }
}

/// World-to-camera rotation and translation of a `poses.npy` row.
pub fn w2c(row: &[f64; 7]) -> (DMat3, DVec3) {
    let q = DQuat::from_xyzw(row[3], row[4], row[5], row[6]).normalize();
    (DMat3::from_quat(q), DVec3::new(row[0], row[1], row[2]))
}

/// One frame's observation of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameObs {
    pub frame: usize,
    pub area: usize,
    pub centroid: [f64; 2],
    pub bbox: [u32; 4],
    pub touches_border: bool,
    /// Mean back-projected mask point, camera frame (metres, or the poses' unit).
    pub point_cam: Option<[f64; 3]>,
    pub point_world: Option<[f64; 3]>,
}

/// What was measured for one object, and the labels derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectMeasurement {
    pub track_id: u32,
    pub name: String,
    pub instance_id: Option<u16>,
    pub observations: Vec<FrameObs>,
    /// `depth+poses` or `image`.
    pub method: String,
    /// Why no labels were derived (too few visible frames, camera moves without depth, ...).
    pub skip_reason: Option<String>,
    /// First and last frame used.
    pub span: [usize; 2],
    pub direction: Option<String>,
    /// Reference distance labels, including the two compound ones.
    pub distance: Option<String>,
    /// Net change only (first vs last frame), the semantics of `truth.json`.
    pub net_distance: Option<String>,
    pub speed: Option<String>,
    /// Numbers the chains of thought quote.
    pub evidence: Evidence,
    /// A model's direction judgement, recorded next to the measured label (never used as the
    /// answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_opinion: Option<SecondOpinion>,
}

/// A second opinion on an object's direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondOpinion {
    /// Who judged (e.g. `chat:<url>:<model>`).
    pub judge: String,
    /// The judged label, when the reply named one of the 11 directions exactly.
    pub direction: Option<String>,
    /// Why there is no label (call failed, unparseable reply).
    pub error: Option<String>,
}

/// Why a [`DirectionJudge`] gave no direction; its message is the `error` of the
/// [`SecondOpinion`].
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// An overlay could not be encoded for the request.
    #[error(transparent)]
    Encode(#[from] crate::error::DataError),
    /// The chat request failed.
    #[error(transparent)]
    Api(#[from] fourd_api::ApiError),
    /// The reply is not exactly one of the 11 direction labels; `reply` is its first 80
    /// characters.
    #[error("reply {reply:?} is not one of the 11 directions")]
    NotADirection { reply: String },
}

/// Judges an object's direction from its overlays (e.g. a VLM through the chat API).
pub trait DirectionJudge: Send + Sync {
    fn name(&self) -> String;
    /// `overlays` are the object's keyframes with its mask drawn, at `frames` (seconds).
    fn direction(
        &self,
        overlays: &[image::RgbImage],
        frames: &[usize],
        object: &str,
    ) -> Result<Direction, JudgeError>;
}

/// The measured numbers behind the labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Net displacement in the first frame's camera axes (x right, y down, z forward).
    pub displacement_cam0: Option<[f64; 3]>,
    /// Distance to the camera at the first and last frame used.
    pub distance_first: Option<f64>,
    pub distance_last: Option<f64>,
    /// Mask centroid shift in pixels (last − first).
    pub centroid_shift_px: [f64; 2],
    /// Mask area ratio last / first.
    pub area_ratio: f64,
    /// Per-step speeds over the span (3-D units per frame, or pixels per frame).
    pub step_speeds: Vec<f64>,
    /// RMS error of each speed template against the normalised profile.
    pub speed_fit: BTreeMap<String, f64>,
    /// Whether camera motion was removed (3-D), or the camera was still (image).
    pub camera_compensated: bool,
}

/// Per-frame geometry an object measurement may use.
pub struct ClipGeometry<'a> {
    pub poses: &'a [[f64; 7]],
    pub pinhole: Option<Pinhole>,
    /// `[N, H, W]` depth along the optical axis (non-finite or ≤ 0: no depth).
    pub depth: Option<&'a [f32]>,
    pub width: u32,
    pub height: u32,
    /// Per unit step: is the camera still (all labels `Stay`)?
    pub camera_still: &'a [bool],
}

fn mean_point(mask: &Mask, depth: &[f32], k: &Pinhole) -> Option<DVec3> {
    let mut zs: Vec<f32> = mask
        .bits
        .iter()
        .zip(depth)
        .filter(|(m, z)| **m && z.is_finite() && **z > 0.0)
        .map(|(_, z)| *z)
        .collect();
    if zs.is_empty() {
        return None;
    }
    zs.sort_by(f32::total_cmp);
    let med = zs[zs.len() / 2] as f64;
    // Mask edges that bleed onto the background carry the background's depth: drop points far
    // from the median depth.
    let (mut sum, mut n) = (DVec3::ZERO, 0.0);
    for (i, (m, z)) in mask.bits.iter().zip(depth).enumerate() {
        let z = *z as f64;
        if *m && z.is_finite() && z > 0.0 && (z - med).abs() <= 0.3 * med {
            sum += k.back_project(
                (i as u32 % mask.width) as f64,
                (i as u32 / mask.width) as f64,
                z,
            );
            n += 1.0;
        }
    }
    (n > 0.0).then(|| sum / n)
}

/// The direction whose unit vector is closest to `d` (camera-0 axes), given the unit vector
/// `toward` from the object to the camera.
pub fn classify_direction(d: DVec3, toward: DVec3) -> Direction {
    let d = d.normalize_or_zero();
    let mut best = (f64::NEG_INFINITY, Direction::Stationary);
    for dir in Direction::ALL {
        let e = match dir {
            Direction::Stationary => continue,
            Direction::TowardCamera => toward,
            Direction::AwayFromCamera => -toward,
            lateral => {
                let (du, dv) = lateral.image_dir();
                DVec3::new(du, dv, 0.0)
            }
        };
        let c = d.dot(e);
        if c > best.0 {
            best = (c, dir);
        }
    }
    best.1
}

/// Image-plane direction of a pixel shift (8 sectors of 45°).
pub fn classify_image_direction(du: f64, dv: f64) -> Direction {
    let mut best = (f64::NEG_INFINITY, Direction::Stationary);
    let n = (du * du + dv * dv).sqrt().max(1e-12);
    for dir in Direction::ALL
        .iter()
        .copied()
        .filter(|d| d.image_dir() != (0.0, 0.0))
    {
        let (a, b) = dir.image_dir();
        let c = (du * a + dv * b) / n;
        if c > best.0 {
            best = (c, dir);
        }
    }
    best.1
}

/// Distance labels from a distance profile: the compound ones when the profile turns by more than
/// `rel` and comes back by more than `rel`, else the net change.
pub fn classify_distance(dists: &[f64], rel: f64) -> (String, String) {
    let (first, last) = (dists[0], dists[dists.len() - 1]);
    let net = fourd_world::DistanceChange::from_distances(first, last, rel)
        .as_str()
        .to_string();
    let interior = &dists[1..dists.len().saturating_sub(1).max(1)];
    let min = interior.iter().copied().fold(f64::INFINITY, f64::min);
    let max = interior.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let full = if min < first * (1.0 - rel) && last > min * (1.0 + rel) {
        DISTANCE_CLOSER_THEN_FARTHER.to_string()
    } else if max > first * (1.0 + rel) && last < max * (1.0 - rel) {
        DISTANCE_FARTHER_THEN_CLOSER.to_string()
    } else {
        net.clone()
    };
    (full, net)
}

/// The reference's compound distance labels.
pub const DISTANCE_CLOSER_THEN_FARTHER: &str = "First Getting Closer, Then Farther from Camera";
pub const DISTANCE_FARTHER_THEN_CLOSER: &str = "First Getting Farther, Then Closer to Camera";

/// The five distance labels (three net, two compound).
pub fn distance_labels() -> Vec<String> {
    use fourd_world::DistanceChange::*;
    let mut v: Vec<String> = [Closer, Farther, Same]
        .iter()
        .map(|d| d.as_str().to_string())
        .collect();
    v.push(DISTANCE_CLOSER_THEN_FARTHER.into());
    v.push(DISTANCE_FARTHER_THEN_CLOSER.into());
    v
}

/// Fits the six speed templates (`fourd_world::SpeedPattern::progress`, steps of `1/(n-1)`) to
/// the normalised speed profile; returns the label and every template's RMS error.
pub fn classify_speed(
    speeds: &[f64],
    varying_margin: f64,
) -> (SpeedPattern, BTreeMap<String, f64>) {
    let n = speeds.len();
    let mean = speeds.iter().sum::<f64>() / n.max(1) as f64;
    let norm: Vec<f64> = speeds.iter().map(|s| s / mean.max(1e-12)).collect();
    let template = |p: SpeedPattern, phase: f64| -> Vec<f64> {
        let steps: Vec<f64> = (0..n)
            .map(|t| {
                p.progress((t + 1) as f64 / n as f64, phase)
                    - p.progress(t as f64 / n as f64, phase)
            })
            .collect();
        let m = steps.iter().sum::<f64>() / n as f64;
        steps.iter().map(|s| s / m.max(1e-12)).collect()
    };
    let rms = |t: &[f64]| {
        (t.iter()
            .zip(&norm)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    };
    let mut errors = BTreeMap::new();
    for p in SpeedPattern::ALL {
        let e = if p == SpeedPattern::Varying {
            (0..24)
                .map(|k| rms(&template(p, k as f64 * std::f64::consts::TAU / 24.0)))
                .fold(f64::INFINITY, f64::min)
        } else {
            rms(&template(p, 0.0))
        };
        errors.insert(p.as_str().to_string(), e);
    }
    let best_simple = SpeedPattern::ALL
        .iter()
        .copied()
        .filter(|p| *p != SpeedPattern::Varying)
        .min_by(|a, b| errors[a.as_str()].total_cmp(&errors[b.as_str()]))
        .expect("five patterns");
    let pick =
        if errors[SpeedPattern::Varying.as_str()] < varying_margin * errors[best_simple.as_str()] {
            SpeedPattern::Varying
        } else {
            best_simple
        };
    (pick, errors)
}

/// Measures one tracked object: its per-frame observations, then (when enough of it is visible
/// and whole) its direction, distance and speed labels with the evidence behind them.
pub fn measure_object(
    obj: &TrackedObject,
    geo: &ClipGeometry,
    th: &MotionThresholds,
) -> ObjectMeasurement {
    let n = obj.masks.len();
    let mut out = unlabelled(obj);
    let observed = observe(obj, geo, th);
    let visible = observed.len();
    if visible < 2 || (visible as f64) < th.min_visible_fraction * n as f64 {
        out.skip_reason = Some(format!(
            "visible in {visible} of {n} frames (needs {:.0}%)",
            th.min_visible_fraction * 100.0
        ));
        out.observations = observed;
        return out;
    }
    let whole = whole_views(&observed, th);
    let clean = whole.len();
    if clean < 2 || ((whole[clean - 1].frame - whole[0].frame) as f64) < 0.5 * (n - 1) as f64 {
        out.skip_reason = Some(format!(
            "cut off by the image border or occluded in {} of {visible} visible frames",
            visible - clean
        ));
        out.observations = observed;
        return out;
    }
    // The speed profile needs every step: a partial one has a different shape.
    let complete = clean == visible;
    record_image_change(&mut out, &whole);
    let three_d = whole.iter().all(|o| o.point_world.is_some());
    let (dists, direction) = if three_d {
        direction_3d(&mut out, &whole, geo, th)
    } else {
        match direction_image(&mut out, &whole, geo, th) {
            Some(measured) => measured,
            None => {
                // Skipped (the camera moves): the record keeps the frames it looked at.
                out.observations = whole;
                return out;
            }
        }
    };
    record_labels(&mut out, &whole, &dists, direction, complete, three_d, th);
    out.observations = observed;
    out
}

/// A measurement of `obj` with no observations, labels or evidence yet.
fn unlabelled(obj: &TrackedObject) -> ObjectMeasurement {
    ObjectMeasurement {
        track_id: obj.track_id,
        name: obj.name.clone(),
        instance_id: obj.instance_id,
        observations: Vec::new(),
        method: String::new(),
        skip_reason: None,
        span: [0, 0],
        direction: None,
        distance: None,
        net_distance: None,
        speed: None,
        evidence: Evidence::default(),
        second_opinion: None,
    }
}

/// One observation per frame where the object's mask is large enough to count as visible:
/// area, centroid, box and, with depth, its mean back-projected point in camera and world axes.
fn observe(obj: &TrackedObject, geo: &ClipGeometry, th: &MotionThresholds) -> Vec<FrameObs> {
    let px = (geo.width * geo.height) as usize;
    let min_area = (th.min_area_fraction * px as f64).ceil().max(1.0) as usize;
    let mut observations = Vec::new();
    for (t, m) in obj.masks.iter().enumerate() {
        let Some(m) = m else { continue };
        let area = m.area();
        if area < min_area {
            continue;
        }
        let (Some(c), Some(b)) = (m.centroid(), m.bbox()) else {
            continue;
        };
        let point_cam = match (geo.depth, geo.pinhole) {
            (Some(d), Some(k)) => mean_point(m, &d[t * px..(t + 1) * px], &k),
            _ => None,
        };
        let point_world = point_cam.map(|p| {
            let (r, tr) = w2c(&geo.poses[t]);
            r.transpose() * (p - tr)
        });
        observations.push(FrameObs {
            frame: t,
            area,
            centroid: [c.0, c.1],
            bbox: b,
            touches_border: m.touches_border(),
            point_cam: point_cam.map(|p| p.to_array()),
            point_world: point_world.map(|p| p.to_array()),
        });
    }
    observations
}

/// The observations that show the whole object: not cut by the image border, not shrunk by an
/// occluder.
///
/// Frames where the mask is cut by the image border or shrunk by an occluder show only part of
/// the object, and the centroid of that part is not where the object is. Occlusion test: area ×
/// distance² stays roughly constant for an unoccluded rigid object (area alone with no depth),
/// so frames far below the track's maximum are set aside.
fn whole_views(observations: &[FrameObs], th: &MotionThresholds) -> Vec<FrameObs> {
    let size = |o: &FrameObs| match o.point_cam {
        Some(p) => o.area as f64 * DVec3::from_array(p).length_squared(),
        None => o.area as f64,
    };
    let max_size = observations.iter().map(size).fold(0.0, f64::max);
    observations
        .iter()
        .filter(|o| !o.touches_border && size(o) >= th.occlusion_ratio * max_size)
        .cloned()
        .collect()
}

/// The span measured and the image-space change over it (centroid shift, area ratio) between
/// the first and last whole view.
fn record_image_change(out: &mut ObjectMeasurement, whole: &[FrameObs]) {
    let (first, last) = (&whole[0], &whole[whole.len() - 1]);
    out.span = [first.frame, last.frame];
    out.evidence.centroid_shift_px = [
        last.centroid[0] - first.centroid[0],
        last.centroid[1] - first.centroid[1],
    ];
    out.evidence.area_ratio = last.area as f64 / first.area.max(1) as f64;
}

/// With depth and poses: the world displacement expressed in the first frame's camera axes
/// (camera motion removed), and the object-to-camera distance per observation.
fn direction_3d(
    out: &mut ObjectMeasurement,
    whole: &[FrameObs],
    geo: &ClipGeometry,
    th: &MotionThresholds,
) -> (Vec<f64>, Direction) {
    let (first, last) = (&whole[0], &whole[whole.len() - 1]);
    out.method = "depth+poses".into();
    out.evidence.camera_compensated = true;
    let p0 = DVec3::from_array(first.point_world.expect("3-D"));
    let p1 = DVec3::from_array(last.point_world.expect("3-D"));
    let (r0, _) = w2c(&geo.poses[first.frame]);
    let d_cam0 = r0 * (p1 - p0);
    let pc0 = DVec3::from_array(first.point_cam.expect("3-D"));
    let toward = -pc0.normalize_or_zero();
    out.evidence.displacement_cam0 = Some(d_cam0.to_array());
    let dists = whole
        .iter()
        .map(|o| DVec3::from_array(o.point_cam.expect("3-D")).length())
        .collect();
    let direction = if d_cam0.length() < th.stationary_ratio * pc0.length() {
        Direction::Stationary
    } else {
        classify_direction(d_cam0, toward)
    };
    (dists, direction)
}

/// Without depth: the direction from the centroid shift and the area change, and
/// `1/sqrt(area)` as the distance proxy. Image motion then mixes object and camera motion, so
/// this is `None` (with the skip reason recorded) unless the camera is still over the span.
fn direction_image(
    out: &mut ObjectMeasurement,
    whole: &[FrameObs],
    geo: &ClipGeometry,
    th: &MotionThresholds,
) -> Option<(Vec<f64>, Direction)> {
    let (first, last) = (&whole[0], &whole[whole.len() - 1]);
    out.method = "image".into();
    let still = geo
        .camera_still
        .get(first.frame..last.frame)
        .is_some_and(|s| s.iter().all(|&x| x));
    if !still {
        out.skip_reason = Some(
            "no depth for camera compensation and the camera moves during the object's span".into(),
        );
        return None;
    }
    out.evidence.camera_compensated = true;
    let dists = whole.iter().map(|o| 1.0 / (o.area as f64).sqrt()).collect();
    let diag = ((geo.width as f64).powi(2) + (geo.height as f64).powi(2)).sqrt();
    let [du, dv] = out.evidence.centroid_shift_px;
    let r = out.evidence.area_ratio;
    let direction = if r > 1.0 + th.area_change {
        Direction::TowardCamera
    } else if r < 1.0 / (1.0 + th.area_change) {
        Direction::AwayFromCamera
    } else if (du * du + dv * dv).sqrt() < th.stationary_image_fraction * diag {
        Direction::Stationary
    } else {
        classify_image_direction(du, dv)
    };
    Some((dists, direction))
}

/// The labels from the measured direction and distance profile, and the speed pattern when
/// the track is `complete` (every visible frame whole), moving, and long enough to have a
/// profile above pixel quantisation.
fn record_labels(
    out: &mut ObjectMeasurement,
    whole: &[FrameObs],
    dists: &[f64],
    direction: Direction,
    complete: bool,
    three_d: bool,
    th: &MotionThresholds,
) {
    out.evidence.distance_first = dists.first().copied();
    out.evidence.distance_last = dists.last().copied();
    let (full, net) = classify_distance(dists, th.distance_change);
    out.distance = Some(full);
    out.net_distance = Some(net);
    out.direction = Some(direction.as_str().to_string());
    let speeds = step_speeds(whole, three_d);
    if complete
        && direction != Direction::Stationary
        && speeds.len() >= 3
        && image_path_px(whole) >= th.min_path_px
    {
        let (speed, fit) = classify_speed(&speeds, th.varying_margin);
        out.speed = Some(speed.as_str().to_string());
        out.evidence.speed_fit = fit;
    }
    out.evidence.step_speeds = speeds;
}

/// Speeds between consecutive observations (3-D distance, or centroid travel in pixels),
/// divided by the frame gap (gaps are rare: visibility >= `min_visible_fraction`).
fn step_speeds(whole: &[FrameObs], three_d: bool) -> Vec<f64> {
    let step = |a: &FrameObs, b: &FrameObs| -> f64 {
        let gap = (b.frame - a.frame).max(1) as f64;
        if three_d {
            let (pa, pb) = (
                DVec3::from_array(a.point_world.expect("3-D")),
                DVec3::from_array(b.point_world.expect("3-D")),
            );
            (pb - pa).length() / gap
        } else {
            ((b.centroid[0] - a.centroid[0]).powi(2) + (b.centroid[1] - a.centroid[1]).powi(2))
                .sqrt()
                / gap
        }
    };
    whole.windows(2).map(|w| step(&w[0], &w[1])).collect()
}

/// Image path length (centroid travel plus growth of the mask's side), a measure of how much
/// signal the speed profile has above pixel quantisation.
fn image_path_px(whole: &[FrameObs]) -> f64 {
    whole
        .windows(2)
        .map(|w| {
            let dc = ((w[1].centroid[0] - w[0].centroid[0]).powi(2)
                + (w[1].centroid[1] - w[0].centroid[1]).powi(2))
            .sqrt();
            dc + ((w[1].area as f64).sqrt() - (w[0].area as f64).sqrt()).abs()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_templates_recover_their_own_pattern() {
        for p in SpeedPattern::ALL {
            let n = 15;
            let phase = 1.0;
            let s: Vec<f64> = (0..n)
                .map(|t| {
                    p.progress((t + 1) as f64 / n as f64, phase)
                        - p.progress(t as f64 / n as f64, phase)
                })
                .collect();
            assert_eq!(classify_speed(&s, 0.8).0, p, "{p}");
        }
    }

    #[test]
    fn directions_and_distances() {
        let toward = DVec3::new(0.0, 0.0, -1.0);
        assert_eq!(
            classify_direction(DVec3::new(-1.0, 0.05, 0.1), toward),
            Direction::Left
        );
        assert_eq!(
            classify_direction(DVec3::new(0.7, -0.7, 0.0), toward),
            Direction::RightUp
        );
        assert_eq!(
            classify_direction(DVec3::new(0.0, 0.0, -1.0), toward),
            Direction::TowardCamera
        );
        assert_eq!(classify_image_direction(0.0, 5.0), Direction::Down);
        assert_eq!(
            classify_distance(&[10.0, 9.0, 8.0], 0.1).1,
            "Getting Closer to Camera"
        );
        assert_eq!(
            classify_distance(&[10.0, 7.0, 10.0], 0.1).0,
            DISTANCE_CLOSER_THEN_FARTHER
        );
        assert_eq!(
            classify_distance(&[10.0, 10.2, 10.1], 0.1).0,
            "Maintaining Roughly the Same Distance"
        );
    }
}
