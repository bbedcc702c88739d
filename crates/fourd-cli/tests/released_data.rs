//! The released 4DThinker training data, in its own layout (tests/fixtures/released, written by
//! tools/reference/make_released_data_fixture.py as the released files are): paths
//! `./data/processed_data/...` relative to the repository root, JPEG frames and overlays. With
//! `--data-root` every reader takes every record; without it, they stop and say so.

mod common;
use common::{copy_tree, fixture_model, fourd_in, ok, tmp};
use std::path::Path;

#[test]
fn the_released_jsonl_is_read_in_full_through_data_root() {
    let cwd = tmp("released");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/released");
    copy_tree(&fixture, &cwd.join("4DThinker"));
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let dift = "4DThinker/data/dift_data.jsonl";
    let rl = "4DThinker/data/4drl_data.jsonl";

    // Relative to the file's folder the paths do not resolve: check and training say so.
    assert!(!fourd_in(&cwd, &["data", "check", dift]).status.success());
    let plain = fourd_in(
        &cwd,
        &[
            "train",
            "dift",
            "--model",
            model,
            "--data",
            dift,
            "--out",
            "run0",
            "--no-progress",
        ],
    );
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("--data-root"));

    // Relative to the repository root, everything is read.
    let check = run(
        "data check",
        &["data", "check", dift, "--data-root", "4DThinker"],
    );
    assert!(
        check.contains("3 record(s)") && check.contains(" 0 error(s)"),
        "{check}"
    );
    let train = run(
        "train dift",
        &[
            "train",
            "dift",
            "--model",
            model,
            "--data",
            dift,
            "--data-root",
            "4DThinker",
            "--out",
            "run",
            "--epochs",
            "1",
            "--no-progress",
        ],
    );
    assert!(
        train.contains("trained on 3 example(s) from 3 record(s)"),
        "{train}"
    );
    let eval = run(
        "eval",
        &[
            "eval",
            "--model",
            model,
            "--benchmark",
            rl,
            "--data-root",
            "4DThinker",
            "--output-dir",
            "results",
            "--max-new-tokens",
            "4",
            "--greedy",
            "--dtype",
            "f32",
            "--quiet",
        ],
    );
    assert!(eval.contains("skipped 0 of 3"), "{eval}");
    let grpo = run(
        "train grpo",
        &[
            "train",
            "grpo",
            "--model",
            model,
            "--data",
            rl,
            "--data-root",
            "4DThinker",
            "--out",
            "rl",
            "--max-steps",
            "1",
            "--num-generations",
            "2",
            "--max-new-tokens",
            "8",
            "--no-progress",
        ],
    );
    assert!(grpo.contains("0 prompt(s) skipped"), "{grpo}");
}
