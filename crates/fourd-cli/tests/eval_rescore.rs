//! `fourd eval rescore`: scores saved results again from their replies, without a model, in
//! either mode; a finished run rescored in its own mode gives its own files back; and the
//! reference's own result files (dsr_eval.py's format, written by the Python port in
//! tools/reference/make_dsr_scoring_fixture.py) give the Python side's figures in `reference`.

mod common;
use common::{copy_tree, fixture_model, fourd_in, jsonl as lines, ok, results_dir, tmp};
use std::path::Path;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_references_own_results_rescore_to_its_figures() {
    let cwd = tmp("rescore-ref");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dsr_scoring");
    copy_tree(&fixture, &cwd.join("results"));
    let stem = "dsr_eval_20260426_231001";
    let python_summary = json(&fixture.join(format!("{stem}_summary.json")));
    let python_samples = lines(&fixture.join(format!("{stem}.jsonl")));
    let rescore = |mode: &str| {
        ok(
            "rescore",
            &fourd_in(&cwd, &["eval", "rescore", "results", "--scoring", mode]),
        )
    };
    let out = rescore("reference");
    assert!(out.contains("(reference scoring)"), "{out}");
    let ours = json(&cwd.join(format!("results/{stem}_summary.json")));
    for key in [
        "total",
        "eval_count",
        "correct",
        "accuracy",
        "subtask_macro_avg",
    ] {
        assert_eq!(ours[key], python_summary[key], "{key}");
    }
    assert_eq!(ours["subtask_accuracy"], python_summary["subtask_accuracy"]);
    assert_eq!(ours["scoring"], "reference");
    // In reference mode every sample line is the Python side's.
    let samples = cwd.join(format!("results/{stem}.jsonl"));
    assert_eq!(lines(&samples), python_samples);
    // Strict scoring reads the option named by its text and never counts an empty answer: other
    // figures, and the table names both.
    let strict = &ours["by_scoring"]["strict"];
    assert_eq!(
        ours["by_scoring"]["reference"]["accuracy"],
        ours["accuracy"]
    );
    assert!(strict["accuracy"].is_f64());
    let table = std::fs::read_to_string(cwd.join(format!("results/{stem}_summary.md"))).unwrap();
    assert!(
        table.contains("| reference |") && table.contains("| strict |"),
        "{table}"
    );
    assert!(table.contains("published"), "{table}");
    assert!(cwd.join(format!("results/{stem}_subtasks.png")).is_file());
    // Strict, then back: the same lines as the Python side wrote.
    rescore("strict");
    let strict_lines = lines(&samples);
    assert_ne!(strict_lines, python_samples);
    // "Dolly In" is D either way (here as the option it names); a capital inside the reasoning
    // ("Camera moves left, so the answer is A": C there, A here) parts the two.
    let differing = strict_lines
        .iter()
        .zip(&python_samples)
        .filter(|(a, b)| a["pred"] != b["pred"])
        .count();
    assert!(differing >= 2, "{differing}");
    assert_eq!(
        json(&cwd.join(format!("results/{stem}_summary.json")))["accuracy"],
        strict["accuracy"]
    );
    rescore("reference");
    assert_eq!(lines(&samples), python_samples);
    // A folder without results says so.
    std::fs::create_dir_all(cwd.join("empty")).unwrap();
    let o = fourd_in(&cwd, &["eval", "rescore", "empty"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no dsr_eval.jsonl"));
    let o = fourd_in(&cwd, &["eval", "rescore", "results", "--scoring", "loose"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_finished_run_rescored_in_its_mode_gives_its_own_files() {
    let cwd = tmp("rescore-run");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/released");
    copy_tree(&fixture, &cwd.join("4DThinker"));
    let model = fixture_model();
    ok(
        "eval",
        &fourd_in(
            &cwd,
            &[
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--benchmark",
                "4DThinker/data/4drl_data.jsonl",
                "--data-root",
                "4DThinker",
                "--output-dir",
                "results",
                "--max-new-tokens",
                "6",
                "--greedy",
                "--dtype",
                "f32",
                "--quiet",
            ],
        ),
    );
    let dir = results_dir(&cwd.join("results"), &model);
    let names = [
        "dsr_eval.jsonl",
        "dsr_eval_summary.json",
        "dsr_eval_summary.md",
        "dsr_eval_subtasks.png",
    ];
    let read = || -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|n| std::fs::read(dir.join(n)).unwrap())
            .collect()
    };
    let run = read();
    let rescore = |mode: &str| {
        ok(
            "rescore",
            &fourd_in(
                &cwd,
                &["eval", "rescore", dir.to_str().unwrap(), "--scoring", mode],
            ),
        )
    };
    rescore("strict");
    assert!(
        read() == run,
        "rescoring in the run's mode changed its files"
    );
    rescore("reference");
    let reference = json(&dir.join("dsr_eval_summary.json"));
    assert_eq!(reference["scoring"], "reference");
    rescore("strict");
    assert!(
        read() == run,
        "strict after reference is not the run's files"
    );
}
