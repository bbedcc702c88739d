//! Loopback mock servers for tests, in this crate and in crates that use it.
//!
//! [`MockServer`] is a small HTTP/1.1 server on `127.0.0.1` (random port) that answers each
//! request with whatever a handler returns and records every request. [`MockChatServer`] and
//! [`MockSegmentServer`] speak the two protocols of this crate, with scripted misbehaviour
//! ([`Step`]): 429 with `Retry-After`, 5xx, hanging past the client's timeout, malformed JSON,
//! missing fields.
//!
//! ```no_run
//! use fourd_api::testing::{MockChatServer, Step};
//! use fourd_api::{ApiConfig, ChatClient, ChatMessage};
//!
//! // First request: 429 with Retry-After: 0, then "B".
//! let server = MockChatServer::scripted(vec![Step::RateLimited { retry_after_secs: Some(0) }], "B").unwrap();
//! let client = ChatClient::new(ApiConfig::new(server.base_url(), "m")).unwrap();
//! assert_eq!(client.chat(&[ChatMessage::user("?")]).unwrap(), "B");
//! assert_eq!(server.request_count(), 2);
//! ```
//!
//! Every connection is served on its own thread and closed after one reply
//! (`Connection: close`). Dropping a server stops it from accepting; a handler still sleeping
//! finishes on its own.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use image::{GrayImage, RgbImage};
use serde_json::{json, Value};

use crate::segment::encode_png_gray;

/// One request as the mock server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// All text of a chat request's messages (string contents and `text` parts), in order.
    pub fn chat_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(v) = self.json() else { return out };
        for m in v
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match m.get("content") {
                Some(Value::String(s)) => out.push(s.clone()),
                Some(Value::Array(parts)) => out.extend(
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        out
    }

    /// The number of `image_url` parts of a chat request.
    pub fn chat_image_count(&self) -> usize {
        let Some(v) = self.json() else { return 0 };
        v.get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
            .count()
    }
}

/// What the mock server sends back.
#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sleep this long before answering (to run past a client's timeout).
    pub delay: Duration,
}

impl MockResponse {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    /// `status` with a JSON body.
    pub fn json(status: u16, value: &Value) -> Self {
        Self::new(status, value.to_string()).with_header("Content-Type", "application/json")
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&RecordedRequest, usize) -> MockResponse + Send + Sync;

/// A loopback HTTP/1.1 server answering every request with `handler(request, n)`, where `n`
/// counts requests from 0.
pub struct MockServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl MockServer {
    pub fn start<F>(handler: F) -> io::Result<Self>
    where
        F: Fn(&RecordedRequest, usize) -> MockResponse + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("mock-http-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let requests = Arc::clone(&requests);
                        let handler = Arc::clone(&handler);
                        std::thread::spawn(move || {
                            if let Err(e) = serve(stream, &requests, &*handler) {
                                tracing::debug!(error = %e, "mock server connection ended");
                            }
                        });
                    }
                })?
        };
        Ok(Self {
            addr,
            requests,
            stop,
            accept_thread: Some(accept_thread),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far (counted when their body has been read, before any delay).
    pub fn request_count(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// A copy of every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests.lock().ok().and_then(|r| r.last().cloned())
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<RecordedRequest>>,
    handler: &Handler,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let n = {
        let mut log = log
            .lock()
            .map_err(|_| io::Error::other("request log poisoned"))?;
        log.push(request.clone());
        log.len() - 1
    };
    let response = handler(&request, n);
    if !response.delay.is_zero() {
        std::thread::sleep(response.delay);
    }
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n",
        response.body.len()
    ));
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&response.body)?;
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads one request (Content-Length or chunked body). `None` on a connection closed before a
/// request line (the accept loop's wake-up).
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<RecordedRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "headers cut short",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// What a scripted mock does for one request. `T` is the successful reply: the assistant text
/// for chat, the masks for segmentation.
#[derive(Debug, Clone)]
pub enum Step<T = String> {
    /// Answer properly with this reply.
    Reply(T),
    /// Answer properly with the server's default reply (the chat server's fixed text, the
    /// segmentation server's mask function).
    Ok,
    /// 429, with `Retry-After: <secs>` when given.
    RateLimited { retry_after_secs: Option<u64> },
    /// This HTTP status with a small JSON error body.
    Status(u16),
    /// Sleep this long, then answer as [`Step::Ok`] (usually after the client gave up).
    Hang(Duration),
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with JSON lacking the main field (`choices` / `masks`).
    MissingField,
    /// Exactly this response.
    Raw(MockResponse),
}

