//! `evaluate` end to end on a miniature DSR-Bench (tools/reference/make_dsr_fixture.py: 14 rows,
//! real short videos plus a missing, a corrupt, an empty and a non-video file, and a question
//! without options) with the tiny latent-token checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use fourd_eval::benchmark::{self, ColumnMap};
use fourd_eval::report::{
    merge, read_jsonl, summarize, ResultFiles, SampleResult, Skipped, SUBTASKS,
};
use fourd_eval::run::{evaluate, EvalConfig};
use fourd_model::generation::{GenerationConfig, Sampling};
use fourd_model::ModelBundle;
use fourd_video::SamplingOptions;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn pipeline() -> ModelBundle {
    ModelBundle::load(&root().join("latent/model"), DType::F32, &Device::Cpu).unwrap()
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The summary as the JSON `_summary.json` holds.
fn json(s: fourd_eval::report::EvalSummary) -> Value {
    serde_json::to_value(s).unwrap()
}

fn config(pipe: &ModelBundle, output: PathBuf) -> EvalConfig {
    EvalConfig {
        format: Default::default(),
        benchmark: root().join("dsr/benchmark.parquet"),
        columns: ColumnMap::default(),
        data_root: None,
        video_root: root().join("dsr/videos"),
        video_ext: "mp4".into(),
        output,
        shard: None,
        max_samples: None,
        video: SamplingOptions::default(),
        generation: GenerationConfig {
            max_new_tokens: 16,
            sampling: Sampling::default(),
            stop_ids: pipe.stop_ids(),
            latent: pipe.latent_tokens(None).unwrap(),
        },
        batch_size: 1,
        suffix: true,
        overwrite: false,
        progress: false,
        title: "test".into(),
        scoring: fourd_records::answer::Scoring::Strict,
    }
}

fn by_index(path: &Path) -> HashMap<usize, SampleResult> {
    read_jsonl::<SampleResult>(path)
        .unwrap()
        .into_iter()
        .map(|r| (r.index, r))
        .collect()
}

#[test]
fn full_run_summary_and_skips() {
    let pipe = pipeline();
    let dir = out_dir("full");
    let cfg = config(&pipe, dir.join("dsr_eval.jsonl"));
    let s = json(evaluate(&pipe, &cfg).unwrap());
    let files = ResultFiles::new(&cfg.output);
    let results: Vec<SampleResult> = read_jsonl(&files.samples).unwrap();
    let skipped: Vec<Skipped> = read_jsonl(&files.skipped).unwrap();
    let records = benchmark::load(&cfg.benchmark, &cfg.columns).unwrap();

    // Every row is either scored or skipped, exactly once.
    assert_eq!(s["total"], records.len());
    assert_eq!(results.len() + skipped.len(), records.len());
    let mut seen: Vec<usize> = results
        .iter()
        .map(|r| r.index)
        .chain(skipped.iter().map(|k| k.index))
        .collect();
    seen.sort();
    assert_eq!(seen, (0..records.len()).collect::<Vec<_>>());

    // The bad rows are skipped with their reason.
    let reason = |vid: &str| {
        skipped
            .iter()
            .find(|k| k.video_id == vid)
            .map(|k| k.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("v_missing").contains("not found"),
        "{}",
        reason("v_missing")
    );
    assert!(reason("v_corrupt").contains("v_corrupt.mp4"));
    assert!(reason("v_empty").contains("v_empty.mp4"));
    assert!(reason("v_text").contains("v_text.mp4"));
    assert!(skipped.iter().any(|k| k.reason.contains("no options")));
    assert_eq!(s["skipped"], skipped.len());
    assert_eq!(
        s["skipped_samples"].as_array().unwrap().len(),
        skipped.len()
    );

    // Summary arithmetic from the per-sample lines.
    let correct: usize = results.iter().map(|r| r.hit as usize).sum();
    assert_eq!(s["eval_count"], results.len());
    assert_eq!(s["correct"], correct);
    assert!(
        (s["accuracy"].as_f64().unwrap() - correct as f64 / results.len() as f64).abs() < 1e-12
    );
    let mut accs = vec![];
    for (key, col) in SUBTASKS {
        let n = results.iter().filter(|r| r.subtask_type == *key).count();
        let c = results
            .iter()
            .filter(|r| r.subtask_type == *key && r.hit == 1)
            .count();
        assert_eq!(s["subtask_total"][*col], n, "{col}");
        assert_eq!(s["subtask_correct"][*col], c, "{col}");
        if n == 0 {
            assert!(s["subtask_accuracy"][*col].is_null());
        } else {
            accs.push(c as f64 / n as f64);
        }
    }
    let macro_avg = accs.iter().sum::<f64>() / accs.len() as f64;
    assert!((s["subtask_macro_avg"].as_f64().unwrap() - macro_avg).abs() < 1e-12);
    assert_eq!(s["subtask_columns_order"].as_array().unwrap().len(), 14);

    // Ground truth is the first letter of `answer`, upper-cased ("B. south" -> B, "c" -> C).
    for r in &results {
        let rec = &records[r.index];
        assert_eq!(r.gt, rec.answer);
        assert_eq!(r.pred, r.answer);
        assert_eq!(r.hit, u8::from(!r.pred.is_empty() && r.pred == r.gt));
        assert!(r.question.starts_with(&rec.question) && r.question.contains("\n\nA. "));
        assert!(!r.raw.contains("<|im_end|>"));
    }
    assert_eq!(records[12].answer, "B");
    assert_eq!(records[13].answer, "C");
    assert!(files.table.exists() && files.chart.exists());
    let md = std::fs::read_to_string(&files.table).unwrap();
    assert!(md.contains("Non-Temp Based") && md.contains("N/A"));
}

#[test]
fn resume_after_a_crash_scores_nothing_twice() {
    let pipe = pipeline();
    let dir = out_dir("resume");
    let cfg = config(&pipe, dir.join("dsr_eval.jsonl"));
    evaluate(&pipe, &cfg).unwrap();
    let full = by_index(&cfg.output);

    // A crash: three samples written, the fourth torn mid-line.
    let text = std::fs::read_to_string(&cfg.output).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}",
        lines[..3].join("\n"),
        &lines[3][..lines[3].len() / 2]
    );
    std::fs::write(&cfg.output, torn).unwrap();

    let s = json(evaluate(&pipe, &cfg).unwrap());
    let text = std::fs::read_to_string(&cfg.output).unwrap();
    let indices: Vec<usize> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap() as usize
        })
        .collect();
    let mut unique = indices.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), indices.len(), "a sample was scored twice");
    assert_eq!(
        by_index(&cfg.output),
        full,
        "resumed results differ from an uninterrupted run"
    );
    assert_eq!(s["eval_count"], full.len());

    // A third run has nothing left to do and changes nothing.
    let before = std::fs::read_to_string(&cfg.output).unwrap();
    evaluate(&pipe, &cfg).unwrap();
    assert_eq!(std::fs::read_to_string(&cfg.output).unwrap(), before);
}

