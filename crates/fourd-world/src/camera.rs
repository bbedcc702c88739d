//! Pinhole camera, poses and camera-motion trajectories.
//!
//! # Conventions
//! - **World frame**: right-handed, metres, **+Y up**; the ground is the plane `y = 0`.
//! - **Camera frame**: OpenCV: **x right, y down, z forward** (optical axis). This is the frame the
//!   SpatialVID labelling rule assumes (`preprocess.md` §2.3: "x right, y down, z forward").
//! - **Pixels**: OpenCV: integer pixel coordinates are pixel *centres*; column `u`, row `v`;
//!   `u = fx * X/Z + cx`, `v = fy * Y/Z + cy` for a camera-frame point `(X, Y, Z)`.
//!   [`Intrinsics::from_fov`] puts the principal point at the image centre,
//!   `cx = (W-1)/2`, `cy = (H-1)/2`, with square pixels (`fx = fy`).
//! - **Pose**: [`Pose`] stores the camera-to-world rotation and the camera centre.
//!   [`Pose::to_w2c_array`] exports the SpatialVID row `[tx, ty, tz, qx, qy, qz, qw]` of the
//!   **world-to-camera** transform `x_cam = R * x_world + t`, quaternion in SciPy order (scalar
//!   last), sign fixed so that `qw >= 0`.
//! - **Camera motion** (per frame, in the camera's own current frame): Pan = rotation about the
//!   camera y axis, Tilt = about x, Roll = about z; Dolly = along z, Truck = along x, Pedestal =
//!   along y. Signs follow the SpatialVID rule: Pan Left turns the optical axis towards -x, Tilt Up
//!   towards -y, Roll Counter-Clockwise turns the camera's x axis towards -y (counter-clockwise as
//!   seen from behind the camera, so the image content turns clockwise), Pedestal Up moves along -y.

use crate::error::{Result, WorldError};
use glam::{DMat3, DQuat, DVec3};
use std::fmt;
use std::str::FromStr;

/// Pinhole intrinsics in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Intrinsics {
    /// Square pixels, principal point at the image centre, horizontal field of view `hfov_deg`.
    pub fn from_fov(width: u32, height: u32, hfov_deg: f64) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(WorldError::ZeroSize { width, height });
        }
        if !(hfov_deg > 1.0 && hfov_deg < 179.0) {
            return Err(WorldError::InvalidParameter(format!(
                "horizontal field of view {hfov_deg} degrees is outside (1, 179)"
            )));
        }
        let fx = (width as f64 / 2.0) / (hfov_deg.to_radians() / 2.0).tan();
        Ok(Self {
            width,
            height,
            fx,
            fy: fx,
            cx: (width as f64 - 1.0) / 2.0,
            cy: (height as f64 - 1.0) / 2.0,
        })
    }

    /// The 3x3 matrix `K` (row-major), as SpatialVID's `intrinsics.npy` rows.
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        [
            [self.fx, 0.0, self.cx],
            [0.0, self.fy, self.cy],
            [0.0, 0.0, 1.0],
        ]
    }

    /// `[fx, fy, cx, cy]`.
    pub fn to_array(&self) -> [f64; 4] {
        [self.fx, self.fy, self.cx, self.cy]
    }

    /// Projects a camera-frame point to continuous pixel coordinates; `None` behind the camera.
    pub fn project_cam(&self, p: DVec3) -> Option<(f64, f64)> {
        (p.z > 1e-9).then(|| (self.fx * p.x / p.z + self.cx, self.fy * p.y / p.z + self.cy))
    }

    /// The camera-frame ray direction through pixel `(u, v)`, scaled so that its z component is 1
    /// (so the ray parameter equals the depth along the optical axis).
    pub fn ray_cam(&self, u: f64, v: f64) -> DVec3 {
        DVec3::new((u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0)
    }
}

/// A camera pose: camera-to-world rotation (columns = camera x, y, z axes in world) and centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub rotation_c2w: DQuat,
    pub center: DVec3,
}

