//! VLM4D's LLM judge: the request field for field against the one VLM4D's code sends through the
//! `openai` package (tests/fixtures/vlm4d/judge.json, tools/reference/make_vlm4d_judge_fixture.py),
//! its replies read as the official code reads them, and `judge` end to end against a loopback
//! OpenAI-compatible mock: resumable, an unreadable reply left for the next run, a refused
//! request recorded as wrong, a broken endpoint stopping the run without losing anything.

use std::path::{Path, PathBuf};

use fourd_api::testing::{MockChatServer, Step};
use fourd_api::{ApiConfig, ChatClient, ChatContent, ChatReply};
use fourd_eval::benchmark;
use fourd_eval::judge::{judge, judge_fields, judge_messages, read_verdict};
use fourd_eval::official::Benchmark;
use fourd_eval::report::{read_jsonl, read_summary, ResultFiles, SampleResult};
use fourd_records::answer::Scoring;
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vlm4d/judge.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sample line a VLM4D run writes for `row` answered with `reply`.
fn sample(row: &Value, reply: &str) -> SampleResult {
    let rows = vec![row.as_object().unwrap().clone()];
    let q = benchmark::read_vlm4d(Path::new("real_mc.json"), &rows)
        .unwrap()
        .remove(0);
    SampleResult {
        index: q.index,
        video_id: q.id.clone(),
        video_path: String::new(),
        question: q.text(),
        gt: q.answer.clone(),
        pred: String::new(),
        answer: String::new(),
        raw: reply.to_string(),
        hit: 0,
        subtask_type: q.task_type.clone(),
        benchmark: Benchmark::Vlm4d,
        kind: q.kind,
        score: None,
        frames: None,
        judge: None,
    }
}

