//! VLM4D's official scoring: an LLM judge reads each question, its options, the right answer
//! and the model's reply, and returns the answer it extracted and whether it is right
//! (VLM4D `acc_evaluation.py`, `utils/eval_utils.py`, `utils/api_utils.py`; the paper used
//! o4-mini). `fourd eval judge` sends the same request to any OpenAI-compatible endpoint and
//! stores each verdict in its sample line (`judge`), so `--scoring judge` summaries, tables and
//! `rescore` work from the results alone afterwards.
//!
//! The request is the official one, field for field (pinned by
//! `tools/reference/make_vlm4d_judge_fixture.py`, which sends it through the `openai` package the
//! VLM4D code pins): the instruction as the system message, the question with `X: text` options,
//! the ground truth's text and the raw reply as the user message, `temperature` 1, `top_p` 1, 1024
//! tokens (`max_completion_tokens` for o-series models, else `max_tokens`) and the structured
//! output schema `EvaluationOutput {extracted_answer: str, correct: bool}`.
//!
//! Where we depart, on purpose: a reply that is not that JSON makes the official script crash and
//! write nothing for the whole file; here the sample is left unjudged (listed, retried by the next
//! run). A refusal, an empty reply, one cut at the token limit (`finish_reason: length`) or an
//! HTTP 400 are recorded as the official code records them: no answer, wrong. Other HTTP errors
//! (a wrong key, an unknown model) stop the run: they would make every verdict wrong.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fourd_api::{ChatClient, ChatMessage, ChatReply};
use fourd_records::answer::{options_in_question, Scoring};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{EvalError, Result};
use crate::report::{read_jsonl, write_reports, JsonlAppender, ResultFiles, SampleResult};

/// `MULTI_CHOICE_INSTRUCTION` of VLM4D `utils/eval_utils.py`: the judge's system message.
pub const JUDGE_INSTRUCTION: &str = r#"Your task is to evaluate whether the model's final answer is correct by comparing it to the ground-truth answer provided for the given question.

You should first extract the final answer from the model's response, and then compare the extracted answer with the choice that matches the ground-truth answer to determine its correctness.
Output your response in the following structured format:
{
    "extracted_answer": // str value "A" "B" "C" "D", followed by a colon and the corresponding answer text, e.g., "A: Answer A text". If the model's response does not contain a valid choice and reasoning, then "No Valid Answer".
    "correct": // boolean value, True if the extracted answer matches the ground-truth answer (correct choice), False otherwise ("No Valid Answer" is also considered False).
}
"#;

/// The judge model of the paper.
pub const PAPER_JUDGE: &str = "o4-mini";

/// The token limit of the official request.
const JUDGE_MAX_TOKENS: u64 = 1024;

/// One judge's verdict on one sample, as stored in its line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JudgeVerdict {
    /// The judge model that gave it.
    pub model: String,
    /// What the judge read as the answer (`"B: left"`, `"No Valid Answer"`, or "" when it gave
    /// none).
    pub extracted_answer: String,
    pub correct: bool,
}

/// The judge's two messages for a sample, rebuilt from what its line stores: the question (the
/// text before its options), the options as `X: text`, the text of the right option, and the raw
/// reply. `None` when the line's question has no options or its truth names none of them.
pub fn judge_messages(sample: &SampleResult) -> Option<Vec<ChatMessage>> {
    let options = options_in_question(&sample.question);
    let (question, _) = sample.question.rsplit_once("\n\n")?;
    // Our option lines are `X. text` with the benchmark's text verbatim after `X. `.
    let choices: Vec<(char, &str)> = options
        .iter()
        .map(|line| {
            let letter = line.chars().next()?;
            Some((letter, line.get(letter.len_utf8() + 2..)?))
        })
        .collect::<Option<_>>()?;
    let truth = sample.gt.trim();
    let (_, truth_text) = choices.iter().find(|(l, _)| truth == l.to_string())?;
    let listed: Vec<String> = choices.iter().map(|(l, t)| format!("{l}: {t}")).collect();
    let user = format!(
        "Question: {question}\n\nOptions:\n{}\n\nGround Truth Answer: {truth_text}\n\nModel Response to the Question: {}",
        listed.join("\n"),
        sample.raw
    );
    Some(vec![
        ChatMessage::system(JUDGE_INSTRUCTION),
        ChatMessage::user(user),
    ])
}

