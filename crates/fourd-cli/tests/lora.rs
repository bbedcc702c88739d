//! LoRA as a user runs it, from a folder that is not the repository, with relative paths:
//! `train dift|grpo --lora-rank` write PEFT's adapter folder, `infer|eval --adapter` run it,
//! `model merge-lora` bakes it in, a halted run resumes to the same adapter, two rank processes
//! train the same adapter as one, and flags that do not go together are refused by name.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_tree, fixture_model, fourd_in, ok, synthetic_dataset, tmp};

fn tensors(path: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap()
}

use common::max_abs_diff as max_abs;

/// The largest difference between two adapters, tensor by tensor (the same keys).
fn adapter_diff(a: &Path, b: &Path) -> f32 {
    let file = |d: &Path| d.join("adapter_model.safetensors");
    assert_eq!(
        {
            let mut k: Vec<_> = tensors(&file(a)).into_keys().collect();
            k.sort();
            k
        },
        {
            let mut k: Vec<_> = tensors(&file(b)).into_keys().collect();
            k.sort();
            k
        }
    );
    common::file_diff(&file(a), &file(b))
}

fn answer(out: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["text"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[test]
fn dift_lora_then_infer_merge_and_eval_as_a_user_types_them() {
    let cwd = synthetic_dataset("lora-e2e");
    copy_tree(&fixture_model(), &cwd.join("model"));
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let train = run(
        "train dift --lora-rank",
        &[
            "train",
            "dift",
            "--model",
            "model",
            "--data",
            "data/dift.jsonl",
            "--out",
            "runs/lora",
            "--lora-rank",
            "4",
            "--max-steps",
            "2",
            "--save-steps",
            "1",
            "--lr",
            "1e-2",
            "--warmup-steps",
            "0",
            "--no-progress",
        ],
    );
    assert!(train.contains("example(s)"), "{train}");
    let out = cwd.join("runs/lora");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "checkpoint-1/adapter_model.safetensors",
        "checkpoint-1/optimizer.safetensors",
        "checkpoint-1/trainer_state.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(
        !out.join("model.safetensors").exists(),
        "no full model is written"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0, "alpha defaults to 2 x rank");
    assert_eq!(
        cfg["trainable_token_indices"]["embed_tokens"],
        serde_json::json!([366, 367, 368])
    );
    // Training moved the B matrices off zero and the latent rows off the base's.
    let adapter = tensors(&out.join("adapter_model.safetensors"));
    let b =
        &adapter["base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert!(
        max_abs(b, &b.zeros_like().unwrap()) > 0.0,
        "lora_B still zero"
    );
    let rows = &adapter
        ["base_model.model.model.language_model.embed_tokens.token_adapter.trainable_tokens_delta"];
    let base = tensors(&cwd.join("model/model.safetensors"));
    let embed = base
        .iter()
        .find(|(k, _)| k.ends_with("embed_tokens.weight"))
        .unwrap()
        .1
        .narrow(0, 366, 3)
        .unwrap();
    assert!(max_abs(rows, &embed) > 0.0, "the latent rows did not train");

    // The adapter folder is not a model, and says what to do.
    let wrong = fourd_in(
        &cwd,
        &[
            "infer",
            "--model",
            "runs/lora",
            "--question",
            "Where?",
            "--max-new-tokens",
            "4",
        ],
    );
    let err = common::fails("infer --model <adapter folder>", &wrong);
    assert!(
        err.contains("is a LoRA adapter") && err.contains("--adapter"),
        "{err}"
    );

    let infer = |model: &str, adapter: Option<&str>| {
        let mut args = vec![
            "infer",
            "--model",
            model,
            "--question",
            "Which way does the camera move?",
            "--max-new-tokens",
            "12",
            "--greedy",
            "--json",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a]);
        }
        answer(&run("infer", &args))
    };
    let with_adapter = infer("model", Some("runs/lora"));
    let base_answer = infer("model", None);
    run(
        "merge-lora",
        &[
            "model",
            "merge-lora",
            "--model",
            "model",
            "--adapter",
            "runs/lora",
            "--out",
            "merged",
        ],
    );
    let merged = infer("merged", None);
    assert_eq!(merged, with_adapter, "merged and unmerged answer alike");
    eprintln!("base: {base_answer:?}\nadapter: {with_adapter:?}");

    let eval = run(
        "eval --adapter",
        &[
            "eval",
            "--model",
            "model",
            "--adapter",
            "runs/lora",
            "--benchmark",
            "data/4drl.jsonl",
            "--output-dir",
            "results",
            "--max-samples",
            "2",
            "--max-new-tokens",
            "8",
            "--greedy",
            "--quiet",
        ],
    );
    assert!(eval.contains("skipped 0 of 2"), "{eval}");
    let names: Vec<String> = std::fs::read_dir(cwd.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("lora-")), "{names:?}");
}