impl Pose {
    /// A camera at `eye` looking at `target`, with the image "up" (camera -y) towards world +Y.
    pub fn look_at(eye: DVec3, target: DVec3) -> Result<Self> {
        let z = (target - eye).normalize_or_zero();
        let x = z.cross(DVec3::Y).normalize_or_zero();
        if z == DVec3::ZERO || x == DVec3::ZERO {
            return Err(WorldError::InvalidParameter(format!(
                "look_at: eye {eye} and target {target} coincide or the view is vertical"
            )));
        }
        let y = z.cross(x);
        Ok(Self {
            rotation_c2w: DQuat::from_mat3(&DMat3::from_cols(x, y, z)).normalize(),
            center: eye,
        })
    }

    /// World-to-camera rotation `R` and translation `t` (`x_cam = R x_world + t`).
    pub fn w2c(&self) -> (DMat3, DVec3) {
        let r = DMat3::from_quat(self.rotation_c2w.conjugate());
        (r, -(r * self.center))
    }

    /// World point to camera frame.
    pub fn world_to_cam(&self, p: DVec3) -> DVec3 {
        self.rotation_c2w.conjugate() * (p - self.center)
    }

    /// Camera-frame vector to world.
    pub fn cam_dir_to_world(&self, d: DVec3) -> DVec3 {
        self.rotation_c2w * d
    }

    /// SpatialVID `poses.npy` row: world-to-camera `[tx, ty, tz, qx, qy, qz, qw]`, `qw >= 0`.
    pub fn to_w2c_array(&self) -> [f64; 7] {
        let mut q = self.rotation_c2w.conjugate().normalize();
        if q.w < 0.0 {
            q = -q;
        }
        let (_, t) = self.w2c();
        [t.x, t.y, t.z, q.x, q.y, q.z, q.w]
    }

    /// Inverse of [`Pose::to_w2c_array`].
    pub fn from_w2c_array(a: &[f64; 7]) -> Self {
        let q_w2c = DQuat::from_xyzw(a[3], a[4], a[5], a[6]).normalize();
        let r = DMat3::from_quat(q_w2c);
        let t = DVec3::new(a[0], a[1], a[2]);
        Self {
            rotation_c2w: q_w2c.conjugate(),
            center: -(r.transpose() * t),
        }
    }
}

/// The 12 SpatialVID camera-motion labels plus `Stay`, with 4DThinker's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CameraLabel {
    DollyIn,
    DollyOut,
    TruckRight,
    TruckLeft,
    PedestalDown,
    PedestalUp,
    PanLeft,
    PanRight,
    TiltDown,
    TiltUp,
    RollCounterClockwise,
    RollClockwise,
    Stay,
}

impl CameraLabel {
    /// The 12 motion labels (not `Stay`), in the order of the SpatialVID rule's table.
    pub const MOTIONS: [CameraLabel; 12] = [
        Self::DollyIn,
        Self::DollyOut,
        Self::TruckRight,
        Self::TruckLeft,
        Self::PedestalDown,
        Self::PedestalUp,
        Self::PanLeft,
        Self::PanRight,
        Self::TiltDown,
        Self::TiltUp,
        Self::RollCounterClockwise,
        Self::RollClockwise,
    ];

