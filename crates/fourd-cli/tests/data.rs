//! `fourd data`: a full run on `fourd synth` clips, `check`, argument errors, and resuming after
//! SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{fourd, tmp};

fn synth(out: &Path, clips: usize) {
    let o = fourd(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--clips",
        &clips.to_string(),
        "--frames",
        "10",
        "--size",
        "64",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn data_args<'a>(cmd: &'a str, input: &'a Path, out: &'a Path) -> Vec<String> {
    [
        "data",
        cmd,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "3",
        "--jobs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every finished stage file under `out/clips` with its modification time.
fn stage_files(out: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut v = Vec::new();
    let Ok(groups) = std::fs::read_dir(out.join("clips")) else {
        return v;
    };
    for g in groups.flatten() {
        for c in std::fs::read_dir(g.path()).unwrap().flatten() {
            for f in ["ingest.json", "labels.json", "candidates.json"] {
                let p = c.path().join(f);
                if let Ok(m) = std::fs::metadata(&p) {
                    v.push((p, m.modified().unwrap()));
                }
            }
        }
    }
    v.sort();
    v
}

fn outputs(out: &Path) -> (String, String) {
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .replace(&out.display().to_string(), "OUT")
    };
    (read("dift.jsonl"), read("4drl.jsonl"))
}

#[test]
fn data_run_then_check() {
    let input = tmp("data-in");
    let out = tmp("data-out");
    synth(&input, 6);
    let o = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(data_args("run", &input, &out))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("agreement with truth.json over 6 clip(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("camera steps, used: 100.0%"), "{stdout}");
    assert!(stdout.contains("best option-only baseline"), "{stdout}");
    for f in ["dift.jsonl", "4drl.jsonl"] {
        let c = fourd(&["data", "check", out.join(f).to_str().unwrap()]);
        let text = String::from_utf8_lossy(&c.stdout);
        assert!(
            c.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&c.stderr)
        );
        assert!(
            text.contains("0 error(s)") && text.contains("answer letters:"),
            "{text}"
        );
    }
    // A broken file fails the check with a non-zero exit and names the problem.
    let bad = out.join("broken.jsonl");
    std::fs::write(&bad, "{\"Question\": \"q\", \"A\": \"x\", \"B\": \"x\", \"C\": \"y\", \"D\": \"z\", \"Correct\": \"E\", \"frame_paths\": [\"/nope.png\"], \"Type\": \"abs_dir\"}\n").unwrap();
    let c = fourd(&["data", "check", bad.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(!c.status.success());
    assert!(
        text.contains("/nope.png") && text.contains("`Correct`"),
        "{text}"
    );
    // Argument errors name the flag at fault.
    for (flag, value, named) in [
        ("--shard", "3/2", "3/2"),
        ("--kinds", "camera,colour", "colour"),
    ] {
        let e = fourd(&[
            "data",
            "run",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            flag,
            value,
        ]);
        let err = String::from_utf8_lossy(&e.stderr);
        assert!(
            !e.status.success() && err.contains(flag) && err.contains(named),
            "{err}"
        );
    }
}

/// Killing `fourd data run` mid-way and rerunning gives the files of an uninterrupted run, and
/// the rerun leaves every clip finished before the kill alone.
#[test]
fn data_run_resumes_after_sigkill() {
    let input = tmp("data-kill-in");
    synth(&input, 24);
    let reference = tmp("data-kill-ref");
    let o = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(data_args("run", &input, &reference))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = tmp("data-kill-out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(data_args("run", &input, &out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Kill once some clips are labelled but (with 24 clips and one worker) not all.
    while stage_files(&out)
        .iter()
        .filter(|(p, _)| p.ends_with("labels.json"))
        .count()
        < 3
        && start.elapsed() < Duration::from_secs(120)
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed_early = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let before = stage_files(&out);
    eprintln!(
        "killed while running: {killed_early}; {} stage files finished before the kill",
        before.len()
    );
    assert!(!before.is_empty(), "nothing finished before the kill");

    let o = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(data_args("run", &input, &out))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after: std::collections::BTreeMap<PathBuf, SystemTime> =
        stage_files(&out).into_iter().collect();
    for (p, t) in &before {
        assert_eq!(after.get(p), Some(t), "{} was redone", p.display());
    }
    if killed_early {
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("already done"), "{stdout}");
    }
    assert_eq!(outputs(&out), outputs(&reference));
    // No temporary files are left behind.
    let leftovers = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
}
