//! SpatialVID's camera-motion labelling rule (`preprocess.md` §2.3, original
//! `get_instructions.py`): EMA-smoothed poses, relative pose of a frame pair, Euler angles of the
//! relative rotation in SciPy's extrinsic `"yxz"` order, independent thresholds per component.
//!
//! Input rows are `poses.npy` rows: world-to-camera `[tx, ty, tz, qx, qy, qz, qw]`.

use crate::camera::CameraLabel;
use crate::error::{Result, WorldError};
use glam::{DMat3, DQuat, DVec3};

/// Parameters of the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleParams {
    /// Frame pair distance `k` (pairs `(i, i+k)` for `i = 0, k, 2k, ...`). The original script
    /// subsamples every 2nd pose and compares consecutive ones, i.e. `interval = 2`.
    pub interval: usize,
    /// EMA smoothing factor α (1.0 = no smoothing).
    pub alpha: f64,
    /// Translation threshold τ_t (pose units, metres here).
    pub tau_t: f64,
    /// Rotation threshold τ_r in degrees.
    pub tau_r_deg: f64,
}

impl Default for RuleParams {
    /// The original script: interval 2, α = 0.1, τ_t = 0.02, τ_r = 0.5°.
    fn default() -> Self {
        Self { interval: 2, alpha: 0.1, tau_t: 0.02, tau_r_deg: 0.5 }
    }
}

/// Relative motion of a frame pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelativeMotion {
    /// `d = R_i (C_j - C_i)`, camera-i frame (x right, y down, z forward).
    pub translation: DVec3,
    /// Euler angles of `ΔR = R_j R_i^-1`, extrinsic `"yxz"`, degrees.
    pub yaw_deg: f64,
    pub pitch_deg: f64,
    pub roll_deg: f64,
}

fn row_to_rt(p: &[f64; 7]) -> (DQuat, DVec3) {
    (DQuat::from_xyzw(p[3], p[4], p[5], p[6]).normalize(), DVec3::new(p[0], p[1], p[2]))
}

/// SciPy `Rotation.as_euler("yxz")` (extrinsic y, then x, then z: `R = Rz(c) Rx(b) Ry(a)`),
/// returning `(a, b, c)` in radians.
pub fn euler_yxz_extrinsic(r: &DMat3) -> (f64, f64, f64) {
    // glam's matrices are column-major: r.col(j)[i] = R[i][j].
    let m = |i: usize, j: usize| r.col(j)[i];
    let b = m(2, 1).clamp(-1.0, 1.0).asin();
    let a = (-m(2, 0)).atan2(m(2, 2));
    let c = (-m(0, 1)).atan2(m(1, 1));
    (a, b, c)
}

/// EMA smoothing of positions (translations, as stored) and quaternions (normalised linear
/// interpolation, sign flipped when the dot product with the previous filtered one is negative).
pub fn smooth_poses(poses: &[[f64; 7]], alpha: f64) -> Vec<[f64; 7]> {
    let mut out: Vec<[f64; 7]> = Vec::with_capacity(poses.len());
    for p in poses {
        let Some(prev) = out.last() else {
            out.push(*p);
            continue;
        };
        let (qp, tp) = row_to_rt(prev);
        let (mut q, t) = row_to_rt(p);
        if qp.dot(q) < 0.0 {
            q = -q;
        }
        let tf = tp * (1.0 - alpha) + t * alpha;
        let qf = (qp * (1.0 - alpha) + q * alpha).normalize();
        out.push([tf.x, tf.y, tf.z, qf.x, qf.y, qf.z, qf.w]);
    }
    out
}

/// Relative motion from pose row `i` to pose row `j`.
pub fn relative_motion(pi: &[f64; 7], pj: &[f64; 7]) -> RelativeMotion {
    let (qi, ti) = row_to_rt(pi);
    let (qj, tj) = row_to_rt(pj);
    let ri = DMat3::from_quat(qi);
    let rj = DMat3::from_quat(qj);
    let ci = -(ri.transpose() * ti);
    let cj = -(rj.transpose() * tj);
    let d = ri * (cj - ci);
    let (yaw, pitch, roll) = euler_yxz_extrinsic(&(rj * ri.transpose()));
    RelativeMotion { translation: d, yaw_deg: yaw.to_degrees(), pitch_deg: pitch.to_degrees(), roll_deg: roll.to_degrees() }
}

/// The rule's table: every condition tested independently; `[Stay]` when none fires.
pub fn labels_for_motion(m: &RelativeMotion, tau_t: f64, tau_r_deg: f64) -> Vec<CameraLabel> {
    use CameraLabel::*;
    let d = m.translation;
    let mut l = Vec::new();
    let mut test = |v: f64, tau: f64, pos: CameraLabel, neg: CameraLabel| {
        if v > tau {
            l.push(pos);
        } else if v < -tau {
            l.push(neg);
        }
    };
    test(d.z, tau_t, DollyIn, DollyOut);
    test(d.x, tau_t, TruckRight, TruckLeft);
    test(d.y, tau_t, PedestalDown, PedestalUp);
    test(m.yaw_deg, tau_r_deg, PanLeft, PanRight);
    test(m.pitch_deg, tau_r_deg, TiltDown, TiltUp);
    test(m.roll_deg, tau_r_deg, RollCounterClockwise, RollClockwise);
    if l.is_empty() {
        l.push(Stay);
    }
    l
}

/// One labelled frame pair `start -> end` (indices into the input pose sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledStep {
    pub start: usize,
    pub end: usize,
    pub labels: Vec<CameraLabel>,
}

/// Runs the rule over a pose sequence: smoothing, then pairs `(i, i+interval)` for
/// `i = 0, interval, 2*interval, ...` while `i + interval < len`.
pub fn label_poses(poses: &[[f64; 7]], params: &RuleParams) -> Result<Vec<LabelledStep>> {
    if params.interval == 0 {
        return Err(WorldError::InvalidParameter("rule interval must be at least 1".into()));
    }
    if !(params.alpha > 0.0 && params.alpha <= 1.0) {
        return Err(WorldError::InvalidParameter(format!("EMA alpha {} is outside (0, 1]", params.alpha)));
    }
    if poses.len() < 2 {
        return Err(WorldError::ZeroFrames(format!(
            "camera labelling needs at least 2 poses, got {}",
            poses.len()
        )));
    }
    let sm = smooth_poses(poses, params.alpha);
    let k = params.interval;
    Ok((0..)
        .map(|n| n * k)
        .take_while(|i| i + k < sm.len())
        .map(|i| LabelledStep {
            start: i,
            end: i + k,
            labels: labels_for_motion(&relative_motion(&sm[i], &sm[i + k]), params.tau_t, params.tau_r_deg),
        })
        .collect())
}

/// Merges consecutive steps with identical label lists into `"a->b"` keys (as in
/// `instructions.json`), in order.
pub fn merge_instructions(steps: &[LabelledStep]) -> Vec<(String, Vec<CameraLabel>)> {
    let mut out: Vec<LabelledStep> = Vec::new();
    for s in steps {
        match out.last_mut() {
            Some(last) if last.labels == s.labels && last.end == s.start => last.end = s.end,
            _ => out.push(s.clone()),
        }
    }
    out.into_iter().map(|s| (format!("{}->{}", s.start, s.end), s.labels)).collect()
}
