//! Objects that turn back toward/away from the camera: the depth trajectory seen by the camera
//! turns, and the truth records the compound distance label `fourd-data` asks with.

use fourd_world::glam::{DMat3, DQuat, DVec3};
use fourd_world::*;
use serde_json::json;

/// A still camera and one sphere on the line of sight, moving `direction` and turning back at
/// frame 5 of 8 (constant speed: 5/7 of the path out, 2/7 back).
fn reversing_spec(direction: &str, z: f64, magnitude: f64) -> SceneSpec {
    let spec = json!({
        "frames": 8, "size": 48,
        "objects": [{
            "name": "ball",
            "shape": {"type": "sphere", "radius": 0.5},
            "texture": {"type": "checker", "colors": [[0.9, 0.2, 0.2], [1, 1, 1]], "scale": 0.2},
            "position": [0, 1.2, z],
            "motion": {"direction": direction, "speed": "Maintaining a Constant Speed",
                       "magnitude": magnitude, "reverse_at": 5}
        }]
    });
    parse_scene_spec(&spec.to_string()).unwrap()
}

/// Camera-frame position of `p` for a `[tx, ty, tz, qx, qy, qz, qw]` world-to-camera row.
fn to_camera(row: &[f64; 7], p: DVec3) -> DVec3 {
    let r = DMat3::from_quat(DQuat::from_xyzw(row[3], row[4], row[5], row[6]));
    r * p + DVec3::new(row[0], row[1], row[2])
}

/// Per frame: the object's distance from the camera (camera-frame centre), and the rendered depth
/// at the pixel its centre projects to.
fn depth_trajectories(clip: &Clip, truth: &ClipTruth) -> (Vec<f64>, Vec<f64>) {
    let rows = clip.poses_w2c();
    let k = clip.intrinsics_matrix();
    let o = &truth.objects[0];
    let mut distances = Vec::new();
    let mut rendered = Vec::new();
    for (t, row) in rows.iter().enumerate() {
        let c = to_camera(row, o.trajectory[t]);
        distances.push(c.length());
        let (u, v) = (k[0][0] * c.x / c.z + k[0][2], k[1][1] * c.y / c.z + k[1][2]);
        let frame = clip.render(t).unwrap();
        let (u, v) = (u.floor() as u32, v.floor() as u32);
        assert_eq!(
            frame.id_at(u, v),
            o.id,
            "frame {t}: the centre pixel shows the ball"
        );
        rendered.push(frame.depth_at(u, v) as f64);
    }
    (distances, rendered)
}

#[test]
fn toward_then_away_is_first_closer_then_farther() {
    let spec = reversing_spec("Moving Toward Camera", 7.0, 4.2);
    let (distances, rendered) = depth_trajectories(&spec.clip, &spec.truth);
    // 3 m closer by frame 5, then 1.2 m back.
    let turn = distances
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(turn, 5, "{distances:?}");
    for profile in [&distances, &rendered] {
        assert_eq!(
            DistanceProfile::from_distances(profile, 0.1),
            DistanceProfile::CloserThenFarther,
            "{profile:?}"
        );
    }
    let o = &spec.truth.objects[0];
    assert_eq!(o.distance_profile, DistanceProfile::CloserThenFarther);
    assert_eq!(
        o.distance_profile.as_str(),
        "First Getting Closer, Then Farther from Camera"
    );
    // Net: still closer at the end, so the direction stays Toward Camera.
    assert_eq!(o.direction, Direction::TowardCamera);
    assert_eq!(o.distance_change, DistanceChange::Closer);
    assert!((o.path_length() - 4.2).abs() < 1e-9);
}

