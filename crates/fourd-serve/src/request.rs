//! A `POST /v1/chat/completions` body, checked field by field and turned into what the model
//! consumes: chat messages for the checkpoint's template, decoded images and video frames, and
//! sampling overrides. Every error is a 400 naming the field.
//!
//! Content is a string or a list of parts: `text`; `image_url` (a `data:` URL of base64 PNG,
//! JPEG or WebP, or, with `--allowed-media-dir`, a file under that folder); `video_url` (a `data:`
//! URL of a video file or an allowed local file, sampled at the part's `fps`, default 1, as `fourd
//! eval` samples videos); `video` (a list of frame URLs, one video, at the part's `fps`, default
//! 2). Remote URLs are never fetched.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use fourd_model::generation::SamplingOverrides;
use fourd_model::inputs::VideoFrames;
use fourd_model::tokenizer::{Content, Message};
use image::RgbImage;
use serde_json::Value;

use crate::error::ApiError;

/// Where media may come from and how videos are sampled.
#[derive(Clone, Debug)]
pub struct MediaPolicy {
    /// Local files are read only under this folder (`--allowed-media-dir`); `None`: never.
    pub allowed_dir: Option<PathBuf>,
    /// Frames kept from a video at most (`fourd eval`'s 50).
    pub max_frames: usize,
    /// Pixels per frame at most before the model's own resizing.
    pub max_pixels: usize,
    /// Decoded image size limit in bytes (a decompression bomb is refused, not decoded).
    pub max_image_bytes: u64,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        MediaPolicy {
            allowed_dir: None,
            max_frames: fourd_video::DEFAULT_MAX_FRAMES,
            max_pixels: fourd_video::DEFAULT_MAX_PIXELS,
            max_image_bytes: 256 << 20,
        }
    }
}

/// Most choices one request may ask for.
pub const MAX_N: usize = 16;
/// Most alternatives per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings (OpenAI's limit).
pub const MAX_STOP: usize = 4;

/// A checked chat request.
#[derive(Debug, Default)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub images: Vec<RgbImage>,
    pub videos: Vec<VideoFrames>,
    pub sampling: SamplingOverrides,
    pub max_tokens: Option<usize>,
    pub n: usize,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    pub logprobs: bool,
    /// Alternatives per token (`top_logprobs`, with `logprobs`).
    pub top_logprobs: usize,
}

/// Reads `body` (parsed JSON) into a [`ChatRequest`], decoding its media under `policy`.
pub fn parse(body: &Value, policy: &MediaPolicy) -> Result<ChatRequest, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let mut req = ChatRequest {
        model: opt_str(obj.get("model"), "model")?,
        n: 1,
        ..Default::default()
    };
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages", "`messages` must be a non-empty array"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let msg = parse_message(m, i, policy, &mut req)?;
        req.messages.push(msg);
    }
    parse_sampling(obj, &mut req)?;
    Ok(req)
}

fn opt_str(v: Option<&Value>, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

/// Roles, and the chat template's name for each: OpenAI's newer `developer` is a system
/// message, as vLLM reads it.
const ROLES: &[(&str, &str)] = &[
    ("system", "system"),
    ("developer", "system"),
    ("user", "user"),
    ("assistant", "assistant"),
];

fn parse_message(
    m: &Value,
    i: usize,
    policy: &MediaPolicy,
    req: &mut ChatRequest,
) -> Result<Message, ApiError> {
    let at = format!("messages[{i}]");
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("{at}.role"), "each message needs a `role`"))?;
    let Some(&(_, role)) = ROLES.iter().find(|(r, _)| *r == role) else {
        return Err(ApiError::invalid(
            format!("{at}.role"),
            format!("unknown role `{role}` (expected system, developer, user or assistant)"),
        ));
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => vec![Content::Text(s.clone())],
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                out.push(parse_part(
                    p,
                    &format!("{at}.content[{j}]"),
                    role,
                    policy,
                    req,
                )?);
            }
            out
        }
        // An assistant turn that only called tools has no content; we have no tools.
        _ => {
            return Err(ApiError::invalid(
                format!("{at}.content"),
                "`content` must be a string or a list of parts",
            ))
        }
    };
    Ok(Message::new(role, content))
}

