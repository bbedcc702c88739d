//! Re-running a job never reuses, mixes or deletes results made from other inputs (run as a user
//! types it: relative paths, from a folder that is not the repository).
//!
//! Each case is one a user hit by accident: a second model whose folder has the same name, a
//! changed benchmark, two evaluations into one folder at once, a merge over a whole run, a
//! second training into a used folder, bad flag values, a checkpoint write that fails, the log
//! of a resumed run, and checkpoint files other users cannot read.

mod common;
use common::{fixture_model, fourd_in, ok, synthetic_dataset};
use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `fourd eval` of `models` on the first `max` 4DRL questions into `out`, greedy and short.
fn eval_args<'a>(models: &[&'a str], bench: &'a str, out: &'a str, max: &'a str) -> Vec<&'a str> {
    let mut args = vec!["eval", "--model"];
    args.extend_from_slice(models);
    args.extend([
        "--benchmark",
        bench,
        "--output-dir",
        out,
        "--max-samples",
        max,
        "--max-new-tokens",
        "4",
        "--greedy",
        "--dtype",
        "f32",
        "--quiet",
    ]);
    args
}

/// The results folder of `model` under `out`: `<name>-<identity>`.
fn results_of(cwd: &Path, out: &str, model: &str) -> PathBuf {
    common::results_dir(&cwd.join(out), &cwd.join(model))
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

#[test]
fn evaluations_never_share_or_mix_results() {
    let cwd = synthetic_dataset("rerun-eval");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let fixture = fixture_model();
    // Two checkpoints with one folder name: a copy of the model, and one trained a step on.
    copy_dir(&fixture, &cwd.join("a/checkpoint-100"));
    run(
        "train",
        &[
            "train",
            "dift",
            "--model",
            "a/checkpoint-100",
            "--data",
            "data/dift.jsonl",
            "--out",
            "b/checkpoint-100",
            "--max-steps",
            "1",
            "--lr",
            "1e-2",
            "--no-progress",
        ],
    );
    let (a, b) = ("a/checkpoint-100", "b/checkpoint-100");

    // Case 1: each model's results go where its identity says; neither reads the other's.
    let out = run(
        "eval two",
        &eval_args(&[a, b], "data/4drl.jsonl", "ev", "2"),
    );
    assert_eq!(out.matches("skipped 0 of 2").count(), 2, "{out}");
    let (ra, rb) = (results_of(&cwd, "ev", a), results_of(&cwd, "ev", b));
    assert_ne!(ra, rb);
    assert_eq!(lines(&ra.join("dsr_eval.jsonl")), 2);
    assert_eq!(lines(&rb.join("dsr_eval.jsonl")), 2);

    // Case 1: another benchmark (the same questions reordered) into the same folder stops and
    // names the difference; --overwrite replaces the results.
    let text = std::fs::read_to_string(cwd.join("data/4drl.jsonl")).unwrap();
    let reordered: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
    std::fs::write(cwd.join("data/4drl_reordered.jsonl"), reordered).unwrap();
    let changed = fourd_in(
        &cwd,
        &eval_args(&[a], "data/4drl_reordered.jsonl", "ev", "2"),
    );
    assert!(!changed.status.success());
    let e = stderr(&changed);
    assert!(e.contains("benchmark") && e.contains("--overwrite"), "{e}");
    assert_eq!(lines(&ra.join("dsr_eval.jsonl")), 2, "nothing was lost");
    let mut args = eval_args(&[a], "data/4drl_reordered.jsonl", "ev", "2");
    args.push("--overwrite");
    run("eval --overwrite", &args);

    // Case 1: --max-samples 3 after a run of 2 is another run, not a resume.
    let fewer = fourd_in(
        &cwd,
        &eval_args(&[a], "data/4drl_reordered.jsonl", "ev", "3"),
    );
    assert!(!fewer.status.success());
    assert!(stderr(&fewer).contains("max_samples"), "{}", stderr(&fewer));

    // Case 2: a second evaluation into a file another one is writing stops at once, naming
    // the holder.
    let holder = fourd_job::OutputLock::at(
        &rb.join("dsr_eval.lock"),
        &rb.join("dsr_eval.jsonl"),
        "fourd eval (the test)",
    )
    .unwrap();
    let second = fourd_in(&cwd, &eval_args(&[b], "data/4drl.jsonl", "ev", "2"));
    assert!(!second.status.success());
    let e = stderr(&second);
    assert!(
        e.contains("in use by another fourd job")
            && e.contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    drop(holder);

    // Case 3: merging shards over a whole run of other settings deletes nothing.
    run(
        "eval whole",
        &eval_args(&[b], "data/4drl.jsonl", "ev3", "4"),
    );
    let rb3 = results_of(&cwd, "ev3", b);
    let mut shard = eval_args(&[b], "data/4drl.jsonl", "ev3", "3");
    shard.extend(["--shard", "1/1"]);
    run("eval shard", &shard);
    let merge = fourd_in(&cwd, &["eval", "merge", rb3.to_str().unwrap()]);
    assert!(!merge.status.success());
    assert!(stderr(&merge).contains("max_samples"), "{}", stderr(&merge));
    assert_eq!(
        lines(&rb3.join("dsr_eval.jsonl")),
        4,
        "the whole run is intact"
    );
}

#[test]
fn bad_flag_values_stop_before_any_work() {
    let cwd = synthetic_dataset("rerun-flags");
    let fixture = fixture_model();
    let model = fixture.to_str().unwrap();
    // Case 5: each bad value is an error naming its flag, and writes no results.
    for (flag, value) in [
        ("--fps", "0"),
        ("--fps", "-1"),
        ("--fps", "nan"),
        ("--temperature", "-1"),
        ("--temperature", "nan"),
        ("--top-p", "0"),
        ("--top-p", "-3"),
        ("--batch-size", "0"),
    ] {
        let set = format!("{flag}={value}");
        let mut args = eval_args(&[model], "data/4drl.jsonl", "bad", "2");
        args.retain(|a| *a != "--greedy");
        args.push(&set);
        let o = fourd_in(&cwd, &args);
        assert!(!o.status.success(), "{set} was accepted");
        assert!(stderr(&o).contains(flag), "{set}: {}", stderr(&o));
        assert!(!cwd.join("bad").exists(), "{set} wrote results");
    }
    // A benchmark whose videos are all missing (a wrong --video-root) is an error, not 0 / 0.
    let dsr =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dsr/benchmark.parquet");
    let mut args = eval_args(&[model], dsr.to_str().unwrap(), "bad", "2");
    args.extend(["--video-root", "no-such-folder"]);
    let o = fourd_in(&cwd, &args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--video-root"), "{}", stderr(&o));
    // Training flags too.
    for (flag, value) in [
        ("--lr", "nan"),
        ("--grad-accum", "0"),
        ("--warmup-ratio", "2"),
    ] {
        let set = format!("{flag}={value}");
        let o = fourd_in(
            &cwd,
            &[
                "train",
                "dift",
                "--model",
                model,
                "--data",
                "data/dift.jsonl",
                "--out",
                "r",
                &set,
            ],
        );
        assert!(!o.status.success(), "{set} was accepted");
        assert!(stderr(&o).contains(flag), "{set}: {}", stderr(&o));
        assert!(!cwd.join("r").exists(), "{set} made a run folder");
    }
}

fn train<'a>(model: &'a str, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "dift",
        "--model",
        model,
        "--data",
        data,
        "--out",
        out,
        "--lr",
        "1e-3",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn training_runs_never_mix() {
    let cwd = synthetic_dataset("rerun-train");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    let fixture = fixture_model();
    let model = fixture.to_str().unwrap();
    let steps = ["--max-steps", "4", "--save-steps", "2"];
    run("train", &train(model, "data/dift.jsonl", "run", &steps));
    let weights = std::fs::read(cwd.join("run/model.safetensors")).unwrap();

    // Case 4: a second training into the used folder without --resume is refused; the run
    // stays as it was.
    let again = fourd_in(
        &cwd,
        &train(model, "data/dift.jsonl", "run", &["--max-steps", "1"]),
    );
    assert!(!again.status.success());
    let e = stderr(&again);
    assert!(
        e.contains("holds a run") && e.contains("--resume") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(cwd.join("run/model.safetensors")).unwrap(),
        weights
    );

    // Case 4: --resume with other data names the difference.
    let text = std::fs::read_to_string(cwd.join("data/dift.jsonl")).unwrap();
    let first: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(cwd.join("data/dift_small.jsonl"), first).unwrap();
    let other = fourd_in(
        &cwd,
        &train(
            model,
            "data/dift_small.jsonl",
            "run",
            &["--resume", "run", "--max-steps", "4", "--save-steps", "2"],
        ),
    );
    assert!(!other.status.success());
    assert!(stderr(&other).contains("data:"), "{}", stderr(&other));

    // Case 6: a resumed run's log continues from the checkpoint's step: each step once in
    // train_log.jsonl and in what TensorBoard shows. A failed checkpoint write's leftovers go.
    std::fs::create_dir_all(cwd.join("run/.checkpoint-9.tmp-12345")).unwrap();
    std::fs::write(
        cwd.join("run/.checkpoint-9.tmp-12345/model.safetensors"),
        b"half",
    )
    .unwrap();
    let mut resume = steps.to_vec();
    resume.extend(["--resume", "run/checkpoint-2"]);
    run("resume", &train(model, "data/dift.jsonl", "run", &resume));
    assert!(!cwd.join("run/.checkpoint-9.tmp-12345").exists());
    let logged: Vec<u64> = std::fs::read_to_string(cwd.join("run/train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(logged, vec![1, 2, 3, 4]);
    let shown: Vec<u64> = fourd_train::tensorboard::read_run_scalars(&cwd.join("run/runs"))
        .unwrap()
        .into_iter()
        .filter(|(_, tag, _)| tag == "train/loss")
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(shown, vec![1, 2, 3, 4]);

    // Case 7: what a run writes is readable by other users (0644, folders 0755).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(cwd.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("run/model.safetensors"), 0o644);
        assert_eq!(mode("run/checkpoint-4/model.safetensors"), 0o644);
        assert_eq!(mode("run/checkpoint-4/optimizer.safetensors"), 0o644);
        assert_eq!(mode("run/checkpoint-4"), 0o755);
    }

    // Case 4: --overwrite starts afresh: none of the old run's checkpoints is left.
    run(
        "overwrite",
        &train(
            model,
            "data/dift.jsonl",
            "run",
            &["--max-steps", "1", "--overwrite"],
        ),
    );
    assert!(!cwd.join("run/checkpoint-2").exists() && !cwd.join("run/checkpoint-4").exists());
    assert_eq!(lines(&cwd.join("run/train_log.jsonl")), 1);
}

#[test]
fn data_sets_never_mix() {
    let cwd = synthetic_dataset("rerun-data");
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
    // The same synth again is the same data set; other settings into it stop.
    run(
        "synth again",
        &[
            "synth", "--out", "world", "--clips", "2", "--frames", "6", "--size", "64",
        ],
    );
    let more = fourd_in(
        &cwd,
        &[
            "synth", "--out", "world", "--clips", "3", "--frames", "6", "--size", "64",
        ],
    );
    assert!(!more.status.success());
    let e = stderr(&more);
    assert!(e.contains("clips") && e.contains("--overwrite"), "{e}");
    // Another input into the same data folder stops; the first one's records stay.
    run(
        "synth other",
        &[
            "synth", "--out", "world2", "--clips", "2", "--frames", "6", "--size", "64", "--seed",
            "5",
        ],
    );
    let before = std::fs::read(cwd.join("data/dift.jsonl")).unwrap();
    let other = fourd_in(&cwd, &["data", "run", "--input", "world2", "--out", "data"]);
    assert!(!other.status.success());
    assert!(stderr(&other).contains("--overwrite"), "{}", stderr(&other));
    assert_eq!(std::fs::read(cwd.join("data/dift.jsonl")).unwrap(), before);
    // One writer per folder.
    let holder = fourd_job::OutputLock::folder(&cwd.join("data"), "fourd data (the test)").unwrap();
    let second = fourd_in(&cwd, &["data", "run", "--input", "world", "--out", "data"]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&second)
    );
    drop(holder);
    run(
        "data run again",
        &["data", "run", "--input", "world", "--out", "data"],
    );
}
