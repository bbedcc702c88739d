//! The readers and reference scorers of VSI-Bench, STI-Bench and Dyn-Bench against fixtures
//! written as each benchmark publishes its files, with expectations computed by Python ports of
//! each benchmark's own code (tools/reference/make_{vsibench,stibench,dynbench}_fixture.py).

use std::path::{Path, PathBuf};

use fourd_eval::benchmark::{self, BenchmarkFormat, ColumnMap};
use fourd_eval::official::{self, mra_thresholds, Benchmark};
use fourd_eval::report::{summarize, SampleResult};
use fourd_records::{AnswerKind, McQuestion, Media};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn load(path: &Path, format: BenchmarkFormat) -> benchmark::Loaded {
    benchmark::load_from(path, &ColumnMap::default(), None, format).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A sample of `q` answered with `reply`, scored by the benchmark's own rule on the reply as
/// it is (the aggregation is what these tests check against the official code).
fn answered(q: &McQuestion, benchmark: Benchmark, reply: &str) -> SampleResult {
    let s = official::official_rule(benchmark, q.kind, reply, &q.answer);
    SampleResult {
        index: q.index,
        video_id: q.id.clone(),
        video_path: String::new(),
        question: q.text(),
        gt: s.truth,
        pred: s.pred.clone(),
        answer: s.pred,
        raw: reply.to_string(),
        hit: u8::from(s.score >= 1.0),
        subtask_type: q.task_type.clone(),
        benchmark,
        kind: q.kind,
        score: (q.kind == AnswerKind::Number).then_some(s.score),
        frames: None,
        judge: None,
    }
}

/// Every question of `loaded` answered with its reply in the fixture's `aggregate.replies`
/// (keyed by the sample index).
fn answered_all(loaded: &benchmark::Loaded, replies: &Value) -> Vec<SampleResult> {
    loaded
        .questions
        .iter()
        .map(|q| {
            let reply = replies[q.index.to_string()].as_str().unwrap();
            answered(q, loaded.benchmark, reply)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn vsibench_rows_are_read_as_published() {
    let e = expected("vsibench");
    let path = fixture("vsibench/test-00000-of-00001.parquet");
    // `auto` knows the table by its fields.
    let loaded = load(&path, BenchmarkFormat::Auto);
    assert_eq!(loaded.benchmark, Benchmark::VsiBench);
    let rows = e["rows"].as_array().unwrap();
    assert_eq!(loaded.questions.len(), rows.len());
    for (q, row) in loaded.questions.iter().zip(rows) {
        assert_eq!(q.index as u64, row["id"].as_u64().unwrap());
        assert_eq!(q.task_type, row["question_type"].as_str().unwrap());
        assert_eq!(q.answer, row["ground_truth"].as_str().unwrap());
        let kind = match row["kind"].as_str().unwrap() {
            "number" => AnswerKind::Number,
            _ => AnswerKind::Choice,
        };
        assert_eq!(q.kind, kind, "{}", q.id);
        assert_eq!(q.options, strings(&row["options"]));
        let video = benchmark::video_path(Path::new("root"), &media_id(q), "mp4");
        assert_eq!(
            video,
            Path::new("root").join(row["video"].as_str().unwrap())
        );
    }
}

fn media_id(q: &McQuestion) -> String {
    match &q.media {
        Media::VideoId(id) => id.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn vsibench_reference_scoring_is_the_official_code() {
    let e = expected("vsibench");
    let thresholds: Vec<f64> = e["mra_thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // Bit for bit: boundary cases depend on these exact values.
    assert_eq!(mra_thresholds().to_vec(), thresholds);
    let cases = e["scoring"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let truth = c["ground_truth"].as_str().unwrap();
        let reply = c["reply"].as_str().unwrap();
        let kind = if official::python_float(truth).is_some() {
            AnswerKind::Number
        } else {
            AnswerKind::Choice
        };
        let s = official::official_rule(Benchmark::VsiBench, kind, reply, truth);
        assert_eq!(
            s.score,
            c["score"].as_f64().unwrap(),
            "{reply:?} vs {truth:?}"
        );
    }
}

#[test]
fn vsibench_table_is_the_official_aggregate() {
    let e = expected("vsibench");
    let loaded = load(
        &fixture("vsibench/test-00000-of-00001.parquet"),
        BenchmarkFormat::VsiBench,
    );
    let replies = &e["aggregate"]["replies"];
    let results = answered_all(&loaded, replies);
    let s = summarize(results.len(), &results, &[]);
    let m = &e["aggregate"]["metrics"];
    let official = |k: &str| m[k].as_f64().unwrap() / 100.0;
    for (col, key) in [
        ("Obj. Count", "object_counting_MRA:.5:.95:.05"),
        ("Abs. Dist.", "object_abs_distance_MRA:.5:.95:.05"),
        ("Obj. Size", "object_size_estimation_MRA:.5:.95:.05"),
        ("Room Size", "room_size_estimation_MRA:.5:.95:.05"),
        ("Rel. Dist.", "object_rel_distance_accuracy"),
        ("Rel. Dir.", "object_rel_direction_accuracy"),
        ("Route Plan", "route_planning_accuracy"),
        ("Appr. Order", "obj_appearance_order_accuracy"),
    ] {
        let ours = s.subtask(col).unwrap();
        assert!(
            close(ours, official(key)),
            "{col}: {ours} vs {}",
            official(key)
        );
    }
    assert!(close(s.subtask_macro_avg, official("overall")));
    assert_eq!(s.subtask_columns_order.last().unwrap(), "Avg");
    // A numerical sample keeps its score, and `hit` only when it is full.
    let partial = results
        .iter()
        .find(|r| r.score.is_some_and(|v| v > 0.0 && v < 1.0))
        .expect("the fixture has a partly right number");
    assert_eq!(partial.hit, 0);
}

#[test]
fn stibench_rows_carry_their_window() {
    let e = expected("stibench");
    let loaded = load(&fixture("stibench/qa.parquet"), BenchmarkFormat::Auto);
    assert_eq!(loaded.benchmark, Benchmark::StiBench);
    let rows = e["rows"].as_array().unwrap();
    assert_eq!(loaded.questions.len(), rows.len());
    for (i, (q, row)) in loaded.questions.iter().zip(rows).enumerate() {
        assert_eq!(q.index, i);
        assert_eq!(q.question, row["prompt_question"].as_str().unwrap());
        assert_eq!(q.answer, row["answer"].as_str().unwrap());
        assert_eq!(q.task_type, row["task"].as_str().unwrap());
        let w = row["window"].as_array().unwrap();
        assert_eq!(
            q.window,
            Some((w[0].as_f64().unwrap(), w[1].as_f64().unwrap()))
        );
        let options: Vec<String> = row["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{}. {}", c[0].as_str().unwrap(), c[1].as_str().unwrap()))
            .collect();
        assert_eq!(q.options, options);
        assert_eq!(media_id(q), row["Video"].as_str().unwrap());
    }
}

#[test]
fn stibench_reference_scoring_is_the_official_script() {
    let e = expected("stibench");
    let cases = e["scoring"].as_array().unwrap();
    assert!(cases.len() >= 25);
    for c in cases {
        let reply = c["reply"].as_str().unwrap();
        let s = official::official_rule(
            Benchmark::StiBench,
            AnswerKind::Choice,
            reply,
            c["answer"].as_str().unwrap(),
        );
        assert_eq!(s.pred, c["extracted"].as_str().unwrap(), "{reply:?}");
        assert_eq!(s.score == 1.0, c["correct"].as_bool().unwrap(), "{reply:?}");
    }
    let loaded = load(&fixture("stibench/qa.parquet"), BenchmarkFormat::StiBench);
    let replies = &e["aggregate"]["replies"];
    let results = answered_all(&loaded, replies);
    let s = summarize(results.len(), &results, &[]);
    assert!(close(
        s.accuracy,
        e["aggregate"]["overall"].as_f64().unwrap()
    ));
    let per_task = e["aggregate"]["per_task"].as_object().unwrap();
    for (col, keys, _) in fourd_eval::report::STIBENCH_TABLE.columns {
        let official = per_task[keys[0]].as_f64().unwrap();
        assert!(close(s.subtask(col).unwrap(), official), "{col}");
    }
}

#[test]
fn dynbench_questions_come_in_the_loaders_order() {
    let e = expected("dynbench");
    let root = fixture("dynbench/dataset");
    // A folder is Dyn-Bench's without being told.
    let loaded = load(&root, BenchmarkFormat::Auto);
    assert_eq!(loaded.benchmark, Benchmark::DynBench);
    let questions = e["questions"].as_array().unwrap();
    assert_eq!(loaded.questions.len(), questions.len());
    for (q, x) in loaded.questions.iter().zip(questions) {
        assert_eq!(q.question, x["question"].as_str().unwrap());
        assert_eq!(q.options, strings(&x["options"]));
        assert_eq!(q.answer, x["answer"].as_str().unwrap());
        assert_eq!(q.task_type, x["category"].as_str().unwrap());
        let frames: Vec<PathBuf> = strings(&x["frames"]).iter().map(|f| root.join(f)).collect();
        assert_eq!(q.media, Media::Frames(frames));
    }
    // Not a dataset folder: the error names it.
    let err = benchmark::load_from(
        &fixture("dynbench"),
        &ColumnMap::default(),
        None,
        BenchmarkFormat::DynBench,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("multi_json"), "{err}");
}

#[test]
fn dynbench_reference_scoring_and_overall_are_the_official_code() {
    let e = expected("dynbench");
    for c in e["scoring"].as_array().unwrap() {
        let reply = c["reply"].as_str().unwrap();
        let s = official::official_rule(
            Benchmark::DynBench,
            AnswerKind::Choice,
            reply,
            c["answer"].as_str().unwrap(),
        );
        assert_eq!(s.score == 1.0, c["correct"].as_bool().unwrap(), "{reply:?}");
    }
    let loaded = load(&fixture("dynbench/dataset"), BenchmarkFormat::DynBench);
    let replies = &e["aggregate"]["replies"];
    let results = answered_all(&loaded, replies);
    let s = summarize(results.len(), &results, &[]);
    let result = &e["aggregate"]["result"];
    for col in ["Camera-Object", "Inter-Object", "Object-Scene"] {
        let official = result[format!("{col}_QA_Accuracy")].as_f64().unwrap() / 100.0;
        assert!(close(s.subtask(col).unwrap(), official), "{col}");
    }
    let overall = result["Overall"].as_f64().unwrap() / 100.0;
    assert!(close(s.subtask_macro_avg, overall));
}
