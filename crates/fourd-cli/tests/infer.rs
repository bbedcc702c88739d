//! `fourd infer` end to end on the tiny transformers-made checkpoints: the generated ids equal
//! transformers' greedy ids (up to the first stop token, since the fixtures disable EOS).

mod common;

use common::fourd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/qwen25vl")
}

fn case(name: &str) -> (Value, Vec<i64>) {
    let dir = fixtures().join("cases");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let t = candle_core::safetensors::load(
        dir.join(format!("{name}.safetensors")),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let greedy = t["greedy"].to_vec2::<i64>().unwrap().remove(0);
    (meta, greedy)
}

/// Ids up to and including the first stop token of the fixture's checkpoint.
fn until_stop(ids: &[i64], model: &Path) -> Vec<i64> {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("generation_config.json")).unwrap(),
    )
    .unwrap();
    let eos: Vec<i64> = match &g["eos_token_id"] {
        Value::Array(a) => a.iter().map(|x| x.as_i64().unwrap()).collect(),
        v => vec![v.as_i64().unwrap()],
    };
    let cut = ids
        .iter()
        .position(|t| eos.contains(t))
        .map_or(ids.len(), |i| i + 1);
    ids[..cut].to_vec()
}

fn question(meta: &Value) -> String {
    let items = meta["messages"][0][0]["content"].as_array().unwrap();
    items.iter().find(|i| i["type"] == "text").unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn infer_image_json_matches_transformers() {
    let (meta, greedy) = case("one_image");
    let model = fixtures().join("model-v5");
    let img = fixtures().join("media/img_a.png");
    let out = fourd(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--question",
        &question(&meta),
        "--greedy",
        "--repetition-penalty",
        "1.0",
        "--max-new-tokens",
        "20",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<i64> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(ids, until_stop(&greedy, &model));
    assert!(v["text"].is_string());
    assert_eq!(v["latent_segments"].as_array().unwrap().len(), 0);
}

#[test]
fn infer_frames_folder_matches_transformers() {
    let (meta, greedy) = case("video_odd");
    let model = fixtures().join("model-v5");
    let frames = fixtures().join("media/video_odd");
    let out = fourd(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--frames",
        frames.to_str().unwrap(),
        "--fps",
        "1",
        "--question",
        &question(&meta),
        "--greedy",
        "--repetition-penalty",
        "1.0",
        "--max-new-tokens",
        "20",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<i64> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(ids, until_stop(&greedy, &model));
}

#[test]
fn infer_streams_text() {
    let model = fixtures().join("model-v5");
    let out = fourd(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--question",
        "Hello",
        "--greedy",
        "--max-new-tokens",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("decoding: greedy"));
}

#[test]
fn infer_bad_inputs_exit_with_clear_errors() {
    let model = fixtures().join("model-v5");
    let m = model.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["infer", "--model", "/nonexistent", "--question", "q"],
            "/nonexistent",
        ),
        (
            vec!["infer", "--model", m, "--question", "q", "--dtype", "f8"],
            "unknown dtype `f8`",
        ),
        (
            vec![
                "infer",
                "--model",
                m,
                "--question",
                "q",
                "--image",
                "/nonexistent.png",
            ],
            "/nonexistent.png",
        ),
        (
            vec![
                "infer",
                "--model",
                m,
                "--question",
                "q",
                "--frames",
                "/nonexistent-frames",
            ],
            "/nonexistent-frames",
        ),
        (
            vec![
                "infer",
                "--model",
                m,
                "--question",
                "q",
                "--latent-size",
                "4",
            ],
            "has no latent tokens",
        ),
    ];
    for (args, needle) in cases {
        let out = fourd(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        // 2: a flag value clap's typed parsers refuse (usage error); 1: an error found later.
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "{args:?}: {err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

fn latent_case(name: &str) -> (Value, Vec<i64>, Vec<i64>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/cases");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let t = candle_core::safetensors::load(
        dir.join(format!("{name}.safetensors")),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let generated = t["generated"].to_vec2::<i64>().unwrap().remove(0);
    let starts = t["segment_starts"].to_vec1::<i64>().unwrap();
    (meta, generated, starts)
}

#[test]
fn infer_latent_checkpoint_reports_imagery() {
    let (meta, generated, starts) = latent_case("image_l4");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent");
    let model = root.join("model");
    let img = root.join("media/img_c.png");
    let q = question(&meta);
    let base = [
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--question",
        &q,
        "--greedy",
        "--repetition-penalty",
        "1.0",
        "--max-new-tokens",
        "40",
    ];
    let out = fourd(&[&base[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<i64> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let expected = until_stop(&generated, &model);
    assert_eq!(ids, expected);
    let segs = v["latent_segments"].as_array().unwrap();
    let expected_starts: Vec<i64> = starts
        .into_iter()
        .filter(|&s| (s as usize) < expected.len())
        .collect();
    assert_eq!(
        segs.iter()
            .map(|s| s["start"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        expected_starts
    );
    assert!(segs.iter().all(|s| s["count"] == 4));
    assert!(
        !v["text"].as_str().unwrap().contains("latent"),
        "imagery tokens are not text"
    );

    let out = fourd(&base);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("[imagery x4]"), "{shown}");
}

#[test]
fn infer_video_file_and_bad_video() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let model = root.join("latent/model");
    let video = root.join("dsr/videos/v_walk.mp4");
    let out = fourd(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--video",
        video.to_str().unwrap(),
        "--question",
        "What happens?",
        "--greedy",
        "--max-new-tokens",
        "8",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 3 s at 1 fps: 3 frames (padded to 4), 112x84 -> 2 temporal patches of 3x4 merged tokens.
    assert!(v["prompt_tokens"].as_u64().unwrap() > 24);
    let bad = root.join("dsr/videos/v_text.mp4");
    let out = fourd(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--video",
        bad.to_str().unwrap(),
        "--question",
        "q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("v_text.mp4"));
}

#[test]
fn eval_shards_and_merge_from_the_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let out_dir = std::env::temp_dir().join(format!("fourd-cli-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let model = root.join("latent/model");
    let common = |extra: &[&str]| {
        let mut args = vec![
            "eval".to_string(),
            "--model".into(),
            model.to_string_lossy().into(),
            "--benchmark".into(),
            root.join("dsr/benchmark.parquet").to_string_lossy().into(),
            "--video-root".into(),
            root.join("dsr/videos").to_string_lossy().into(),
            "--output-dir".into(),
            out_dir.to_string_lossy().into(),
            "--greedy".into(),
            "--max-new-tokens".into(),
            "12".into(),
            "--dtype".into(),
            "f32".into(),
            "--quiet".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fourd(&refs)
    };
    for shard in ["1/2", "2/2"] {
        let o = common(&["--shard", shard]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let results = common::results_dir(&out_dir, &model);
    let o = fourd(&["eval", "merge", results.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged: Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("dsr_eval_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(merged["total"], 14);
    assert_eq!(
        merged["eval_count"].as_u64().unwrap() + merged["skipped"].as_u64().unwrap(),
        14
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("accuracy"));
    // Merging with a shard missing is refused.
    std::fs::remove_file(results.join("dsr_eval.shard-2-of-2.jsonl")).unwrap();
    let o = fourd(&["eval", "merge", results.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("all are needed"));
}

fn eval_args(models: &[&Path], out_dir: &Path, extra: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut args = vec!["eval".to_string(), "--model".into()];
    args.extend(models.iter().map(|m| m.to_string_lossy().into_owned()));
    args.extend([
        "--benchmark".to_string(),
        root.join("dsr/benchmark.parquet").to_string_lossy().into(),
        "--video-root".into(),
        root.join("dsr/videos").to_string_lossy().into(),
        "--output-dir".into(),
        out_dir.to_string_lossy().into(),
        "--dtype".into(),
        "f32".into(),
        "--quiet".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn eval_several_models_one_after_another() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let out_dir = std::env::temp_dir().join(format!("fourd-cli-eval-many-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let (a, b) = (root.join("qwen25vl/model-v5"), root.join("latent/model"));
    let args = eval_args(
        &[&a, &b],
        &out_dir,
        &["--max-samples", "3", "--max-new-tokens", "8"],
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fourd(&refs);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for model in [&a, &b] {
        let dir = common::results_dir(&out_dir, model);
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("dsr_eval_summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(s["total"], 3, "{}", dir.display());
    }
}

/// A run killed with SIGKILL mid-way resumes: the rerun scores only what is missing, and the
/// final file has every evaluable row exactly once.
#[test]
fn eval_resumes_after_being_killed() {
    let out_dir = std::env::temp_dir().join(format!("fourd-cli-eval-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/model");
    let args = eval_args(
        &[&model],
        &out_dir,
        &["--max-new-tokens", "300", "--batch-size", "1"],
    );
    let results = common::results_dir(&out_dir, &model).join("dsr_eval.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 1 || start.elapsed().as_secs() > 60 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let before = std::fs::read_to_string(&results).unwrap_or_default();
    let o = Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read_to_string(&results).unwrap();
    // Lines already complete before the kill are kept as they were.
    let kept: Vec<&str> = before
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .collect();
    for l in &kept {
        assert!(after.contains(l));
    }
    let mut idx: Vec<u64> = after
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let n = idx.len();
    idx.sort();
    idx.dedup();
    assert_eq!(idx.len(), n, "a sample was scored twice");
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(results.with_file_name("dsr_eval_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["eval_count"].as_u64().unwrap() as usize, n);
    assert_eq!(
        s["eval_count"].as_u64().unwrap() + s["skipped"].as_u64().unwrap(),
        14
    );
}
