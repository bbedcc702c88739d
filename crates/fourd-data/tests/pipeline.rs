//! End-to-end behaviour: bad inputs fail only their clip, outputs pass `check`, reruns reuse
//! finished clips and give identical files, shards partition the clips.

mod common;

use std::path::Path;

use fourd_data::{check_file, run_pipeline, PipelineConfig, ReplyForm};

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn bad_clips_fail_with_reasons_and_the_rest_go_on() {
    let root = common::tmp("bad-in");
    let out = common::tmp("bad-out");
    common::synth(&root, 6, 8, 48, 11);
    let ann = |i: usize| root.join(format!("annotations/group_0000/clip_{i:06}"));
    // 0: no poses.npy; 1: corrupt video; 2: dyn_masks of the wrong size; 3: malformed
    // instructions.json; 4 and 5 are fine.
    std::fs::remove_file(ann(0).join("poses.npy")).unwrap();
    std::fs::write(
        root.join("videos/group_0000/clip_000001.mp4"),
        b"definitely not an mp4",
    )
    .unwrap();
    let wrong = fourd_world::npy::dyn_masks_npz_bytes(&vec![0u8; 8 * 10 * 30], 8, 10, 30);
    std::fs::write(ann(2).join("dyn_masks.npz"), wrong).unwrap();
    std::fs::write(
        ann(3).join("instructions.json"),
        b"{\"0->3\": [\"Pan Left\"",
    )
    .unwrap();
    let mut cfg = PipelineConfig::new(&root, &out);
    cfg.segmenter = fourd_data::SegmenterChoice::DynMasks;
    let s = run_pipeline(&cfg).unwrap();
    let reason = |i: usize| {
        s.failures
            .get(&format!("group_0000/clip_{i:06}"))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        reason(0).contains("missing") && reason(0).contains("poses.npy"),
        "{}",
        reason(0)
    );
    assert!(reason(1).contains("clip_000001.mp4"), "{}", reason(1));
    assert!(
        reason(2).contains("dyn_masks.npz") && reason(2).contains("30x10"),
        "{}",
        reason(2)
    );
    assert!(
        reason(3).contains("instructions.json") && reason(3).contains("invalid JSON"),
        "{}",
        reason(3)
    );
    assert_eq!(s.failures.len(), 4, "{:?}", s.failures);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["group_0000/clip_000004"]["status"], "done");
    assert_eq!(manifest["group_0000/clip_000002"]["status"], "failed");
    assert!(manifest["group_0000/clip_000002"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("label:"));
    // Too many frames: skipped, not failed.
    let mut small = cfg.clone();
    small.max_frames = 4;
    small.output = common::tmp("bad-out-small");
    let s2 = run_pipeline(&small).unwrap();
    assert!(
        s2.failures
            .values()
            .all(|r| r.contains("8 annotated frames, more than --max-frames 4")),
        "{:?}",
        s2.failures
    );
    assert_eq!(s2.stages["ingest"].skipped, 6);
    assert_eq!(s2.export.questions, 0);
}

#[test]
fn outputs_check_clean_and_reruns_are_identical() {
    let root = common::tmp("rerun-in");
    let out = common::tmp("rerun-out");
    common::synth(&root, 8, 10, 64, 5);
    let mut cfg = PipelineConfig::new(&root, &out);
    cfg.seed = 9;
    let s = run_pipeline(&cfg).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert!(s.export.questions > 0 && s.export.dift_records > 0);
    for f in [&s.dift_path, &s.rl_path] {
        let r = check_file(f, None).unwrap();
        assert!(r.ok(), "{}", r.render());
        assert!(r.records > 0);
    }
    let dift = std::fs::read(&s.dift_path).unwrap();
    let rl = std::fs::read(&s.rl_path).unwrap();
    let labels = out.join("clips/group_0000/clip_000003/labels.json");
    let before = modified(&labels);
    // A second run reuses every clip and writes the same bytes.
    let s2 = run_pipeline(&cfg).unwrap();
    assert_eq!(s2.stages["label"].reused, 8);
    assert_eq!(s2.stages["label"].processed, 0);
    assert_eq!(modified(&labels), before);
    assert_eq!(std::fs::read(&s.dift_path).unwrap(), dift);
    assert_eq!(std::fs::read(&s.rl_path).unwrap(), rl);
    // A fresh run with two workers gives the same bytes (per-clip seeds, sorted export).
    let mut cfg2 = cfg.clone();
    cfg2.output = common::tmp("rerun-out-2");
    cfg2.jobs = 2;
    let s3 = run_pipeline(&cfg2).unwrap();
    let strip = |b: &[u8], root: &Path| {
        String::from_utf8_lossy(b).replace(&root.display().to_string(), "OUT")
    };
    assert_eq!(
        strip(&std::fs::read(&s3.dift_path).unwrap(), &cfg2.output),
        strip(&dift, &out)
    );
    // A corrupted per-clip record is redone, only that clip.
    std::fs::write(&labels, b"{ truncated").unwrap();
    let s4 = run_pipeline(&cfg).unwrap();
    assert_eq!(s4.stages["label"].processed, 1);
    assert_eq!(std::fs::read(&s.dift_path).unwrap(), dift);
    // Broken records are reported by check.
    let bad = out.join("bad.jsonl");
    let first = String::from_utf8(dift.clone())
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut v: serde_json::Value = serde_json::from_str(&first).unwrap();
    v["image_output"].as_array_mut().unwrap().pop();
    std::fs::write(&bad, format!("{v}\n")).unwrap();
    let r = check_file(&bad, None).unwrap();
    assert!(
        !r.ok() && r.errors[0].contains("expected"),
        "{}",
        r.render()
    );
    // The other reply forms: same questions and letters, every record checks clean; label
    // answers carry no letter, option checks name every option.
    let letters = check_file(&s.dift_path, None).unwrap().letters;
    for (form, marker) in [
        (ReplyForm::Label, None),
        (ReplyForm::OptionCheck, Some(": yes\n")),
    ] {
        let mut c = cfg.clone();
        c.reply = form;
        let s5 = run_pipeline(&c).unwrap();
        let r = check_file(&s5.dift_path, None).unwrap();
        assert!(r.ok(), "{form:?}: {}", r.render());
        assert_eq!(r.letters, letters, "{form:?}");
        for line in std::fs::read_to_string(&s5.dift_path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let out = v["text_output"].as_str().unwrap();
            let answer = out.rsplit("<answer>\n").next().unwrap();
            match marker {
                None => assert!(answer.get(1..3).is_none_or(|p| p != ". "), "{answer}"),
                Some(m) => assert_eq!(out.matches(m).count(), 1, "{out}"),
            }
        }
    }
}