fn parse_part(
    p: &Value,
    at: &str,
    role: &str,
    policy: &MediaPolicy,
    req: &mut ChatRequest,
) -> Result<Content, ApiError> {
    let kind = p
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("{at}.type"), "each part needs a `type`"))?;
    if kind != "text" && role != "user" {
        return Err(ApiError::invalid(
            format!("{at}.type"),
            format!("only user messages carry images or videos, not {role} messages"),
        ));
    }
    match kind {
        "text" => {
            let text = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(format!("{at}.text"), "a text part needs a string `text`")
            })?;
            Ok(Content::Text(text.to_string()))
        }
        "image_url" => {
            let url = part_url(p, "image_url", at)?;
            let field = format!("{at}.image_url");
            req.images.push(load_image(&url, &field, policy)?);
            Ok(Content::Image)
        }
        "video_url" => {
            let url = part_url(p, "video_url", at)?;
            let fps = part_fps(p, at, 1.0)?;
            let field = format!("{at}.video_url");
            req.videos.push(load_video(&url, fps, &field, policy)?);
            Ok(Content::Video)
        }
        "video" => {
            let frames = p.get("video").and_then(Value::as_array).ok_or_else(|| {
                ApiError::invalid(format!("{at}.video"), "a video part lists its frame URLs")
            })?;
            if frames.is_empty() {
                return Err(ApiError::invalid(
                    format!("{at}.video"),
                    "the video has no frames",
                ));
            }
            let fps = part_fps(p, at, 2.0)?;
            let keep = fourd_video::sample_indices(frames.len(), 1.0, 1.0, policy.max_frames);
            let mut images = Vec::with_capacity(keep.len());
            for k in keep {
                let field = format!("{at}.video[{k}]");
                let url = frames[k]
                    .as_str()
                    .ok_or_else(|| ApiError::invalid(&field, "a frame is given by its URL"))?;
                images.push(load_image(url, &field, policy)?);
            }
            req.videos.push(VideoFrames {
                frames: images,
                fps,
            });
            Ok(Content::Video)
        }
        other => Err(ApiError::invalid(
            format!("{at}.type"),
            format!("unknown part type `{other}` (expected text, image_url, video_url or video)"),
        )),
    }
}

/// `part[key].url` (or `part[key]` given as a bare string, as some clients send it).
fn part_url(p: &Value, key: &str, at: &str) -> Result<String, ApiError> {
    match p.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => v
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(format!("{at}.{key}.url"), "no `url`")),
        None => Err(ApiError::invalid(
            format!("{at}.{key}"),
            format!("no `{key}`"),
        )),
    }
}

fn part_fps(p: &Value, at: &str, default: f64) -> Result<f64, ApiError> {
    match p.get("fps") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(ApiError::invalid(
                format!("{at}.fps"),
                "`fps` must be a number > 0",
            )),
        },
    }
}

/// The bytes a media URL names: a `data:` URL's payload, or a local file under the allowed
/// folder. Returns the bytes and, for a file, its path.
fn media_bytes(
    url: &str,
    field: &str,
    policy: &MediaPolicy,
) -> Result<(Vec<u8>, Option<PathBuf>), ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, payload) = rest
            .split_once(',')
            .ok_or_else(|| ApiError::invalid(field, "a data URL needs a `,` before its data"))?;
        if !meta.ends_with(";base64") {
            return Err(ApiError::invalid(
                field,
                "only base64 data URLs are accepted",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|e| ApiError::invalid(field, format!("the data URL is not base64: {e}")))?;
        return Ok((bytes, None));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::invalid(
            field,
            "remote URLs are not fetched: send the media as a data URL",
        ));
    }
    let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let Some(dir) = &policy.allowed_dir else {
        return Err(ApiError::invalid(
            field,
            "local files are not read by this server (start it with --allowed-media-dir)",
        ));
    };
    let allowed = |p: &Path| -> Option<PathBuf> {
        let real = p.canonicalize().ok()?;
        let root = dir.canonicalize().ok()?;
        real.starts_with(&root).then_some(real)
    };
    let real = allowed(&path).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!(
                "{} is not a file under the allowed media folder",
                path.display()
            ),
        )
    })?;
    let bytes = std::fs::read(&real)
        .map_err(|e| ApiError::invalid(field, format!("cannot read {}: {e}", real.display())))?;
    Ok((bytes, Some(real)))
}