impl<T> Step<T> {
    /// The response for the steps that do not depend on the protocol; `ok` builds the success.
    fn respond(self, ok: impl FnOnce(Option<T>) -> MockResponse, missing: Value) -> MockResponse {
        match self {
            Step::Reply(t) => ok(Some(t)),
            Step::Ok => ok(None),
            Step::RateLimited { retry_after_secs } => {
                let r = MockResponse::json(
                    429,
                    &json!({"error": {"message": "rate limited (mock)", "type": "rate_limit"}}),
                );
                match retry_after_secs {
                    Some(s) => r.with_header("Retry-After", &s.to_string()),
                    None => r,
                }
            }
            Step::Status(code) => MockResponse::json(
                code,
                &json!({"error": {"message": format!("mock status {code}")}}),
            ),
            Step::Hang(d) => ok(None).with_delay(d),
            Step::MalformedJson => MockResponse::new(
                200,
                &b"{\"choices\": [{\"message\": {\"content\": \"trunc"[..],
            )
            .with_header("Content-Type", "application/json"),
            Step::MissingField => MockResponse::json(200, &missing),
            Step::Raw(r) => r,
        }
    }
}

/// A mock OpenAI-compatible chat server: answers `POST .../chat/completions` (any path prefix).
pub struct MockChatServer {
    server: MockServer,
}

/// The body of a successful chat-completions reply with `content`.
pub fn chat_completion_body(content: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": "mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

impl MockChatServer {
    /// `handler(request, n)` decides each answer; [`Step::Ok`] and [`Step::Hang`] reply with
    /// the empty string.
    pub fn start<F>(handler: F) -> io::Result<Self>
    where
        F: Fn(&RecordedRequest, usize) -> Step<String> + Send + Sync + 'static,
    {
        let server = MockServer::start(move |req, n| {
            if !req.path.ends_with("/chat/completions") || req.method != "POST" {
                return MockResponse::json(
                    404,
                    &json!({"error": {"message": format!("no route {} {}", req.method, req.path)}}),
                );
            }
            handler(req, n).respond(
                |t| MockResponse::json(200, &chat_completion_body(t.as_deref().unwrap_or(""))),
                json!({"id": "chatcmpl-mock", "object": "chat.completion"}),
            )
        })?;
        Ok(Self { server })
    }

    /// Every request gets `reply`.
    pub fn fixed(reply: &str) -> io::Result<Self> {
        Self::scripted(Vec::new(), reply)
    }

    /// Request `n` gets `script[n]`; requests after the script, and [`Step::Ok`] / [`Step::Hang`],
    /// get `reply`.
    pub fn scripted(script: Vec<Step<String>>, reply: &str) -> io::Result<Self> {
        let reply = reply.to_string();
        Self::start(
            move |_, n| match script.get(n).cloned().unwrap_or(Step::Ok) {
                Step::Ok => Step::Reply(reply.clone()),
                Step::Hang(d) => {
                    Step::Raw(MockResponse::json(200, &chat_completion_body(&reply)).with_delay(d))
                }
                other => other,
            },
        )
    }

    /// `http://127.0.0.1:PORT/v1`: use as [`crate::ApiConfig::base_url`].
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.server.last_request()
    }
}

/// A segmentation request as the mock decoded it.
#[derive(Debug, Clone)]
pub struct SegmentRequestSeen {
    pub prompt: String,
    /// Frames in the order of their `index`.
    pub frames: Vec<RgbImage>,
}

/// What is wrong with a segmentation request body (see [`decode_segment_request`]); the mock
/// server answers 400 with this message.
#[derive(Debug, thiserror::Error)]
pub enum SegmentRequestError {
    /// The parser's message is part of the text (not a `source`), so a chain prints it once.
    #[error("not JSON: {cause}")]
    NotJson { cause: serde_json::Error },
    #[error("`prompt` missing or not a string")]
    Prompt,
    #[error("`frames` missing or not an array")]
    Frames,
    /// `frames[i].index` is missing or not an unsigned integer.
    #[error("frames[{i}].index")]
    FrameIndex { i: usize },
    /// `frames[i].png_base64` is missing or not a string.
    #[error("frames[{i}].png_base64")]
    FramePng { i: usize },
    #[error("frames[{i}].png_base64: {cause}")]
    Base64 {
        i: usize,
        cause: base64::DecodeError,
    },
    /// The decoded bytes of `frames[i]` are not an image.
    #[error("frames[{i}]: {cause}")]
    Image { i: usize, cause: image::ImageError },
    #[error("frames[{i}].index {index} out of range")]
    IndexOutOfRange { i: usize, index: usize },
    /// No frame of the request has this index.
    #[error("no frame with index {index}")]
    MissingIndex { index: usize },
}

