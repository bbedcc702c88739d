//! Scene specs: the documented example builds the clip it describes; bad specs name the field.

use fourd_world::benchmark::view_direction;
use fourd_world::*;
use serde_json::{json, Value};

fn example_text() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scene-spec.json"
    );
    std::fs::read_to_string(path).expect("examples/scene-spec.json")
}

#[test]
fn example_spec_builds_the_described_clip() {
    let spec = parse_scene_spec(&example_text()).unwrap();
    assert_eq!(spec.id.as_deref(), Some("pan_dolly_then_stay"));
    assert_eq!(spec.fps, 8);
    let clip = &spec.clip;
    assert_eq!(clip.num_frames(), 16);
    assert_eq!((clip.intrinsics.width, clip.intrinsics.height), (224, 160));
    use CameraLabel::*;
    assert_eq!(
        spec.truth.camera,
        vec![
            (0, 6, vec![DollyIn, PanLeft]),
            (6, 10, vec![Stay]),
            (10, 15, vec![TruckRight, TiltUp, RollClockwise]),
        ]
    );
    // The SpatialVID rule run on the poses yields exactly the segment labels, step by step.
    let instr = instructions_from_poses(&clip.poses_w2c()).unwrap();
    let got: Vec<(String, Vec<CameraLabel>)> = instr;
    assert_eq!(
        got,
        vec![
            ("0->6".to_string(), vec![DollyIn, PanLeft]),
            ("6->10".to_string(), vec![Stay]),
            (
                "10->15".to_string(),
                vec![TruckRight, TiltUp, RollClockwise]
            ),
        ]
    );

    let objects = &spec.truth.objects;
    assert_eq!(objects.len(), 3);
    assert_eq!(
        objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["ball", "crate", "pillar"]
    );
    assert_eq!(objects[0].direction, Direction::Right);
    assert_eq!(objects[0].speed, SpeedPattern::SpeedingUp);
    assert_eq!(objects[1].direction, Direction::TowardCamera);
    assert_eq!(objects[1].moving, Some((4, 15)));
    assert_eq!(objects[2].direction, Direction::Stationary);
    assert_eq!(objects[2].moving, None);
    // Object labels agree with the geometry: the displacement over each motion, seen from the
    // camera at the motion's first frame, classifies as the spec's direction; the path length is
    // the spec's magnitude; the pillar never moves.
    for (o, magnitude) in objects.iter().zip([1.6, 1.5, 0.0]) {
        if let Some((a, b)) = o.moving {
            let d = o.trajectory[b] - o.trajectory[a];
            assert_eq!(
                view_direction(d, o.trajectory[a], &spec.truth.poses[a]),
                Some(o.direction),
                "{}",
                o.name
            );
            // The crate rests until frame 4, then covers its path.
            assert_eq!(o.trajectory[0], o.trajectory[a]);
        }
        assert!((o.path_length() - magnitude).abs() < 1e-9, "{}", o.name);
    }
    // The crate comes toward the camera and the camera dollies in: it ends closer.
    assert_eq!(objects[1].distance_change, DistanceChange::Closer);
    assert!(objects.iter().all(|o| o.first_bbox.is_some()));
}

