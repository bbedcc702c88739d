//! `fourd train dift --zero 1|2`: the optimiser state (and at stage 2 the accumulated gradients)
//! sharded over 2 and 3 rank processes trains the same weights as one process with the same
//! number of examples per step; a run saved on 3 ranks resumes on 2 and on 1.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_tree, fixture_model, fourd_in, ok, tmp};

fn dataset(dir: &Path) -> PathBuf {
    common::fixture_dift_dataset(dir, 6)
}

fn train(cwd: &Path, out: &str, extra: &[&str]) -> String {
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
        "--lr",
        "1e-3",
        "--warmup-steps",
        "0",
        "--epochs",
        "2",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    ok(out, &fourd_in(cwd, &args))
}

/// The largest absolute difference between two models' weights.
fn diff(a: &Path, b: &Path) -> f32 {
    common::file_diff(&a.join("model.safetensors"), &b.join("model.safetensors"))
}

#[test]
fn zero_1_and_2_over_2_and_3_ranks_train_as_one_process() {
    let cwd = tmp("zero-ranks");
    dataset(&cwd);
    train(&cwd, "single", &["--grad-accum", "6"]);
    let moved = diff(&cwd.join("single"), &fixture_model());
    assert!(moved > 1e-4, "training changed the weights ({moved})");
    for (stage, ranks, accum) in [
        ("1", "2", "3"),
        ("2", "2", "3"),
        ("1", "3", "2"),
        ("2", "3", "2"),
    ] {
        let out = format!("zero{stage}-{ranks}");
        train(
            &cwd,
            &out,
            &["--zero", stage, "--nproc", ranks, "--grad-accum", accum],
        );
        let d = diff(&cwd.join("single"), &cwd.join(&out));
        println!("ZeRO-{stage} over {ranks} rank processes vs 1 process: max |weight diff| {d:e}");
        assert!(d <= 1e-5, "ZeRO-{stage} over {ranks} ranks differs by {d}");
    }
}

#[test]
fn a_zero_run_saved_on_3_ranks_resumes_on_2_and_on_1() {
    let cwd = tmp("zero-resume");
    dataset(&cwd);
    let three = ["--zero", "2", "--nproc", "3", "--grad-accum", "2"];
    train(&cwd, "whole", &three);
    assert!(
        diff(&cwd.join("whole"), &fixture_model()) > 1e-4,
        "the run trained"
    );
    let mut halted = three.to_vec();
    halted.extend(["--save-steps", "1", "--halt-after", "1"]);
    train(&cwd, "halted", &halted);
    let ckpt = cwd.join("halted/checkpoint-1");
    assert!(ckpt.join("optimizer.safetensors").exists());
    // The state is saved whole, in the unsharded layout: every tensor's moments in one file.
    let state = candle_core::safetensors::load(
        ckpt.join("optimizer.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let model = candle_core::safetensors::load(
        fixture_model().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for name in model
        .keys()
        .filter(|k| !k.starts_with("visual.") && !k.starts_with("model.visual."))
    {
        let canonical = name.replace("model.language_model.", "model.");
        assert!(
            state.contains_key(&format!("m.{canonical}")),
            "m.{canonical} missing"
        );
    }
    for (name, extra) in [
        (
            "on-2",
            vec!["--zero", "2", "--nproc", "2", "--grad-accum", "3"],
        ),
        ("on-1", vec!["--grad-accum", "6"]),
    ] {
        copy_tree(&cwd.join("halted"), &cwd.join(name));
        let mut args = extra.clone();
        args.extend(["--save-steps", "1", "--resume", name]);
        train(&cwd, name, &args);
        let d = diff(&cwd.join("whole"), &cwd.join(name));
        println!(
            "saved on 3 ranks (ZeRO-2), resumed {name}: max |weight diff| vs uninterrupted {d:e}"
        );
        assert!(d <= 1e-5, "resumed {name} differs by {d}");
    }
    // Another number of examples per step is another run.
    copy_tree(&cwd.join("halted"), &cwd.join("other"));
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
            "other",
            "--lr",
            "1e-3",
            "--warmup-steps",
            "0",
            "--epochs",
            "2",
            "--no-progress",
            "--grad-accum",
            "2",
            "--resume",
            "other",
        ],
    );
    let err = common::fails("a resume with another examples-per-step", &o);
    assert!(err.contains("examples_per_step"), "{err}");
}

/// LoRA with ZeRO-2: the adapter's optimiser state sharded over 2 ranks.
#[test]
fn a_lora_adapter_trains_the_same_under_zero_2() {
    let cwd = tmp("zero-lora");
    dataset(&cwd);
    let lora = ["--lora-rank", "2"];
    let mut single = lora.to_vec();
    single.extend(["--grad-accum", "6"]);
    train(&cwd, "single", &single);
    let mut sharded = lora.to_vec();
    sharded.extend(["--grad-accum", "3", "--nproc", "2", "--zero", "2"]);
    train(&cwd, "sharded", &sharded);
    let adapter = |d: &str| cwd.join(d).join("adapter_model.safetensors");
    let d = common::file_diff(&adapter("single"), &adapter("sharded"));
    println!("LoRA, ZeRO-2 over 2 ranks vs 1 process: max |adapter diff| {d:e}");
    assert!(d <= 1e-5, "differs by {d}");
}

/// `fourd bench memory`: bytes per rank by category from the released shapes; sharding over 8
/// ranks shrinks what it shards, LoRA shrinks what trains.
#[test]
fn bench_memory_accounts_per_rank() {
    let cwd = tmp("bench-memory");
    std::fs::create_dir_all(&cwd).unwrap();
    let total = |args: &[&str]| -> f64 {
        let mut a = vec!["bench", "memory"];
        a.extend_from_slice(args);
        let out = ok("bench memory", &fourd_in(&cwd, &a));
        for cat in [
            "weights",
            "gradients",
            "AdamW moments",
            "activations",
            "fits a 80 GB GPU",
        ] {
            assert!(out.contains(cat), "{cat} missing: {out}");
        }
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("total"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let full = total(&["--size", "7b", "--gradient-checkpointing"]);
    let zero2 = total(&[
        "--size",
        "7b",
        "--world",
        "8",
        "--zero",
        "2",
        "--gradient-checkpointing",
    ]);
    let lora = total(&[
        "--size",
        "7b",
        "--lora-rank",
        "16",
        "--gradient-checkpointing",
    ]);
    assert!(zero2 < full && lora < zero2, "{full} {zero2} {lora}");
    // A checkpoint folder's own shapes.
    let model = fixture_model();
    total(&["--model", model.to_str().unwrap(), "--dtype", "f32"]);
    let bad = fourd_in(&cwd, &["bench", "memory", "--size", "13b"]);
    common::fails("bench memory --size 13b", &bad);
}