/// Decodes a segmentation request body; `Err` says what is wrong with it.
pub fn decode_segment_request(body: &[u8]) -> Result<SegmentRequestSeen, SegmentRequestError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|cause| SegmentRequestError::NotJson { cause })?;
    let prompt = v
        .get("prompt")
        .and_then(Value::as_str)
        .ok_or(SegmentRequestError::Prompt)?;
    let frames = v
        .get("frames")
        .and_then(Value::as_array)
        .ok_or(SegmentRequestError::Frames)?;
    let mut out: Vec<Option<RgbImage>> = vec![None; frames.len()];
    for (i, f) in frames.iter().enumerate() {
        let index = f
            .get("index")
            .and_then(Value::as_u64)
            .ok_or(SegmentRequestError::FrameIndex { i })? as usize;
        let data = f
            .get("png_base64")
            .and_then(Value::as_str)
            .ok_or(SegmentRequestError::FramePng { i })?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|cause| SegmentRequestError::Base64 { i, cause })?;
        let img = image::load_from_memory(&png)
            .map_err(|cause| SegmentRequestError::Image { i, cause })?;
        let slot = out
            .get_mut(index)
            .ok_or(SegmentRequestError::IndexOutOfRange { i, index })?;
        *slot = Some(img.into_rgb8());
    }
    let frames = out
        .into_iter()
        .enumerate()
        .map(|(index, f)| f.ok_or(SegmentRequestError::MissingIndex { index }))
        .collect::<Result<_, _>>()?;
    Ok(SegmentRequestSeen {
        prompt: prompt.to_string(),
        frames,
    })
}

/// The body of a successful segmentation reply: mask `i` gets index `i`, and the width, height
/// and PNG of the mask itself (so wrong-size masks go out as they are).
pub fn segment_reply_body(masks: &[GrayImage]) -> Value {
    let items: Vec<Value> = masks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let png = encode_png_gray(m).unwrap_or_default();
            json!({
                "index": i,
                "width": m.width(),
                "height": m.height(),
                "png_base64": base64::engine::general_purpose::STANDARD.encode(png),
            })
        })
        .collect();
    json!({ "masks": items })
}

/// A mock segmentation server: answers `POST .../segment`.
pub struct MockSegmentServer {
    server: MockServer,
}

type MaskFn = dyn Fn(&str, &[RgbImage]) -> Vec<GrayImage> + Send + Sync;

impl MockSegmentServer {
    /// `handler(request, n)` decides each answer; [`Step::Ok`] and [`Step::Hang`] reply with
    /// all-zero masks of the frames' sizes. Requests that do not decode get a 400.
    pub fn start<F>(handler: F) -> io::Result<Self>
    where
        F: Fn(&SegmentRequestSeen, usize) -> Step<Vec<GrayImage>> + Send + Sync + 'static,
    {
        let server = MockServer::start(move |req, n| {
            if !req.path.ends_with("/segment") || req.method != "POST" {
                return MockResponse::json(
                    404,
                    &json!({"detail": format!("no route {} {}", req.method, req.path)}),
                );
            }
            let seen = match decode_segment_request(&req.body) {
                Ok(s) => s,
                Err(e) => return MockResponse::json(400, &json!({"detail": e.to_string()})),
            };
            let empty: Vec<GrayImage> = seen
                .frames
                .iter()
                .map(|f| GrayImage::new(f.width(), f.height()))
                .collect();
            handler(&seen, n).respond(
                |masks| {
                    MockResponse::json(
                        200,
                        &segment_reply_body(masks.as_deref().unwrap_or(&empty[..])),
                    )
                },
                json!({"detail": "mock reply without masks"}),
            )
        })?;
        Ok(Self { server })
    }

    /// Every request gets `masks(prompt, frames)`.
    pub fn with_masks<F>(masks: F) -> io::Result<Self>
    where
        F: Fn(&str, &[RgbImage]) -> Vec<GrayImage> + Send + Sync + 'static,
    {
        Self::scripted(Vec::new(), masks)
    }

    /// Request `n` gets `script[n]`; later requests, and [`Step::Ok`] / [`Step::Hang`], get
    /// `masks(prompt, frames)`.
    pub fn scripted<F>(script: Vec<Step<Vec<GrayImage>>>, masks: F) -> io::Result<Self>
    where
        F: Fn(&str, &[RgbImage]) -> Vec<GrayImage> + Send + Sync + 'static,
    {
        let masks: Arc<MaskFn> = Arc::new(masks);
        Self::start(
            move |seen, n| match script.get(n).cloned().unwrap_or(Step::Ok) {
                Step::Ok => Step::Reply(masks(&seen.prompt, &seen.frames)),
                Step::Hang(d) => Step::Raw(
                    MockResponse::json(
                        200,
                        &segment_reply_body(&masks(&seen.prompt, &seen.frames)),
                    )
                    .with_delay(d),
                ),
                other => other,
            },
        )
    }

    /// Masks of the pixels whose mean of R, G, B is above `threshold`.
    pub fn brightness_threshold(threshold: u8) -> io::Result<Self> {
        Self::with_masks(move |_, frames| {
            frames
                .iter()
                .map(|f| brightness_mask(f, threshold))
                .collect()
        })
    }

    /// `http://127.0.0.1:PORT`: use as [`crate::SegmentConfig::base_url`].
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.server.last_request()
    }
}

/// 255 where the mean of R, G, B is above `threshold`, else 0.
pub fn brightness_mask(frame: &RgbImage, threshold: u8) -> GrayImage {
    GrayImage::from_fn(frame.width(), frame.height(), |x, y| {
        let p = frame.get_pixel(x, y).0;
        let mean = (u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3;
        image::Luma([if mean > u16::from(threshold) { 255 } else { 0 }])
    })
}