    /// 4DThinker's spelling (`Roll Clockwise`, not SpatialVID's `Roll CW`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DollyIn => "Dolly In",
            Self::DollyOut => "Dolly Out",
            Self::TruckRight => "Truck Right",
            Self::TruckLeft => "Truck Left",
            Self::PedestalDown => "Pedestal Down",
            Self::PedestalUp => "Pedestal Up",
            Self::PanLeft => "Pan Left",
            Self::PanRight => "Pan Right",
            Self::TiltDown => "Tilt Down",
            Self::TiltUp => "Tilt Up",
            Self::RollCounterClockwise => "Roll Counter-Clockwise",
            Self::RollClockwise => "Roll Clockwise",
            Self::Stay => "Stay",
        }
    }

    /// SpatialVID's own spelling (`Roll CW` / `Roll CCW`).
    pub fn spatialvid_str(self) -> &'static str {
        match self {
            Self::RollClockwise => "Roll CW",
            Self::RollCounterClockwise => "Roll CCW",
            other => other.as_str(),
        }
    }

    /// The label of the opposite motion (`Stay` is its own opposite).
    pub fn opposite(self) -> Self {
        use CameraLabel::*;
        match self {
            DollyIn => DollyOut,
            DollyOut => DollyIn,
            TruckRight => TruckLeft,
            TruckLeft => TruckRight,
            PedestalDown => PedestalUp,
            PedestalUp => PedestalDown,
            PanLeft => PanRight,
            PanRight => PanLeft,
            TiltDown => TiltUp,
            TiltUp => TiltDown,
            RollCounterClockwise => RollClockwise,
            RollClockwise => RollCounterClockwise,
            Stay => Stay,
        }
    }

    /// Axis index of the motion: 0..3 translation (x, y, z), 3..6 rotation (yaw, pitch, roll).
    fn axis(self) -> Option<usize> {
        use CameraLabel::*;
        match self {
            TruckLeft | TruckRight => Some(0),
            PedestalUp | PedestalDown => Some(1),
            DollyIn | DollyOut => Some(2),
            PanLeft | PanRight => Some(3),
            TiltUp | TiltDown => Some(4),
            RollClockwise | RollCounterClockwise => Some(5),
            Stay => None,
        }
    }
}

impl fmt::Display for CameraLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CameraLabel {
    type Err = WorldError;
    /// Accepts 4DThinker and SpatialVID spellings, case-insensitively, with `-`/`_`/space variants.
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        if norm == "rollcw" {
            return Ok(Self::RollClockwise);
        }
        if norm == "rollccw" {
            return Ok(Self::RollCounterClockwise);
        }
        Self::MOTIONS
            .iter()
            .copied()
            .chain([Self::Stay])
            .find(|l| {
                let n: String = l
                    .as_str()
                    .to_ascii_lowercase()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                n == norm
            })
            .ok_or_else(|| WorldError::UnknownCameraLabel(s.to_string()))
    }
}

/// One simultaneous component of a camera segment: a label and its per-frame magnitude
/// (metres per frame for Dolly/Truck/Pedestal, degrees per frame for Pan/Tilt/Roll).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraComponent {
    pub label: CameraLabel,
    pub magnitude: f64,
}

/// A timed segment: `frames` frame steps during which the components act simultaneously.
/// No component (or only `Stay`) means the camera does not move.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSegment {
    pub frames: usize,
    pub components: Vec<CameraComponent>,
}

impl CameraSegment {
    /// A segment of `frames` steps; validates 0..=3 components, positive finite magnitudes, no
    /// two components on the same axis (so no opposite pair), and `Stay` only alone.
    pub fn new(frames: usize, components: Vec<CameraComponent>) -> Result<Self> {
        if frames == 0 {
            return Err(WorldError::ZeroFrames("camera segment".into()));
        }
        if components.len() > 3 {
            return Err(WorldError::InvalidSegment(format!(
                "{} simultaneous components; at most 3 are supported",
                components.len()
            )));
        }
        let mut used = [None::<CameraLabel>; 6];
        for c in &components {
            if c.label == CameraLabel::Stay {
                if components.len() > 1 {
                    return Err(WorldError::InvalidSegment(
                        "Stay cannot be combined with a motion".into(),
                    ));
                }
                continue;
            }
            if !(c.magnitude.is_finite() && c.magnitude > 0.0) {
                return Err(WorldError::InvalidSegment(format!(
                    "magnitude of {} must be positive and finite, got {}",
                    c.label, c.magnitude
                )));
            }
            let axis = c.label.axis().expect("motion label has an axis");
            if let Some(prev) = used[axis] {
                return Err(WorldError::InvalidSegment(format!(
                    "{prev} and {} act on the same axis",
                    c.label
                )));
            }
            used[axis] = Some(c.label);
        }
        let components = components
            .into_iter()
            .filter(|c| c.label != CameraLabel::Stay)
            .collect();
        Ok(Self { frames, components })
    }

