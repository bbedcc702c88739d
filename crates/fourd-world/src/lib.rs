//! `fourd_world`: a small deterministic synthetic 4D world.
//!
//! Ray-cast analytic scenes (textured planes, spheres, boxes, cylinders) seen by a pinhole camera
//! that moves along timed segments of the 12 SpatialVID camera-motion labels, with objects moving
//! in the reference's 11 camera-view directions and 6 speed patterns. Every frame gives RGB,
//! depth along the optical axis and instance ids; poses export as SpatialVID `poses.npy` rows.
//! [`spatialvid`] implements SpatialVID's camera-labelling rule on such pose rows.
//!
//! Conventions are documented in [`camera`] (world +Y up; camera x right, y down, z forward).

pub mod camera;
pub mod error;
pub mod motion;
pub mod scene;
pub mod spatialvid;

pub use camera::{CameraComponent, CameraLabel, CameraSegment, CameraTrajectory, Intrinsics, Pose};
pub use error::{Result, WorldError};
pub use glam;
pub use motion::{Direction, ObjectMotion, SpeedPattern};
pub use scene::{render_frame, Clip, Frame, Object, Plane, Scene, Shape, Texture};
pub use spatialvid::{label_poses, merge_instructions, relative_motion, LabelledStep, RelativeMotion, RuleParams};
