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
        Self {
            interval: 2,
            alpha: 0.1,
            tau_t: 0.02,
            tau_r_deg: 0.5,
        }
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
    (
        DQuat::from_xyzw(p[3], p[4], p[5], p[6]).normalize(),
        DVec3::new(p[0], p[1], p[2]),
    )
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

/// EMA smoothing of camera positions (centres `C = -R^T t`) and quaternions (normalised linear
/// interpolation, sign flipped when the dot product with the previous filtered one is negative);
/// the smoothed row is rebuilt as `t = -R_s C_s`.
///
/// Interpretation: the digest says "EMA on positions"; smoothing the centres (rather than the
/// stored `t`, which mixes in the rotation) keeps a pure rotation free of spurious translation.
pub fn smooth_poses(poses: &[[f64; 7]], alpha: f64) -> Vec<[f64; 7]> {
    let mut out: Vec<[f64; 7]> = Vec::with_capacity(poses.len());
    let mut state: Option<(DQuat, DVec3)> = None;
    for p in poses {
        let (mut q, t) = row_to_rt(p);
        let c = -(DMat3::from_quat(q).transpose() * t);
        let (qf, cf) = match state {
            None => (q, c),
            Some((qp, cp)) => {
                if qp.dot(q) < 0.0 {
                    q = -q;
                }
                (
                    (qp * (1.0 - alpha) + q * alpha).normalize(),
                    cp * (1.0 - alpha) + c * alpha,
                )
            }
        };
        state = Some((qf, cf));
        let tf = -(DMat3::from_quat(qf) * cf);
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
    RelativeMotion {
        translation: d,
        yaw_deg: yaw.to_degrees(),
        pitch_deg: pitch.to_degrees(),
        roll_deg: roll.to_degrees(),
    }
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
        return Err(WorldError::InvalidParameter(
            "rule interval must be at least 1".into(),
        ));
    }
    if !(params.alpha > 0.0 && params.alpha <= 1.0) {
        return Err(WorldError::InvalidParameter(format!(
            "EMA alpha {} is outside (0, 1]",
            params.alpha
        )));
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
            labels: labels_for_motion(
                &relative_motion(&sm[i], &sm[i + k]),
                params.tau_t,
                params.tau_r_deg,
            ),
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
    out.into_iter()
        .map(|s| (format!("{}->{}", s.start, s.end), s.labels))
        .collect()
}

/// Parameters of the "enhanced" rule (`get_instructions_enhanced.py`, `preprocess.md` §2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct EnhancedParams {
    /// Window lengths `k`.
    pub intervals: Vec<usize>,
    /// EMA factors α.
    pub alphas: Vec<f64>,
    /// The metadata CSV's `moveDist` (upstream: travel of the world-to-camera translation rows,
    /// [`crate::spatialvid_move_dist`]; [`move_dist`] is the camera-centre travel).
    pub move_dist: f64,
}

impl EnhancedParams {
    /// The published grid: intervals {1, 3, 5} × α ∈ {0.03, 0.05, 0.1}.
    pub fn new(move_dist: f64) -> Self {
        Self {
            intervals: vec![1, 3, 5],
            alphas: vec![0.03, 0.05, 0.1],
            move_dist,
        }
    }
}

/// Total camera-centre travel of a pose sequence. The released CSV's `moveDist` is defined
/// differently (travel of the world-to-camera translation rows, [`crate::spatialvid_move_dist`]);
/// the two agree when the camera only translates.
pub fn move_dist(poses: &[[f64; 7]]) -> f64 {
    let centers: Vec<DVec3> = poses
        .iter()
        .map(|p| {
            let (q, t) = row_to_rt(p);
            -(DMat3::from_quat(q).transpose() * t)
        })
        .collect();
    centers.windows(2).map(|w| (w[1] - w[0]).length()).sum()
}

