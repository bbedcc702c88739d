//! Geometry, label, determinism and error tests of the synthetic world.

use fourd_world::glam::{DMat3, DQuat, DVec3};
use fourd_world::spatialvid::euler_yxz_extrinsic;
use fourd_world::*;

fn k(size: u32) -> Intrinsics {
    Intrinsics::from_fov(size, size, 70.0).unwrap()
}

fn start_pose() -> Pose {
    Pose::look_at(DVec3::new(0.0, 1.5, 0.0), DVec3::new(0.0, 1.0, 6.0)).unwrap()
}

/// Room with a sphere (1), a box (2) and a cylinder (3).
fn scene(seed: u64) -> Scene {
    let mut s = Scene::room(6.0, 12.0, seed);
    let tex = Texture::Checker {
        a: [0.9, 0.2, 0.2],
        b: [0.9, 0.9, 0.2],
        scale: 0.25,
    };
    s.add_object(Object {
        id: 1,
        name: "sphere".into(),
        shape: Shape::Sphere { radius: 0.6 },
        texture: tex,
        position: DVec3::new(0.0, 1.0, 5.0),
        motion: None,
    })
    .unwrap();
    s.add_object(Object {
        id: 2,
        name: "box".into(),
        shape: Shape::Cuboid {
            half_extents: DVec3::new(0.4, 0.5, 0.4),
        },
        texture: Texture::Stripes {
            a: [0.1, 0.5, 0.9],
            b: [0.9, 0.9, 0.9],
            scale: 0.2,
        },
        position: DVec3::new(-1.6, 0.5, 6.0),
        motion: None,
    })
    .unwrap();
    s.add_object(Object {
        id: 3,
        name: "cylinder".into(),
        shape: Shape::Cylinder {
            radius: 0.35,
            half_height: 0.75,
        },
        texture: Texture::Noise {
            a: [0.2, 0.8, 0.3],
            b: [0.1, 0.2, 0.1],
            scale: 0.3,
            seed,
        },
        position: DVec3::new(1.6, 0.75, 6.5),
        motion: None,
    })
    .unwrap();
    s
}

/// Independent projection from an exported `[tx,ty,tz,qx,qy,qz,qw]` row and a 3x3 K.
fn project(row: &[f64; 7], kk: &[[f64; 3]; 3], p: DVec3) -> (f64, f64, f64) {
    let r = DMat3::from_quat(DQuat::from_xyzw(row[3], row[4], row[5], row[6]));
    let x = r * p + DVec3::new(row[0], row[1], row[2]);
    (
        kk[0][0] * x.x / x.z + kk[0][2],
        kk[1][1] * x.y / x.z + kk[1][2],
        x.z,
    )
}

/// Independent back-projection of pixel (u, v) at optical-axis depth `z`.
fn backproject(row: &[f64; 7], kk: &[[f64; 3]; 3], u: f64, v: f64, z: f64) -> DVec3 {
    let r = DMat3::from_quat(DQuat::from_xyzw(row[3], row[4], row[5], row[6]));
    let t = DVec3::new(row[0], row[1], row[2]);
    let xc = DVec3::new(
        (u - kk[0][2]) / kk[0][0] * z,
        (v - kk[1][2]) / kk[1][1] * z,
        z,
    );
    r.transpose() * (xc - t)
}

