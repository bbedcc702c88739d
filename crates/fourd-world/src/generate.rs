//! Seeded random clips and their ground truth.
//!
//! [`random_clip`] draws a room, 1..=`max_objects` moving objects and a camera trajectory of 1..=3
//! timed segments (each Stay or 1..=3 simultaneous components) from a seed, with its own
//! SplitMix64 generator so the output never depends on a crate version; a quarter of the objects
//! turn back toward/away from the camera (drawn from a second stream of the seed, so the others
//! are unchanged). [`ClipTruth`] holds every generated label, including the five-label
//! [`DistanceProfile`].

use crate::camera::{
    CameraComponent, CameraLabel, CameraSegment, CameraTrajectory, Intrinsics, Pose,
};
use crate::error::{Result, WorldError};
use crate::motion::{Direction, ObjectMotion, SpeedPattern};
use crate::scene::{Clip, Frame, Object, Scene, Shape, Texture};
use glam::DVec3;

/// Deterministic SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Settings of [`random_clip`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenConfig {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub hfov_deg: f64,
    pub max_objects: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            frames: 16,
            width: 224,
            height: 224,
            hfov_deg: 60.0,
            max_objects: 3,
        }
    }
}

/// The reference's distance-change labels (the three single ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistanceChange {
    Closer,
    Farther,
    Same,
}

impl DistanceChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closer => "Getting Closer to Camera",
            Self::Farther => "Getting Farther from Camera",
            Self::Same => "Maintaining Roughly the Same Distance",
        }
    }

    /// From the object-to-camera-centre distance at the first and last frame: a relative change
    /// above `rel` (e.g. 0.1) is Closer/Farther.
    pub fn from_distances(first: f64, last: f64, rel: f64) -> Self {
        if last < first * (1.0 - rel) {
            Self::Closer
        } else if last > first * (1.0 + rel) {
            Self::Farther
        } else {
            Self::Same
        }
    }
}

/// The reference's compound distance labels (the texts `fourd-data` asks with).
pub const DISTANCE_CLOSER_THEN_FARTHER: &str = "First Getting Closer, Then Farther from Camera";
pub const DISTANCE_FARTHER_THEN_CLOSER: &str = "First Getting Farther, Then Closer to Camera";

/// The reference's five distance labels: the net change, or a turn in the distance profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistanceProfile {
    Net(DistanceChange),
    CloserThenFarther,
    FartherThenCloser,
}

impl DistanceProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Net(d) => d.as_str(),
            Self::CloserThenFarther => DISTANCE_CLOSER_THEN_FARTHER,
            Self::FartherThenCloser => DISTANCE_FARTHER_THEN_CLOSER,
        }
    }

    /// From the object-to-camera distance of every frame, the rule `fourd-data` measures with:
    /// "first closer, then farther" when an interior frame is more than `rel` closer than the
    /// first and the last is more than `rel` farther than that minimum; the mirror case likewise;
    /// else the net change of [`DistanceChange::from_distances`]. Fewer than 2 distances: `Same`.
    pub fn from_distances(dists: &[f64], rel: f64) -> Self {
        let (Some(&first), Some(&last)) = (dists.first(), dists.last()) else {
            return Self::Net(DistanceChange::Same);
        };
        let interior = if dists.len() > 2 {
            &dists[1..dists.len() - 1]
        } else {
            &[][..]
        };
        let min = interior.iter().copied().fold(f64::INFINITY, f64::min);
        let max = interior.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if min < first * (1.0 - rel) && last > min * (1.0 + rel) {
            Self::CloserThenFarther
        } else if max > first * (1.0 + rel) && last < max * (1.0 - rel) {
            Self::FartherThenCloser
        } else {
            Self::Net(DistanceChange::from_distances(first, last, rel))
        }
    }
}

