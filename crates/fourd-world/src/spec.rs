//! Scene specs: a JSON file that describes one clip explicitly (`fourd synth --spec FILE.json`).
//!
//! The format is documented with a full example in `docs/synth.md` and
//! `examples/scene-spec.json`. In short:
//!
//! ```json
//! {
//!   "id": "pan_and_ball",                     // optional: clip id (default: the file stem)
//!   "frames": 16, "size": "224x160", "fps": 8, "hfov_deg": 60,
//!   "room": {"half_width": 6, "depth": 12, "seed": 7},
//!   "camera": {
//!     "start": {"eye": [0, 1.5, 0], "look_at": [0, 1.1, 6]},
//!     "segments": [
//!       {"from": 0, "to": 8,  "motion": [{"label": "Pan Left", "magnitude": 2.0},
//!                                        {"label": "Dolly In", "magnitude": 0.05}]},
//!       {"from": 8, "to": 15, "motion": "Stay"}
//!     ]
//!   },
//!   "objects": [
//!     {"name": "ball", "shape": {"type": "sphere", "radius": 0.5},
//!      "texture": {"type": "checker", "colors": [[0.9, 0.2, 0.2], [1, 1, 1]], "scale": 0.2},
//!      "position": [0, 1, 5],
//!      "motion": {"direction": "Moving Left", "speed": "Speeding Up", "magnitude": 1.2,
//!                 "start_frame": 0, "end_frame": 15}}
//!   ]
//! }
//! ```
//!
//! Units: camera magnitudes are **per frame step** (metres for Dolly/Truck/Pedestal, degrees for
//! Pan/Tilt/Roll); an object's `magnitude` is its **total path length** in metres, covered over
//! `start_frame..=end_frame` with the speed pattern's profile; an optional `"reverse_at": F`
//! (`start_frame < F < end_frame`) turns the object back at frame `F` along the same line (e.g.
//! `Moving Toward Camera` then away: "First Getting Closer, Then Farther from Camera"). Segments are `"a->b"` frame ranges
//! like `instructions.json` keys: they must start at 0, join end to start and end at the last
//! frame (`frames - 1`). Labels are matched case-insensitively and accept both the 4DThinker and
//! SpatialVID spellings (`Roll Clockwise` / `Roll CW`; directions with or without `Moving`).
//!
//! Every error names the JSON path of the value at fault (`$.camera.segments[1].motion[0].label`)
//! and says what was expected. Unknown keys are errors too, so a typo is not silently ignored.

use std::path::Path;

use glam::DVec3;
use serde_json::{Map, Value};

use crate::camera::{
    CameraComponent, CameraLabel, CameraSegment, CameraTrajectory, Intrinsics, Pose,
};
use crate::error::{Result, WorldError};
use crate::generate::{clip_truth, ClipTruth};
use crate::motion::{Direction, ObjectMotion, SpeedPattern};
use crate::scene::{Clip, Object, Scene, Shape, Texture};

/// A clip built from a scene spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSpec {
    /// The spec's `id`, if it has one.
    pub id: Option<String>,
    pub clip: Clip,
    pub truth: ClipTruth,
    pub fps: u32,
}

/// Default camera start: the same view the random generator uses.
const DEFAULT_EYE: [f64; 3] = [0.0, 1.5, 0.0];
const DEFAULT_LOOK_AT: [f64; 3] = [0.0, 1.1, 6.0];

/// Colours of objects whose spec has no texture (by object index).
const DEFAULT_COLORS: [[f32; 3]; 4] = [
    [0.9, 0.2, 0.2],
    [0.2, 0.7, 0.9],
    [0.95, 0.8, 0.1],
    [0.6, 0.3, 0.8],
];