fn sdf(shape: &Shape, p: DVec3) -> f64 {
    match *shape {
        Shape::Sphere { radius } => p.length() - radius,
        Shape::Cuboid { half_extents } => {
            let q = p.abs() - half_extents;
            q.max(DVec3::ZERO).length() + q.max_element().min(0.0)
        }
        Shape::Cylinder {
            radius,
            half_height,
        } => {
            let dx = (p.x * p.x + p.z * p.z).sqrt() - radius;
            let dy = p.y.abs() - half_height;
            dx.max(dy).min(0.0) + (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt()
        }
    }
}

fn moving_clip(size: u32) -> Clip {
    let traj = CameraTrajectory::new(
        start_pose(),
        vec![
            CameraSegment::from_labels(4, &[("Pan Left", 1.5), ("Dolly In", 0.1)]).unwrap(),
            CameraSegment::from_labels(
                4,
                &[
                    ("Tilt Up", 1.0),
                    ("Truck Right", 0.05),
                    ("Roll Clockwise", 2.0),
                ],
            )
            .unwrap(),
        ],
    )
    .unwrap();
    let mut s = scene(3);
    s.objects[0].motion =
        Some(ObjectMotion::new(Direction::RightUp, SpeedPattern::Constant, 0.6, 0, 8).unwrap());
    Clip::new(s, traj, k(size)).unwrap()
}

#[test]
fn pose_export_roundtrip_and_intrinsics() {
    let clip = moving_clip(64);
    let kk = clip.intrinsics_matrix();
    assert_eq!(kk[2], [0.0, 0.0, 1.0]);
    assert!((kk[0][2] - 31.5).abs() < 1e-12 && (kk[0][0] - kk[1][1]).abs() < 1e-12);
    for (pose, row) in clip.poses().iter().zip(clip.poses_w2c()) {
        assert!(row[6] >= 0.0);
        let back = Pose::from_w2c_array(&row);
        assert!((back.center - pose.center).length() < 1e-9);
        assert!(back.rotation_c2w.dot(pose.rotation_c2w).abs() > 1.0 - 1e-12);
    }
}

#[test]
fn projected_points_land_on_rendered_surfaces() {
    let clip = moving_clip(96);
    let rows = clip.poses_w2c();
    let kk = clip.intrinsics_matrix();
    let traj = clip.object_trajectories();
    for f in [0, 4, 8] {
        let frame = clip.render(f).unwrap();
        // Every object's centre projects onto a pixel showing that object.
        for (o, c) in clip.scene.objects.iter().zip(&traj[f]) {
            let (u, v, z) = project(&rows[f], &kk, *c);
            assert!(z > 0.0);
            let (ui, vi) = (u.round() as u32, v.round() as u32);
            assert_eq!(
                frame.id_at(ui, vi),
                o.id,
                "frame {f} object {} at ({u:.1},{v:.1})",
                o.name
            );
            // The sphere's nearest surface point along the centre ray: depth matches.
            if let Shape::Sphere { radius } = o.shape {
                let cam = clip.poses()[f].center;
                let p = *c + (cam - *c).normalize() * radius;
                let (pu, pv, pz) = project(&rows[f], &kk, p);
                let d = frame.depth_at(pu.round() as u32, pv.round() as u32) as f64;
                assert!((d - pz).abs() < 0.02, "frame {f}: depth {d} vs {pz}");
            }
        }
        // Every pixel's back-projected point lies on the surface of the object its id names.
        let w = frame.width();
        let mut counts = [0usize; 4];
        for v in 0..frame.height() {
            for u in 0..w {
                let id = frame.id_at(u, v);
                let z = frame.depth_at(u, v) as f64;
                let p = backproject(&rows[f], &kk, u as f64, v as f64, z);
                counts[id as usize] += 1;
                if id == 0 {
                    // Background: on the ground (y=0) or a wall (z=12, x=±6).
                    let e =
                        p.y.abs()
                            .min((p.z - 12.0).abs())
                            .min((p.x.abs() - 6.0).abs());
                    assert!(e < 1e-3, "background pixel ({u},{v}) at {p}");
                } else {
                    let oi = clip.scene.objects.iter().position(|o| o.id == id).unwrap();
                    let e = sdf(&clip.scene.objects[oi].shape, p - traj[f][oi]).abs();
                    assert!(e < 1e-3, "pixel ({u},{v}) id {id}: off the surface by {e}");
                }
            }
        }
        assert!(
            counts[1..].iter().all(|&c| c > 20),
            "all objects visible: {counts:?}"
        );
    }
}

#[test]
fn depth_is_distance_along_optical_axis() {
    // Camera facing the back wall squarely: depth is the same for every wall pixel.
    let mut s = Scene::room(50.0, 10.0, 1);
    s.planes.retain(|p| p.normal == -DVec3::Z);
    let pose = Pose::look_at(DVec3::new(0.0, 2.0, 3.0), DVec3::new(0.0, 2.0, 10.0)).unwrap();
    let traj = CameraTrajectory::new(pose, vec![CameraSegment::stay(1).unwrap()]).unwrap();
    let clip = Clip::new(s, traj, k(48)).unwrap();
    let f = clip.render(0).unwrap();
    assert!(f.depth.iter().all(|&d| (d - 7.0).abs() < 1e-5));
    assert!(f.ids.iter().all(|&i| i == 0));
}

fn rule_exact() -> RuleParams {
    RuleParams {
        interval: 1,
        alpha: 1.0,
        tau_t: 0.02,
        tau_r_deg: 0.5,
    }
}

fn magnitude(l: CameraLabel) -> f64 {
    use CameraLabel::*;
    match l {
        DollyIn | DollyOut | TruckLeft | TruckRight | PedestalUp | PedestalDown => 0.1,
        _ => 2.0,
    }
}

fn label_run(labels: &[CameraLabel], frames: usize, params: &RuleParams) -> Vec<LabelledStep> {
    let comps = labels
        .iter()
        .map(|&l| CameraComponent {
            label: l,
            magnitude: magnitude(l),
        })
        .collect();
    let traj = CameraTrajectory::new(
        start_pose(),
        vec![CameraSegment::new(frames, comps).unwrap()],
    )
    .unwrap();
    let rows: Vec<[f64; 7]> = traj.poses().iter().map(Pose::to_w2c_array).collect();
    label_poses(&rows, params).unwrap()
}

#[test]
fn every_camera_label_is_recovered_by_the_spatialvid_rule() {
    for l in CameraLabel::MOTIONS.into_iter().chain([CameraLabel::Stay]) {
        // Exact (no smoothing, consecutive frames): every step carries exactly the label.
        let steps = label_run(&[l], 12, &rule_exact());
        assert_eq!(steps.len(), 12);
        for s in &steps {
            assert_eq!(s.labels, vec![l], "{l} step {}->{}", s.start, s.end);
        }
        // The original script's parameters (interval 2, EMA 0.1): after the EMA warm-up the label
        // appears, and no other motion label ever does.
        let steps = label_run(&[l], 24, &RuleParams::default());
        for s in &steps {
            assert!(
                s.labels == vec![l] || s.labels == vec![CameraLabel::Stay],
                "{l}: {:?}",
                s.labels
            );
        }
        assert_eq!(steps.last().unwrap().labels, vec![l], "{l} with smoothing");
    }
}

#[test]
fn combined_components_and_segments_are_recovered() {
    use CameraLabel::*;
    let combos: &[&[CameraLabel]] = &[
        &[PanLeft, DollyIn],
        &[TiltUp, TruckRight],
        &[RollClockwise, PedestalUp],
        &[PanRight, TiltDown, DollyOut],
        &[TruckLeft, PedestalDown, RollCounterClockwise],
        &[PanLeft, TiltUp, RollClockwise],
    ];
    for combo in combos {
        let mut want = combo.to_vec();
        want.sort();
        for s in label_run(combo, 8, &rule_exact()) {
            assert_eq!(s.labels, want);
        }
        assert_eq!(
            label_run(combo, 24, &RuleParams::default())
                .last()
                .unwrap()
                .labels,
            want,
            "{combo:?} smoothed"
        );
    }
    let traj = CameraTrajectory::new(
        start_pose(),
        vec![
            CameraSegment::from_labels(5, &[("Pan Left", 2.0)]).unwrap(),
            CameraSegment::stay(4).unwrap(),
            CameraSegment::from_labels(6, &[("Dolly In", 0.1), ("Roll CW", 3.0)]).unwrap(),
        ],
    )
    .unwrap();
    let rows: Vec<[f64; 7]> = traj.poses().iter().map(Pose::to_w2c_array).collect();
    let merged = merge_instructions(&label_poses(&rows, &rule_exact()).unwrap());
    let expect: Vec<(String, Vec<CameraLabel>)> = traj
        .segment_ranges()
        .into_iter()
        .map(|(a, b, l)| (format!("{a}->{b}"), l))
        .collect();
    assert_eq!(merged, expect);
    assert_eq!(expect[2].1, vec![DollyIn, RollClockwise]);
}

#[test]
fn euler_yxz_matches_scipy_definition() {
    // SciPy extrinsic "yxz": R = Rz(c) Rx(b) Ry(a).
    for (a, b, c) in [(0.3, -0.2, 0.1), (-1.0, 0.5, 2.0), (0.0, 0.0, -0.7)] {
        let r = DMat3::from_rotation_z(c) * DMat3::from_rotation_x(b) * DMat3::from_rotation_y(a);
        let (ea, eb, ec) = euler_yxz_extrinsic(&r);
        assert!((ea - a).abs() < 1e-12 && (eb - b).abs() < 1e-12 && (ec - c).abs() < 1e-12);
    }
}

/// Mask centroid, pixel count and mean depth of an object.
fn stats(f: &Frame, id: u16) -> (f64, f64, usize, f64) {
    let (mut su, mut sv, mut n, mut sd) = (0.0, 0.0, 0usize, 0.0);
    for v in 0..f.height() {
        for u in 0..f.width() {
            if f.id_at(u, v) == id {
                su += u as f64;
                sv += v as f64;
                sd += f.depth_at(u, v) as f64;
                n += 1;
            }
        }
    }
    assert!(n > 0, "object {id} not visible");
    (su / n as f64, sv / n as f64, n, sd / n as f64)
}

#[test]
fn object_centroid_moves_in_its_labelled_direction() {
    for dir in Direction::ALL {
        for camera in [
            vec![CameraSegment::stay(8).unwrap()],
            vec![CameraSegment::from_labels(8, &[("Pan Right", 0.5)]).unwrap()],
        ] {
            let moving_cam = !camera[0].components.is_empty();
            let mut s = Scene::room(6.0, 12.0, 0);
            s.add_object(Object {
                id: 7,
                name: "ball".into(),
                shape: Shape::Sphere { radius: 0.5 },
                texture: Texture::Solid([1.0, 0.0, 0.0]),
                position: DVec3::new(0.0, 1.2, 5.0),
                motion: Some(
                    ObjectMotion::new(dir, SpeedPattern::SpeedingUpThenSlowingDown, 1.2, 0, 8)
                        .unwrap(),
                ),
            })
            .unwrap();
            let clip = Clip::new(
                s,
                CameraTrajectory::new(start_pose(), camera).unwrap(),
                k(64),
            )
            .unwrap();
            let (f0, f1) = (clip.render(0).unwrap(), clip.render(8).unwrap());
            let (u0, v0, n0, d0) = stats(&f0, 7);
            let (u1, v1, n1, d1) = stats(&f1, 7);
            // Camera-motion-compensated image motion: project the end position with the first pose.
            let rows = clip.poses_w2c();
            let kk = clip.intrinsics_matrix();
            let end = clip.object_trajectories()[8][0];
            let (pu, pv, _) = project(&rows[0], &kk, end);
            let (du, dv) = if moving_cam {
                (pu - u0, pv - v0)
            } else {
                (u1 - u0, v1 - v0)
            };
            match dir {
                Direction::Stationary => {
                    assert!(du.abs() < 0.5 && dv.abs() < 0.5, "{dir}: ({du},{dv})");
                    if !moving_cam {
                        assert_eq!((n0, u0, v0), (n1, u1, v1));
                    }
                }
                Direction::TowardCamera => {
                    assert!(n1 > n0 && d1 < d0 - 0.5, "{dir}: {n0}->{n1}, {d0}->{d1}")
                }
                Direction::AwayFromCamera => {
                    assert!(n1 < n0 && d1 > d0 + 0.5, "{dir}: {n0}->{n1}, {d0}->{d1}")
                }
                lateral => {
                    let (eu, ev) = lateral.image_dir();
                    let len = (du * du + dv * dv).sqrt();
                    assert!(len > 5.0, "{dir}: moved {len} px");
                    let cos = (du * eu + dv * ev) / len;
                    assert!(
                        cos > 0.95,
                        "{dir} (camera moving: {moving_cam}): image motion ({du:.1},{dv:.1})"
                    );
                    if !moving_cam {
                        assert!((d1 - d0).abs() < 0.2, "{dir}: depth {d0}->{d1}");
                    }
                }
            }
        }
    }
}

#[test]
fn speed_patterns_have_their_shape() {
    let speeds = |p: SpeedPattern| -> Vec<f64> {
        (0..10)
            .map(|i| p.progress((i + 1) as f64 / 10.0, 0.3) - p.progress(i as f64 / 10.0, 0.3))
            .collect()
    };
    for p in SpeedPattern::ALL {
        assert!(
            p.progress(0.0, 0.3).abs() < 1e-12 && (p.progress(1.0, 0.3) - 1.0).abs() < 1e-12,
            "{p}"
        );
        assert!(speeds(p).iter().all(|&s| s > 0.0), "{p} is monotone");
    }
    let s = speeds(SpeedPattern::SpeedingUp);
    assert!(s.windows(2).all(|w| w[1] > w[0]));
    let s = speeds(SpeedPattern::SlowingDown);
    assert!(s.windows(2).all(|w| w[1] < w[0]));
    let s = speeds(SpeedPattern::Constant);
    assert!(s.iter().all(|&x| (x - 0.1).abs() < 1e-12));
    let s = speeds(SpeedPattern::SpeedingUpThenSlowingDown);
    assert!(s[4] > s[0] && s[4] > s[9]);
    let s = speeds(SpeedPattern::SlowingDownThenSpeedingUp);
    assert!(s[4] < s[0] && s[4] < s[9]);
    let s = speeds(SpeedPattern::Varying);
    let sign_changes = s
        .windows(3)
        .filter(|w| (w[1] - w[0]) * (w[2] - w[1]) < 0.0)
        .count();
    assert!(sign_changes >= 2, "varying speed changes trend: {s:?}");
}

#[test]
fn same_seed_same_output() {
    let a = Clip::new(scene(11), moving_clip(32).camera, k(32)).unwrap();
    let b = Clip::new(scene(11), moving_clip(32).camera, k(32)).unwrap();
    let c = Clip::new(scene(12), moving_clip(32).camera, k(32)).unwrap();
    let (fa, fb, fc) = (
        a.render_all().unwrap(),
        b.render_all().unwrap(),
        c.render_all().unwrap(),
    );
    assert_eq!(fa, fb);
    assert_eq!(a.poses_w2c(), b.poses_w2c());
    assert_ne!(fa[0].rgb, fc[0].rgb);
}

#[test]
fn labels_parse_and_print() {
    for l in CameraLabel::MOTIONS.into_iter().chain([CameraLabel::Stay]) {
        assert_eq!(l.as_str().parse::<CameraLabel>().unwrap(), l);
        assert_eq!(l.spatialvid_str().parse::<CameraLabel>().unwrap(), l);
        assert_eq!(l.opposite().opposite(), l);
    }
    assert_eq!(
        "roll ccw".parse::<CameraLabel>().unwrap(),
        CameraLabel::RollCounterClockwise
    );
    for d in Direction::ALL {
        assert_eq!(d.as_str().parse::<Direction>().unwrap(), d);
    }
    assert_eq!("Left-Up".parse::<Direction>().unwrap(), Direction::LeftUp);
    for p in SpeedPattern::ALL {
        assert_eq!(p.as_str().parse::<SpeedPattern>().unwrap(), p);
    }
}

#[test]
fn bad_arguments_give_clear_errors() {
    let e = Intrinsics::from_fov(0, 224, 60.0).unwrap_err();
    assert_eq!(
        e,
        WorldError::ZeroSize {
            width: 0,
            height: 224
        }
    );
    assert!(e.to_string().contains("0x224"));
    let e = CameraSegment::stay(0).unwrap_err();
    assert!(matches!(e, WorldError::ZeroFrames(_)) && e.to_string().contains("zero frames"));
    assert!(matches!(
        CameraTrajectory::new(start_pose(), vec![]),
        Err(WorldError::ZeroFrames(_))
    ));
    let e = CameraSegment::from_labels(4, &[("Pan Sideways", 1.0)]).unwrap_err();
    assert_eq!(e, WorldError::UnknownCameraLabel("Pan Sideways".into()));
    assert!(e
        .to_string()
        .contains("unknown camera label \"Pan Sideways\""));
    assert!("Sideways".parse::<Direction>().is_err());
    assert!("Zooming".parse::<SpeedPattern>().is_err());
    assert!(matches!(
        CameraSegment::from_labels(4, &[("Pan Left", 1.0), ("Pan Right", 1.0)]),
        Err(WorldError::InvalidSegment(_))
    ));
    assert!(matches!(
        CameraSegment::from_labels(
            4,
            &[
                ("Pan Left", 1.0),
                ("Tilt Up", 1.0),
                ("Dolly In", 0.1),
                ("Truck Left", 0.1)
            ]
        ),
        Err(WorldError::InvalidSegment(_))
    ));
    assert!(matches!(
        CameraSegment::from_labels(4, &[("Dolly In", -1.0)]),
        Err(WorldError::InvalidSegment(_))
    ));
    assert!(matches!(
        ObjectMotion::new(Direction::Left, SpeedPattern::Constant, 1.0, 3, 3),
        Err(WorldError::ZeroFrames(_))
    ));
    let mut s = scene(0);
    let dup = s.objects[0].clone();
    assert_eq!(s.add_object(dup), Err(WorldError::InvalidObjectId(1)));
    assert!(label_poses(
        &[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]],
        &RuleParams::default()
    )
    .is_err());
}

