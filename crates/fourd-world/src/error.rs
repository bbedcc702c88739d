//! Errors of the synthetic world.

/// Everything that can go wrong when building or rendering a synthetic clip.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum WorldError {
    /// A clip, trajectory segment or object motion asked for zero frames.
    #[error("zero frames: {0} must cover at least one frame")]
    ZeroFrames(String),
    /// Image width or height is zero.
    #[error("invalid image size {width}x{height}: width and height must both be at least 1")]
    ZeroSize { width: u32, height: u32 },
    /// A camera-motion label string that is not one of the 12 SpatialVID labels or `Stay`.
    #[error("unknown camera label {0:?}; expected one of: Pan Left, Pan Right, Tilt Up, Tilt Down, Roll Clockwise, Roll Counter-Clockwise, Dolly In, Dolly Out, Truck Left, Truck Right, Pedestal Up, Pedestal Down, Stay")]
    UnknownCameraLabel(String),
    /// An object direction string that is not one of the reference's 11.
    #[error("unknown object direction {0:?}; expected one of: Moving Left, Moving Right, Moving Up, Moving Down, Moving Left-Up, Moving Left-Down, Moving Right-Up, Moving Right-Down, Moving Toward Camera, Moving Away from Camera, Stationary")]
    UnknownDirection(String),
    /// A speed-pattern string that is not one of the reference's 6.
    #[error("unknown speed pattern {0:?}; expected one of: Speeding Up, Slowing Down, Maintaining a Constant Speed, First Speeding Up, Then Slowing Down, First Slowing Down, Then Speeding Up, Moving at Varying Speeds")]
    UnknownSpeed(String),
    /// A motion segment is inconsistent (too many components, opposite components, bad magnitude).
    #[error("invalid camera segment: {0}")]
    InvalidSegment(String),
    /// Some numeric parameter is out of range (field of view, magnitude, object size, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Two objects share an instance id, or an object uses the reserved id 0.
    #[error("invalid object id {0}: ids must be unique and non-zero (0 is the background)")]
    InvalidObjectId(u16),
    /// A scene spec value is missing, malformed or out of range; `path` is its JSON path
    /// (`$.camera.segments[1].motion[0].label`).
    #[error("scene spec {path}: {msg}")]
    Spec { path: String, msg: String },
    /// Reading an input file (a scene spec) failed.
    #[error("cannot read {}: {msg}", path.display())]
    Read {
        path: std::path::PathBuf,
        msg: String,
    },
    /// Writing an output file (or encoding the video) failed.
    #[error("cannot write {}: {msg}", path.display())]
    Io {
        path: std::path::PathBuf,
        msg: String,
    },
}

pub type Result<T> = std::result::Result<T, WorldError>;