fn text(content: &[ChatContent]) -> &str {
    match content {
        [ChatContent::Text(t)] => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_request_is_the_official_one() {
    let f = fixture();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let s = sample(&c["row"], c["response"].as_str().unwrap());
        let messages = judge_messages(&s).expect("a VLM4D line has options");
        let want = c["messages"].as_array().unwrap();
        assert_eq!(messages.len(), want.len());
        for (m, w) in messages.iter().zip(want) {
            assert_eq!(m.role, w["role"].as_str().unwrap());
            assert_eq!(
                text(&m.content),
                w["content"].as_str().unwrap(),
                "{}",
                c["row"]["id"]
            );
        }
    }
    let mut want = f["request_params"].as_object().unwrap().clone();
    want.insert("response_format".into(), f["response_format"].clone());
    assert_eq!(judge_fields(f["model"].as_str().unwrap()), want);
    // Other judges get `max_tokens`, as the official client sends them.
    let other = judge_fields("gpt-4.1");
    assert!(other.contains_key("max_tokens") && !other.contains_key("max_completion_tokens"));
}

#[test]
fn replies_are_read_as_the_official_code_reads_them() {
    let f = fixture();
    for p in f["parse"].as_array().unwrap() {
        if p.get("http_status").is_some() {
            continue; // a refused request: see the end-to-end test
        }
        let reply = ChatReply {
            content: p["content"].as_str().map(str::to_string),
            finish_reason: p["finish_reason"].as_str().map(str::to_string),
            refusal: p["refusal"].as_str().map(str::to_string),
        };
        let got = read_verdict("o4-mini", &reply);
        let outcome = p["official_outcome"].as_str().unwrap();
        if outcome.starts_with("raises") {
            assert!(got.is_err(), "{p}");
        } else {
            let v = got.unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(v.correct, p["correct"].as_bool().unwrap(), "{p}");
            assert_eq!(
                v.extracted_answer,
                p["extracted_answer"].as_str().unwrap(),
                "{p}"
            );
        }
    }
}

fn results_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-judge-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A finished VLM4D run of the fixture's cases: lines and summary.
fn write_run(dir: &Path) -> PathBuf {
    let f = fixture();
    let mut lines = String::new();
    for (i, c) in f["cases"].as_array().unwrap().iter().enumerate() {
        let mut s = sample(&c["row"], c["response"].as_str().unwrap());
        s.index = i; // the fixture repeats rows with other replies
        fourd_eval::report::score_sample(&mut s, Scoring::Strict);
        lines += &(serde_json::to_string(&s).unwrap() + "\n");
    }
    let samples = dir.join("dsr_eval.jsonl");
    std::fs::write(&samples, lines).unwrap();
    fourd_eval::report::rescore(&samples, "run", Scoring::Strict).unwrap();
    samples
}

fn client(server: &MockChatServer) -> ChatClient {
    let mut cfg = ApiConfig::new(server.base_url(), "o4-mini");
    cfg.api_key = Some("key".into());
    cfg.max_retries = 0;
    ChatClient::new(cfg).unwrap()
}

/// The verdict the mock judge gives: right when the reply's answer span holds the truth's
/// letter (the user message names the truth's text; the line's `gt` is its letter).
fn mock_verdict(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap();
    let right = user.contains("<answer>A</answer>") || user.contains("<answer>B</answer>");
    format!("{{\"extracted_answer\": \"X\", \"correct\": {right}}}")
}

#[test]
fn judging_is_resumable_and_loses_nothing() {
    let dir = results_dir("e2e");
    let samples = write_run(&dir);
    let n = read_jsonl::<SampleResult>(&samples).unwrap().len();
    // First run: request 1 gets an unreadable reply, request 2 is refused (HTTP 400).
    let first = MockChatServer::start(|req, k| match k {
        1 => Step::Reply("{\"correct\": true}".into()),
        2 => Step::Status(400),
        _ => Step::Reply(mock_verdict(&req.json().unwrap())),
    })
    .unwrap();
    let run = judge(&samples, &client(&first), 1, "run").unwrap();
    assert_eq!(run.judged, n - 1);
    assert_eq!(run.unjudged.len(), 1);
    let body = first.last_request().unwrap().json().unwrap();
    assert_eq!(body["model"], "o4-mini");
    assert_eq!(body["max_completion_tokens"], 1024);
    assert_eq!(
        body["response_format"]["json_schema"]["name"],
        "EvaluationOutput"
    );
    let lines: Vec<SampleResult> = read_jsonl(&samples).unwrap();
    assert_eq!(lines.iter().filter(|l| l.judge.is_some()).count(), n - 1);
    // Not every sample judged: the figures stay in the run's mode, without a judge row.
    let s = read_summary(&ResultFiles::new(&samples).summary).unwrap();
    assert_eq!(s.scoring, Scoring::Strict);
    assert!(!s.by_scoring.contains_key(&Scoring::Judge));
    assert!(fourd_eval::report::rescore(&samples, "run", Scoring::Judge).is_err());

    // A broken endpoint (a wrong key) stops the run and changes nothing.
    let before = std::fs::read(&samples).unwrap();
    let broken = MockChatServer::start(|_, _| Step::Status(401)).unwrap();
    assert!(judge(&samples, &client(&broken), 2, "run").is_err());
    assert_eq!(std::fs::read(&samples).unwrap(), before);

    // Second run: only the unjudged sample is asked again.
    let second =
        MockChatServer::start(|req, _| Step::Reply(mock_verdict(&req.json().unwrap()))).unwrap();
    let run = judge(&samples, &client(&second), 3, "run").unwrap();
    assert_eq!(
        (run.judged, run.kept, second.request_count()),
        (1, n - 1, 1)
    );
    let lines: Vec<SampleResult> = read_jsonl(&samples).unwrap();
    let s = read_summary(&ResultFiles::new(&samples).summary).unwrap();
    assert_eq!(s.scoring, Scoring::Judge);
    let right = lines
        .iter()
        .filter(|l| l.judge.as_ref().unwrap().correct)
        .count();
    assert_eq!(s.correct, right);
    assert_eq!(s.by_scoring[&Scoring::Judge].correct, right);
    // The refused request was recorded as the official code records it: no answer, wrong.
    assert!(lines
        .iter()
        .any(|l| l.judge.as_ref().unwrap().extracted_answer.is_empty()));
    // Rescoring in the other modes keeps the verdicts; back in judge mode, the same files.
    let judged = std::fs::read(&samples).unwrap();
    fourd_eval::report::rescore(&samples, "run", Scoring::Reference).unwrap();
    fourd_eval::report::rescore(&samples, "run", Scoring::Judge).unwrap();
    assert_eq!(std::fs::read(&samples).unwrap(), judged);
}