/// An image URL decoded to RGB: PNG, JPEG or WebP, within the size limit.
fn load_image(url: &str, field: &str, policy: &MediaPolicy) -> Result<RgbImage, ApiError> {
    let (bytes, _) = media_bytes(url, field, policy)?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::invalid(field, format!("cannot read the image: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP) => {}
        _ => return Err(ApiError::invalid(field, "not a PNG, JPEG or WebP image")),
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(policy.max_image_bytes);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| ApiError::invalid(field, format!("the image cannot be decoded: {e}")))?;
    Ok(img.to_rgb8())
}

static TEMP_VIDEOS: AtomicU64 = AtomicU64::new(0);

/// A video URL decoded with the evaluation's sampling rule at `fps`.
fn load_video(
    url: &str,
    fps: f64,
    field: &str,
    policy: &MediaPolicy,
) -> Result<VideoFrames, ApiError> {
    let opts = fourd_video::SamplingOptions {
        fps,
        max_frames: policy.max_frames,
        max_pixels: policy.max_pixels,
        ..Default::default()
    };
    let undecodable = |e: fourd_video::VideoError| {
        ApiError::invalid(field, format!("the video cannot be decoded: {e}"))
    };
    let (bytes, path) = media_bytes(url, field, policy)?;
    let video = match path {
        Some(p) => fourd_video::decode_video(&p, &opts).map_err(undecodable)?,
        None => {
            // FFmpeg reads files: the data goes to a private temporary file, removed after.
            let n = TEMP_VIDEOS.fetch_add(1, Ordering::Relaxed);
            let tmp =
                std::env::temp_dir().join(format!("fourd-serve-{}-{n}.video", std::process::id()));
            std::fs::write(&tmp, &bytes)
                .map_err(|e| ApiError::internal(format!("cannot write a temporary file: {e}")))?;
            let decoded = fourd_video::decode_video(&tmp, &opts);
            let _ = std::fs::remove_file(&tmp);
            decoded.map_err(undecodable)?
        }
    };
    Ok(VideoFrames {
        frames: video.frames,
        fps,
    })
}

/// Sampling fields: OpenAI's names and ranges; `temperature: 0` is greedy decoding.
fn parse_sampling(
    obj: &serde_json::Map<String, Value>,
    req: &mut ChatRequest,
) -> Result<(), ApiError> {
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(k, format!("`{k}` must be a number"))),
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::invalid(k, format!("`{k}` must be an integer"))),
        }
    };
    let flag = |k: &str| -> Result<bool, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::invalid(k, format!("`{k}` must be true or false"))),
        }
    };
    let s = &mut req.sampling;
    if let Some(t) = num("temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                "`temperature` must be in [0, 2]",
            ));
        }
        if t == 0.0 {
            s.greedy = Some(true);
        } else {
            s.temperature = Some(t);
        }
    }
    if let Some(p) = num("top_p")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid("top_p", "`top_p` must be in (0, 1]"));
        }
        s.top_p = Some(p);
    }
    match int("top_k")? {
        // vLLM's "off".
        None | Some(-1) => {}
        Some(k) if k >= 1 => s.top_k = Some(k as usize),
        Some(_) => {
            return Err(ApiError::invalid(
                "top_k",
                "`top_k` must be >= 1 (or -1: off)",
            ))
        }
    }
    if let Some(r) = num("repetition_penalty")? {
        if r <= 0.0 {
            return Err(ApiError::invalid(
                "repetition_penalty",
                "`repetition_penalty` must be > 0",
            ));
        }
        s.repetition_penalty = Some(r);
    }
    if let Some(seed) = int("seed")? {
        s.seed = Some(seed as u64);
    }
    // Tools and structured output are not served: refused rather than silently ignored.
    for k in ["tools", "functions"] {
        if obj
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            return Err(ApiError::invalid(
                k,
                format!("`{k}` is not supported by this server"),
            ));
        }
    }
    if let Some(f) = obj.get("response_format") {
        if f.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid(
                "response_format",
                "only `{\"type\": \"text\"}` is supported",
            ));
        }
    }
    for k in ["frequency_penalty", "presence_penalty"] {
        if num(k)?.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                k,
                format!("`{k}` is not supported (use repetition_penalty)"),
            ));
        }
    }
    for k in ["max_completion_tokens", "max_tokens"] {
        if let Some(m) = int(k)? {
            if m < 1 {
                return Err(ApiError::invalid(k, format!("`{k}` must be at least 1")));
            }
            req.max_tokens.get_or_insert(m as usize);
        }
    }
    if let Some(n) = int("n")? {
        if !(1..=MAX_N as i64).contains(&n) {
            return Err(ApiError::invalid(
                "n",
                format!("`n` must be in 1..={MAX_N}"),
            ));
        }
        req.n = n as usize;
    }
    req.stop = match obj.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "`stop` must be a string or a list of strings")
            })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "`stop` must be a string or a list of strings",
            ))
        }
    };
    if req.stop.len() > MAX_STOP || req.stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOP} non-empty stop strings"),
        ));
    }
    req.stream = flag("stream")?;
    req.include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    req.logprobs = flag("logprobs")?;
    if let Some(k) = int("top_logprobs")? {
        if !(0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("`top_logprobs` must be in 0..={MAX_TOP_LOGPROBS}"),
            ));
        }
        if k > 0 && !req.logprobs {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ));
        }
        req.top_logprobs = k as usize;
    }
    Ok(())
}
