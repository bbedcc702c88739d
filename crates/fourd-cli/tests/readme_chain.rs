//! The README's documented chain, run as a user types it: from a folder that is not the
//! repository, with relative paths everywhere:
//!
//! `fourd synth` -> `fourd data run` -> `fourd data check` -> `fourd train dift` -> `fourd eval`.
//!
//! Training must use every record the check passed; a data file read from another folder fails
//! the check and training alike, and `--data-root` repairs both.

mod common;
use common::{fixture_model, fourd_in, ok, tmp};

/// The number in `text` just before `what` (`"42 record(s)"` -> 42).
fn count_before(text: &str, what: &str) -> usize {
    let i = text
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} not in {text}"));
    text[..i]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {what:?} in {text}"))
}

#[test]
fn synth_data_check_train_eval_with_relative_paths() {
    let cwd = tmp("readme-chain");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let model = fixture_model();
    let model = model.to_str().unwrap();

    run(
        "synth",
        &[
            "synth", "--out", "world", "--clips", "2", "--frames", "6", "--size", "64",
        ],
    );
    run(
        "data run",
        &["data", "run", "--input", "world", "--out", "data"],
    );
    let check = run("data check", &["data", "check", "data/dift.jsonl"]);
    let records = count_before(&check, "record(s)");
    assert!(records > 0, "{check}");
    assert!(check.contains(" 0 error(s)"), "{check}");

    // One epoch: every record is trained on once, none skipped.
    let train = run(
        "train dift",
        &[
            "train",
            "dift",
            "--model",
            model,
            "--data",
            "data/dift.jsonl",
            "--out",
            "run",
            "--epochs",
            "1",
            "--no-progress",
        ],
    );
    assert_eq!(count_before(&train, "example(s)"), records, "{train}");
    assert!(!train.contains("skipped"), "{train}");
    assert!(cwd.join("run/model.safetensors").exists());

    // The trained model answers the 4DRL questions; their frames resolve like training's.
    let eval = run(
        "eval",
        &[
            "eval",
            "--model",
            "run",
            "--benchmark",
            "data/4drl.jsonl",
            "--output-dir",
            "results",
            "--max-samples",
            "3",
            "--max-new-tokens",
            "8",
            "--greedy",
            "--dtype",
            "f32",
            "--quiet",
        ],
    );
    assert!(eval.contains("skipped 0 of 3"), "{eval}");
    assert!(std::fs::read_dir(cwd.join("results"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("run-")
            && e.path().join("dsr_eval.jsonl").exists()));

    // The same file read from another folder: its relative paths no longer resolve. The check
    // fails, training fails before loading the model (and writes nothing); --data-root repairs
    // both.
    std::fs::create_dir_all(cwd.join("elsewhere")).unwrap();
    std::fs::copy(
        cwd.join("data/dift.jsonl"),
        cwd.join("elsewhere/dift.jsonl"),
    )
    .unwrap();
    let moved = fourd_in(&cwd, &["data", "check", "elsewhere/dift.jsonl"]);
    assert!(!moved.status.success());
    let moved_train = fourd_in(
        &cwd,
        &[
            "train",
            "dift",
            "--model",
            model,
            "--data",
            "elsewhere/dift.jsonl",
            "--out",
            "run2",
            "--max-steps",
            "1",
            "--no-progress",
        ],
    );
    assert!(!moved_train.status.success());
    let err = String::from_utf8_lossy(&moved_train.stderr);
    assert!(
        err.contains("nothing to train on")
            && err.contains("--data-root")
            && err.contains("not found"),
        "{err}"
    );
    assert!(!cwd.join("run2/model.safetensors").exists());
    run(
        "data check --data-root",
        &[
            "data",
            "check",
            "elsewhere/dift.jsonl",
            "--data-root",
            "data",
        ],
    );
    let rooted = run(
        "train dift --data-root",
        &[
            "train",
            "dift",
            "--model",
            model,
            "--data",
            "elsewhere/dift.jsonl",
            "--data-root",
            "data",
            "--out",
            "run2",
            "--max-steps",
            "1",
            "--no-progress",
        ],
    );
    assert_eq!(count_before(&rooted, "example(s)"), 1, "{rooted}");
}

/// A data run that exports no question leaves nothing to train on: it fails and says why.
#[test]
fn a_data_run_without_questions_fails() {
    let cwd = tmp("readme-no-questions");
    ok(
        "synth",
        &fourd_in(
            &cwd,
            &[
                "synth", "--out", "world", "--clips", "1", "--frames", "6", "--size", "64",
            ],
        ),
    );
    let o = fourd_in(&cwd, &["data", "run", "--input", "world", "--out", "data"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no questions were written"), "{err}");
}