fn err(path: &str, msg: impl Into<String>) -> WorldError {
    WorldError::Spec {
        path: path.to_string(),
        msg: msg.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object value whose keys are all in `allowed`.
fn object<'a>(v: &'a Value, path: &str, allowed: &[&str]) -> Result<&'a Map<String, Value>> {
    let m = v
        .as_object()
        .ok_or_else(|| err(path, format!("expected an object, got {}", type_name(v))))?;
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(err(
                path,
                format!(
                    "unknown field {k:?}; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(m)
}

fn field_path(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn number(v: &Value, path: &str) -> Result<f64> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| err(path, format!("expected a number, got {}", type_name(v))))
}

fn opt_number(m: &Map<String, Value>, path: &str, key: &str, default: f64) -> Result<f64> {
    m.get(key)
        .map_or(Ok(default), |v| number(v, &field_path(path, key)))
}

fn positive(m: &Map<String, Value>, path: &str, key: &str) -> Result<f64> {
    let p = field_path(path, key);
    let v = m
        .get(key)
        .ok_or_else(|| err(path, format!("missing field {key:?}")))?;
    let x = number(v, &p)?;
    if x <= 0.0 {
        return Err(err(&p, format!("must be greater than 0, got {x}")));
    }
    Ok(x)
}

fn integer(v: &Value, path: &str) -> Result<u64> {
    v.as_u64().ok_or_else(|| {
        err(
            path,
            format!("expected a non-negative integer, got {}", short(v)),
        )
    })
}

fn short(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        other => type_name(other).to_string(),
    }
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| err(path, format!("expected a string, got {}", type_name(v))))
}

fn vec3(v: &Value, path: &str) -> Result<DVec3> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| err(path, format!("expected [x, y, z], got {}", type_name(v))))?;
    Ok(DVec3::new(
        number(&a[0], &format!("{path}[0]"))?,
        number(&a[1], &format!("{path}[1]"))?,
        number(&a[2], &format!("{path}[2]"))?,
    ))
}

fn color(v: &Value, path: &str) -> Result<[f32; 3]> {
    let c = vec3(v, path)?;
    for (j, x) in c.to_array().into_iter().enumerate() {
        if !(0.0..=1.0).contains(&x) {
            return Err(err(
                &format!("{path}[{j}]"),
                format!("colour components are in [0, 1], got {x}"),
            ));
        }
    }
    Ok([c.x as f32, c.y as f32, c.z as f32])
}

/// `224`, `"224x160"` or `[224, 160]`.
fn size(v: &Value, path: &str) -> Result<(u32, u32)> {
    let bad = || {
        err(
            path,
            format!(
                "expected a size: a number (square), \"WxH\" or [W, H], got {}",
                short(v)
            ),
        )
    };
    let to_u32 = |x: u64| u32::try_from(x).map_err(|_| bad());
    let (w, h) = match v {
        Value::Number(_) => {
            let s = to_u32(integer(v, path)?)?;
            (s, s)
        }
        Value::String(s) => {
            let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
            (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            )
        }
        Value::Array(a) if a.len() == 2 => (
            to_u32(integer(&a[0], &format!("{path}[0]"))?)?,
            to_u32(integer(&a[1], &format!("{path}[1]"))?)?,
        ),
        _ => return Err(bad()),
    };
    if w == 0 || h == 0 {
        return Err(err(
            path,
            format!("width and height must both be at least 1, got {w}x{h}"),
        ));
    }
    Ok((w, h))
}

/// Reads and builds a scene spec file; the clip id defaults to the file stem.
pub fn load_scene_spec(path: &Path) -> Result<SceneSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| WorldError::Read {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut spec = parse_scene_spec(&text)?;
    if spec.id.is_none() {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !valid_clip_id(&stem) {
            return Err(err(
                "$",
                format!("no \"id\" and the file stem {stem:?} is not a usable clip id ({ID_RULE}); add an \"id\""),
            ));
        }
        spec.id = Some(stem);
    }
    Ok(spec)
}

const ID_RULE: &str = "non-empty ASCII letters, digits, '_', '-' and '.', not only dots";

