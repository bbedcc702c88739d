//! The model's own thread: it owns the checkpoint and one [`DecodeBatch`], and between decode
//! steps admits waiting requests (rendered with the chat template, prefilled, merged into the
//! batch), drops the ones whose client went away, and turns every new token into text events for
//! its request. The HTTP side never touches the model; it sends [`Job`]s and reads [`Event`]s.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use fourd_model::generation::{
    DecodeBatch, Emitted, FinishReason, GenerationConfig, Sampling, SeqId, SequenceOutput,
    TokenKind,
};
use fourd_model::inputs::PromptInput;
use fourd_model::ModelBundle;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::request::ChatRequest;

/// Batch and context limits of the engine.
#[derive(Clone, Debug)]
pub struct EngineLimits {
    /// Sequences decoding at once (`--max-batch`; a request with `n` choices takes `n`).
    pub max_batch: usize,
    /// Prompt plus completion tokens of one sequence (`--max-model-len`).
    pub max_model_len: usize,
    /// Latent steps per imagery segment (`None`: the checkpoint's).
    pub latent_size: Option<usize>,
}

/// A request for the model thread.
pub struct Job {
    pub request: ChatRequest,
    pub events: UnboundedSender<Event>,
    pub received: Instant,
}

/// What the model thread tells a request, in order: `Started`, then `Delta`s and `Imagery` per
/// choice, a `Finished` per choice; or `Failed` instead of all of them.
#[derive(Clone, Debug)]
pub enum Event {
    /// The prompt's length in tokens and the settings the request runs with.
    Started {
        prompt_tokens: usize,
        /// How many choices follow (`n`).
        choices: usize,
        settings: Value,
    },
    /// New text of choice `index`, with the log-probabilities of its tokens when asked for.
    Delta {
        index: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// An imagery segment of choice `index` ended: `length` latent steps, taken after the first
    /// `text_offset` characters of its text.
    Imagery {
        index: usize,
        text_offset: usize,
        length: usize,
    },
    Finished {
        index: usize,
        finish_reason: &'static str,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// A sampled text token and its log-probability under the model's distribution, as OpenAI's
/// `logprobs.content` entries: the token's text (`bytes:\\x..` when its bytes are not UTF-8 on
/// their own), its bytes, and the most likely alternatives when asked for.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative of a [`TokenLogprob`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A token's bytes and OpenAI's text for them.
fn token_text(bundle: &ModelBundle, id: u32) -> (String, Vec<u8>) {
    let bytes = bundle.tokenizer.token_bytes(id).unwrap_or_default();
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.to_string(),
        Err(_) => format!(
            "bytes:{}",
            bytes
                .iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>()
        ),
    };
    (text, bytes)
}

/// One choice being decoded: where its events go and what of its text was sent.
struct Choice {
    job: usize,
    index: usize,
    stop: Vec<String>,
    logprobs: bool,
    stop_ids: Vec<u32>,
    text_ids: Vec<u32>,
    /// The text decoded so far ([`Detokenizer`]).
    text: Detokenizer,
    /// The text sent so far (bytes), and in characters.
    sent: String,
    sent_chars: usize,
    latent_steps: usize,
    /// Inside an imagery segment (after `<|latent_start|>`, before its end).
    imagining: bool,
    generated: usize,
    last_token: Option<Instant>,
}

/// Incremental detokenization, as vLLM and TGI do it: each step decodes only the ids from
/// `prefix` on, and the text new since the ids up to `read` is appended to `decoded` once it no
/// longer ends in an unfinished character. Decoding the whole text at every token would cost
/// time quadratic in its length, on the model's thread.
#[derive(Default)]
struct Detokenizer {
    decoded: String,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Appends what the ids after `read` add to the text, when they end on a whole character.
    fn advance(&mut self, bundle: &ModelBundle, ids: &[u32]) {
        if let Some(new) = self.new_text(bundle, ids) {
            if !new.ends_with('\u{FFFD}') {
                self.decoded.push_str(&new);
                self.prefix = self.read;
                self.read = ids.len();
            }
        }
    }

    /// Appends the rest, unfinished characters included (as U+FFFD, as a whole decode gives them).
    fn finish(&mut self, bundle: &ModelBundle, ids: &[u32]) {
        if let Some(new) = self.new_text(bundle, ids) {
            self.decoded.push_str(&new);
            self.prefix = ids.len();
            self.read = ids.len();
        }
    }

    fn new_text(&self, bundle: &ModelBundle, ids: &[u32]) -> Option<String> {
        let decode = |ids: &[u32]| bundle.tokenizer.decode(ids, true).ok();
        let before = decode(&ids[self.prefix..self.read])?;
        let now = decode(&ids[self.prefix..])?;
        now.get(before.len()..).map(str::to_string)
    }
}

struct Request {
    events: UnboundedSender<Event>,
    prompt_tokens: usize,
    received: Instant,
    open_choices: usize,
    first_token: bool,
}

/// Runs the engine until every [`Job`] sender is gone and nothing is left to decode.
pub fn run(bundle: ModelBundle, limits: EngineLimits, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
    let params = bundle.rope_params();
    let mut batch = DecodeBatch::new(&bundle.model);
    let mut choices: HashMap<SeqId, Choice> = HashMap::new();
    let mut requests: HashMap<usize, Request> = HashMap::new();
    let (mut next_seq, mut next_job): (SeqId, usize) = (0, 0);
    let mut open = true;
    // A request taken from the queue that did not fit yet (its `n` choices over the room left).
    let mut waiting: Option<Job> = None;
    loop {
        // Admit waiting requests while there is room; wait for one when idle.
        while (open || waiting.is_some()) && batch.len() < limits.max_batch {
            let job = if let Some(j) = waiting.take() {
                j
            } else if batch.is_empty() {
                match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            if !batch.is_empty() && batch.len() + job.request.n > limits.max_batch {
                // Its choices join together once the batch has room for all of them (alone, a
                // request may take more than --max-batch: it is never refused for its `n`).
                waiting = Some(job);
                break;
            }
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                metrics.count("cancelled");
                continue;
            }
            let id = next_job;
            next_job += 1;
            match admit(
                &bundle,
                &params,
                &limits,
                &mut batch,
                job,
                id,
                &mut next_seq,
            ) {
                Ok((request, new)) => {
                    metrics
                        .prompt_tokens
                        .fetch_add(request.prompt_tokens as u64, Ordering::Relaxed);
                    requests.insert(id, request);
                    choices.extend(new);
                }
                Err((events, e)) => {
                    metrics.count("error");
                    let _ = events.send(Event::Failed(e));
                }
            }
        }
        if batch.is_empty() {
            if open {
                continue;
            }
            return;
        }
        cancel_gone(&mut batch, &mut choices, &mut requests, &metrics);
        if batch.is_empty() {
            continue;
        }
        metrics.running.store(batch.len() as i64, Ordering::Relaxed);
        type Produced = (SeqId, u32, TokenKind, Option<f32>, Vec<(u32, f32)>);
        let mut produced: Vec<Produced> = Vec::new();
        let finished = batch
            .step(|id, e: Emitted| produced.push((id, e.token, e.kind, e.logprob, e.top.to_vec())));
        let finished = match finished {
            Ok(f) => f,
            Err(e) => {
                // A failure of the model itself: every running request gets it.
                tracing::error!("decode step failed: {e}");
                for (_, r) in requests.drain() {
                    metrics.count("error");
                    let _ = r.events.send(Event::Failed(ApiError::internal(format!(
                        "the model failed: {e}"
                    ))));
                }
                for id in batch.ids() {
                    let _ = batch.cancel(id);
                }
                choices.clear();
                continue;
            }
        };
        let mut stopped: Vec<SeqId> = Vec::new();
        for (id, token, kind, logprob, top) in produced {
            if let Some(c) = choices.get_mut(&id) {
                let r = requests
                    .get_mut(&c.job)
                    .expect("a choice's request is open");
                let lp = (logprob, top.as_slice());
                if on_token(&bundle, c, r, token, kind, lp, &metrics) {
                    stopped.push(id);
                }
            }
        }
        // (sequence, finish reason, ended by a stop string)
        let mut done: Vec<(SeqId, &'static str, bool)> = finished
            .iter()
            .map(|(id, out)| (*id, finish_reason(out), stopped.contains(id)))
            .collect();
        for id in stopped {
            if !done.iter().any(|(d, _, _)| *d == id) {
                let _ = batch.cancel(id);
                done.push((id, "stop", true));
            }
        }
        for (id, reason, by_string) in done {
            let reason = if by_string { "stop" } else { reason };
            finish(
                id,
                reason,
                by_string,
                &bundle,
                &mut choices,
                &mut requests,
                &metrics,
            );
        }
        metrics.running.store(batch.len() as i64, Ordering::Relaxed);
    }
}

fn finish_reason(out: &SequenceOutput) -> &'static str {
    match out.finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Drops the sequences whose client went away.
fn cancel_gone(
    batch: &mut DecodeBatch,
    choices: &mut HashMap<SeqId, Choice>,
    requests: &mut HashMap<usize, Request>,
    metrics: &Metrics,
) {
    let gone: Vec<usize> = requests
        .iter()
        .filter(|(_, r)| r.events.is_closed())
        .map(|(id, _)| *id)
        .collect();
    for job in gone {
        requests.remove(&job);
        metrics.count("cancelled");
        let seqs: Vec<SeqId> = choices
            .iter()
            .filter(|(_, c)| c.job == job)
            .map(|(id, _)| *id)
            .collect();
        for id in seqs {
            choices.remove(&id);
            if let Err(e) = batch.cancel(id) {
                tracing::warn!("cancelling sequence {id}: {e}");
            }
        }
    }
}

type Admitted = (Request, Vec<(SeqId, Choice)>);

/// Renders, prepares and prefills a job's prompt (`n` rows) and adds its choices to the batch.
fn admit(
    bundle: &ModelBundle,
    params: &fourd_model::mrope::RopeIndexParams,
    limits: &EngineLimits,
    batch: &mut DecodeBatch,
    job: Job,
    job_id: usize,
    next_seq: &mut SeqId,
) -> Result<Admitted, (UnboundedSender<Event>, ApiError)> {
    let events = job.events.clone();
    let fail = |e: ApiError| (events.clone(), e);
    let req = job.request;
    let text = bundle
        .tokenizer
        .apply_chat_template(&req.messages, true)
        .map_err(|e| {
            fail(ApiError::invalid(
                "messages",
                format!("cannot render the chat: {e}"),
            ))
        })?;
    let prompt = PromptInput {
        text,
        images: req.images,
        videos: req.videos,
    };
    let prompts = vec![prompt; req.n];
    let inputs = bundle
        .processor
        .prepare(&bundle.tokenizer, &prompts)
        .map_err(|e| {
            fail(ApiError::invalid(
                "messages",
                format!("cannot prepare the prompt: {e}"),
            ))
        })?;
    let prompt_tokens = inputs.seq_len();
    if prompt_tokens >= limits.max_model_len {
        return Err(fail(ApiError::invalid(
            "messages",
            format!(
                "the prompt is {prompt_tokens} tokens; this server's context is {} (--max-model-len)",
                limits.max_model_len
            ),
        )));
    }
    let room = limits.max_model_len - prompt_tokens;
    if let Some(m) = req.max_tokens.filter(|&m| m > room) {
        return Err(fail(ApiError::invalid(
            "max_tokens",
            format!(
                "the context is {} tokens (--max-model-len); {prompt_tokens} in the messages leave \
                 {room} for the completion, not {m}",
                limits.max_model_len
            ),
        )));
    }
    let max_new_tokens = req.max_tokens.unwrap_or(room);
    let mut overrides = req.sampling.clone();
    // An unseeded sampled request gets its own seed, as OpenAI's are not reproducible.
    overrides.seed.get_or_insert_with(fresh_seed);
    let sampling = Sampling::resolve(&bundle.generation, &overrides);
    let latent = bundle
        .latent_tokens(limits.latent_size)
        .map_err(|e| fail(ApiError::internal(e.to_string())))?;
    let cfg = GenerationConfig {
        max_new_tokens,
        sampling: sampling.clone(),
        stop_ids: bundle.stop_ids(),
        latent,
    };
    // Greedy decoding uses no temperature, top-p, top-k or seed: they are shown as null.
    let sampled = |v: Value| if sampling.greedy { Value::Null } else { v };
    let settings = json!({
        "greedy": sampling.greedy,
        "temperature": sampled(json!(sampling.temperature)),
        "top_p": sampled(json!(sampling.top_p)),
        "top_k": sampled(json!(sampling.top_k)),
        "repetition_penalty": sampling.repetition_penalty,
        "seed": sampled(json!(sampling.seed)),
        "max_tokens": max_new_tokens,
        "latent_size": latent.map(|l| l.size),
    });
    let ids: Vec<SeqId> = (0..req.n).map(|i| *next_seq + i as u64).collect();
    *next_seq += req.n as u64;
    let requests = ids.iter().map(|&id| (id, cfg.clone())).collect();
    let instant = batch.admit(&inputs, params, requests).map_err(|e| {
        fail(ApiError::internal(format!(
            "the model failed on the prompt: {e}"
        )))
    })?;
    for &id in &ids {
        batch.set_top_logprobs(id, req.top_logprobs);
    }
    let _ = events.send(Event::Started {
        prompt_tokens,
        choices: req.n,
        settings,
    });
    let choices = ids
        .iter()
        .enumerate()
        .map(|(index, &id)| {
            (
                id,
                Choice {
                    job: job_id,
                    index,
                    stop: req.stop.clone(),
                    logprobs: req.logprobs,
                    stop_ids: cfg.stop_ids.clone(),
                    text_ids: vec![],
                    text: Detokenizer::default(),
                    sent: String::new(),
                    sent_chars: 0,
                    latent_steps: 0,
                    imagining: false,
                    generated: 0,
                    last_token: None,
                },
            )
        })
        .collect::<Vec<_>>();
    let request = Request {
        events,
        prompt_tokens,
        received: job.received,
        open_choices: req.n,
        first_token: false,
    };
    // Nothing finishes at admission: the prompt is shorter than the context and `max_tokens` is at
    // least 1, so every choice has a token to generate.
    debug_assert!(instant.is_empty());
    Ok((request, choices))
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Handles one new token of a choice; returns whether a stop string ended it.
fn on_token(
    bundle: &ModelBundle,
    c: &mut Choice,
    r: &mut Request,
    token: u32,
    kind: TokenKind,
    logprob: (Option<f32>, &[(u32, f32)]),
    metrics: &Metrics,
) -> bool {
    let now = Instant::now();
    if !r.first_token {
        r.first_token = true;
        metrics
            .ttft
            .observe(now.duration_since(r.received).as_secs_f64());
    }
    if let Some(t) = c.last_token {
        metrics
            .per_token
            .observe(now.duration_since(t).as_secs_f64());
    }
    c.last_token = Some(now);
    c.generated += 1;
    metrics.generation_tokens.fetch_add(1, Ordering::Relaxed);
    match kind {
        TokenKind::LatentStart => {
            c.latent_steps = 0;
            c.imagining = true;
            false
        }
        TokenKind::LatentPad => {
            c.latent_steps += 1;
            false
        }
        TokenKind::LatentEnd => {
            c.imagining = false;
            let _ = r.events.send(Event::Imagery {
                index: c.index,
                text_offset: c.sent_chars,
                length: c.latent_steps,
            });
            false
        }
        TokenKind::Text if c.stop_ids.contains(&token) => false,
        TokenKind::Text => {
            c.text_ids.push(token);
            text_delta(bundle, c, r, token, logprob)
        }
    }
}

/// Sends the text that is new since the last event (holding back an incomplete UTF-8 character
/// and anything that may be the start of a stop string); returns whether a stop string appeared
/// (the text then ends before it).
fn text_delta(
    bundle: &ModelBundle,
    c: &mut Choice,
    r: &mut Request,
    token: u32,
    (logprob, top): (Option<f32>, &[(u32, f32)]),
) -> bool {
    c.text.advance(bundle, &c.text_ids);
    let full = c.text.decoded.as_str();
    let logprobs = if c.logprobs {
        let (text, bytes) = token_text(bundle, token);
        let top_logprobs = top
            .iter()
            .map(|&(id, lp)| {
                let (token, bytes) = token_text(bundle, id);
                TopLogprob {
                    token,
                    logprob: lp,
                    bytes,
                }
            })
            .collect();
        vec![TokenLogprob {
            token: text,
            bytes,
            logprob: logprob.unwrap_or(f32::NAN),
            top_logprobs,
        }]
    } else {
        vec![]
    };
    // A stop string cannot start inside the text sent (the tail that may begin one is held
    // back), so only the rest is searched.
    let unsent = &full[c.sent.len()..];
    let (end, stopped) = match c.stop.iter().filter_map(|s| unsent.find(s.as_str())).min() {
        Some(at) => (c.sent.len() + at, true),
        None => {
            // (The decoded text never ends in an unfinished character: see `Detokenizer`.)
            let end = full.len();
            // Hold back a tail that a stop string starts with.
            let held = c
                .stop
                .iter()
                .flat_map(|s| {
                    (1..s.len())
                        .filter(|&k| s.is_char_boundary(k))
                        .map(move |k| &s[..k])
                })
                .filter(|p| full[..end].ends_with(p))
                .map(|p| p.len())
                .max()
                .unwrap_or(0);
            (end - held, false)
        }
    };
    if end > c.sent.len() && full.is_char_boundary(end) {
        let delta = full[c.sent.len()..end].to_string();
        c.sent_chars += delta.chars().count();
        c.sent.push_str(&delta);
        let _ = r.events.send(Event::Delta {
            index: c.index,
            text: delta,
            logprobs,
        });
    } else if !logprobs.is_empty() {
        let _ = r.events.send(Event::Delta {
            index: c.index,
            text: String::new(),
            logprobs,
        });
    }
    stopped
}

/// Ends choice `id`: the rest of its text, then `Finished`; the request closes with its last
/// choice.
#[allow(clippy::too_many_arguments)]
fn finish(
    id: SeqId,
    reason: &'static str,
    by_stop_string: bool,
    bundle: &ModelBundle,
    choices: &mut HashMap<SeqId, Choice>,
    requests: &mut HashMap<usize, Request>,
    metrics: &Metrics,
) {
    let Some(mut c) = choices.remove(&id) else {
        return;
    };
    let Some(r) = requests.get_mut(&c.job) else {
        return;
    };
    if !by_stop_string {
        // Text held back (for a stop string that never came, or an unfinished character) is
        // sent now.
        c.text.finish(bundle, &c.text_ids);
        let full = &c.text.decoded;
        if full.len() > c.sent.len() {
            let delta = full[c.sent.len()..].to_string();
            c.sent_chars += delta.chars().count();
            let _ = r.events.send(Event::Delta {
                index: c.index,
                text: delta,
                logprobs: vec![],
            });
        }
    }
    if c.imagining && c.latent_steps > 0 {
        // A segment the token limit cut: reported with the steps it took.
        let _ = r.events.send(Event::Imagery {
            index: c.index,
            text_offset: c.sent_chars,
            length: c.latent_steps,
        });
    }
    // Counted before the last event goes out, so a client that reads /metrics after its answer
    // finds it counted.
    r.open_choices -= 1;
    let last = r.open_choices == 0;
    if last {
        metrics.count("success");
    }
    let _ = r.events.send(Event::Finished {
        index: c.index,
        finish_reason: reason,
        completion_tokens: c.generated,
    });
    if last {
        requests.remove(&c.job);
    }
}