#[test]
fn timing_16_frames_224() {
    let traj = CameraTrajectory::new(
        start_pose(),
        vec![CameraSegment::from_labels(15, &[("Pan Left", 1.0), ("Dolly In", 0.05)]).unwrap()],
    )
    .unwrap();
    let clip = Clip::new(scene(5), traj, k(224)).unwrap();
    let t = std::time::Instant::now();
    let frames = clip.render_all().unwrap();
    let dt = t.elapsed();
    assert_eq!(frames.len(), 16);
    eprintln!(
        "rendered 16 frames at 224x224 in {:.1} ms ({} rayon threads)",
        dt.as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );
}

#[test]
fn camera_labels_have_their_physical_meaning() {
    // A static ball right of the image centre; how it moves on screen tells what the camera did.
    use CameraLabel::*;
    for l in CameraLabel::MOTIONS {
        let mut s = Scene::room(6.0, 12.0, 0);
        s.add_object(Object {
            id: 1,
            name: "ball".into(),
            shape: Shape::Sphere { radius: 0.4 },
            texture: Texture::Solid([1.0; 3]),
            position: DVec3::new(-1.0, 1.2, 5.0),
            motion: None,
        })
        .unwrap();
        let seg = CameraSegment::new(
            4,
            vec![CameraComponent {
                label: l,
                magnitude: magnitude(l),
            }],
        )
        .unwrap();
        let clip = Clip::new(
            s,
            CameraTrajectory::new(start_pose(), vec![seg]).unwrap(),
            k(64),
        )
        .unwrap();
        let (u0, v0, n0, _) = stats(&clip.render(0).unwrap(), 1);
        let (u1, v1, n1, _) = stats(&clip.render(4).unwrap(), 1);
        assert!(u0 > 40.0, "ball starts right of centre");
        let (du, dv) = (u1 - u0, v1 - v0);
        let ok = match l {
            PanLeft | TruckLeft => du > 1.0,
            PanRight | TruckRight => du < -1.0,
            TiltUp | PedestalUp => dv > 1.0,
            TiltDown | PedestalDown => dv < -1.0,
            DollyIn => n1 > n0,
            DollyOut => n1 < n0,
            // Camera turns clockwise, so the content turns counter-clockwise: right side goes up.
            RollClockwise => dv < -1.0,
            RollCounterClockwise => dv > 1.0,
            Stay => unreachable!(),
        };
        assert!(ok, "{l}: ball moved ({du:.1},{dv:.1}), pixels {n0}->{n1}");
    }
}

