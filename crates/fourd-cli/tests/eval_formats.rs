//! `fourd eval --format`: VLMEvalKit's DSRBench.tsv (tests/fixtures/dsr_tsv, written with pandas as
//! VLMEvalKit publishes it by tools/reference/make_dsr_tsv_fixture.py), run as a user types it.

mod common;
use common::{copy_tree, fixture_model, fourd_in, jsonl, ok, results_dir, tmp};
use std::path::Path;

#[test]
fn vlmevalkit_dsrbench_tsv_is_evaluated_by_its_own_index() {
    let cwd = tmp("eval-dsr-tsv");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dsr_tsv");
    copy_tree(&fixture, &cwd.join("DSRBench"));
    let model = fixture_model();
    let args = |format: &str| -> Vec<String> {
        [
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--benchmark",
            "DSRBench/DSRBench.tsv",
            "--format",
            format,
            "--video-root",
            "DSRBench/raw_data/dsr-bench",
            "--output-dir",
            "results",
            "--max-new-tokens",
            "4",
            "--greedy",
            "--dtype",
            "f32",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fourd_in(&cwd, &a)
    };
    let out = ok("eval", &run(args("dsr-tsv")));
    assert!(out.contains("skipped 0 of 4"), "{out}");
    let dir = results_dir(&cwd.join("results"), &model);
    let samples = jsonl(&dir.join("dsr_eval.jsonl"));
    let mut indices: Vec<u64> = samples
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    indices.sort();
    assert_eq!(indices, vec![1201, 1202, 1207, 1300]);
    let by = |i: u64| samples.iter().find(|s| s["index"] == i).unwrap();
    // pandas quoted these fields; the video column is a path under the video root.
    assert!(by(1202)["question"]
        .as_str()
        .unwrap()
        .starts_with("Is the \"red\" square"));
    assert!(by(1207)["question"]
        .as_str()
        .unwrap()
        .contains("move,\tseen"));
    assert!(by(1201)["question"]
        .as_str()
        .unwrap()
        .ends_with("D. Dolly In"));
    assert!(by(1201)["video_path"]
        .as_str()
        .unwrap()
        .ends_with("raw_data/dsr-bench/videos/koala_0001.mp4"));
    assert_eq!(by(1300)["subtask_type"], "abs_spd");
    assert_eq!(by(1201)["gt"], "B");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dsr_eval_summary.json")).unwrap())
            .unwrap();
    for col in ["Rel Dir", "Abs Dis", "Abs Dir", "Abs Spd"] {
        assert_eq!(summary["subtask_total"][col], 1, "{col}");
    }
    // `auto` takes a .tsv for this format: the same run, resumed with nothing to do.
    let again = ok("eval auto", &run(args("auto")));
    assert!(again.contains("skipped 0 of 4"), "{again}");
    // An unknown format is a usage error; a repeated index names the row.
    assert_eq!(run(args("vlm4d")).status.code(), Some(2));
    let tsv = cwd.join("DSRBench/DSRBench.tsv");
    let text = std::fs::read_to_string(&tsv)
        .unwrap()
        .replace("1207\t", "1201\t");
    std::fs::write(cwd.join("DSRBench/dup.tsv"), text).unwrap();
    let mut a = args("dsr-tsv");
    a[4] = "DSRBench/dup.tsv".into();
    let o = run(a);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dup.tsv") && err.contains("index 1201 appears twice"),
        "{err}"
    );
}
