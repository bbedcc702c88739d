//! The server over loopback with the tiny latent-token checkpoint (tests/fixtures/latent/model):
//! greedy answers equal the engine's own `generate` on the same conversation, token for token
//! (text, image, imagery); concurrent requests equal sequential ones; a stream concatenates to the
//! non-streaming answer; a client that goes away frees its slot; every error has OpenAI's shape
//! and status.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use candle_core::{DType, Device};
use fourd_model::generation::{generate, GenerationConfig, Sampling, TokenKind};
use fourd_model::inputs::PromptInput;
use fourd_model::tokenizer::{Content, Message};
use fourd_model::ModelBundle;
use fourd_serve::engine::EngineLimits;
use fourd_serve::{MediaPolicy, RunningServer, ServeConfig};
use serde_json::{json, Value};

const LATENT: usize = 4;
const MAX_TOKENS: usize = 24;

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/model")
}

fn image_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent/media/img_c.png")
}

fn config() -> ServeConfig {
    ServeConfig {
        model: model_dir(),
        adapter: None,
        served_name: "tiny".into(),
        dtype: DType::F32,
        device: fourd_model::DeviceSpec::Cpu,
        rope_index: fourd_model::RopeIndexStyle::V4_50,
        limits: EngineLimits {
            max_batch: 8,
            max_model_len: 4096,
            latent_size: Some(LATENT),
        },
        max_model_len: None,
        max_queue: 64,
        max_body_bytes: 1 << 20,
        api_key: None,
        media: MediaPolicy::default(),
        shutdown_timeout: Duration::from_secs(5),
    }
}

fn start(cfg: ServeConfig) -> RunningServer {
    fourd_serve::start(cfg, "127.0.0.1:0".parse().unwrap(), None).unwrap()
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// POSTs `body` to the chat endpoint: status, headers we care about, and the body.
fn post(addr: SocketAddr, body: &str, key: Option<&str>) -> (u16, Option<String>, Value) {
    let mut req = agent()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn png_data_url() -> String {
    let bytes = std::fs::read(image_path()).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What a conversation shows besides text.
#[derive(Clone, Copy, PartialEq)]
enum Shown {
    Nothing,
    Image,
    /// The fixture image as a video of 4 frames at 2 fps.
    Frames,
}

/// The conversations the tests ask: text only, an image with a question, a video given as
/// frames, and several turns.
fn conversations() -> Vec<(Value, Vec<Message>, Shown)> {
    let text = |t: &str| vec![Content::Text(t.into())];
    let frames: Vec<String> = (0..4).map(|_| png_data_url()).collect();
    vec![
        (
            json!([{"role": "user", "content": "How many objects are there in the image?"}]),
            vec![Message::new(
                "user",
                text("How many objects are there in the image?"),
            )],
            Shown::Nothing,
        ),
        (
            json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": png_data_url()}},
                    {"type": "text", "text": "Is the square red?"}
                ]}
            ]),
            vec![
                Message::new("system", text("You are terse.")),
                Message::new(
                    "user",
                    vec![Content::Image, Content::Text("Is the square red?".into())],
                ),
            ],
            Shown::Image,
        ),
        (
            json!([{"role": "user", "content": [
                {"type": "video", "video": frames, "fps": 2},
                {"type": "text", "text": "Does the camera move?"}
            ]}]),
            vec![Message::new(
                "user",
                vec![
                    Content::Video,
                    Content::Text("Does the camera move?".into()),
                ],
            )],
            Shown::Frames,
        ),
        (
            json!([
                {"role": "system", "content": "You count things."},
                {"role": "user", "content": "How many circles?"},
                {"role": "assistant", "content": "Two."},
                {"role": "user", "content": "And squares?"}
            ]),
            vec![
                Message::new("system", text("You count things.")),
                Message::new("user", text("How many circles?")),
                Message::new("assistant", text("Two.")),
                Message::new("user", text("And squares?")),
            ],
            Shown::Nothing,
        ),
    ]
}

