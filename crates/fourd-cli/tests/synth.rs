//! `fourd synth`: output layout, labels against truth, video decoding, argument errors.

mod common;

use common::{fourd, tmp};

use fourd_world::npy::{parse_npy, read_dyn_masks_npz, read_poses_npy};
use fourd_world::{instructions_from_poses, CameraLabel};

#[test]
fn synth_writes_spatialvid_layout() {
    let out = tmp("ok");
    let o = fourd(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--clips",
        "3",
        "--frames",
        "8",
        "--size",
        "64x64",
        "--fps",
        "8",
        "--seed",
        "7",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("wrote 3 clips"));
    let csv = std::fs::read_to_string(out.join("metadata.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], fourd_world::ClipRow::HEADER);
    assert!(
        lines[0].starts_with("id,group id,video path,annotation path,num frames,fps,resolution,")
    );
    for i in 0..3 {
        let id = format!("clip_{i:06}");
        let video = out.join(format!("videos/group_0000/{id}.mp4"));
        let ann = out.join(format!("annotations/group_0000/{id}"));
        assert!(lines[1 + i].starts_with(&format!(
            "{id},0,videos/group_0000/{id}.mp4,annotations/group_0000/{id},8,8,64x64,"
        )));
        for f in [
            "indexes.txt",
            "poses.npy",
            "intrinsics.npy",
            "instructions.json",
            "caption.json",
            "dyn_masks.npz",
            "depth.npy",
            "instance_ids.npy",
            "truth.json",
        ] {
            assert!(ann.join(f).is_file(), "{id}/{f} missing");
        }
        let poses = std::fs::read(ann.join("poses.npy")).unwrap();
        let (shape, descr, _) = parse_npy(&poses).unwrap();
        assert_eq!((shape, descr.as_str()), (vec![8, 7], "<f4"));
        let rows = read_poses_npy(&poses).unwrap();
        // instructions.json is the rule's output on the written poses ...
        let instr: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ann.join("instructions.json")).unwrap()).unwrap();
        let rule = instructions_from_poses(&rows).unwrap();
        assert_eq!(instr.as_object().unwrap().len(), rule.len());
        // ... and agrees step by step with the truth's camera labels.
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ann.join("truth.json")).unwrap()).unwrap();
        let mut step: Vec<Vec<CameraLabel>> = vec![Vec::new(); 7];
        for (key, labels) in instr.as_object().unwrap() {
            let (a, b) = key.split_once("->").unwrap();
            let l: Vec<CameraLabel> = labels
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(
                rule.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                Some(&l)
            );
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            for s in &mut step[a..b] {
                *s = l.clone();
            }
        }
        for seg in truth["camera"].as_array().unwrap() {
            let want: Vec<CameraLabel> = seg["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().parse().unwrap())
                .collect();
            let (a, b) = (
                seg["start"].as_u64().unwrap() as usize,
                seg["end"].as_u64().unwrap() as usize,
            );
            for (t, s) in step.iter().enumerate().take(b).skip(a) {
                assert_eq!(*s, want, "{id} step {t}");
            }
        }
        // dyn_masks.npz (SpatialVID's sparse layout) marks exactly the moving objects' pixels.
        let (n, h, w, dyn_mask) =
            read_dyn_masks_npz(&std::fs::read(ann.join("dyn_masks.npz")).unwrap()).unwrap();
        assert_eq!((n, h, w), (8, 64, 64));
        let moving: Vec<u64> = truth["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["direction"] != "Stationary")
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        let ids = std::fs::read(ann.join("instance_ids.npy")).unwrap();
        let (_, _, id_bytes) = parse_npy(&ids).unwrap();
        for (px, m) in id_bytes.chunks_exact(2).zip(&dyn_mask) {
            let id = u16::from_le_bytes([px[0], px[1]]) as u64;
            assert_eq!(*m, moving.contains(&id) as u8);
        }
        let v =
            fourd_video::decode_video(&video, &fourd_video::SamplingOptions::all_frames()).unwrap();
        assert_eq!(v.frames.len(), 8);
        assert_eq!((v.width, v.height), (64, 64));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn synth_rejects_bad_arguments() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    for (args, msg) in [
        (vec!["--frames", "0"], "--frames must be at least 2"),
        (
            vec!["--size", "0"],
            "width and height must both be at least 1",
        ),
        (
            vec!["--size", "64x0"],
            "width and height must both be at least 1",
        ),
        (vec!["--size", "big"], "--size"),
        (vec!["--clips", "0"], "--clips must be at least 1"),
        (vec!["--fps", "0"], "--fps must be at least 1"),
    ] {
        let mut all = vec!["synth", "--out", o];
        for (flag, default) in [("--clips", "1"), ("--frames", "4"), ("--size", "16")] {
            if args[0] != flag {
                all.extend([flag, default]);
            }
        }
        all.extend(args);
        let r = fourd(&all);
        // 2: a value the typed flag parser refuses (a usage error); 1: an error found later.
        assert!(matches!(r.status.code(), Some(1) | Some(2)), "{all:?}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(msg), "{all:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn example_spec() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scene-spec.json")
}

#[test]
fn synth_spec_renders_the_described_clip() {
    let out = tmp("spec");
    let spec = example_spec();
    let o = fourd(&[
        "synth",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = "pan_dolly_then_stay";
    let ann = out.join(format!("annotations/group_0000/{id}"));
    let instr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ann.join("instructions.json")).unwrap()).unwrap();
    // (serde_json's map sorts keys as strings; the file itself is in frame order.)
    let mut keys: Vec<&str> = instr
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_by_key(|k| k.split("->").next().unwrap().parse::<usize>().unwrap());
    assert_eq!(keys, ["0->6", "6->10", "10->15"]);
    assert_eq!(instr["0->6"], serde_json::json!(["Dolly In", "Pan Left"]));
    assert_eq!(instr["6->10"], serde_json::json!(["Stay"]));
    assert_eq!(
        instr["10->15"],
        serde_json::json!(["Truck Right", "Tilt Up", "Roll CW"])
    );
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ann.join("truth.json")).unwrap()).unwrap();
    let dirs: Vec<&str> = truth["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["Moving Right", "Moving Toward Camera", "Stationary"]);
    assert_eq!(truth["fps"], 8);
    let csv = std::fs::read_to_string(out.join("metadata.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with(&format!(
        "{id},0,videos/group_0000/{id}.mp4,annotations/group_0000/{id},16,8,224x160,"
    )));
    let v = fourd_video::decode_video(
        &out.join(format!("videos/group_0000/{id}.mp4")),
        &fourd_video::SamplingOptions::all_frames(),
    )
    .unwrap();
    assert_eq!((v.frames.len(), v.width, v.height), (16, 224, 160));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn synth_spec_errors_name_the_field() {
    let out = tmp("spec-bad");
    std::fs::create_dir_all(&out).unwrap();
    let text = std::fs::read_to_string(example_spec()).unwrap();
    for (edit, want) in [
        (
            text.replacen("\"Pan Left\"", "\"Pan Sideways\"", 1),
            "$.camera.segments[0].motion[0].label: unknown camera label \"Pan Sideways\"",
        ),
        (
            text.replacen("\"frames\": 16", "\"frames\": 0", 1),
            "$.frames: a clip needs at least 2 frames",
        ),
        (
            text.replacen("\"224x160\"", "\"0x160\"", 1),
            "$.size: width and height must both be at least 1",
        ),
        (
            text.replacen("\"Moving Right\"", "\"Moving Sideways\"", 1),
            "$.objects[0].motion.direction: unknown object direction",
        ),
    ] {
        let p = out.join("bad.json");
        std::fs::write(&p, edit).unwrap();
        let o = fourd(&[
            "synth",
            "--spec",
            p.to_str().unwrap(),
            "--out",
            out.join("o").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{want:?} not in: {err}");
        assert!(err.contains("bad.json"), "{err}");
    }
    // Two specs with the same id, and a spec mixed with random-clip flags.
    let spec = example_spec();
    let s = spec.to_str().unwrap();
    let o = fourd(&[
        "synth",
        "--spec",
        s,
        "--spec",
        s,
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is used by another spec"));
    let o = fourd(&[
        "synth",
        "--spec",
        s,
        "--frames",
        "8",
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
    let _ = std::fs::remove_dir_all(&out);
}