/// Clip ids become file and folder names.
fn valid_clip_id(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().all(|c| c == '.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Parses a scene spec (JSON text) and builds its clip and ground truth.
pub fn parse_scene_spec(text: &str) -> Result<SceneSpec> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| err("$", format!("invalid JSON: {e}")))?;
    let top = object(
        &root,
        "$",
        &[
            "id", "frames", "size", "fps", "hfov_deg", "room", "camera", "objects",
        ],
    )?;
    let id = top
        .get("id")
        .map(|v| string(v, "$.id").map(str::to_string))
        .transpose()?;
    if let Some(id) = &id {
        if !valid_clip_id(id) {
            return Err(err(
                "$.id",
                format!("{id:?} is not a usable clip id: {ID_RULE}"),
            ));
        }
    }

    let frames_v = top
        .get("frames")
        .ok_or_else(|| err("$", "missing field \"frames\""))?;
    let frames = integer(frames_v, "$.frames")? as usize;
    if frames < 2 {
        return Err(err(
            "$.frames",
            format!("a clip needs at least 2 frames (camera labels need a pair), got {frames}"),
        ));
    }
    let (width, height) = size(
        top.get("size")
            .ok_or_else(|| err("$", "missing field \"size\""))?,
        "$.size",
    )?;
    let fps = match top.get("fps") {
        Some(v) => {
            let f = integer(v, "$.fps")?;
            if f == 0 || f > 1000 {
                return Err(err("$.fps", format!("must be between 1 and 1000, got {f}")));
            }
            f as u32
        }
        None => 8,
    };
    let hfov = opt_number(top, "$", "hfov_deg", 60.0)?;
    let k =
        Intrinsics::from_fov(width, height, hfov).map_err(|e| err("$.hfov_deg", e.to_string()))?;

    let mut scene = match top.get("room") {
        Some(v) => {
            let m = object(v, "$.room", &["half_width", "depth", "seed"])?;
            let seed = m.get("seed").map_or(Ok(0), |v| integer(v, "$.room.seed"))?;
            let half_width = opt_number(m, "$.room", "half_width", 6.0)?;
            let depth = opt_number(m, "$.room", "depth", 12.0)?;
            for (key, x) in [("half_width", half_width), ("depth", depth)] {
                if x <= 0.5 {
                    return Err(err(
                        &format!("$.room.{key}"),
                        format!("must be greater than 0.5 metres, got {x}"),
                    ));
                }
            }
            Scene::room(half_width, depth, seed)
        }
        None => Scene::room(6.0, 12.0, 0),
    };

    let camera = parse_camera(top.get("camera"), frames)?;

    if let Some(v) = top.get("objects") {
        let list = v.as_array().ok_or_else(|| {
            err(
                "$.objects",
                format!("expected an array, got {}", type_name(v)),
            )
        })?;
        if list.len() >= u16::MAX as usize {
            return Err(err("$.objects", "too many objects"));
        }
        for (i, o) in list.iter().enumerate() {
            let object = parse_object(o, &format!("$.objects[{i}]"), i, frames)?;
            scene
                .add_object(object)
                .map_err(|e| err(&format!("$.objects[{i}]"), e.to_string()))?;
        }
    }

    let clip = Clip::new(scene, camera, k).map_err(|e| err("$", e.to_string()))?;
    let truth = clip_truth(&clip)?;
    Ok(SceneSpec {
        id,
        clip,
        truth,
        fps,
    })
}