/// What the engine generates for `messages` greedily, decoded as the server decodes it: the
/// text and the imagery segments (text offset in characters, length).
fn expected(
    bundle: &ModelBundle,
    messages: &[Message],
    shown: Shown,
) -> (String, Vec<(usize, usize)>) {
    let mut prompt = PromptInput {
        text: bundle
            .tokenizer
            .apply_chat_template(messages, true)
            .unwrap(),
        ..Default::default()
    };
    let image = || fourd_model::processor::load_image(&image_path(), u64::MAX).unwrap();
    match shown {
        Shown::Nothing => {}
        Shown::Image => prompt.images.push(image()),
        Shown::Frames => prompt.videos.push(fourd_model::inputs::VideoFrames {
            frames: (0..4).map(|_| image()).collect(),
            fps: 2.0,
        }),
    }
    let inputs = bundle
        .processor
        .prepare(&bundle.tokenizer, &[prompt])
        .unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: MAX_TOKENS,
        sampling: Sampling::default(),
        stop_ids: bundle.stop_ids(),
        latent: bundle.latent_tokens(Some(LATENT)).unwrap(),
    };
    let out = generate(
        &bundle.model,
        &inputs,
        &bundle.rope_params(),
        &cfg,
        |_, _, _| {},
    )
    .unwrap()
    .remove(0);
    let stop = bundle.stop_ids();
    let mut text_ids = Vec::new();
    let mut segments = Vec::new();
    // Each segment with the latent steps it took: all of them, or fewer when the token limit cut
    // it (the engine's `latent_segments` say so too).
    let offset = |ids: &[u32]| bundle.tokenizer.decode(ids, true).unwrap().chars().count();
    for seg in &out.latent_segments {
        let before: Vec<u32> = out.token_ids[..seg.start]
            .iter()
            .zip(&out.kinds)
            .filter(|(id, k)| **k == TokenKind::Text && !stop.contains(id))
            .map(|(&id, _)| id)
            .collect();
        segments.push((offset(&before), seg.len));
    }
    for (&id, kind) in out.token_ids.iter().zip(&out.kinds) {
        if *kind == TokenKind::Text && !stop.contains(&id) {
            text_ids.push(id);
        }
    }
    (bundle.tokenizer.decode(&text_ids, true).unwrap(), segments)
}