/// The request's other fields for judge `model`: the official sampling settings, token limit and
/// structured-output schema.
pub fn judge_fields(model: &str) -> Map<String, Value> {
    // api_utils.py: the o-series take `max_completion_tokens`, other models `max_tokens`.
    let o_series = ["o1", "o3", "o4"].iter().any(|o| model.contains(o));
    let limit = if o_series {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let mut fields = Map::new();
    fields.insert("temperature".into(), json!(1.0));
    fields.insert(limit.into(), json!(JUDGE_MAX_TOKENS));
    fields.insert("top_p".into(), json!(1.0));
    fields.insert(
        "response_format".into(),
        json!({
            "type": "json_schema",
            "json_schema": {
                "schema": {
                    "properties": {
                        "extracted_answer": {"title": "Extracted Answer", "type": "string"},
                        "correct": {"title": "Correct", "type": "boolean"}
                    },
                    "required": ["extracted_answer", "correct"],
                    "title": "EvaluationOutput",
                    "type": "object",
                    "additionalProperties": false
                },
                "name": "EvaluationOutput",
                "strict": true
            }
        }),
    );
    fields
}

/// What a judge's reply says: a verdict (`Ok`), or why it cannot be read (`Err`: the official
/// script would crash). A refusal, an empty reply or one cut at the token limit is the official
/// "no result": no answer, wrong.
pub fn read_verdict(model: &str, reply: &ChatReply) -> std::result::Result<JudgeVerdict, String> {
    let none = || JudgeVerdict {
        model: model.to_string(),
        extracted_answer: String::new(),
        correct: false,
    };
    let content = reply.content.as_deref().unwrap_or("");
    if reply.refusal.is_some()
        || reply.finish_reason.as_deref() == Some("length")
        || content.is_empty()
    {
        return Ok(none());
    }
    let v: Value = serde_json::from_str(content)
        .map_err(|e| format!("the judge's reply is not JSON ({e}): {content:.200}"))?;
    let extracted = v
        .get("extracted_answer")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!("no string `extracted_answer` in the judge's reply: {content:.200}")
        })?;
    let correct = v
        .get("correct")
        .and_then(lax_bool)
        .ok_or_else(|| format!("no boolean `correct` in the judge's reply: {content:.200}"))?;
    Ok(JudgeVerdict {
        model: model.to_string(),
        extracted_answer: extracted.to_string(),
        correct,
    })
}

/// A boolean as pydantic's lax mode reads one: `true`/`false`, 0 and 1, and the strings
/// `true`/`false`, `yes`/`no`, `on`/`off`, `t`/`f`, `y`/`n`, `1`/`0` in any case.
fn lax_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => {
            let x = n.as_f64()?;
            (x == 1.0 || x == 0.0).then_some(x == 1.0)
        }
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "t" | "y" | "1" => Some(true),
            "false" | "no" | "off" | "f" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// What a judging run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JudgeRun {
    /// Samples judged now.
    pub judged: usize,
    /// Samples that already had this judge's verdict.
    pub kept: usize,
    /// Samples left unjudged, with why (an unreadable reply; a line without options).
    pub unjudged: Vec<(usize, String)>,
}