#[test]
fn shards_merge_to_the_unsharded_run() {
    let pipe = pipeline();
    let dir = out_dir("shards");
    let cfg = config(&pipe, dir.join("dsr_eval.jsonl"));
    let whole = evaluate(&pipe, &cfg).unwrap();
    let mut paths = vec![];
    let mut total = 0;
    for i in 1..=3 {
        let mut c = config(
            &pipe,
            dir.join(format!("part/dsr_eval.shard-{i}-of-3.jsonl")),
        );
        c.shard = Some((i, 3));
        let s = json(evaluate(&pipe, &c).unwrap());
        total += s["total"].as_u64().unwrap() as usize;
        paths.push(c.output);
    }
    let merged = merge(
        &paths,
        &dir.join("part/dsr_eval.jsonl"),
        total,
        "test",
        Default::default(),
    )
    .unwrap();
    assert_eq!(merged, whole);
    assert_eq!(
        by_index(&dir.join("part/dsr_eval.jsonl")),
        by_index(&cfg.output)
    );
}

#[test]
fn batches_give_the_single_sample_results() {
    let pipe = pipeline();
    let dir = out_dir("batch");
    let single = config(&pipe, dir.join("one/dsr_eval.jsonl"));
    evaluate(&pipe, &single).unwrap();
    let mut batched = config(&pipe, dir.join("three/dsr_eval.jsonl"));
    batched.batch_size = 3;
    evaluate(&pipe, &batched).unwrap();
    assert_eq!(
        by_index(&single.output)
            .into_values()
            .map(|r| (r.index, r.raw))
            .collect::<std::collections::BTreeMap<_, _>>(),
        by_index(&batched.output)
            .into_values()
            .map(|r| (r.index, r.raw))
            .collect()
    );
}

#[test]
fn generic_jsonl_with_column_mapping() {
    let pipe = pipeline();
    let dir = out_dir("generic");
    let dsr = config(&pipe, dir.join("dsr/dsr_eval.jsonl"));
    evaluate(&pipe, &dsr).unwrap();
    let mut generic = config(&pipe, dir.join("generic/dsr_eval.jsonl"));
    generic.benchmark = root().join("dsr/benchmark_generic.jsonl");
    generic.columns = ColumnMap {
        video: vec!["video".into()],
        question: vec!["question".into()],
        options: vec!["candidates".into()],
        answer: vec!["gt".into()],
        task_type: vec!["category".into()],
        index: vec![],
    };
    evaluate(&pipe, &generic).unwrap();
    assert_eq!(by_index(&dsr.output), by_index(&generic.output));
}

#[test]
fn missing_column_is_a_clear_error() {
    let cols = ColumnMap {
        answer: vec!["solution".into()],
        ..ColumnMap::default()
    };
    let e = benchmark::load(&root().join("dsr/benchmark.parquet"), &cols)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("benchmark.parquet") && e.contains("solution"),
        "{e}"
    );
    let e = benchmark::load(&root().join("dsr/videos/v_text.mp4"), &ColumnMap::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("v_text.mp4"), "{e}");
    let d = out_dir("notparquet");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("b.parquet"), "not parquet").unwrap();
    let e = benchmark::load(&d.join("b.parquet"), &ColumnMap::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("b.parquet") && e.contains("parquet"), "{e}");
}

#[test]
fn summary_of_nothing() {
    let s = json(summarize(0, &[], &[]));
    assert_eq!(s["eval_count"], 0);
    assert_eq!(s["accuracy"], 0.0);
}