/// The "enhanced" voting rule, as the digest describes it. For every window length `k` and α:
/// `τ_t = max(moveDist / N / 1.1, 0.01) · √k`, `τ_r = 1.5° · √k / 1.8`, windows `(i, i+k)` with
/// stride `⌊√k + 1⌋`; each window's labels vote for every unit interval `t->t+1` it covers.
/// Per unit interval: of two opposite labels only the higher-voted survives (ties drop both);
/// if the top vote is ≥ 3× the second, only the top label(s) are kept, otherwise labels with
/// ≥ 50% of the top vote, at most 4 and at least 2 (when that many received votes). `Stay` is
/// kept only when no motion label survives. Returns one step per unit interval (merge with
/// [`merge_instructions`]).
///
/// Interpretation choices (the digest does not pin them down): `N` is the number of poses;
/// `Stay` votes are counted like any label; labels with equal votes are ordered by the table.
pub fn label_poses_enhanced(
    poses: &[[f64; 7]],
    params: &EnhancedParams,
) -> Result<Vec<LabelledStep>> {
    if poses.len() < 2 {
        return Err(WorldError::ZeroFrames(format!(
            "camera labelling needs at least 2 poses, got {}",
            poses.len()
        )));
    }
    if params.intervals.is_empty() || params.intervals.contains(&0) || params.alphas.is_empty() {
        return Err(WorldError::InvalidParameter(
            "enhanced rule needs intervals >= 1 and at least one alpha".into(),
        ));
    }
    let n = poses.len();
    let base_t = (params.move_dist / n as f64 / 1.1).max(0.01);
    // votes[t][label as usize]
    let mut votes = vec![[0usize; 13]; n - 1];
    for &alpha in &params.alphas {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(WorldError::InvalidParameter(format!(
                "EMA alpha {alpha} is outside (0, 1]"
            )));
        }
        let sm = smooth_poses(poses, alpha);
        for &k in &params.intervals {
            let sk = (k as f64).sqrt();
            let (tau_t, tau_r) = (base_t * sk, 1.5 * sk / 1.8);
            let stride = (sk + 1.0) as usize;
            let mut i = 0;
            while i + k < n {
                let labels = labels_for_motion(&relative_motion(&sm[i], &sm[i + k]), tau_t, tau_r);
                for v in votes.iter_mut().skip(i).take(k) {
                    for l in &labels {
                        v[*l as usize] += 1;
                    }
                }
                i += stride;
            }
        }
    }
    let all: Vec<CameraLabel> = CameraLabel::MOTIONS
        .iter()
        .copied()
        .chain([CameraLabel::Stay])
        .collect();
    Ok(votes
        .iter()
        .enumerate()
        .map(|(t, v)| {
            let mut v = *v;
            for l in CameraLabel::MOTIONS {
                let (a, b) = (l as usize, l.opposite() as usize);
                if v[a] > 0 && v[b] > 0 {
                    if v[a] > v[b] {
                        v[b] = 0;
                    } else if v[a] == v[b] {
                        v[a] = 0;
                        v[b] = 0;
                    }
                }
            }
            let mut ranked: Vec<(usize, CameraLabel)> = all
                .iter()
                .filter(|l| v[**l as usize] > 0)
                .map(|l| (v[*l as usize], *l))
                .collect();
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut keep: Vec<CameraLabel> = match ranked.as_slice() {
                [] => vec![],
                [(top, _), rest @ ..] => {
                    let second = rest.iter().map(|r| r.0).find(|&c| c < *top).unwrap_or(0);
                    if second == 0 || *top >= 3 * second {
                        ranked.iter().filter(|r| r.0 == *top).map(|r| r.1).collect()
                    } else {
                        let mut k: Vec<_> = ranked
                            .iter()
                            .filter(|r| 2 * r.0 >= *top)
                            .map(|r| r.1)
                            .take(4)
                            .collect();
                        if k.len() < 2 {
                            k = ranked.iter().take(2).map(|r| r.1).collect();
                        }
                        k
                    }
                }
            };
            if keep.iter().any(|l| *l != CameraLabel::Stay) {
                keep.retain(|l| *l != CameraLabel::Stay);
            }
            if keep.is_empty() {
                keep.push(CameraLabel::Stay);
            }
            keep.sort();
            LabelledStep {
                start: t,
                end: t + 1,
                labels: keep,
            }
        })
        .collect())
}
