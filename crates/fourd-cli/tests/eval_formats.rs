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
    assert_eq!(run(args("mmbench")).status.code(), Some(2));
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

/// VLM4D's question files (tests/fixtures/vlm4d, laid out as VLM4D publishes them by
/// tools/reference/make_vlm4d_fixture.py): answers given as choice text (integers in counting
/// rows), videos as URLs into the dataset, categories and the table of acc_final_statistics.py.
#[test]
fn vlm4d_question_files_are_read_with_their_categories() {
    let cwd = tmp("eval-vlm4d");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vlm4d");
    copy_tree(&fixture, &cwd.join("VLM4D"));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let model = fixture_model();
    for (file, out, columns) in [
        (
            "real_mc.json",
            "results-real",
            ["Real Ego-centric", "Real Exo-centric", "Real Overall"],
        ),
        (
            "synthetic_mc.json",
            "results-synthetic",
            ["Synthetic Directional", "Synthetic FP", "Synthetic Overall"],
        ),
    ] {
        let benchmark = format!("VLM4D/{file}");
        let o = ok(
            "eval",
            &fourd_in(
                &cwd,
                &[
                    "eval",
                    "--model",
                    model.to_str().unwrap(),
                    "--benchmark",
                    &benchmark,
                    "--format",
                    "vlm4d",
                    "--video-root",
                    "VLM4D/dataset",
                    "--output-dir",
                    out,
                    "--max-new-tokens",
                    "4",
                    "--greedy",
                    "--dtype",
                    "f32",
                    "--quiet",
                ],
            ),
        );
        let want = expected[file].as_object().unwrap();
        assert!(o.contains(&format!("skipped 0 of {}", want.len())), "{o}");
        let dir = results_dir(&cwd.join(out), &model);
        let samples = jsonl(&dir.join("dsr_eval.jsonl"));
        assert_eq!(samples.len(), want.len());
        for (id, w) in want {
            let n: u64 = id.rsplit('_').next().unwrap().parse().unwrap();
            let s = samples.iter().find(|s| s["index"] == n).unwrap();
            assert_eq!(s["subtask_type"], w["category"], "{file} {id}");
            assert_eq!(s["gt"], w["letter"], "{file} {id}");
        }
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("dsr_eval_summary.json")).unwrap(),
        )
        .unwrap();
        let order: Vec<&str> = summary["subtask_columns_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "Real Ego-centric",
                "Real Exo-centric",
                "Real Overall",
                "Synthetic Directional",
                "Synthetic FP",
                "Synthetic Overall"
            ]
        );
        // Every column a micro average over its categories' samples.
        for col in columns {
            let keys: Vec<&str> = match col {
                "Real Overall" => vec!["real_ego", "real_exo"],
                "Synthetic Overall" => vec!["synthetic_directional", "synthetic_fp"],
                "Real Ego-centric" => vec!["real_ego"],
                "Real Exo-centric" => vec!["real_exo"],
                "Synthetic Directional" => vec!["synthetic_directional"],
                _ => vec!["synthetic_fp"],
            };
            let mine: Vec<&serde_json::Value> = samples
                .iter()
                .filter(|s| keys.contains(&s["subtask_type"].as_str().unwrap()))
                .collect();
            assert_eq!(summary["subtask_total"][col], mine.len(), "{col}");
            let hits: u64 = mine.iter().map(|s| s["hit"].as_u64().unwrap()).sum();
            assert_eq!(summary["subtask_correct"][col], hits, "{col}");
        }
        let table = std::fs::read_to_string(dir.join("dsr_eval_summary.md")).unwrap();
        assert!(
            table.contains("| Real Overall |") && !table.contains("Avg"),
            "{table}"
        );
    }
    // The two files reuse ids: read together they would collide, and the reader says so.
    let mut both: Vec<serde_json::Value> = Vec::new();
    for f in ["real_mc.json", "synthetic_mc.json"] {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(fixture.join(f)).unwrap()).unwrap();
        both.extend(v);
    }
    both[3]["id"] = "validation_3".into();
    std::fs::write(
        cwd.join("VLM4D/both.json"),
        serde_json::to_string(&both).unwrap(),
    )
    .unwrap();
    let o = fourd_in(
        &cwd,
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--benchmark",
            "VLM4D/both.json",
            "--video-root",
            "VLM4D/dataset",
            "--output-dir",
            "results-both",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("both.json") && err.contains("appears twice"),
        "{err}"
    );
}