/// Ground truth of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectTruth {
    pub id: u16,
    pub name: String,
    pub direction: Direction,
    pub speed: SpeedPattern,
    /// Measured from the camera-to-object distance of the first and last frame (10% rule).
    pub distance_change: DistanceChange,
    /// Distance label over every frame's camera-to-object distance (10% rule): the net change, or
    /// a compound label when the distance turns (e.g. an object that reverses toward/away).
    pub distance_profile: DistanceProfile,
    /// `[x1, y1, x2, y2]` inclusive pixel box of the object's mask in frame 0 (None if hidden).
    pub first_bbox: Option<[u32; 4]>,
    /// World centre at every frame.
    pub trajectory: Vec<DVec3>,
    /// Frames `(start, end)` over which the object moves (None when it never moves).
    pub moving: Option<(usize, usize)>,
}

impl ObjectTruth {
    /// World path length in metres over the whole clip.
    pub fn path_length(&self) -> f64 {
        self.trajectory
            .windows(2)
            .map(|w| (w[1] - w[0]).length())
            .sum()
    }

    /// Mean world speed while moving, metres per frame (0 when it never moves).
    pub fn mean_speed(&self) -> f64 {
        match self.moving {
            Some((a, b)) if b > a => self.path_length() / (b - a) as f64,
            _ => 0.0,
        }
    }
}

/// Ground truth of a clip: the camera labels per segment and every object's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTruth {
    /// `(start frame, end frame, labels)` per camera segment.
    pub camera: Vec<(usize, usize, Vec<CameraLabel>)>,
    pub objects: Vec<ObjectTruth>,
    /// Camera pose of every frame.
    pub poses: Vec<Pose>,
}

/// Inclusive bounding box `[x1, y1, x2, y2]` of an instance in a frame.
pub fn bbox(frame: &Frame, id: u16) -> Option<[u32; 4]> {
    let w = frame.width();
    let mut b: Option<[u32; 4]> = None;
    for (i, &v) in frame.ids.iter().enumerate() {
        if v == id {
            let (x, y) = (i as u32 % w, i as u32 / w);
            b = Some(match b {
                None => [x, y, x, y],
                Some([x1, y1, x2, y2]) => [x1.min(x), y1.min(y), x2.max(x), y2.max(y)],
            });
        }
    }
    b
}

fn random_segment(rng: &mut SplitMix64, frames: usize) -> Result<CameraSegment> {
    let n = rng.below(4); // 0 = Stay, else 1..=3 components
    let mut comps: Vec<CameraComponent> = Vec::new();
    while comps.len() < n {
        let label = rng.pick(&CameraLabel::MOTIONS);
        if comps
            .iter()
            .any(|c| c.label == label || c.label == label.opposite())
        {
            continue;
        }
        use CameraLabel::*;
        let magnitude = match label {
            DollyIn | DollyOut | TruckLeft | TruckRight | PedestalUp | PedestalDown => {
                rng.range(0.04, 0.1)
            }
            _ => rng.range(1.0, 3.0),
        };
        comps.push(CameraComponent { label, magnitude });
    }
    CameraSegment::new(frames, comps)
}

/// Object colours and the words that name them ("red sphere"): a colour in the name lets
/// questions tell apart two objects of the same shape.
const COLORS: [([f32; 3], &str); 6] = [
    ([0.9, 0.2, 0.2], "red"),
    ([0.2, 0.7, 0.9], "blue"),
    ([0.95, 0.8, 0.1], "yellow"),
    ([0.6, 0.3, 0.8], "purple"),
    ([0.2, 0.8, 0.3], "green"),
    ([0.95, 0.5, 0.1], "orange"),
];

/// Seed salt of the reversal stream of [`random_clip`].
const REVERSAL_STREAM: u64 = 0x5245_5645_5253_414C;
/// Chance that a random object is replaced by one that reverses toward/away from the camera.
pub const REVERSAL_PROBABILITY: f64 = 0.25;
/// Path fraction at the turn: the return leg is 0.43..0.6 of the first one, so the object ends
/// clearly on the first leg's side (net direction and net distance change as the first leg).
const REVERSAL_TURN_FRACTION: (f64, f64) = (0.625, 0.70);
/// Nominal camera centre of [`random_clip`] (the start eye is drawn later, within 0.5 m of it).
const NOMINAL_EYE: DVec3 = DVec3::new(0.0, 1.5, 0.0);