#[test]
fn away_then_toward_is_first_farther_then_closer_and_can_end_on_the_other_side() {
    // 5/7 of 3.5 m = 2.5 m away, then 1 m back: net away.
    let spec = reversing_spec("Moving Away from Camera", 4.5, 3.5);
    let (distances, rendered) = depth_trajectories(&spec.clip, &spec.truth);
    for profile in [&distances, &rendered] {
        assert_eq!(
            DistanceProfile::from_distances(profile, 0.1),
            DistanceProfile::FartherThenCloser,
            "{profile:?}"
        );
    }
    let o = &spec.truth.objects[0];
    assert_eq!(o.distance_profile, DistanceProfile::FartherThenCloser);
    assert_eq!(
        o.distance_profile.as_str(),
        "First Getting Farther, Then Closer to Camera"
    );
    assert_eq!(o.direction, Direction::AwayFromCamera);

    // Turning back at the first step of the return leg (frame 2 of 8, 2/7 out, 5/7 back) brings
    // the object past its start: the net direction is the opposite one.
    let motion = ObjectMotion::new(Direction::AwayFromCamera, SpeedPattern::Constant, 3.5, 0, 7)
        .unwrap()
        .with_reversal(2)
        .unwrap();
    assert_eq!(motion.net_direction(), Direction::TowardCamera);
    assert!((motion.signed_progress(7) - (-3.0 / 7.0)).abs() < 1e-12);
}

#[test]
fn monotone_profiles_keep_the_net_labels() {
    let net = |d: &[f64]| DistanceProfile::from_distances(d, 0.1);
    assert_eq!(
        net(&[6.0, 5.5, 5.0, 4.0]),
        DistanceProfile::Net(DistanceChange::Closer)
    );
    assert_eq!(
        net(&[6.0, 6.2, 6.1]),
        DistanceProfile::Net(DistanceChange::Same)
    );
    // A small wobble (under 10%) is no turn.
    assert_eq!(
        net(&[6.0, 5.6, 6.1]),
        DistanceProfile::Net(DistanceChange::Same)
    );
    assert_eq!(net(&[]), DistanceProfile::Net(DistanceChange::Same));
    assert_eq!(
        net(&[6.0, 8.0]),
        DistanceProfile::Net(DistanceChange::Farther)
    );
}

#[test]
fn spec_rejects_a_reversal_outside_the_motion() {
    for (start, reverse) in [(0, 0), (0, 7), (3, 2)] {
        let spec = json!({
            "frames": 8, "size": 32,
            "objects": [{
                "name": "ball", "shape": {"type": "sphere", "radius": 0.5},
                "texture": {"type": "solid", "color": [1, 0, 0]},
                "position": [0, 1, 6],
                "motion": {"direction": "Moving Toward Camera", "magnitude": 1.0,
                           "start_frame": start, "reverse_at": reverse}
            }]
        });
        let e = parse_scene_spec(&spec.to_string()).unwrap_err().to_string();
        assert!(e.contains("$.objects[0].motion.reverse_at"), "{e}");
    }
}

#[test]
fn random_clips_reverse_some_objects_with_compound_truth() {
    let cfg = GenConfig {
        frames: 16,
        width: 32,
        height: 32,
        hfov_deg: 60.0,
        max_objects: 3,
    };
    let (mut closer_then_farther, mut farther_then_closer) = (0, 0);
    for seed in 0..40 {
        let (clip, truth) = random_clip(seed, &cfg).unwrap();
        let still = truth
            .camera
            .iter()
            .all(|(_, _, l)| l == &vec![CameraLabel::Stay]);
        for (object, o) in clip.scene.objects.iter().zip(&truth.objects) {
            let Some(motion) = &object.motion else {
                continue;
            };
            if motion.reverse_at.is_none() {
                continue;
            }
            // Reversals are along the line of sight and end on the first leg's side.
            assert_eq!(o.direction, motion.direction, "seed {seed} {}", o.name);
            match o.distance_profile {
                DistanceProfile::CloserThenFarther => closer_then_farther += 1,
                DistanceProfile::FartherThenCloser => farther_then_closer += 1,
                DistanceProfile::Net(_) => {}
            }
            if still {
                let (want, want_net) = match motion.direction {
                    Direction::TowardCamera => {
                        (DistanceProfile::CloserThenFarther, DistanceChange::Closer)
                    }
                    Direction::AwayFromCamera => {
                        (DistanceProfile::FartherThenCloser, DistanceChange::Farther)
                    }
                    other => panic!("seed {seed}: reversal along {other}"),
                };
                assert_eq!(o.distance_profile, want, "seed {seed} {}", o.name);
                assert_eq!(o.distance_change, want_net, "seed {seed} {}", o.name);
            }
        }
    }
    assert!(
        closer_then_farther >= 3 && farther_then_closer >= 3,
        "compound labels occur: {closer_then_farther} closer-then-farther, \
         {farther_then_closer} farther-then-closer"
    );
}
