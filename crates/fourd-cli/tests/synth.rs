//! `fourd synth`: output layout, labels against truth, video decoding, argument errors.

mod common;

use common::{fourd, tmp};

use fourd_world::npy::{parse_npy, read_poses_npy};
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
    assert!(lines[0].contains("video path"));
    for i in 0..3 {
        let id = format!("clip_{i:06}");
        let video = out.join(format!("videos/group_0000/{id}.mp4"));
        let ann = out.join(format!("annotations/group_0000/{id}"));
        assert!(lines[1 + i].starts_with(&format!("{id},videos/group_0000/{id}.mp4,")));
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
            for t in a.parse::<usize>().unwrap()..b.parse().unwrap() {
                step[t] = l.clone();
            }
        }
        for seg in truth["camera"].as_array().unwrap() {
            let want: Vec<CameraLabel> = seg["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().parse().unwrap())
                .collect();
            for t in seg["start"].as_u64().unwrap() as usize..seg["end"].as_u64().unwrap() as usize
            {
                assert_eq!(step[t], want, "{id} step {t}");
            }
        }
        let v = fourd_video::decode_video(
            &video,
            &fourd_video::SamplingOptions::all_frames(),
        )
        .unwrap();
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
        (vec!["--size", "big"], "invalid --size"),
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
        assert_eq!(r.status.code(), Some(1), "{all:?}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(msg), "{all:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