#[test]
fn minimal_spec_is_a_still_empty_room() {
    let spec = parse_scene_spec(r#"{"frames": 5, "size": 32}"#).unwrap();
    assert_eq!(spec.clip.num_frames(), 5);
    assert_eq!(spec.truth.camera, vec![(0, 4, vec![CameraLabel::Stay])]);
    assert!(spec.truth.objects.is_empty());
    assert_eq!(spec.fps, 8);
    // Same text, same clip.
    assert_eq!(
        parse_scene_spec(r#"{"frames": 5, "size": 32}"#).unwrap(),
        spec
    );
}

/// Applies `edit` to the example and returns the error text of building it.
fn error_after(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&example_text()).unwrap();
    edit(&mut v);
    match parse_scene_spec(&v.to_string()) {
        Ok(_) => panic!("spec was accepted: {v}"),
        Err(e) => e.to_string(),
    }
}

fn set(v: &mut Value, pointer: &str, value: Value) {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the example")) = value;
}

#[test]
fn bad_specs_name_the_field_at_fault() {
    type Case = (Box<dyn FnOnce(&mut Value)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|v| set(v, "/frames", json!(0))),
            "$.frames",
            "at least 2 frames",
        ),
        (
            Box::new(|v| set(v, "/frames", json!(-3))),
            "$.frames",
            "non-negative integer",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("frames");
            }),
            "$:",
            "missing field \"frames\"",
        ),
        (
            Box::new(|v| set(v, "/size", json!(0))),
            "$.size",
            "at least 1",
        ),
        (
            Box::new(|v| set(v, "/size", json!("64x0"))),
            "$.size",
            "at least 1",
        ),
        (
            Box::new(|v| set(v, "/size", json!("big"))),
            "$.size",
            "\"WxH\"",
        ),
        (
            Box::new(|v| set(v, "/fps", json!(0))),
            "$.fps",
            "between 1 and 1000",
        ),
        (
            Box::new(|v| {
                set(
                    v,
                    "/camera/segments/0/motion/0/label",
                    json!("Pan Sideways"),
                )
            }),
            "$.camera.segments[0].motion[0].label",
            "unknown camera label \"Pan Sideways\"",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/2/motion/1/magnitude", json!(-1.0))),
            "$.camera.segments[2].motion[1].magnitude",
            "greater than 0",
        ),
        (
            Box::new(|v| {
                v.pointer_mut("/camera/segments/0/motion/1")
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove("magnitude");
            }),
            "$.camera.segments[0].motion[1]",
            "missing field \"magnitude\"",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/0/motion/1/label", json!("Pan Right"))),
            "$.camera.segments[0].motion",
            "same axis",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/1/motion", json!("Pan Left"))),
            "$.camera.segments[1].motion",
            "needs a magnitude",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/1/from", json!(7))),
            "$.camera.segments[1].from",
            "expected 6",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/1/to", json!(6))),
            "$.camera.segments[1].to",
            "zero frames",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/2/to", json!(16))),
            "$.camera.segments[2].to",
            "last frame is 15",
        ),
        (
            Box::new(|v| set(v, "/camera/segments/2/to", json!(14))),
            "$.camera.segments:",
            "must be 15",
        ),
        (
            Box::new(|v| set(v, "/objects/0/motion/direction", json!("Moving Sideways"))),
            "$.objects[0].motion.direction",
            "unknown object direction",
        ),
        (
            Box::new(|v| set(v, "/objects/1/motion/speed", json!("Warp Speed"))),
            "$.objects[1].motion.speed",
            "unknown speed pattern",
        ),
        (
            Box::new(|v| set(v, "/objects/1/motion/end_frame", json!(20))),
            "$.objects[1].motion.end_frame",
            "last frame is 15",
        ),
        (
            Box::new(|v| set(v, "/objects/1/motion/start_frame", json!(15))),
            "$.objects[1].motion.end_frame",
            "zero frames",
        ),
        (
            Box::new(|v| set(v, "/objects/0/motion/magnitude", json!(0))),
            "$.objects[0].motion.magnitude",
            "greater than 0",
        ),
        (
            Box::new(|v| set(v, "/objects/0/shape/type", json!("torus"))),
            "$.objects[0].shape.type",
            "unknown shape \"torus\"",
        ),
        (
            Box::new(|v| set(v, "/objects/0/shape/radius", json!("big"))),
            "$.objects[0].shape.radius",
            "expected a number",
        ),
        (
            Box::new(|v| set(v, "/objects/2/texture/colors/1/0", json!(2.0))),
            "$.objects[2].texture.colors[1][0]",
            "in [0, 1]",
        ),
        (
            Box::new(|v| set(v, "/objects/1/position", json!([1, 2]))),
            "$.objects[1].position",
            "[x, y, z]",
        ),
        (
            Box::new(|v| {
                let o = v
                    .pointer_mut("/objects/0")
                    .unwrap()
                    .as_object_mut()
                    .unwrap();
                let p = o.remove("position").unwrap();
                o.insert("positon".into(), p);
            }),
            "$.objects[0]:",
            "unknown field \"positon\"",
        ),
        (
            Box::new(|v| set(v, "/camera/start/look_at", json!([0, 1.5, 0]))),
            "$.camera.start",
            "coincide",
        ),
        (
            Box::new(|v| set(v, "/id", json!("../escape"))),
            "$.id",
            "not a usable clip id",
        ),
    ];
    for (edit, path, msg) in cases {
        let e = error_after(edit);
        assert!(e.contains(path), "expected path {path:?} in: {e}");
        assert!(e.contains(msg), "expected {msg:?} in: {e}");
    }
    let e = parse_scene_spec("{\"frames\": 4,").unwrap_err().to_string();
    assert!(e.contains("$: invalid JSON"), "{e}");
}