/// With [`REVERSAL_PROBABILITY`], a line-of-sight motion that turns back ("first closer, then
/// farther" or the reverse) replacing `motion`, and the object's new base position. Every call
/// draws the same number of values, so later objects do not depend on earlier outcomes. The legs
/// are sized relative to the distance `D` to the camera so that the profile's turn and the net
/// change both clear the 10% rule by a margin without camera motion: toward first, a first leg of
/// 0.4..0.5 D from 6..7.5 m; away first, 0.5..0.6 D from 4..5 m. `None` also when no frame of
/// the speed profile has a path fraction in [`REVERSAL_TURN_FRACTION`] (very short clips).
fn reversal(
    rng: &mut SplitMix64,
    motion: &ObjectMotion,
    position: DVec3,
) -> Result<Option<(ObjectMotion, DVec3)>> {
    let chosen = rng.f64() < REVERSAL_PROBABILITY;
    let toward_first = rng.below(2) == 0;
    let leg_draw = rng.f64();
    let depth_draw = rng.f64();
    let frame_draw = rng.next_u64();
    if !chosen {
        return Ok(None);
    }
    let (lo, hi) = REVERSAL_TURN_FRACTION;
    let turns: Vec<usize> = (motion.start_frame + 1..motion.end_frame)
        .filter(|&t| (lo..=hi).contains(&motion.progress(t)))
        .collect();
    if turns.is_empty() {
        return Ok(None);
    }
    let turn = turns[(frame_draw % turns.len() as u64) as usize];
    let (direction, z, leg) = if toward_first {
        (
            Direction::TowardCamera,
            6.0 + 1.5 * depth_draw,
            0.4 + 0.1 * leg_draw,
        )
    } else {
        (
            Direction::AwayFromCamera,
            4.0 + depth_draw,
            0.5 + 0.1 * leg_draw,
        )
    };
    let base = DVec3::new(position.x, position.y, z);
    let first_leg = leg * (base - NOMINAL_EYE).length();
    let p_turn = motion.progress(turn);
    let mut reversing = ObjectMotion::new(
        direction,
        motion.speed,
        first_leg / p_turn,
        motion.start_frame,
        motion.end_frame,
    )?
    .with_reversal(turn)?;
    reversing.phase = motion.phase;
    Ok(Some((reversing, base)))
}

