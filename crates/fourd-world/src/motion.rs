//! Object motion as seen from the camera: the reference's 11 directions and 6 speed patterns.
//!
//! A direction is defined in the frame of the camera at the motion's first frame (the "reference
//! camera"): Left/Right along its -x/+x axis, Up/Down along -y/+y, diagonals along the normalised
//! sums, Toward Camera / Away from Camera along the line from the object to the camera centre.
//! The motion is a world-space displacement, so with a moving camera the direction is the object's
//! own motion (camera motion compensated), as the reference's labelling prompt asks.

use crate::camera::Pose;
use crate::error::{Result, WorldError};
use glam::DVec3;
use std::fmt;
use std::str::FromStr;

/// The reference's 11 object directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
    LeftUp,
    LeftDown,
    RightUp,
    RightDown,
    TowardCamera,
    AwayFromCamera,
    Stationary,
}

impl Direction {
    pub const ALL: [Direction; 11] = [
        Self::Left,
        Self::Right,
        Self::Up,
        Self::Down,
        Self::LeftUp,
        Self::LeftDown,
        Self::RightUp,
        Self::RightDown,
        Self::TowardCamera,
        Self::AwayFromCamera,
        Self::Stationary,
    ];

    /// The reference's label text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "Moving Left",
            Self::Right => "Moving Right",
            Self::Up => "Moving Up",
            Self::Down => "Moving Down",
            Self::LeftUp => "Moving Left-Up",
            Self::LeftDown => "Moving Left-Down",
            Self::RightUp => "Moving Right-Up",
            Self::RightDown => "Moving Right-Down",
            Self::TowardCamera => "Moving Toward Camera",
            Self::AwayFromCamera => "Moving Away from Camera",
            Self::Stationary => "Stationary",
        }
    }

    /// The opposite direction (`Stationary` stays `Stationary`).
    pub fn opposite(self) -> Self {
        match self {
            Self::Left => Self::Right,
            Self::Right => Self::Left,
            Self::Up => Self::Down,
            Self::Down => Self::Up,
            Self::LeftUp => Self::RightDown,
            Self::RightDown => Self::LeftUp,
            Self::LeftDown => Self::RightUp,
            Self::RightUp => Self::LeftDown,
            Self::TowardCamera => Self::AwayFromCamera,
            Self::AwayFromCamera => Self::TowardCamera,
            Self::Stationary => Self::Stationary,
        }
    }

    /// Image-plane unit direction `(du, dv)` (v down) for the lateral directions; zero otherwise.
    pub fn image_dir(self) -> (f64, f64) {
        let s = std::f64::consts::FRAC_1_SQRT_2;
        match self {
            Self::Left => (-1.0, 0.0),
            Self::Right => (1.0, 0.0),
            Self::Up => (0.0, -1.0),
            Self::Down => (0.0, 1.0),
            Self::LeftUp => (-s, -s),
            Self::LeftDown => (-s, s),
            Self::RightUp => (s, -s),
            Self::RightDown => (s, s),
            _ => (0.0, 0.0),
        }
    }

    /// World-space unit displacement direction for an object at `position` seen by `camera`.
    pub fn world_dir(self, camera: &Pose, position: DVec3) -> DVec3 {
        match self {
            Self::Stationary => DVec3::ZERO,
            Self::TowardCamera => (camera.center - position).normalize_or_zero(),
            Self::AwayFromCamera => (position - camera.center).normalize_or_zero(),
            lateral => {
                let (du, dv) = lateral.image_dir();
                camera.cam_dir_to_world(DVec3::new(du, dv, 0.0))
            }
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn norm(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

impl FromStr for Direction {
    type Err = WorldError;
    /// Accepts the reference's text with or without the `Moving` prefix, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        let n = norm(s);
        Self::ALL
            .iter()
            .copied()
            .find(|d| {
                let full = norm(d.as_str());
                full == n || full.strip_prefix("moving") == Some(n.as_str())
            })
            .ok_or_else(|| WorldError::UnknownDirection(s.to_string()))
    }
}

/// The reference's 6 speed patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeedPattern {
    SpeedingUp,
    SlowingDown,
    Constant,
    SpeedingUpThenSlowingDown,
    SlowingDownThenSpeedingUp,
    /// Speed oscillates; the phase comes from the seed.
    Varying,
}

impl SpeedPattern {
    pub const ALL: [SpeedPattern; 6] = [
        Self::SpeedingUp,
        Self::SlowingDown,
        Self::Constant,
        Self::SpeedingUpThenSlowingDown,
        Self::SlowingDownThenSpeedingUp,
        Self::Varying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpeedingUp => "Speeding Up",
            Self::SlowingDown => "Slowing Down",
            Self::Constant => "Maintaining a Constant Speed",
            Self::SpeedingUpThenSlowingDown => "First Speeding Up, Then Slowing Down",
            Self::SlowingDownThenSpeedingUp => "First Slowing Down, Then Speeding Up",
            Self::Varying => "Moving at Varying Speeds",
        }
    }

    /// Fraction of the total path covered at normalised time `u ∈ [0, 1]`: monotone, 0 at 0, 1 at 1.
    /// Speeds (derivatives): up `2u`; down `2(1-u)`; constant 1; up-then-down `6u(1-u)`;
    /// down-then-up `1 + 0.8 cos 2πu`; varying `1 + 0.6 sin(6πu + φ)`.
    pub fn progress(self, u: f64, phase: f64) -> f64 {
        use std::f64::consts::TAU;
        let u = u.clamp(0.0, 1.0);
        match self {
            Self::SpeedingUp => u * u,
            Self::SlowingDown => 1.0 - (1.0 - u) * (1.0 - u),
            Self::Constant => u,
            Self::SpeedingUpThenSlowingDown => u * u * (3.0 - 2.0 * u),
            Self::SlowingDownThenSpeedingUp => u + 0.8 * (TAU * u).sin() / TAU,
            Self::Varying => u - 0.6 / (3.0 * TAU) * ((3.0 * TAU * u + phase).cos() - phase.cos()),
        }
    }
}