#[test]
fn enhanced_rule_recovers_single_labels_on_long_runs() {
    for l in CameraLabel::MOTIONS {
        let comps = vec![CameraComponent {
            label: l,
            magnitude: magnitude(l),
        }];
        let traj =
            CameraTrajectory::new(start_pose(), vec![CameraSegment::new(60, comps).unwrap()])
                .unwrap();
        let rows: Vec<[f64; 7]> = traj.poses().iter().map(Pose::to_w2c_array).collect();
        let steps = label_poses_enhanced(&rows, &EnhancedParams::new(move_dist(&rows))).unwrap();
        assert_eq!(steps.len(), 60);
        let merged = merge_instructions(&steps);
        for s in &steps {
            assert!(
                s.labels == vec![l] || s.labels == vec![CameraLabel::Stay],
                "{l}: {:?}",
                s.labels
            );
        }
        // The last unit interval is covered by no window (strides skip it), so it stays `Stay`.
        assert!(
            steps[40..59].iter().all(|s| s.labels == vec![l]),
            "{l}: {merged:?}"
        );
    }
    let still: Vec<[f64; 7]> = vec![start_pose().to_w2c_array(); 20];
    let steps = label_poses_enhanced(&still, &EnhancedParams::new(0.0)).unwrap();
    assert!(steps.iter().all(|s| s.labels == vec![CameraLabel::Stay]));
}