    /// A still segment.
    pub fn stay(frames: usize) -> Result<Self> {
        Self::new(frames, Vec::new())
    }

    /// Builds a segment from label strings and magnitudes, e.g. `[("Pan Left", 2.0)]`.
    pub fn from_labels(frames: usize, comps: &[(&str, f64)]) -> Result<Self> {
        let components = comps
            .iter()
            .map(|(s, m)| {
                Ok(CameraComponent {
                    label: s.parse()?,
                    magnitude: *m,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(frames, components)
    }

    /// The labels this segment should produce (`[Stay]` when still), in rule-table order.
    pub fn labels(&self) -> Vec<CameraLabel> {
        let mut l: Vec<_> = self.components.iter().map(|c| c.label).collect();
        if l.is_empty() {
            l.push(CameraLabel::Stay);
        }
        l.sort();
        l
    }

    /// Per-step camera-local translation (camera frame) and rotation (camera frame).
    fn step(&self) -> (DVec3, DQuat) {
        use CameraLabel::*;
        let mut t = DVec3::ZERO;
        let (mut yaw, mut pitch, mut roll) = (0.0f64, 0.0f64, 0.0f64);
        for c in &self.components {
            let m = c.magnitude;
            match c.label {
                DollyIn => t.z += m,
                DollyOut => t.z -= m,
                TruckRight => t.x += m,
                TruckLeft => t.x -= m,
                PedestalDown => t.y += m,
                PedestalUp => t.y -= m,
                // The rule's yaw/pitch/roll are Euler angles of R_{i+1} R_i^-1 (world-to-camera
                // rotations), i.e. of the inverse of the local camera-to-world step.
                PanLeft => yaw += m,
                PanRight => yaw -= m,
                TiltDown => pitch += m,
                TiltUp => pitch -= m,
                RollCounterClockwise => roll += m,
                RollClockwise => roll -= m,
                Stay => {}
            }
        }
        // ΔR (world-to-camera) = Rz(roll) Rx(pitch) Ry(yaw)  (SciPy extrinsic "yxz");
        // the local camera-to-world step is its inverse.
        let delta_w2c = DQuat::from_rotation_z(roll.to_radians())
            * DQuat::from_rotation_x(pitch.to_radians())
            * DQuat::from_rotation_y(yaw.to_radians());
        (t, delta_w2c.conjugate())
    }
}

/// A camera trajectory: a start pose followed by timed segments. A trajectory with segments of
/// `n_1, n_2, ...` steps has `1 + Σ n_i` frames; segment `k` spans frames `a -> a + n_k`.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraTrajectory {
    pub start: Pose,
    pub segments: Vec<CameraSegment>,
}

impl CameraTrajectory {
    pub fn new(start: Pose, segments: Vec<CameraSegment>) -> Result<Self> {
        if segments.is_empty() {
            return Err(WorldError::ZeroFrames(
                "camera trajectory (no segments)".into(),
            ));
        }
        Ok(Self { start, segments })
    }

    /// Number of frames, `1 + Σ segment steps`.
    pub fn num_frames(&self) -> usize {
        1 + self.segments.iter().map(|s| s.frames).sum::<usize>()
    }

    /// Frame ranges `(start, end, expected labels)` of each segment.
    pub fn segment_ranges(&self) -> Vec<(usize, usize, Vec<CameraLabel>)> {
        let mut a = 0;
        self.segments
            .iter()
            .map(|s| {
                let r = (a, a + s.frames, s.labels());
                a += s.frames;
                r
            })
            .collect()
    }

    /// Pose of every frame.
    pub fn poses(&self) -> Vec<Pose> {
        let mut pose = self.start;
        let mut out = vec![pose];
        for seg in &self.segments {
            let (t_local, r_local) = seg.step();
            for _ in 0..seg.frames {
                pose.center += pose.rotation_c2w * t_local;
                pose.rotation_c2w = (pose.rotation_c2w * r_local).normalize();
                out.push(pose);
            }
        }
        out
    }
}