#[test]
fn shards_partition_the_clips() {
    let root = common::tmp("shard-in");
    common::synth(&root, 5, 6, 40, 2);
    let mut seen = Vec::new();
    for i in 0..2 {
        let mut cfg = PipelineConfig::new(&root, common::tmp(&format!("shard-out-{i}")));
        cfg.shard = Some((i, 2));
        let clips = fourd_data::pipeline::select_clips(&cfg).unwrap();
        seen.extend(clips.into_iter().map(|c| c.key()));
    }
    seen.sort();
    assert_eq!(seen.len(), 5);
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

/// Masks exported as PNG folders (`mask-dir:`) give the same measurements as the instance ids
/// they came from.
#[test]
fn mask_folders_match_instance_masks() {
    let root = common::tmp("maskdir-in");
    common::synth(&root, 3, 8, 48, 21);
    let masks = common::tmp("maskdir-masks");
    for i in 0..3 {
        let ann = root.join(format!("annotations/group_0000/clip_{i:06}"));
        let bytes = std::fs::read(ann.join("instance_ids.npy")).unwrap();
        let (shape, _, data) = fourd_world::npy::parse_npy(&bytes).unwrap();
        let (n, h, w) = (shape[0], shape[1], shape[2]);
        let ids: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        for id in 1..=3u16 {
            let dir = masks.join(format!("group_0000/clip_{i:06}/object_{id}"));
            for t in 0..n {
                let px = &ids[t * w * h..(t + 1) * w * h];
                if !px.contains(&id) {
                    continue;
                }
                std::fs::create_dir_all(&dir).unwrap();
                let img = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
                    image::Luma([if px[y as usize * w + x as usize] == id {
                        255
                    } else {
                        0
                    }])
                });
                img.save(dir.join(format!("frame_{t:04}.png"))).unwrap();
            }
        }
    }
    let labels = |choice: fourd_data::SegmenterChoice,
                  name: &str|
     -> Vec<(Option<String>, Option<String>)> {
        let mut cfg = PipelineConfig::new(&root, common::tmp(name));
        cfg.segmenter = choice;
        let s = run_pipeline(&cfg).unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        let mut v = Vec::new();
        for i in 0..3 {
            let l: serde_json::Value = common::clip_json(&cfg.output, i, "labels.json");
            for o in l["objects"].as_array().unwrap() {
                v.push((
                    o["direction"].as_str().map(str::to_string),
                    o["speed"].as_str().map(str::to_string),
                ));
            }
        }
        v
    };
    let from_dirs = labels(
        fourd_data::SegmenterChoice::MaskDir(masks.clone()),
        "maskdir-out",
    );
    let from_ids = labels(fourd_data::SegmenterChoice::Instances, "maskdir-out-ids");
    assert!(!from_ids.is_empty());
    assert_eq!(from_dirs, from_ids);
}

/// Without depth, objects are measured in the image only where the camera is still, and camera
/// questions have no imagery (so they go to the 4DRL file only).
#[test]
fn without_depth_measurement_falls_back_to_the_image() {
    let root = common::tmp("nodepth-in");
    common::synth(&root, 6, 8, 48, 8);
    for i in 0..6 {
        std::fs::remove_file(root.join(format!("annotations/group_0000/clip_{i:06}/depth.npy")))
            .unwrap();
    }
    let cfg = PipelineConfig::new(&root, common::tmp("nodepth-out"));
    let s = run_pipeline(&cfg).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let mut measured = 0;
    for i in 0..6 {
        let l: serde_json::Value = common::clip_json(&cfg.output, i, "labels.json");
        assert_eq!(l["has_depth"], false);
        assert!(l["camera_imagery"].as_array().unwrap().is_empty());
        for o in l["objects"].as_array().unwrap() {
            if o["direction"].is_string() {
                measured += 1;
                assert_eq!(o["method"], "image");
                let [a, b] = [
                    o["span"][0].as_u64().unwrap() as usize,
                    o["span"][1].as_u64().unwrap() as usize,
                ];
                assert!(l["camera"]["segments"].as_array().unwrap().iter().all(|s| {
                    let (sa, sb) = (
                        s["start"].as_u64().unwrap() as usize,
                        s["end"].as_u64().unwrap() as usize,
                    );
                    sb <= a || sa >= b || s["labels"] == serde_json::json!(["Stay"])
                }));
            } else if o["method"] == "image" {
                assert!(
                    o["skip_reason"].as_str().unwrap().contains("camera moves"),
                    "{o}"
                );
            }
        }
    }
    let rl = std::fs::read_to_string(&s.rl_path).unwrap();
    let dift = std::fs::read_to_string(&s.dift_path).unwrap();
    assert!(rl.contains("#camera-") && !dift.contains("#camera-"));
    println!("{measured} objects measured without depth");
}
