//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Runs the built `fourd` binary and captures its output.
pub fn fourd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `fourd` in the folder `cwd`, as a user who types relative paths there.
pub fn fourd_in(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::fs::create_dir_all(cwd).unwrap();
    Command::new(env!("CARGO_BIN_EXE_fourd"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// Panics with the command's output unless it succeeded; returns its stdout.
pub fn ok(what: &str, o: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// Where `fourd eval --output-dir out_dir` puts the results of `model`:
/// `<model folder name>-<model identity>`.
pub fn results_dir(out_dir: &std::path::Path, model: &std::path::Path) -> PathBuf {
    let id = fourd_job::identity::model_identity(model).unwrap();
    let name = model.canonicalize().unwrap();
    let name = name.file_name().unwrap().to_string_lossy();
    out_dir.join(format!("{name}-{}", fourd_job::identity::short(&id, 8)))
}

/// The tiny checkpoint with latent tokens the training and evaluation tests start from.
pub fn fixture_model() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/model")
}

/// A fresh folder `name` holding `world/` (2 synthetic clips) and the data pipeline's
/// `data/dift.jsonl` and `data/4drl.jsonl`, made as a user types the commands there.
pub fn synthetic_dataset(name: &str) -> PathBuf {
    let cwd = tmp(name);
    let run = |what: &str, args: &[&str]| ok(what, &fourd_in(&cwd, args));
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
    cwd
}

/// The lines of a JSONL file as JSON values.
pub fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Copies the folder `from` to `to` (created), recursively.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A fresh, empty temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `fourd serve ARGS --port 0` started in `cwd`: the child, the address it printed for
/// `served` ("serving <served> at <url>") and the rest of its stderr.
#[allow(dead_code)]
pub fn start_serve(
    cwd: &std::path::Path,
    args: &[&str],
    served: &str,
) -> (
    std::process::Child,
    String,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fourd"))
        .current_dir(cwd)
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let marker = format!("serving {served} at ");
    let base = loop {
        let line = lines
            .next()
            .expect("fourd serve exited before serving")
            .unwrap();
        if let Some(rest) = line.split(&marker).nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, base, lines)
}

/// `n` copies of the DIFT fixture record in `dir/data.jsonl` (absolute media paths, ids
/// `rec-<i>`), the odd ones answering "Pan Left" instead of "Pan Right".
#[allow(dead_code)]
pub fn fixture_dift_dataset(dir: &std::path::Path, n: usize) -> PathBuf {
    let root = fixture_model().join("../../dift");
    let line = std::fs::read_to_string(root.join("record.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let abs = |v: &serde_json::Value| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                serde_json::Value::String(root.join(p.as_str().unwrap()).display().to_string())
            })
            .collect()
    };
    let mut out = String::new();
    for i in 0..n {
        let mut r = rec.clone();
        r["id"] = format!("rec-{i}").into();
        r["image_input"] = abs(&rec["image_input"]);
        r["image_output"] = abs(&rec["image_output"]);
        if i % 2 == 1 {
            r["text_output"] = rec["text_output"]
                .as_str()
                .unwrap()
                .replace("Pan Right", "Pan Left")
                .into();
        }
        out += &(r.to_string() + "\n");
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("data.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

/// The largest absolute difference between two tensors.
#[allow(dead_code)]
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The largest absolute difference between two safetensors files with the same keys (those of
/// `a` that `b` lacks panic).
#[allow(dead_code)]
pub fn file_diff(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let load = |p: &std::path::Path| {
        candle_core::safetensors::load(p, &candle_core::Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (a, b) = (load(a), load(b));
    a.iter()
        .map(|(k, t)| max_abs_diff(t, b.get(k).unwrap_or_else(|| panic!("{k} missing"))))
        .fold(0f32, f32::max)
}

/// The stderr of a command that must fail (`what` names it when it does not).
#[allow(dead_code)]
pub fn fails(what: &str, o: &std::process::Output) -> String {
    assert!(
        !o.status.success(),
        "{what} was accepted: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}