fn request(messages: &Value, extra: Value) -> String {
    let mut body = json!({
        "model": "tiny",
        "messages": messages,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

fn segments_of(message: &Value) -> Vec<(usize, usize)> {
    message["latent_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["text_offset"].as_u64().unwrap() as usize,
                s["length"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// The chunks of a streamed answer, up to `[DONE]` (which must come).
fn stream(addr: SocketAddr, body: &str) -> Vec<Value> {
    let mut resp = agent()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = BufReader::new(resp.body_mut().as_reader());
    let mut chunks = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            return chunks;
        }
        chunks.push(serde_json::from_str(data).unwrap());
    }
    panic!("the stream ended without [DONE]");
}

#[test]
fn greedy_answers_are_the_engines_token_for_token_streamed_or_not() {
    let bundle = ModelBundle::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let server = start(config());
    let mut saw_imagery = false;
    let mut first_text = None;
    for (json_messages, messages, shown) in conversations() {
        let (want_text, want_segments) = expected(&bundle, &messages, shown);
        first_text.get_or_insert(want_text.clone());
        saw_imagery |= !want_segments.is_empty();
        let (status, _, v) = post(server.addr, &request(&json_messages, json!({})), None);
        assert_eq!(status, 200, "{v}");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"], want_text.as_str());
        assert_eq!(segments_of(message), want_segments);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["fourd"]["settings"]["greedy"], true);
        assert_eq!(v["fourd"]["settings"]["latent_size"], LATENT);
        let usage = &v["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
        // The same request streamed: the deltas concatenate to the same text and segments.
        let chunks = stream(
            server.addr,
            &request(
                &json_messages,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
        );
        let mut text = String::new();
        let mut segments = Vec::new();
        let mut finish = None;
        for c in &chunks {
            if let Some(choice) = c["choices"].get(0) {
                let d = &choice["delta"];
                text += d["content"].as_str().unwrap_or("");
                if let Some(s) = d.get("latent_segment") {
                    segments.push((
                        s["text_offset"].as_u64().unwrap() as usize,
                        s["length"].as_u64().unwrap() as usize,
                    ));
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
            }
        }
        assert_eq!(text, want_text);
        assert_eq!(segments, want_segments);
        assert_eq!(finish.as_deref(), v["choices"][0]["finish_reason"].as_str());
        assert_eq!(chunks.last().unwrap()["usage"], v["usage"]);
    }
    assert!(
        saw_imagery,
        "the fixture conversations should imagine at least once"
    );

    // Log-probabilities: one entry per text token, whose bytes make up the content; greedy, each
    // token is the first of its alternatives.
    let (json_messages, _, _) = conversations().remove(0);
    let body = request(&json_messages, json!({"logprobs": true, "top_logprobs": 3}));
    let (status, _, v) = post(server.addr, &body, None);
    assert_eq!(status, 200, "{v}");
    let entries = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!entries.is_empty());
    let mut bytes = Vec::new();
    for e in entries {
        bytes.extend(
            e["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8),
        );
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["bytes"], e["bytes"]);
        assert!(
            (top[0]["logprob"].as_f64().unwrap() - e["logprob"].as_f64().unwrap()).abs() < 1e-6
        );
        assert!(top[1]["logprob"].as_f64().unwrap() <= top[0]["logprob"].as_f64().unwrap());
    }
    // The tiny random model emits stray bytes: the content shows them as U+FFFD, as a lossy
    // reading of the bytes does.
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // A stop string: the text ends before it, streamed or not, and no piece of it is sent.
    let full = first_text.unwrap();
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 4, "{full:?} is too short to stop inside");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = &full[..full.find(&stop).unwrap()];
    let (json_messages, _, _) = conversations().remove(0);
    let body = request(
        &json_messages,
        json!({"stop": [stop.clone(), "never-seen"]}),
    );
    let (status, _, v) = post(server.addr, &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"], cut,
        "stop {stop:?} in {full:?}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let body = request(&json_messages, json!({"stop": stop, "stream": true}));
    let streamed: String = stream(server.addr, &body)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, cut);
}

#[test]
fn concurrent_requests_answer_as_sequential_ones() {
    let server = start(config());
    let prompts: Vec<String> = (0..6)
        .map(|i| {
            request(
                &json!([{"role": "user", "content": format!("Question number {i}: what moves?")}]),
                json!({"max_tokens": 12 + i}),
            )
        })
        .collect();
    let sequential: Vec<Value> = prompts
        .iter()
        .map(|p| post(server.addr, p, None).2["choices"][0]["message"].clone())
        .collect();
    let addr = server.addr;
    let handles: Vec<_> = prompts
        .clone()
        .into_iter()
        .map(|p| {
            std::thread::spawn(move || post(addr, &p, None).2["choices"][0]["message"].clone())
        })
        .collect();
    let concurrent: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(concurrent, sequential);
    assert_eq!(server.metrics.requests("success"), 12);
    // n choices with a seed: sampled, reproducible, and different seeds per choice.
    let body = request(
        &json!([{"role": "user", "content": "Name a colour."}]),
        json!({"temperature": 1.0, "seed": 7, "n": 3}),
    );
    let a = post(server.addr, &body, None).2;
    let b = post(server.addr, &body, None).2;
    assert_eq!(a["choices"].as_array().unwrap().len(), 3);
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["fourd"]["settings"]["seed"], 7);
}

#[test]
fn a_client_that_goes_away_frees_its_slot() {
    let server = start(config());
    let body = request(
        &json!([{"role": "user", "content": "Tell me a long story."}]),
        json!({"stream": true, "max_tokens": 3000}),
    );
    {
        let mut resp = agent()
            .post(format!("http://{}/v1/chat/completions", server.addr))
            .header("content-type", "application/json")
            .send(&body)
            .unwrap();
        let mut first = [0u8; 64];
        let n = resp.body_mut().as_reader().read(&mut first).unwrap();
        assert!(n > 0);
        // The response (and its connection) is dropped here, mid-stream.
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.metrics.requests("cancelled") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sequence was never cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The slot is free: a new request is answered.
    let (status, _, _) = post(
        server.addr,
        &request(
            &json!([{"role": "user", "content": "Hi"}]),
            json!({"max_tokens": 4}),
        ),
        None,
    );
    assert_eq!(status, 200);
}

#[test]
fn errors_have_openais_shape_and_status() {
    let mut cfg = config();
    cfg.api_key = Some("sesame".into());
    cfg.max_model_len = Some(64);
    let server = start(cfg);
    let addr = server.addr;
    let hi = json!([{"role": "user", "content": "Hi"}]);
    let check = |body: &str, key: Option<&str>, status: u16, param: Option<&str>| {
        let (got, _, v) = post(addr, body, key);
        assert_eq!(got, status, "{body}: {v}");
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string());
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{v}");
        }
    };
    let ok = request(&hi, json!({"max_tokens": 2}));
    check(&ok, None, 401, None);
    check(&ok, Some("wrong"), 401, None);
    let (status, _, v) = post(addr, &ok, Some("sesame"));
    assert_eq!(status, 200, "{v}");
    let key = Some("sesame");
    check("{not json", key, 400, None);
    check(
        &request(&json!([{"role": "robot", "content": "x"}]), json!({})),
        key,
        400,
        Some("messages[0].role"),
    );
    check(
        &request(
            &json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
            json!({}),
        ),
        key,
        400,
        Some("messages[0].content[0].image_url"),
    );
    check(
        &request(
            &json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]),
            json!({}),
        ),
        key,
        400,
        Some("messages[0].content[0].image_url"),
    );
    check(
        &request(
            &json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_path().to_str().unwrap()}}]}]),
            json!({}),
        ),
        key,
        400,
        Some("messages[0].content[0].image_url"),
    );
    check(
        &request(&hi, json!({"temperature": 3})),
        key,
        400,
        Some("temperature"),
    );
    check(&request(&hi, json!({"top_p": 0})), key, 400, Some("top_p"));
    check(&request(&hi, json!({"n": 0})), key, 400, Some("n"));
    check(
        &request(&hi, json!({"logprobs": true, "top_logprobs": 21})),
        key,
        400,
        Some("top_logprobs"),
    );
    check(
        &request(&hi, json!({"model": "gpt-4o"})),
        key,
        404,
        Some("model"),
    );
    check(
        &request(&hi, json!({"max_tokens": 1000})),
        key,
        400,
        Some("max_tokens"),
    );
    check(
        &request(&hi, json!({"tools": [{"type": "function"}]})),
        key,
        400,
        Some("tools"),
    );
    check(
        &request(&hi, json!({"response_format": {"type": "json_object"}})),
        key,
        400,
        Some("response_format"),
    );
    // OpenAI's newer `developer` role is a system message.
    let dev =
        json!([{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]);
    assert_eq!(
        post(addr, &request(&dev, json!({"max_tokens": 2})), key).0,
        200
    );
    let long = json!([{"role": "user", "content": "word ".repeat(80)}]);
    check(&request(&long, json!({})), key, 400, Some("messages"));
    // A body over the limit is refused from its Content-Length, before it is read: the client
    // announces 2 MiB and sends a little of it.
    {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(
            conn,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"messages\": [",
            2 << 20
        )
        .unwrap();
        let mut reply = String::new();
        BufReader::new(conn).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    }
    // A bad request never disturbs the others.
    assert_eq!(post(addr, &ok, Some("sesame")).0, 200);
    // A full queue: 503 with Retry-After.
    let mut cfg = config();
    cfg.max_queue = 0;
    let full = start(cfg);
    let (status, retry, v) = post(full.addr, &ok, None);
    assert_eq!(status, 503, "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    // The other endpoints.
    let get = |path: &str| {
        let mut r = agent()
            .get(format!("http://{addr}{path}"))
            .header("authorization", "Bearer sesame")
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (s, models) = get("/v1/models");
    assert_eq!(s, 200);
    assert!(models.contains("\"tiny\""));
    assert_eq!(get("/v1/models/tiny").0, 200);
    assert_eq!(get("/v1/models/other").0, 404);
    assert_eq!(get("/health").0, 200);
    let (s, metrics) = get("/metrics");
    assert_eq!(s, 200);
    for name in [
        "fourd_requests_total",
        "fourd_prompt_tokens_total",
        "fourd_generation_tokens_total",
        "fourd_num_requests_waiting",
        "fourd_num_requests_running",
        "fourd_time_to_first_token_seconds_bucket",
        "fourd_time_per_output_token_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("outcome=\"success\"} 3"), "{metrics}");
}

/// Stopping lets in-flight requests run for the shutdown timeout, then drops them and returns.
#[test]
fn stopping_waits_for_in_flight_requests_at_most_the_timeout() {
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_millis(500);
    let server = start(cfg);
    let addr = server.addr;
    let body = request(
        &json!([{"role": "user", "content": "Tell me a long story."}]),
        json!({"stream": true, "max_tokens": 3000}),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut resp = agent()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .send(&body)
            .unwrap();
        let mut reader = BufReader::new(resp.body_mut().as_reader());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        tx.send(()).unwrap();
        // Read on until the server drops the stream.
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).contains("[DONE]")
    });
    rx.recv().unwrap();
    let started = std::time::Instant::now();
    server.stop().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "stopped after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    // The long answer was cut, not completed.
    assert!(!client.join().unwrap());
}

/// A request whose `n` choices do not fit the room left waits for it, then joins whole; one with
/// more choices than `--max-batch` runs alone. Both answer as they would with the server to
/// themselves.
#[test]
fn choices_join_the_batch_together() {
    let mut cfg = config();
    cfg.limits.max_batch = 2;
    let server = start(cfg);
    let addr = server.addr;
    let body = |n: usize, tokens: usize| {
        request(
            &json!([{"role": "user", "content": "Name three colours."}]),
            json!({"temperature": 1.0, "seed": 3, "n": n, "max_tokens": tokens}),
        )
    };
    let alone: Vec<Value> = [2, 3]
        .iter()
        .map(|&n| post(addr, &body(n, 20), None).2["choices"].clone())
        .collect();
    let long = std::thread::spawn(move || post(addr, &body(1, 300), None).0);
    std::thread::sleep(Duration::from_millis(20));
    let two = std::thread::spawn(move || post(addr, &body(2, 20), None).2["choices"].clone());
    let three = std::thread::spawn(move || post(addr, &body(3, 20), None).2["choices"].clone());
    assert_eq!(two.join().unwrap(), alone[0]);
    assert_eq!(three.join().unwrap(), alone[1]);
    assert_eq!(long.join().unwrap(), 200);
}
