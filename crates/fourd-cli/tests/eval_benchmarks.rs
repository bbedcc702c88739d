//! `fourd eval --format vsibench|stibench|dynbench`, run as a user types it (relative paths,
//! from a folder that is not the repository), on fixtures laid out as each benchmark publishes
//! its files (tools/reference/make_{vsibench,stibench,dynbench}_fixture.py); then `fourd eval
//! rescore` on the finished run.

mod common;
use common::{copy_tree, fixture_model, fourd_in, jsonl, ok, results_dir, tmp};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// `fourd eval` of the tiny model on `benchmark` in `cwd`, results under `results/`.
fn eval(cwd: &Path, benchmark: &str, format: &str, video_root: &str) -> String {
    let model = fixture_model();
    ok(
        "eval",
        &fourd_in(
            cwd,
            &[
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--benchmark",
                benchmark,
                "--format",
                format,
                "--video-root",
                video_root,
                "--output-dir",
                "results",
                "--max-new-tokens",
                "4",
                "--greedy",
                "--dtype",
                "f32",
                "--quiet",
            ],
        ),
    )
}

/// A fresh folder holding the fixture `name` copied to `to`, and the fixture's expected.json.
fn setup(test: &str, name: &str, to: &str) -> (PathBuf, Value) {
    let cwd = tmp(test);
    let root = fixture(name.split('/').next().unwrap());
    copy_tree(&fixture(name), &cwd.join(to));
    let expected =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    (cwd, expected)
}

/// Runs [`eval`], checks that none of the `n` questions was skipped, and returns the results
/// folder and its sample lines.
fn eval_all(
    cwd: &Path,
    benchmark: &str,
    format: &str,
    video_root: &str,
    n: usize,
) -> (PathBuf, Vec<Value>) {
    let out = eval(cwd, benchmark, format, video_root);
    assert!(out.contains(&format!("skipped 0 of {n}")), "{out}");
    let dir = results_dir(&cwd.join("results"), &fixture_model());
    let samples = jsonl(&dir.join("dsr_eval.jsonl"));
    assert_eq!(samples.len(), n);
    (dir, samples)
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("dsr_eval_summary.json")).unwrap())
        .unwrap()
}