fn parse_camera(v: Option<&Value>, frames: usize) -> Result<CameraTrajectory> {
    let Some(v) = v else {
        // No camera: a still camera at the default view.
        let start = Pose::look_at(DVec3::from(DEFAULT_EYE), DVec3::from(DEFAULT_LOOK_AT))?;
        return CameraTrajectory::new(start, vec![CameraSegment::stay(frames - 1)?]);
    };
    let m = object(v, "$.camera", &["start", "segments"])?;
    let (eye, look_at) = match m.get("start") {
        Some(s) => {
            let sm = object(s, "$.camera.start", &["eye", "look_at"])?;
            let eye = sm.get("eye").map_or(Ok(DVec3::from(DEFAULT_EYE)), |v| {
                vec3(v, "$.camera.start.eye")
            })?;
            let look_at = sm
                .get("look_at")
                .map_or(Ok(DVec3::from(DEFAULT_LOOK_AT)), |v| {
                    vec3(v, "$.camera.start.look_at")
                })?;
            (eye, look_at)
        }
        None => (DVec3::from(DEFAULT_EYE), DVec3::from(DEFAULT_LOOK_AT)),
    };
    let start = Pose::look_at(eye, look_at).map_err(|e| err("$.camera.start", e.to_string()))?;
    let last = frames - 1;
    let segments = match m.get("segments") {
        None => vec![CameraSegment::stay(last)?],
        Some(sv) => {
            let list = sv.as_array().ok_or_else(|| {
                err(
                    "$.camera.segments",
                    format!("expected an array, got {}", type_name(sv)),
                )
            })?;
            if list.is_empty() {
                return Err(err(
                    "$.camera.segments",
                    format!("needs at least one segment covering frames 0->{last}"),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            let mut expected_from = 0usize;
            for (i, s) in list.iter().enumerate() {
                let p = format!("$.camera.segments[{i}]");
                let sm = object(s, &p, &["from", "to", "motion"])?;
                let from = integer(
                    sm.get("from")
                        .ok_or_else(|| err(&p, "missing field \"from\""))?,
                    &format!("{p}.from"),
                )? as usize;
                let to = integer(
                    sm.get("to")
                        .ok_or_else(|| err(&p, "missing field \"to\""))?,
                    &format!("{p}.to"),
                )? as usize;
                if from != expected_from {
                    return Err(err(
                        &format!("{p}.from"),
                        format!(
                            "segments must join up: expected {expected_from} (the previous segment's \"to\", or 0 for the first), got {from}"
                        ),
                    ));
                }
                if to <= from {
                    return Err(err(
                        &format!("{p}.to"),
                        format!("a segment covers zero frames: \"to\" ({to}) must be greater than \"from\" ({from})"),
                    ));
                }
                if to > last {
                    return Err(err(
                        &format!("{p}.to"),
                        format!(
                            "the clip has {frames} frames, so the last frame is {last}; got {to}"
                        ),
                    ));
                }
                let components = parse_motion(sm.get("motion"), &format!("{p}.motion"))?;
                out.push(
                    CameraSegment::new(to - from, components)
                        .map_err(|e| err(&format!("{p}.motion"), e.to_string()))?,
                );
                expected_from = to;
            }
            if expected_from != last {
                return Err(err(
                    "$.camera.segments",
                    format!(
                        "segments end at frame {expected_from} but the clip has {frames} frames: the last segment's \"to\" must be {last}"
                    ),
                ));
            }
            out
        }
    };
    CameraTrajectory::new(start, segments)
}

/// A segment's motion: the string `"Stay"`, or a list of `{"label", "magnitude"}` objects (an
/// empty list or `[{"label": "Stay"}]` is also still). A bare motion label string is refused
/// because it has no magnitude.
fn parse_motion(v: Option<&Value>, path: &str) -> Result<Vec<CameraComponent>> {
    let Some(v) = v else {
        return Err(err(
            path,
            "missing: give \"Stay\" or a list of {\"label\", \"magnitude\"}",
        ));
    };
    if let Value::String(s) = v {
        let label: CameraLabel = s
            .parse()
            .map_err(|e: WorldError| err(path, e.to_string()))?;
        if label != CameraLabel::Stay {
            return Err(err(
                path,
                format!(
                    "{s:?} needs a magnitude: write [{{\"label\": {s:?}, \"magnitude\": ...}}]"
                ),
            ));
        }
        return Ok(Vec::new());
    }
    let list = v.as_array().ok_or_else(|| {
        err(
            path,
            format!(
                "expected \"Stay\" or a list of {{\"label\", \"magnitude\"}}, got {}",
                type_name(v)
            ),
        )
    })?;
    list.iter()
        .enumerate()
        .map(|(j, c)| {
            let cp = format!("{path}[{j}]");
            let cm = object(c, &cp, &["label", "magnitude"])?;
            let lp = format!("{cp}.label");
            let label: CameraLabel = string(
                cm.get("label")
                    .ok_or_else(|| err(&cp, "missing field \"label\""))?,
                &lp,
            )?
            .parse()
            .map_err(|e: WorldError| err(&lp, e.to_string()))?;
            let magnitude = if label == CameraLabel::Stay {
                0.0
            } else {
                positive(cm, &cp, "magnitude")?
            };
            Ok(CameraComponent { label, magnitude })
        })
        .collect()
}

fn parse_object(v: &Value, path: &str, index: usize, frames: usize) -> Result<Object> {
    let m = object(v, path, &["name", "shape", "texture", "position", "motion"])?;
    let sp = field_path(path, "shape");
    let shape_v = m
        .get("shape")
        .ok_or_else(|| err(path, "missing field \"shape\""))?;
    let sm = object(
        shape_v,
        &sp,
        &["type", "radius", "half_extents", "half_height"],
    )?;
    let kind = string(
        sm.get("type")
            .ok_or_else(|| err(&sp, "missing field \"type\""))?,
        &field_path(&sp, "type"),
    )?;
    let (shape, default_name) = match kind.to_ascii_lowercase().as_str() {
        "sphere" => (
            Shape::Sphere {
                radius: positive(sm, &sp, "radius")?,
            },
            "sphere",
        ),
        "box" | "cuboid" => {
            let hp = field_path(&sp, "half_extents");
            let h = vec3(
                sm.get("half_extents")
                    .ok_or_else(|| err(&sp, "missing field \"half_extents\""))?,
                &hp,
            )?;
            if h.min_element() <= 0.0 {
                return Err(err(&hp, "every half extent must be greater than 0"));
            }
            (Shape::Cuboid { half_extents: h }, "box")
        }
        "cylinder" => (
            Shape::Cylinder {
                radius: positive(sm, &sp, "radius")?,
                half_height: positive(sm, &sp, "half_height")?,
            },
            "cylinder",
        ),
        other => {
            return Err(err(
                &field_path(&sp, "type"),
                format!("unknown shape {other:?}; expected one of: sphere, box, cylinder"),
            ))
        }
    };
    let name = match m.get("name") {
        Some(n) => {
            let s = string(n, &field_path(path, "name"))?.trim();
            if s.is_empty() {
                return Err(err(&field_path(path, "name"), "must not be empty"));
            }
            s.to_string()
        }
        None => default_name.to_string(),
    };
    let texture = match m.get("texture") {
        Some(t) => parse_texture(t, &field_path(path, "texture"), index)?,
        None => Texture::Solid(DEFAULT_COLORS[index % DEFAULT_COLORS.len()]),
    };
    let position = vec3(
        m.get("position")
            .ok_or_else(|| err(path, "missing field \"position\""))?,
        &field_path(path, "position"),
    )?;
    let motion = match m.get("motion") {
        Some(mv) => Some(parse_object_motion(
            mv,
            &field_path(path, "motion"),
            frames,
        )?),
        None => None,
    };
    Ok(Object {
        id: index as u16 + 1,
        name,
        shape,
        texture,
        position,
        motion,
    })
}

fn parse_texture(v: &Value, path: &str, index: usize) -> Result<Texture> {
    let m = object(v, path, &["type", "color", "colors", "scale", "seed"])?;
    let kind = string(
        m.get("type")
            .ok_or_else(|| err(path, "missing field \"type\""))?,
        &field_path(path, "type"),
    )?
    .to_ascii_lowercase();
    let two = || -> Result<([f32; 3], [f32; 3])> {
        let cp = field_path(path, "colors");
        let c = m.get("colors").ok_or_else(|| {
            err(
                path,
                format!("a {kind} texture needs \"colors\": [[r, g, b], [r, g, b]]"),
            )
        })?;
        match c.as_array() {
            Some(a) if a.len() == 2 => Ok((
                color(&a[0], &format!("{cp}[0]"))?,
                color(&a[1], &format!("{cp}[1]"))?,
            )),
            _ => Err(err(
                &cp,
                "expected two colours [[r, g, b], [r, g, b]] with components in [0, 1]",
            )),
        }
    };
    let scale = || -> Result<f64> {
        match m.get("scale") {
            Some(_) => positive(m, path, "scale"),
            None => Ok(0.2),
        }
    };
    Ok(match kind.as_str() {
        "solid" => Texture::Solid(match m.get("color") {
            Some(c) => color(c, &field_path(path, "color"))?,
            None => DEFAULT_COLORS[index % DEFAULT_COLORS.len()],
        }),
        "checker" => {
            let (a, b) = two()?;
            Texture::Checker {
                a,
                b,
                scale: scale()?,
            }
        }
        "stripes" => {
            let (a, b) = two()?;
            Texture::Stripes {
                a,
                b,
                scale: scale()?,
            }
        }
        "noise" => {
            let (a, b) = two()?;
            let seed = m
                .get("seed")
                .map_or(Ok(index as u64), |s| integer(s, &field_path(path, "seed")))?;
            Texture::Noise {
                a,
                b,
                scale: scale()?,
                seed,
            }
        }
        other => {
            return Err(err(
                &field_path(path, "type"),
                format!(
                    "unknown texture {other:?}; expected one of: solid, checker, stripes, noise"
                ),
            ))
        }
    })
}

fn parse_object_motion(v: &Value, path: &str, frames: usize) -> Result<ObjectMotion> {
    let m = object(
        v,
        path,
        &[
            "direction",
            "speed",
            "magnitude",
            "start_frame",
            "end_frame",
            "phase",
            "reverse_at",
        ],
    )?;
    let dp = field_path(path, "direction");
    let direction: Direction = string(
        m.get("direction")
            .ok_or_else(|| err(path, "missing field \"direction\""))?,
        &dp,
    )?
    .parse()
    .map_err(|e: WorldError| err(&dp, e.to_string()))?;
    let speed: SpeedPattern = match m.get("speed") {
        Some(s) => {
            let spp = field_path(path, "speed");
            string(s, &spp)?
                .parse()
                .map_err(|e: WorldError| err(&spp, e.to_string()))?
        }
        None => SpeedPattern::Constant,
    };
    let magnitude = if direction == Direction::Stationary {
        0.0
    } else {
        positive(m, path, "magnitude")?
    };
    let last = frames - 1;
    let start = m
        .get("start_frame")
        .map_or(Ok(0), |s| integer(s, &field_path(path, "start_frame")))? as usize;
    let end = m.get("end_frame").map_or(Ok(last as u64), |s| {
        integer(s, &field_path(path, "end_frame"))
    })? as usize;
    if end > last {
        return Err(err(
            &field_path(path, "end_frame"),
            format!("the clip has {frames} frames, so the last frame is {last}; got {end}"),
        ));
    }
    if end <= start {
        return Err(err(
            &field_path(path, "end_frame"),
            format!("the motion covers zero frames: end_frame ({end}) must be greater than start_frame ({start})"),
        ));
    }
    let mut motion = ObjectMotion::new(direction, speed, magnitude, start, end)
        .map_err(|e| err(path, e.to_string()))?;
    motion.phase = opt_number(m, path, "phase", 0.0)?;
    if let Some(r) = m.get("reverse_at") {
        let rp = field_path(path, "reverse_at");
        let frame = integer(r, &rp)? as usize;
        motion = motion.with_reversal(frame).map_err(|_| {
            err(
                &rp,
                format!("the object turns back within its motion: reverse_at ({frame}) must lie strictly between start_frame ({start}) and end_frame ({end})"),
            )
        })?;
    }
    Ok(motion)
}