impl fmt::Display for SpeedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpeedPattern {
    type Err = WorldError;
    fn from_str(s: &str) -> Result<Self> {
        let n = norm(s);
        Self::ALL
            .iter()
            .copied()
            .find(|p| norm(p.as_str()) == n)
            .ok_or_else(|| WorldError::UnknownSpeed(s.to_string()))
    }
}

/// An object's motion over frames `start_frame ..= end_frame`; before it the object rests at its
/// base position, after it at the end position.
///
/// With `reverse_at = Some(t)` the object turns back at frame `t` (`start_frame < t <
/// end_frame`): up to `t` it moves along `direction`, after it along the opposite direction on the
/// same line, still covering `distance` in total with the speed pattern's profile (the speed
/// magnitude is unchanged, only the heading flips, at a frame so no step mixes the two legs).
/// Toward Camera with a reversal is "first closer, then farther"; its net displacement, and so its
/// direction label, is [`ObjectMotion::net_direction`].
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMotion {
    pub direction: Direction,
    pub speed: SpeedPattern,
    /// Total path length in metres.
    pub distance: f64,
    pub start_frame: usize,
    pub end_frame: usize,
    /// Phase of the `Varying` pattern (radians), usually drawn from the seed.
    pub phase: f64,
    /// Frame at which the object turns back (None: it keeps its direction).
    pub reverse_at: Option<usize>,
}

impl ObjectMotion {
    pub fn new(
        direction: Direction,
        speed: SpeedPattern,
        distance: f64,
        start_frame: usize,
        end_frame: usize,
    ) -> Result<Self> {
        if end_frame <= start_frame {
            return Err(WorldError::ZeroFrames(format!(
                "object motion {start_frame}->{end_frame}"
            )));
        }
        if !(distance.is_finite() && distance >= 0.0) {
            return Err(WorldError::InvalidParameter(format!(
                "object motion distance {distance} must be >= 0"
            )));
        }
        Ok(Self {
            direction,
            speed,
            distance,
            start_frame,
            end_frame,
            phase: 0.0,
            reverse_at: None,
        })
    }

    /// The same motion turning back at `frame`, which must lie strictly inside the motion.
    pub fn with_reversal(mut self, frame: usize) -> Result<Self> {
        if frame <= self.start_frame || frame >= self.end_frame {
            return Err(WorldError::InvalidParameter(format!(
                "object motion reversal frame {frame} must lie strictly between {} and {}",
                self.start_frame, self.end_frame
            )));
        }
        self.reverse_at = Some(frame);
        Ok(self)
    }

    /// Signed fraction of `distance` travelled along `direction` at `frame` (the path fraction,
    /// folded back after the reversal frame).
    pub fn signed_progress(&self, frame: usize) -> f64 {
        let p = self.progress(frame);
        match self.reverse_at {
            Some(t) if frame > t => 2.0 * self.progress(t) - p,
            _ => p,
        }
    }

    /// Direction of the net displacement from the first to the last frame of the motion: the
    /// motion's direction, its opposite when a reversal brings the object back past its start, or
    /// `Stationary` when it ends where it started.
    pub fn net_direction(&self) -> Direction {
        let net = self.signed_progress(self.end_frame) * self.distance;
        if self.distance <= 0.0 || net.abs() <= 1e-9 * self.distance {
            Direction::Stationary
        } else if net > 0.0 {
            self.direction
        } else {
            self.direction.opposite()
        }
    }

    /// Path fraction at `frame`.
    pub fn progress(&self, frame: usize) -> f64 {
        let u =
            (frame as f64 - self.start_frame as f64) / (self.end_frame - self.start_frame) as f64;
        self.speed.progress(u, self.phase)
    }

    /// World displacement at `frame` from the base position, given the reference camera pose
    /// (the camera pose at `start_frame`) and the base position.
    pub fn displacement(&self, frame: usize, reference_camera: &Pose, base: DVec3) -> DVec3 {
        self.direction.world_dir(reference_camera, base)
            * (self.distance * self.signed_progress(frame))
    }
}