fn columns(summary: &Value) -> Vec<String> {
    summary["subtask_columns_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// Every result file of a run, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            // The chart's pixels depend on the font; the numbers it draws are the summary's.
            !n.ends_with(".png") && !n.ends_with(".lock")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Rescoring a finished run in its own mode gives its files back; the other mode changes the
/// figures' mode and keeps both in the summary.
fn rescore_gives_the_run_back(cwd: &Path, dir: &Path) {
    let before = files(dir);
    let rel = dir.strip_prefix(cwd).unwrap().to_str().unwrap().to_string();
    ok(
        "rescore strict",
        &fourd_in(cwd, &["eval", "rescore", &rel, "--scoring", "strict"]),
    );
    assert_eq!(
        files(dir),
        before,
        "rescoring in the run's mode changed its files"
    );
    ok(
        "rescore reference",
        &fourd_in(cwd, &["eval", "rescore", &rel, "--scoring", "reference"]),
    );
    let s = summary(dir);
    assert_eq!(s["scoring"], "reference");
    assert!(s["by_scoring"]["strict"].is_object() && s["by_scoring"]["reference"].is_object());
    ok(
        "rescore strict again",
        &fourd_in(cwd, &["eval", "rescore", &rel, "--scoring", "strict"]),
    );
    assert_eq!(files(dir), before);
}

/// Puts the replies of the fixture's `aggregate` (keyed by sample index) in the run's lines, as
/// if the model had given them, and rescores with the benchmark's own rule: the summary must be
/// the official aggregate. Returns the summary.
fn rescore_official_replies(cwd: &Path, dir: &Path, replies: &Value) -> Value {
    let path = dir.join("dsr_eval.jsonl");
    let lines: String = jsonl(&path)
        .into_iter()
        .map(|mut line| {
            line["raw"] = replies[line["index"].to_string()].clone();
            format!("{line}\n")
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    let rel = dir.strip_prefix(cwd).unwrap().to_str().unwrap().to_string();
    ok(
        "rescore official replies",
        &fourd_in(cwd, &["eval", "rescore", &rel, "--scoring", "reference"]),
    );
    summary(dir)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

#[test]
fn vsibench_numbers_and_choices_are_scored_by_their_metric() {
    let (cwd, expected) = setup("eval-vsibench", "vsibench", "VSI-Bench");
    let rows = expected["rows"].as_array().unwrap();
    // `auto` knows the table by its fields; videos are <root>/<dataset>/<scene>.mp4.
    let (dir, samples) = eval_all(
        &cwd,
        "VSI-Bench/test-00000-of-00001.parquet",
        "auto",
        "VSI-Bench",
        rows.len(),
    );
    for row in rows {
        let s = samples.iter().find(|s| s["index"] == row["id"]).unwrap();
        assert_eq!(s["benchmark"], "vsibench");
        assert_eq!(s["subtask_type"], row["question_type"]);
        assert_eq!(s["gt"], row["ground_truth"]);
        assert!(s["video_path"]
            .as_str()
            .unwrap()
            .ends_with(row["video"].as_str().unwrap()));
        if row["kind"] == "number" {
            assert_eq!(s["kind"], "number");
            let score = s["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score));
        } else {
            assert!(s.get("kind").is_none() && s.get("score").is_none());
        }
    }
    let s = summary(&dir);
    assert_eq!(s["benchmark"], "vsibench");
    assert_eq!(
        columns(&s),
        [
            "Obj. Count",
            "Abs. Dist.",
            "Obj. Size",
            "Room Size",
            "Rel. Dist.",
            "Rel. Dir.",
            "Route Plan",
            "Appr. Order",
            "Avg"
        ]
    );
    assert_eq!(s["subtask_total"]["Rel. Dir."], 3);
    let table = std::fs::read_to_string(dir.join("dsr_eval_summary.md")).unwrap();
    assert!(table.contains("thinking-in-space"), "{table}");
    rescore_gives_the_run_back(&cwd, &dir);
    let aggregate = &expected["aggregate"];
    let s = rescore_official_replies(&cwd, &dir, &aggregate["replies"]);
    let official = |k: &str| aggregate["metrics"][k].as_f64().unwrap() / 100.0;
    let avg = s["by_scoring"]["reference"]["subtask_macro_avg"]
        .as_f64()
        .unwrap();
    assert!(close(avg, official("overall")), "{avg}");
    let count = s["subtask_accuracy"]["Obj. Count"].as_f64().unwrap();
    assert!(close(count, official("object_counting_MRA:.5:.95:.05")));
    let rel_dir = s["subtask_accuracy"]["Rel. Dir."].as_f64().unwrap();
    assert!(close(rel_dir, official("object_rel_direction_accuracy")));
}

#[test]
fn stibench_questions_see_only_their_window() {
    let (cwd, expected) = setup("eval-stibench", "stibench", "STI-Bench");
    let rows = expected["rows"].as_array().unwrap();
    let (dir, samples) = eval_all(
        &cwd,
        "STI-Bench/qa.parquet",
        "auto",
        "STI-Bench/videos",
        rows.len(),
    );
    for (i, row) in rows.iter().enumerate() {
        let s = samples.iter().find(|s| s["index"] == i).unwrap();
        assert_eq!(s["benchmark"], "stibench");
        assert_eq!(s["subtask_type"], row["task"]);
        assert!(s["question"]
            .as_str()
            .unwrap()
            .starts_with(row["prompt_question"].as_str().unwrap()));
        // The record says which frames were shown: all inside the window, at 1 fps (the
        // fixture's videos are 4 fps).
        let frames = &s["frames"];
        assert_eq!(frames["window"], row["window"]);
        let (a, b) = (
            row["window"][0].as_f64().unwrap(),
            row["window"][1].as_f64().unwrap(),
        );
        let times: Vec<f64> = frames["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert!(!times.is_empty());
        for t in &times {
            assert!(*t >= a - 1e-9 && *t <= b + 1e-9, "{t} outside {a}..{b}");
        }
        assert!(
            (times[0] - a).abs() < 0.25 + 1e-9,
            "first frame {} for {a}",
            times[0]
        );
        let indices = frames["indices"].as_array().unwrap();
        assert_eq!(indices.len(), times.len());
        for (k, t) in indices.iter().zip(&times) {
            assert!((k.as_f64().unwrap() / 4.0 - t).abs() < 1e-9);
        }
    }
    let s = summary(&dir);
    assert_eq!(
        columns(&s),
        [
            "Dim. Meas.",
            "Spatial Relation",
            "3D Video Grounding",
            "Disp. & P.L.",
            "Speed & Acc.",
            "Ego Orient.",
            "Traj. Desc.",
            "Pose Est."
        ]
    );
    assert_eq!(s["subtask_total"]["Dim. Meas."], 2);
    rescore_gives_the_run_back(&cwd, &dir);
}

#[test]
fn dynbench_folders_are_evaluated_from_their_frames() {
    let (cwd, expected) = setup("eval-dynbench", "dynbench/dataset", "Dyn-Bench");
    let questions = expected["questions"].as_array().unwrap();
    // A folder is Dyn-Bench's with `auto`; frames are named by the dataset, not --video-root.
    let (dir, samples) = eval_all(&cwd, "Dyn-Bench", "auto", ".", questions.len());
    for (i, q) in questions.iter().enumerate() {
        let s = samples.iter().find(|s| s["index"] == i).unwrap();
        assert_eq!(s["benchmark"], "dynbench");
        assert_eq!(s["subtask_type"], q["category"]);
        assert_eq!(s["gt"], q["answer"]);
    }
    let s = summary(&dir);
    assert_eq!(
        columns(&s),
        ["Inter-Object", "Camera-Object", "Object-Scene", "Avg"]
    );
    rescore_gives_the_run_back(&cwd, &dir);
    let aggregate = &expected["aggregate"];
    let s = rescore_official_replies(&cwd, &dir, &aggregate["replies"]);
    for col in ["Camera-Object", "Inter-Object", "Object-Scene"] {
        let official = aggregate["result"][format!("{col}_QA_Accuracy")]
            .as_f64()
            .unwrap()
            / 100.0;
        let ours = s["subtask_accuracy"][col].as_f64().unwrap();
        assert!(close(ours, official), "{col}: {ours} vs {official}");
    }
    let overall = aggregate["result"]["Overall"].as_f64().unwrap() / 100.0;
    assert!(close(s["subtask_macro_avg"].as_f64().unwrap(), overall));
    // The same folder again resumes with nothing to do; a changed question file is another
    // benchmark, and the run stops rather than mixing results.
    let again = eval(&cwd, "Dyn-Bench", "dynbench", ".");
    assert!(again.contains(&format!("skipped 0 of {}", questions.len())));
    let qa = cwd.join("Dyn-Bench/multi_json/davis/dog_qa.json");
    let text = std::fs::read_to_string(&qa).unwrap();
    std::fs::write(&qa, text.replacen("the dog", "the cat", 1)).unwrap();
    let model = fixture_model();
    let o = fourd_in(
        &cwd,
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--benchmark",
            "Dyn-Bench",
            "--output-dir",
            "results",
            "--max-new-tokens",
            "4",
            "--dtype",
            "f32",
            "--quiet",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("benchmark"), "{err}");
}

/// `fourd eval judge` on a finished VLM4D run, against a loopback OpenAI-compatible judge: every
/// sample gets a verdict in its line, and the figures become the judge's.
#[test]
fn vlm4d_results_are_judged_through_an_openai_compatible_api() {
    let (cwd, expected) = setup("eval-judge", "vlm4d", "VLM4D");
    let n = expected["real_mc.json"].as_object().unwrap().len();
    let (dir, _) = eval_all(&cwd, "VLM4D/real_mc.json", "vlm4d", "VLM4D/dataset", n);
    let server = fourd_api::testing::MockChatServer::fixed(
        "{\"extracted_answer\": \"B: left\", \"correct\": true}",
    )
    .unwrap();
    let rel = dir
        .strip_prefix(&cwd)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out = ok(
        "judge",
        &fourd_in(
            &cwd,
            &[
                "eval",
                "judge",
                &rel,
                "--endpoint",
                &server.base_url(),
                "--jobs",
                "2",
            ],
        ),
    );
    assert!(out.contains(&format!("{n} judged by o4-mini")), "{out}");
    assert_eq!(server.request_count(), n);
    let samples = jsonl(&dir.join("dsr_eval.jsonl"));
    assert!(samples.iter().all(|s| s["judge"]["correct"] == true));
    let s = summary(&dir);
    assert_eq!(s["scoring"], "judge");
    assert_eq!(s["accuracy"], 1.0);
    let table = std::fs::read_to_string(dir.join("dsr_eval_summary.md")).unwrap();
    assert!(table.contains("| judge |"), "{table}");
    // Again: nothing to ask.
    let again = ok(
        "judge again",
        &fourd_in(
            &cwd,
            &["eval", "judge", &rel, "--endpoint", &server.base_url()],
        ),
    );
    assert!(
        again.contains(&format!("0 judged by o4-mini, {n} already judged")),
        "{again}"
    );
    assert_eq!(server.request_count(), n);
    // A run cannot be scored by a judge before it has verdicts.
    let o = fourd_in(
        &cwd,
        &[
            "eval",
            "--model",
            "m",
            "--benchmark",
            "VLM4D/real_mc.json",
            "--scoring",
            "judge",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fourd eval judge"));
}
