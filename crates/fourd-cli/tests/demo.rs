//! `fourd demo` end to end at a toy size: world -> data -> tiny model -> DIFT -> answers -> GRPO
//! -> answers, with its report, predictions and curves. It runs as a user types it: from a
//! folder that is not the repository, with a relative `--out`.

mod common;
use common::{fourd, fourd_in, ok, tmp};

#[test]
fn demo_runs_end_to_end_and_reports() {
    let cwd = tmp("demo");
    let out = cwd.join("demo-out");
    let args = [
        "demo",
        "--out",
        "demo-out",
        "--train-clips",
        "8",
        "--eval-clips",
        "4",
        "--frames",
        "4",
        "--epochs",
        "1",
        "--grpo-prompts",
        "2",
        "--grpo-generations",
        "2",
        "--max-eval",
        "4",
    ];
    let stdout = ok("demo", &fourd_in(&cwd, &args));
    assert!(stdout.contains("held-out accuracy:"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo_report.json")).unwrap())
            .unwrap();
    assert!(report["train_questions"].as_u64().unwrap() > 0);
    assert!(report["train_steps"].as_u64().unwrap() > 0);
    assert!(report["final_loss"].as_f64().unwrap().is_finite());
    for k in [
        "heldout_accuracy_untrained",
        "heldout_accuracy_trained",
        "heldout_reasoning_label_trained",
    ] {
        let v = report[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    assert!(report["heldout_accuracy_grpo"].as_f64().is_some());
    // Both trained models are complete checkpoints; predictions name every held-out question.
    for dir in ["model", "model-grpo"] {
        assert!(out.join(dir).join("model.safetensors").exists(), "{dir}");
        assert!(out.join(dir).join("tokenizer.json").exists(), "{dir}");
    }
    let preds = std::fs::read_to_string(out.join("heldout_predictions.jsonl")).unwrap();
    assert_eq!(
        preds.lines().count() as u64,
        report["heldout_questions"].as_u64().unwrap()
    );
    assert!(out.join("dift_loss.png").exists());
    // The default replies answer with the concluded label, one of the record's options.
    assert_eq!(report["reply"], "label");
    let first = std::fs::read_to_string(out.join("data/train/dift.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let answer = rec["text_output"]
        .as_str()
        .unwrap()
        .rsplit("<answer>\n")
        .next()
        .unwrap()
        .trim_end_matches("\n</answer>")
        .to_string();
    let options: Vec<&str> = rec["text_input"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.get(3..).filter(|_| l.get(1..3) == Some(". ")))
        .collect();
    assert_eq!(options.len(), 4, "{rec}");
    assert!(
        options.contains(&answer.as_str()),
        "answer {answer:?} is none of {options:?}"
    );
    // The data files store paths relative to their own folder: the folder reads from anywhere.
    assert!(
        rec["image_input"][0]
            .as_str()
            .unwrap()
            .starts_with("clips/"),
        "{rec}"
    );

    // A second run with the same settings reuses the trained DIFT model and answers again.
    let again = ok("demo (again)", &fourd_in(&cwd, &args));
    assert!(again.contains("reusing the DIFT model"), "{again}");
    assert!(again.contains("held-out accuracy:"), "{again}");
}

#[test]
fn demo_rejects_an_unknown_reply_form() {
    let out = tmp("demo-bad-reply");
    let o = fourd(&["demo", "--out", out.to_str().unwrap(), "--reply", "letters"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--reply") && stderr.contains("option-check"),
        "{stderr}"
    );
}

/// The same toy demo on a world written in SpatialVID's released layout (`--layout release`):
/// depth archives instead of depth.npy, objects from the dynamic masks.
#[test]
fn demo_runs_on_the_released_layout() {
    let cwd = tmp("demo-release");
    let args = [
        "demo",
        "--out",
        "demo-out",
        "--layout",
        "release",
        "--train-clips",
        "8",
        "--eval-clips",
        "4",
        "--frames",
        "4",
        "--epochs",
        "1",
        "--grpo-prompts",
        "2",
        "--grpo-generations",
        "2",
        "--max-eval",
        "4",
    ];
    let stdout = ok("demo", &fourd_in(&cwd, &args));
    assert!(stdout.contains("held-out accuracy:"), "{stdout}");
    let out = cwd.join("demo-out");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["layout"], "release");
    assert!(report["train_questions"].as_u64().unwrap() > 0);
    let world = out.join("world/train");
    assert!(world
        .join("data/train/SpatialVID_HQ_metadata.csv")
        .is_file());
    assert!(world.join("depths").is_dir());
    // Every training question is a camera question with imagery, which needs the depth.
    let dift = std::fs::read_to_string(out.join("data/train/dift.jsonl")).unwrap();
    for line in dift.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(!r["image_output"].as_array().unwrap().is_empty(), "{line}");
    }
}
