//! `fourd synth benchmark`: a DSR-Bench-format benchmark from synthetic clips, loaded by the evaluator,
//! answers against truth, balanced letters, byte-stable output, and `fourd eval` on it.

mod common;

use common::{fourd, tmp};
use std::path::Path;

use fourd_eval::benchmark::{load, ColumnMap};
use fourd_eval::report::SUBTASKS;
use fourd_eval::run::video_id;
use serde_json::Value;

fn bench(out: &Path, seed: &str) {
    let o = fourd(&[
        "synth",
        "bench",
        "--out",
        out.to_str().unwrap(),
        "--clips",
        "4",
        "--frames",
        "8",
        "--size",
        "64x64",
        "--fps",
        "8",
        "--seed",
        seed,
        "--questions-per-clip",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn synth_bench_loads_matches_truth_and_evaluates() {
    let out = tmp("a");
    bench(&out, "5");
    let recs = load(&out.join("benchmark.parquet"), &ColumnMap::default()).unwrap();
    assert!(recs.len() >= 4, "{} questions", recs.len());
    let truth: Vec<Value> = std::fs::read_to_string(out.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len(), recs.len());
    let mut counts = [0usize; 4];
    let mut predictions = 0;
    for (r, t) in recs.iter().zip(&truth) {
        assert_eq!(r.options.len(), 4, "{r:?}");
        let k = ["A", "B", "C", "D"]
            .iter()
            .position(|&c| c == r.answer)
            .unwrap_or_else(|| panic!("gt {:?}", r.answer));
        counts[k] += 1;
        assert!(
            SUBTASKS.iter().any(|(key, _)| *key == r.task_type),
            "type {:?}",
            r.task_type
        );
        assert_eq!(t["videoID"], video_id(r).as_str());
        // Prediction questions show only the first frames, in a video of their own.
        if let Some(k) = t["shown_frames"].as_u64() {
            assert!(r.task_type.ends_with("_pred"), "{r:?}");
            let v = fourd_video::decode_video(
                &out.join(format!("videos/{}.mp4", video_id(r))),
                &fourd_video::SamplingOptions::all_frames(),
            )
            .unwrap();
            assert_eq!(v.frames.len() as u64, k);
            assert!(k < 8);
            predictions += 1;
        }
        assert_eq!(t["type"], r.task_type.as_str());
        assert_eq!(t["answer"], r.answer.as_str());
        assert_eq!(
            r.options[k],
            format!("{}. {}", r.answer, t["label"].as_str().unwrap())
        );
        for (i, o) in r.options.iter().enumerate() {
            assert!(
                o.starts_with(&format!("{}. ", ["A", "B", "C", "D"][i])),
                "{o}"
            );
        }
    }
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(hi - lo <= 1, "letters {counts:?}");
    assert!(
        predictions > 0,
        "no prediction question in {} questions",
        recs.len()
    );
    for i in 0..4 {
        let v = fourd_video::decode_video(
            &out.join(format!("videos/synth_{i:06}.mp4")),
            &fourd_video::SamplingOptions::all_frames(),
        )
        .unwrap();
        assert_eq!(v.frames.len(), 8);
    }

    // Same seed, same bytes; another seed, other questions.
    let again = tmp("b");
    bench(&again, "5");
    for f in ["benchmark.parquet", "truth.jsonl"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
    std::fs::remove_dir_all(&again).ok();

    // The evaluator runs on it.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/model");
    let eval_dir = out.join("eval");
    let o = fourd(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--benchmark",
        out.join("benchmark.parquet").to_str().unwrap(),
        "--video-root",
        out.join("videos").to_str().unwrap(),
        "--output-dir",
        eval_dir.to_str().unwrap(),
        "--max-new-tokens",
        "8",
        "--dtype",
        "f32",
        "--quiet",
        "--max-samples",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::results_dir(&eval_dir, &model).join("dsr_eval_summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        s["eval_count"].as_u64().unwrap() + s["skipped"].as_u64().unwrap(),
        4,
        "{s}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn letters_balanced_over_many_questions() {
    let cfg = fourd_world::GenConfig {
        frames: 6,
        width: 32,
        height: 32,
        hfov_deg: 60.0,
        max_objects: 3,
    };
    let clips: Vec<_> = (0..12u64)
        .map(|i| {
            (
                format!("v{i}"),
                fourd_world::random_clip(i * 31 + 2, &cfg).unwrap().1,
            )
        })
        .collect();
    let qs = fourd_world::benchmark::build_benchmark(&clips, 9, 4);
    assert!(qs.len() >= 40, "{} questions", qs.len());
    let mut counts = [0usize; 4];
    let mut types = std::collections::BTreeSet::new();
    for q in &qs {
        counts[(q.answer() as u8 - b'A') as usize] += 1;
        types.insert(q.task_type());
    }
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(hi - lo <= 1, "letters {counts:?}");
    for t in [
        "abs_dir",
        "abs_spd",
        "abs_dis",
        "rel_dir",
        "abs_spd_comp",
        "rel_dis",
        "abs_dir_pred",
        "rel_dir_pred",
    ] {
        assert!(types.contains(t), "no {t} question in {types:?}");
    }
}

#[test]
fn synth_bench_rejects_zero_questions() {
    let out = tmp("zero");
    let o = fourd(&[
        "synth",
        "bench",
        "--out",
        out.to_str().unwrap(),
        "--questions-per-clip",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("questions-per-clip"));
}

#[test]
fn synth_bench_from_a_scene_spec() {
    let out = tmp("spec");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scene-spec.json");
    let o = fourd(&[
        "synth",
        "bench",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--questions-per-clip",
        "8",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = load(&out.join("benchmark.parquet"), &ColumnMap::default()).unwrap();
    assert_eq!(recs.len(), 8);
    for r in &recs {
        assert!(video_id(r).starts_with("pan_dolly_then_stay"), "{r:?}");
        assert!(out.join(format!("videos/{}.mp4", video_id(r))).is_file());
    }
    // Direction answers are the spec's own labels.
    let truth = std::fs::read_to_string(out.join("truth.jsonl")).unwrap();
    for t in truth
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
    {
        if t["type"] == "abs_dir" {
            let l = t["label"].as_str().unwrap();
            assert!(
                ["Moving Right", "Moving Toward Camera", "Stationary"].contains(&l),
                "{t}"
            );
        }
    }
    std::fs::remove_dir_all(&out).ok();
}