fn fixture_dataset(dir: &Path) -> PathBuf {
    common::fixture_dift_dataset(dir, 4)
}

fn train_lora(cwd: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let model = fixture_model();
    let mut args = vec![
        "train",
        "dift",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "data.jsonl",
        "--out",
        out,
        "--lora-rank",
        "2",
        "--lora-alpha",
        "4",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "1",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    fourd_in(cwd, &args)
}

#[test]
fn a_halted_lora_run_resumes_to_the_uninterrupted_adapter() {
    let cwd = tmp("lora-resume");
    fixture_dataset(&cwd);
    ok("whole", &train_lora(&cwd, "whole", &["--max-steps", "3"]));
    ok(
        "halted",
        &train_lora(
            &cwd,
            "halted",
            &["--max-steps", "3", "--save-steps", "1", "--halt-after", "1"],
        ),
    );
    assert!(cwd
        .join("halted/checkpoint-1/adapter_model.safetensors")
        .exists());
    assert!(!cwd.join("halted/adapter_model.safetensors").exists());
    ok(
        "resumed",
        &train_lora(
            &cwd,
            "halted",
            &[
                "--max-steps",
                "3",
                "--save-steps",
                "1",
                "--resume",
                "halted",
            ],
        ),
    );
    let d = adapter_diff(&cwd.join("whole"), &cwd.join("halted"));
    println!("max |resumed - uninterrupted| over the adapter: {d:e}");
    assert!(d <= 1e-6, "resumed adapter differs by {d}");
    // Other LoRA settings are another run: refused, nothing overwritten.
    let other = train_lora(
        &cwd,
        "halted",
        &[
            "--max-steps",
            "3",
            "--resume",
            "halted",
            "--lora-dropout",
            "0.1",
        ],
    );
    let err = common::fails("a resume with other LoRA settings", &other);
    assert!(err.contains("lora"), "{err}");
}

#[test]
fn two_rank_processes_train_the_same_adapter_as_one() {
    let cwd = tmp("lora-ranks");
    fixture_dataset(&cwd);
    ok(
        "single",
        &train_lora(&cwd, "single", &["--max-steps", "2", "--grad-accum", "2"]),
    );
    ok(
        "ranks",
        &train_lora(&cwd, "ranks", &["--max-steps", "2", "--nproc", "2"]),
    );
    let d = adapter_diff(&cwd.join("single"), &cwd.join("ranks"));
    println!("max |2 ranks - 1 process| over the adapter: {d:e}");
    assert!(d <= 1e-5, "2 rank processes differ from 1 by {d}");
}

/// The command and its outputs; that the adapter trains against the frozen base is
/// `fourd-train`'s `grpo_with_a_lora_adapter_steps_against_the_frozen_base` (the CLI's rewards
/// are flat on an untrained model).
#[test]
fn grpo_with_lora_writes_an_adapter() {
    let cwd = synthetic_dataset("lora-grpo");
    let model = fixture_model();
    let out = ok(
        "train grpo --lora-rank",
        &fourd_in(
            &cwd,
            &[
                "train",
                "grpo",
                "--model",
                model.to_str().unwrap(),
                "--data",
                "data/4drl.jsonl",
                "--out",
                "rl",
                "--lora-rank",
                "2",
                "--max-steps",
                "2",
                "--num-generations",
                "2",
                "--num-iterations",
                "2",
                "--max-new-tokens",
                "6",
                "--beta",
                "0.04",
                "--lr",
                "1e-2",
                "--no-progress",
            ],
        ),
    );
    assert!(cwd.join("rl/adapter_model.safetensors").exists(), "{out}");
    assert!(!cwd.join("rl/model.safetensors").exists());
    let log = common::jsonl(&cwd.join("rl/train_log.jsonl"));
    assert!(!log.is_empty());
    let cfg = std::fs::read_to_string(cwd.join("rl/adapter_config.json")).unwrap();
    assert!(cfg.contains("\"r\": 2"), "{cfg}");
}

#[test]
fn lora_flags_that_do_not_go_together_are_refused_by_name() {
    let cwd = tmp("lora-flags");
    fixture_dataset(&cwd);
    let err = |extra: &[&str]| common::fails(&format!("{extra:?}"), &train_lora(&cwd, "x", extra));
    let e = err(&["--lora-dropout", "0.1", "--gradient-checkpointing"]);
    assert!(
        e.contains("--lora-dropout") && e.contains("--gradient-checkpointing"),
        "{e}"
    );
    let e = err(&["--lora-targets", "qkv"]);
    assert!(e.contains("--lora-targets"), "{e}");
    let e = err(&["--train-vision"]);
    assert!(e.contains("--train-vision"), "{e}");
    let e = err(&["--lora-dropout", "1.5"]);
    assert!(e.contains("--lora-dropout"), "{e}");
    assert!(!cwd.join("x/adapter_model.safetensors").exists());
    // --lora-alpha without --lora-rank.
    let model = fixture_model();
    let o = fourd_in(
        &cwd,
        &[
            "train",
            "dift",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "data.jsonl",
            "--out",
            "y",
            "--lora-alpha",
            "8",
        ],
    );
    assert!(common::fails("--lora-alpha without --lora-rank", &o).contains("--lora-rank"));
    // An adapter folder as the starting model: merge it first.
    let adapter = fixture_model().join("../../lora/adapter");
    let o = fourd_in(
        &cwd,
        &[
            "train",
            "dift",
            "--model",
            adapter.to_str().unwrap(),
            "--data",
            "data.jsonl",
            "--out",
            "z",
        ],
    );
    let e = common::fails("train --model <adapter folder>", &o);
    assert!(e.contains("merge-lora"), "{e}");
}

/// `fourd serve --adapter`: served under the adapter's name, answering as `fourd infer
/// --adapter` does.
#[test]
fn serve_runs_an_adapter_under_its_name() {
    let cwd = tmp("lora-serve");
    copy_tree(&fixture_model(), &cwd.join("ckpt"));
    copy_tree(
        &fixture_model().join("../../lora/adapter"),
        &cwd.join("my-adapter"),
    );
    let question = "How many objects are there?";
    let infer = ok(
        "infer --adapter",
        &fourd_in(
            &cwd,
            &[
                "infer",
                "--model",
                "ckpt",
                "--adapter",
                "my-adapter",
                "--question",
                question,
                "--greedy",
                "--json",
                "--max-new-tokens",
                "16",
            ],
        ),
    );
    let (mut child, base, _lines) = common::start_serve(
        &cwd,
        &["--model", "ckpt", "--adapter", "my-adapter"],
        "my-adapter",
    );
    let mut cfg = fourd_api::ApiConfig::new(base, "my-adapter");
    cfg.max_retries = 0;
    let client = fourd_api::ChatClient::new(cfg).unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("temperature".into(), 0.into());
    fields.insert("max_tokens".into(), 16.into());
    let reply = client
        .chat_with(&[fourd_api::ChatMessage::user(question)], &fields)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.content.unwrap_or_default(), answer(&infer));
}
