//! `fourd demo` end to end at a toy size: world -> data -> tiny model -> DIFT -> answers -> GRPO
//! -> answers, with its report, predictions and curves.

mod common;
use common::{fourd, tmp};

#[test]
fn demo_runs_end_to_end_and_reports() {
    let out = tmp("demo");
    let o = fourd(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
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
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
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
