//! The released 4DThinker checkpoint folders (`model/dift/checkpoints/`, with the Trainer's
//! `checkpoint-N/` inside; `model/4drl/`), as the fork's transformers 4.50 writes them
//! (tests/fixtures/released/checkpoint, made by tools/reference/make_released_checkpoint_fixture.py):
//! sharded bf16 safetensors with an index, a flat config.json with the fork's fields,
//! chat_template.json, and Trainer / DeepSpeed leftovers. `fourd infer`, `eval` and `train dift`
//! take them with `--model`, typed as a user would, relative to a folder outside the repository,
//! next to the released training data (tests/fixtures/released/data).

mod common;
use common::{copy_tree, fourd_in, ok, tmp};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A folder laid out as the 4DThinker repository after downloading the release:
/// `4DThinker/model/dift/checkpoints/` (the final save, with `checkpoint-1/` in it),
/// `4DThinker/data/`, and an image beside.
fn release_tree(name: &str) -> PathBuf {
    let cwd = tmp(name);
    let ckpt = fixtures().join("released/checkpoint");
    let checkpoints = cwd.join("4DThinker/model/dift/checkpoints");
    copy_tree(&ckpt, &checkpoints);
    copy_tree(&ckpt, &checkpoints.join("checkpoint-1"));
    copy_tree(
        &fixtures().join("released/data"),
        &cwd.join("4DThinker/data"),
    );
    std::fs::copy(
        fixtures().join("latent/media/img_c.png"),
        cwd.join("img_c.png"),
    )
    .unwrap();
    cwd
}

fn infer_json(cwd: &Path, model: &str) -> Value {
    let out = ok(
        &format!("infer --model {model}"),
        &fourd_in(
            cwd,
            &[
                "infer",
                "--model",
                model,
                "--image",
                "img_c.png",
                "--question",
                "Is the square red?",
                "--greedy",
                "--repetition-penalty",
                "1.0",
                "--max-new-tokens",
                "40",
                "--json",
            ],
        ),
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn infer_takes_the_released_folder_and_its_checkpoint_subfolder() {
    let cwd = release_tree("released-ckpt-infer");
    let latent = fixtures().join("latent/model");
    let top = infer_json(&cwd, "4DThinker/model/dift/checkpoints");
    let sub = infer_json(&cwd, "4DThinker/model/dift/checkpoints/checkpoint-1");
    let base = infer_json(&cwd, latent.to_str().unwrap());
    assert_eq!(top["token_ids"], sub["token_ids"]);
    // The released folder holds the latent fixture's weights rounded to bf16; on this prompt
    // the rounding changes no token (crates/fourd-model/tests/released_checkpoint.rs compares
    // the logits), so the answers and the imagery are the same.
    assert_eq!(top["token_ids"], base["token_ids"], "{top}\n{base}");
    assert_eq!(top["latent_segments"], base["latent_segments"]);
    let segs = top["latent_segments"].as_array().unwrap();
    assert!(
        !segs.is_empty() && segs.iter().all(|s| s["count"] == 4),
        "{top}"
    );

    // The parent folder is not a checkpoint; the message says where the checkpoints are.
    let o = fourd_in(
        &cwd,
        &[
            "infer",
            "--model",
            "4DThinker/model/dift",
            "--question",
            "q",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config.json") && err.contains("checkpoints"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eval_and_train_dift_take_the_released_folder() {
    let cwd = release_tree("released-ckpt-train");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let model = "4DThinker/model/dift/checkpoints";

    // eval, in its default dtype (bf16, the stored one), on the released 4DRL records.
    let eval = run(
        "eval",
        &[
            "eval",
            "--model",
            model,
            "--benchmark",
            "4DThinker/data/4drl_data.jsonl",
            "--data-root",
            "4DThinker",
            "--output-dir",
            "results",
            "--max-new-tokens",
            "4",
            "--greedy",
            "--quiet",
        ],
    );
    assert!(eval.contains("skipped 0 of 3"), "{eval}");

    // One DIFT step from the Trainer's checkpoint folder.
    let train = run(
        "train dift",
        &[
            "train",
            "dift",
            "--model",
            &format!("{model}/checkpoint-1"),
            "--data",
            "4DThinker/data/dift_data.jsonl",
            "--data-root",
            "4DThinker",
            "--out",
            "run",
            "--max-steps",
            "1",
            "--no-progress",
        ],
    );
    assert!(train.contains("1 steps"), "{train}");
    let out = cwd.join("run");
    // The fork's fields and the 4.50 layout carry over into the trained checkpoint ...
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["vocab_size"], 369);
    assert_eq!(cfg["hidden_size"], 64);
    assert_eq!(cfg["stage"], "stage1");
    assert_eq!(cfg["latent_start_id"], 367);
    assert_eq!(cfg["transformers_version"], "4.50.0.dev0");
    // Trained in f32, stored in f32: the release's "bfloat16" no longer holds.
    assert_eq!(cfg["torch_dtype"], "float32");
    // ... with the tokenizer, template and processor files ...
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.json",
        "preprocessor_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} not copied");
    }
    // ... but not the source's Trainer and DeepSpeed state (optimizer.pt alone is twice the
    // model's size in a real checkpoint).
    for f in [
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "training_args.bin",
        "trainer_state.json",
        "latest",
        "zero_to_fp32.py",
        "global_step1",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
    ] {
        assert!(
            !out.join(f).exists(),
            "{f} copied into the trained checkpoint"
        );
    }
    // The trained checkpoint loads again.
    let v = infer_json(&cwd, "run");
    assert!(!v["token_ids"].as_array().unwrap().is_empty(), "{v}");
}