/// A random clip and its truth (labels that need rendering, e.g. the first-frame bbox, are filled
/// from a render of frame 0).
pub fn random_clip(seed: u64, cfg: &GenConfig) -> Result<(Clip, ClipTruth)> {
    if cfg.frames < 2 {
        return Err(WorldError::ZeroFrames(format!(
            "a clip needs at least 2 frames, got {}",
            cfg.frames
        )));
    }
    let k = Intrinsics::from_fov(cfg.width, cfg.height, cfg.hfov_deg)?;
    let mut rng = SplitMix64::new(seed);
    // Reversals draw from their own stream so every other object stays what it was before
    // reversals existed.
    let mut reversal_rng = SplitMix64::new(seed ^ REVERSAL_STREAM);
    let mut scene = Scene::room(6.0, 12.0, rng.next_u64());
    let n_obj = 1 + rng.below(cfg.max_objects.max(1));
    let slots = [-1.8, 0.0, 1.8, -3.0, 3.0];
    let last = cfg.frames - 1;
    for i in 0..n_obj {
        let (color, color_name) = rng.pick(&COLORS);
        let (other, _) = rng.pick(&COLORS);
        let (shape, name, y) = match rng.below(3) {
            0 => {
                let r = rng.range(0.3, 0.6);
                (
                    Shape::Sphere { radius: r },
                    "sphere",
                    rng.range(r + 0.6, 2.0),
                )
            }
            1 => {
                let h = DVec3::new(
                    rng.range(0.25, 0.5),
                    rng.range(0.25, 0.5),
                    rng.range(0.25, 0.5),
                );
                (
                    Shape::Cuboid { half_extents: h },
                    "box",
                    rng.range(h.y + 0.6, 2.0),
                )
            }
            _ => {
                let hh = rng.range(0.3, 0.6);
                (
                    Shape::Cylinder {
                        radius: rng.range(0.2, 0.4),
                        half_height: hh,
                    },
                    "cylinder",
                    rng.range(hh + 0.6, 2.0),
                )
            }
        };
        let texture = match rng.below(3) {
            0 => Texture::Checker {
                a: color,
                b: other,
                scale: 0.2,
            },
            1 => Texture::Stripes {
                a: color,
                b: other,
                scale: 0.15,
            },
            _ => Texture::Noise {
                a: color,
                b: other,
                scale: 0.2,
                seed: rng.next_u64(),
            },
        };
        let mut position = DVec3::new(
            slots[i % slots.len()] + rng.range(-0.3, 0.3),
            y,
            rng.range(4.5, 7.5),
        );
        let direction = rng.pick(&Direction::ALL);
        let speed = rng.pick(&SpeedPattern::ALL);
        let distance = match direction {
            Direction::Down => rng.range(0.3, (y - 0.6).max(0.35)),
            Direction::TowardCamera | Direction::AwayFromCamera => rng.range(1.0, 2.0),
            _ => rng.range(0.6, 1.4),
        };
        let mut motion = ObjectMotion::new(direction, speed, distance, 0, last)?;
        motion.phase = rng.range(0.0, std::f64::consts::TAU);
        if let Some((reversing, base)) = reversal(&mut reversal_rng, &motion, position)? {
            motion = reversing;
            position = base;
        }
        scene.add_object(Object {
            id: i as u16 + 1,
            name: format!("{color_name} {name}"),
            shape,
            texture,
            position,
            motion: Some(motion),
        })?;
    }
    // Camera: 1..=3 segments splitting the `frames - 1` steps.
    let n_seg = (1 + rng.below(3)).min(last);
    let mut cuts: Vec<usize> = Vec::new();
    while cuts.len() < n_seg - 1 {
        let c = 1 + rng.below(last - 1);
        if !cuts.contains(&c) {
            cuts.push(c);
        }
    }
    cuts.sort();
    cuts.push(last);
    let mut segments = Vec::new();
    let mut prev = 0;
    for c in cuts {
        segments.push(random_segment(&mut rng, c - prev)?);
        prev = c;
    }
    let start = Pose::look_at(
        DVec3::new(rng.range(-0.5, 0.5), 1.5, 0.0),
        DVec3::new(0.0, 1.1, 6.0),
    )?;
    let clip = Clip::new(scene, CameraTrajectory::new(start, segments)?, k)?;
    let truth = clip_truth(&clip)?;
    Ok((clip, truth))
}

/// The ground truth of any clip: camera labels per segment, and per object its motion labels,
/// the distance change to the camera centre from the first to the last frame (10% rule), the
/// distance label over all frames (compound when the distance turns), its
/// first-frame bounding box (from a render of frame 0) and its trajectory. Objects without a
/// motion (or with a zero-length one) are `Stationary`; their speed label is `Constant` and
/// means nothing.
pub fn clip_truth(clip: &Clip) -> Result<ClipTruth> {
    let poses = clip.poses();
    let traj = clip.object_trajectories();
    let last = poses.len() - 1;
    let first = clip.render(0)?;
    let objects = clip
        .scene
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let dists: Vec<f64> = traj
                .iter()
                .zip(&poses)
                .map(|(f, pose)| (f[i] - pose.center).length())
                .collect();
            let (d0, d1) = (dists[0], dists[last]);
            let (direction, speed, moving) = match &o.motion {
                Some(m) if m.direction != Direction::Stationary && m.distance > 0.0 => (
                    m.net_direction(),
                    m.speed,
                    Some((m.start_frame, m.end_frame.min(last))),
                ),
                _ => (Direction::Stationary, SpeedPattern::Constant, None),
            };
            ObjectTruth {
                id: o.id,
                name: o.name.clone(),
                direction,
                speed,
                distance_change: DistanceChange::from_distances(d0, d1, 0.1),
                distance_profile: DistanceProfile::from_distances(&dists, 0.1),
                first_bbox: bbox(&first, o.id),
                trajectory: traj.iter().map(|f| f[i]).collect(),
                moving,
            }
        })
        .collect();
    Ok(ClipTruth {
        camera: clip.camera.segment_ranges(),
        objects,
        poses,
    })
}
