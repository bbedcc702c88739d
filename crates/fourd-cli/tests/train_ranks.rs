//! `fourd train dift --nproc 2`: the launcher starts two rank processes that meet over TCP and
//! train as one process with twice the accumulation; a failing rank stops the run with its number.

mod common;

use common::{fourd, tmp};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Four copies of the DIFT fixture record, alternating answers.
fn dataset(dir: &Path) -> PathBuf {
    common::fixture_dift_dataset(dir, 4)
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let model = fixtures().join("latent/model");
    let mut args = vec![
        "train",
        "dift",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--warmup-steps",
        "1",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    fourd(&args)
}

fn weights(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap()
}

#[test]
fn two_rank_processes_equal_one_process_with_twice_the_accumulation() {
    let dir = tmp("ranks");
    let data = dataset(&dir);
    let single = train(&data, &dir.join("single"), &["--grad-accum", "2"]);
    assert!(
        single.status.success(),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
    let ranks = train(
        &data,
        &dir.join("ranks"),
        &["--grad-accum", "1", "--nproc", "2"],
    );
    assert!(
        ranks.status.success(),
        "{}",
        String::from_utf8_lossy(&ranks.stderr)
    );
    // Only rank 0 printed the summary.
    let stdout = String::from_utf8_lossy(&ranks.stdout);
    assert_eq!(stdout.matches("checkpoint:").count(), 1, "{stdout}");
    let (a, b) = (weights(&dir.join("single")), weights(&dir.join("ranks")));
    let diff = a
        .iter()
        .map(|(k, t)| common::max_abs_diff(t, &b[k]))
        .fold(0f32, f32::max);
    println!("max abs weight difference, 2 rank processes vs 1 process: {diff:e}");
    assert!(diff <= 1e-5, "2 processes differ from 1 by {diff}");
    let start = weights(&fixtures().join("latent/model"));
    let moved = a
        .iter()
        .filter_map(|(k, t)| start.get(k).map(|s| common::max_abs_diff(t, s)))
        .fold(0f32, f32::max);
    assert!(moved > 1e-4, "training changed the weights ({moved})");
}

#[test]
fn a_failing_rank_stops_the_run_and_is_named() {
    let dir = tmp("ranks-fail");
    let out = train(
        &dir.join("missing.jsonl"),
        &dir.join("out"),
        &["--nproc", "2"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("of 2 failed"), "{err}");
}

#[test]
fn bench_allreduce_sums_over_two_rank_processes() {
    // The launcher's environment, set by hand: two ranks meet over TCP and check the sum.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(29613);
    let children: Vec<_> = (0..2)
        .map(|rank| {
            std::process::Command::new(env!("CARGO_BIN_EXE_fourd"))
                .args([
                    "bench",
                    "allreduce",
                    "--device",
                    "cpu",
                    "--elements",
                    "10000",
                    "--repeats",
                    "2",
                ])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_PORT", port.to_string())
                .env("FOURD_DIST_TIMEOUT", "60")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (rank, o) in outputs.iter().enumerate() {
        assert!(
            o.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = String::from_utf8_lossy(&outputs[0].stdout);
    assert!(
        out.contains("over 2 rank(s)") && out.contains("sum correct"),
        "{out}"
    );
}

#[test]
fn bench_optimizer_checks_the_fused_update_and_times_it_on_cpu() {
    let run = |dtype: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fourd"))
            .args([
                "bench",
                "optimizer",
                "--device",
                "cpu",
                "--dtype",
                dtype,
                "--layers",
                "1",
                "--hidden-size",
                "64",
                "--intermediate-size",
                "128",
                "--kv-size",
                "16",
                "--vocab-size",
                "300",
                "--repeats",
                "1",
            ])
            .output()
            .unwrap()
    };
    for dtype in ["f32", "bf16"] {
        let o = run(dtype);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{dtype}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // On CPU the fused update is bit-identical to the tensor-op one.
        assert!(out.contains("largest difference 0.00e0"), "{dtype}: {out}");
        assert!(
            out.contains("AdamW, fused") && out.contains("speed-up of the fused update"),
            "{dtype}: {out}"
        );
    }
    // f16 weights have no fused update: nothing to compare, so the bench refuses them.
    let o = run("f16");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--dtype"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
