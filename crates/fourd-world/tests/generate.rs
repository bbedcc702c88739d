//! Seeded random clips: determinism and truth consistency.

use fourd_world::glam::{DMat3, DQuat, DVec3};
use fourd_world::*;

fn cfg() -> GenConfig {
    GenConfig {
        frames: 16,
        width: 64,
        height: 64,
        hfov_deg: 60.0,
        max_objects: 3,
    }
}

fn project(row: &[f64; 7], k: &[[f64; 3]; 3], p: DVec3) -> (f64, f64) {
    let r = DMat3::from_quat(DQuat::from_xyzw(row[3], row[4], row[5], row[6]));
    let x = r * p + DVec3::new(row[0], row[1], row[2]);
    (k[0][0] * x.x / x.z + k[0][2], k[1][1] * x.y / x.z + k[1][2])
}

#[test]
fn same_seed_same_clip_and_truth() {
    let (a, ta) = random_clip(42, &cfg()).unwrap();
    let (b, tb) = random_clip(42, &cfg()).unwrap();
    let (c, _) = random_clip(43, &cfg()).unwrap();
    assert_eq!(ta, tb);
    assert_eq!(a.poses_w2c(), b.poses_w2c());
    assert_eq!(a.render(7).unwrap(), b.render(7).unwrap());
    assert_ne!(a, c);
}

#[test]
fn generated_truth_agrees_with_rule_and_geometry() {
    let exact = RuleParams {
        interval: 1,
        alpha: 1.0,
        tau_t: 0.02,
        tau_r_deg: 0.5,
    };
    let mut seen_labels = std::collections::HashSet::new();
    for seed in 0..24 {
        let (clip, truth) = random_clip(seed, &cfg()).unwrap();
        assert_eq!(clip.num_frames(), 16);
        assert_eq!(truth.camera.last().unwrap().1, 15);
        // Camera: every step of every segment carries the segment's labels.
        let rows = clip.poses_w2c();
        let steps = label_poses(&rows, &exact).unwrap();
        for (a, b, labels) in &truth.camera {
            for s in &steps[*a..*b] {
                assert_eq!(&s.labels, labels, "seed {seed} step {}->{}", s.start, s.end);
            }
            seen_labels.extend(labels.iter().copied());
        }
        // Objects: first-frame bbox contains the projected centre (when visible), and the
        // camera-compensated image motion follows the lateral direction.
        let k = clip.intrinsics_matrix();
        let traj = clip.object_trajectories();
        let still = truth
            .camera
            .iter()
            .all(|(_, _, l)| l == &vec![CameraLabel::Stay]);
        for (i, o) in truth.objects.iter().enumerate() {
            let (u0, v0) = project(&rows[0], &k, traj[0][i]);
            if let Some([x1, y1, x2, y2]) = o.first_bbox {
                if (0.0..64.0).contains(&u0) && (0.0..64.0).contains(&v0) {
                    let (u, v) = (u0.round() as u32, v0.round() as u32);
                    assert!(
                        x1 <= u && u <= x2 && y1 <= v && v <= y2,
                        "seed {seed} {}: bbox",
                        o.name
                    );
                }
            }
            let (u1, v1) = project(&rows[0], &k, traj[15][i]);
            let (eu, ev) = o.direction.image_dir();
            if eu != 0.0 || ev != 0.0 {
                let (du, dv) = (u1 - u0, v1 - v0);
                let cos = (du * eu + dv * ev) / (du * du + dv * dv).sqrt();
                assert!(
                    cos > 0.95,
                    "seed {seed} {} {}: ({du:.1},{dv:.1})",
                    o.name,
                    o.direction
                );
            }
            if still {
                let want = match o.direction {
                    Direction::TowardCamera => DistanceChange::Closer,
                    Direction::AwayFromCamera => DistanceChange::Farther,
                    _ => o.distance_change,
                };
                assert_eq!(o.distance_change, want, "seed {seed} {}", o.name);
            }
        }
    }
    assert!(
        seen_labels.len() >= 8,
        "generator covers many labels: {seen_labels:?}"
    );
}

#[test]
fn generator_rejects_bad_config() {
    assert!(matches!(
        random_clip(0, &GenConfig { frames: 0, ..cfg() }),
        Err(WorldError::ZeroFrames(_))
    ));
    assert!(matches!(
        random_clip(0, &GenConfig { width: 0, ..cfg() }),
        Err(WorldError::ZeroSize { .. })
    ));
}

#[test]
fn timing_random_clips_224() {
    let t = std::time::Instant::now();
    let n = 5;
    for seed in 0..n {
        let (clip, _) = random_clip(seed, &GenConfig::default()).unwrap();
        assert_eq!(clip.render_all().unwrap().len(), 16);
    }
    let dt = t.elapsed().as_secs_f64();
    eprintln!(
        "{n} random clips (16 frames, 224x224): {:.0} ms, {:.0} ms/clip",
        dt * 1e3,
        dt * 1e3 / n as f64
    );
}