/// The judge's journal beside the results: verdicts are appended as they come, so an
/// interrupted run loses none; they are moved into the sample lines at the end.
fn journal(files: &ResultFiles) -> std::path::PathBuf {
    files.samples.with_file_name(format!(
        "{}_judge.jsonl",
        files
            .samples
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

#[derive(Serialize, Deserialize)]
struct Journaled {
    index: usize,
    judge: JudgeVerdict,
}

/// `fourd eval judge`: asks `client`'s model for a verdict on every sample of `samples` that has
/// none from it yet (`jobs` requests at a time), stores them in the sample lines, and writes the
/// summary, table and chart with the judge's figures (scored by the judge when every sample has
/// a verdict). Holds the results' lock.
pub fn judge(samples: &Path, client: &ChatClient, jobs: usize, title: &str) -> Result<JudgeRun> {
    let files = ResultFiles::new(samples);
    if !files.samples.is_file() {
        return Err(EvalError::Input(format!(
            "{}: no per-sample results to judge",
            files.samples.display()
        )));
    }
    let _lock = fourd_job::OutputLock::at(&files.lock, &files.samples, "fourd eval judge")?;
    let model = client.model().to_string();
    let mut results: Vec<SampleResult> = read_jsonl(&files.samples)?;
    let journal_path = journal(&files);
    let mut verdicts: BTreeMap<usize, JudgeVerdict> = read_jsonl::<Journaled>(&journal_path)?
        .into_iter()
        .filter(|j| j.judge.model == model)
        .map(|j| (j.index, j.judge))
        .collect();
    let mut run = JudgeRun::default();
    let todo: Vec<&SampleResult> = results
        .iter()
        .filter(|r| {
            let done = r.judge.as_ref().is_some_and(|v| v.model == model)
                || verdicts.contains_key(&r.index);
            run.kept += usize::from(done);
            !done
        })
        .collect();
    let (new, unjudged) = ask(client, &todo, jobs.max(1), &journal_path)?;
    run.judged = new.len();
    run.unjudged = unjudged;
    verdicts.extend(new);
    for r in &mut results {
        if let Some(v) = verdicts.remove(&r.index) {
            r.judge = Some(v);
        }
    }
    let text: String = results
        .iter()
        .map(|r| serde_json::to_string(r).map(|l| l + "\n"))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| EvalError::Input(e.to_string()))?;
    fourd_job::files::write_atomic(&files.samples, text.as_bytes())?;
    if journal_path.exists() {
        std::fs::remove_file(&journal_path).map_err(|e| crate::error::io(&journal_path, e))?;
    }
    let complete = results
        .iter()
        .all(|r| r.judge.as_ref().is_some_and(|v| v.model == model));
    let previous = crate::report::read_summary(&files.summary);
    let scoring = if complete {
        Scoring::Judge
    } else {
        previous.as_ref().map_or(Scoring::Strict, |s| s.scoring)
    };
    let total = previous.map_or(results.len(), |s| s.total);
    write_reports(&files, total, title, scoring)?;
    Ok(run)
}

/// Sends the judge requests of `todo`, `jobs` at a time, appending each verdict to the journal.
type Asked = (BTreeMap<usize, JudgeVerdict>, Vec<(usize, String)>);

fn ask(client: &ChatClient, todo: &[&SampleResult], jobs: usize, journal: &Path) -> Result<Asked> {
    let fields = judge_fields(client.model());
    let next = AtomicUsize::new(0);
    let out = Mutex::new((BTreeMap::new(), Vec::new()));
    let appender = Mutex::new(JsonlAppender::open(journal)?);
    let fatal: Mutex<Option<EvalError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(todo.len().max(1)) {
            scope.spawn(|| loop {
                if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(sample) = todo.get(i) else { return };
                match ask_one(client, &fields, sample) {
                    Ok(Ok(verdict)) => {
                        let line = Journaled {
                            index: sample.index,
                            judge: verdict.clone(),
                        };
                        if let Err(e) = appender.lock().expect("journal lock").append(&line) {
                            *fatal.lock().expect("error lock") = Some(e);
                            return;
                        }
                        out.lock()
                            .expect("results lock")
                            .0
                            .insert(sample.index, verdict);
                    }
                    Ok(Err(why)) => {
                        tracing::warn!("sample {}: not judged: {why}", sample.index);
                        out.lock()
                            .expect("results lock")
                            .1
                            .push((sample.index, why));
                    }
                    Err(e) => {
                        fatal.lock().expect("error lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().expect("error lock") {
        return Err(e);
    }
    let (verdicts, mut unjudged) = out.into_inner().expect("results lock");
    unjudged.sort();
    Ok((verdicts, unjudged))
}

/// One sample's verdict: `Ok(Ok)` a verdict, `Ok(Err)` left unjudged with why, `Err` a failure
/// that stops the run.
fn ask_one(
    client: &ChatClient,
    fields: &Map<String, Value>,
    sample: &SampleResult,
) -> Result<std::result::Result<JudgeVerdict, String>> {
    let Some(messages) = judge_messages(sample) else {
        return Ok(Err(
            "its question has no `X. text` options naming its truth".into(),
        ));
    };
    match client.chat_with(&messages, fields) {
        Ok(reply) => Ok(read_verdict(client.model(), &reply)),
        // api_utils.py: a 400 (a request the endpoint refuses, e.g. by content policy) is "no
        // result", recorded as wrong.
        Err(e) if e.status() == Some(400) => Ok(Ok(JudgeVerdict {
            model: client.model().to_string(),
            extracted_answer: String::new(),
            correct: false,
        })),
        Err(e) => Err(EvalError::Input(format!(
            "the judge failed on sample {}: {e}",
            sample.index
        ))),
    }
}
