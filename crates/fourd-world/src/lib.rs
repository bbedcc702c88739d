//! `fourd_world`: a small deterministic synthetic 4D world.
//!
//! Ray-cast analytic scenes (textured planes, spheres, boxes, cylinders) seen by a pinhole camera
//! that moves along timed segments of the 12 SpatialVID camera-motion labels, with objects moving
//! in the reference's 11 camera-view directions and 6 speed patterns. Every frame gives RGB,
//! depth along the optical axis and instance ids; poses export as SpatialVID `poses.npy` rows.
//! [`spatialvid`] implements SpatialVID's camera-labelling rule on such pose rows.
//! [`spec`] builds a clip from a JSON scene spec (explicit camera segments and objects);
//! [`spatialvid_out`] writes clips in SpatialVID's layout and [`benchmark`] turns their truth into a
//! DSR-Bench-format benchmark.
//!
//! Conventions are documented in [`camera`] (world +Y up; camera x right, y down, z forward).
//!
//! ```
//! use fourd_world::*;
//! use fourd_world::glam::DVec3;
//!
//! let mut scene = Scene::room(6.0, 12.0, 7);
//! scene.add_object(Object {
//!     id: 1,
//!     name: "ball".into(),
//!     shape: Shape::Sphere { radius: 0.5 },
//!     texture: Texture::Solid([1.0, 0.2, 0.2]),
//!     position: DVec3::new(0.0, 1.0, 5.0),
//!     motion: Some(ObjectMotion::new(Direction::Left, SpeedPattern::Constant, 1.0, 0, 8)?),
//! })?;
//! let start = Pose::look_at(DVec3::new(0.0, 1.5, 0.0), DVec3::new(0.0, 1.0, 6.0))?;
//! let camera = CameraTrajectory::new(start, vec![
//!     CameraSegment::from_labels(8, &[("Pan Left", 2.0), ("Dolly In", 0.05)])?,
//! ])?;
//! let clip = Clip::new(scene, camera, Intrinsics::from_fov(64, 48, 60.0)?)?;
//! let frame = clip.render(3)?; // frame.rgb, frame.depth (metres, optical axis), frame.ids
//! assert_eq!(frame.ids.len(), 64 * 48);
//! let poses = clip.poses_w2c(); // [tx, ty, tz, qx, qy, qz, qw] per frame (9 frames)
//! let steps = label_poses(&poses, &RuleParams { interval: 1, alpha: 1.0, ..Default::default() })?;
//! assert_eq!(steps[0].labels, vec![CameraLabel::DollyIn, CameraLabel::PanLeft]);
//! # Ok::<(), WorldError>(())
//! ```

pub mod benchmark;
pub mod camera;
pub mod demo_world;
pub mod depth_archive;
pub mod error;
pub mod generate;
pub mod motion;
pub mod npy;
pub mod scene;
pub mod source;
pub mod spatialvid;
pub mod spatialvid_out;
pub mod spec;

pub use camera::{CameraComponent, CameraLabel, CameraSegment, CameraTrajectory, Intrinsics, Pose};
pub use error::{Result, WorldError};
pub use generate::{
    bbox, clip_truth, random_clip, ClipTruth, DistanceChange, DistanceProfile, GenConfig,
    ObjectTruth, SplitMix64, DISTANCE_CLOSER_THEN_FARTHER, DISTANCE_FARTHER_THEN_CLOSER,
    REVERSAL_PROBABILITY,
};
pub use glam;
pub use motion::{Direction, ObjectMotion, SpeedPattern};
pub use scene::{render_frame, Clip, Frame, Object, Plane, Scene, Shape, Texture};
pub use source::{
    clip_seed, write_benchmark, write_spatialvid, write_spatialvid_as, ClipSource, FrameSize,
    SourcedClip, WrittenBenchmark,
};
pub use spatialvid::{
    label_poses, label_poses_enhanced, merge_instructions, move_dist, relative_motion,
    EnhancedParams, LabelledStep, RelativeMotion, RuleParams,
};
pub use spatialvid_out::{
    annotation_interval, dist_level, instructions_from_poses, spatialvid_move_dist, write_clip,
    write_clip_as, ClipRow, Layout, INSTRUCTION_RULE, METADATA_FILES,
};
pub use spec::{load_scene_spec, parse_scene_spec, SceneSpec};
