//! OpenAI-compatible chat completions: `POST {base_url}/chat/completions`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::cache::{chat_key, ResponseCache};
use crate::error::{snippet, ApiError};
use crate::http::Poster;

/// The environment variable read for the bearer key when [`ApiConfig::api_key`] is `None`.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Settings of a [`ChatClient`].
#[derive(Clone)]
pub struct ApiConfig {
    /// Everything before `/chat/completions`, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8000/v1` (a trailing `/` is ignored).
    pub base_url: String,
    /// Bearer key; `None` reads `OPENAI_API_KEY`; no key at all sends no `Authorization` header.
    pub api_key: Option<String>,
    /// The `model` field of each request.
    pub model: String,
    /// Limit for one attempt (connect, send, whole reply).
    pub timeout: Duration,
    /// Retries after the first attempt on timeouts, connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one (a `Retry-After` header wins).
    pub backoff: Duration,
    /// Folder of the response cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
}

impl ApiConfig {
    /// `base_url` and `model` with the defaults: key from the environment, 120 s timeout,
    /// 4 retries, 1 s initial backoff, no cache.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Duration::from_secs(120),
            max_retries: 4,
            backoff: Duration::from_secs(1),
            cache_dir: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatContent {
    Text(String),
    /// PNG file bytes; sent as a `data:image/png;base64,...` `image_url` part.
    ImagePng(Vec<u8>),
}

/// One chat message: a role (`system`, `user`, `assistant`) and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: Vec<ChatContent>,
}

impl ChatMessage {
    /// A message with one text part.
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: vec![ChatContent::Text(text.into())],
        }
    }
    /// `system` message with one text part.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text("system", text)
    }
    /// `user` message with one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text("user", text)
    }
    /// Adds a PNG image part.
    pub fn with_png(mut self, png: Vec<u8>) -> Self {
        self.content.push(ChatContent::ImagePng(png));
        self
    }
    /// Adds a text part.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.content.push(ChatContent::Text(text.into()));
        self
    }
}

/// Blocking client for an OpenAI-compatible chat-completions endpoint, with retries and an
/// optional on-disk response cache. Cheap to clone; `Send + Sync`, usable from many threads.
#[derive(Clone)]
pub struct ChatClient {
    url: String,
    model: String,
    poster: Poster,
    cache: Option<ResponseCache>,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

pub(crate) fn endpoint(base_url: &str, path: &str) -> Result<String, ApiError> {
    let base = base_url.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ApiError::Config(format!(
            "base_url {base_url:?} must start with http:// or https://"
        )));
    }
    Ok(format!("{base}{path}"))
}

impl ChatClient {
    pub fn new(cfg: ApiConfig) -> Result<Self, ApiError> {
        let url = endpoint(&cfg.base_url, "/chat/completions")?;
        if cfg.model.trim().is_empty() {
            return Err(ApiError::Config("model must not be empty".into()));
        }
        let key = cfg
            .api_key
            .clone()
            .or_else(|| std::env::var(API_KEY_ENV).ok());
        let poster = Poster::new(cfg.timeout, cfg.max_retries, cfg.backoff, key)?;
        let cache = cfg
            .cache_dir
            .as_deref()
            .map(ResponseCache::open)
            .transpose()?;
        Ok(Self {
            url,
            model: cfg.model,
            poster,
            cache,
        })
    }

    /// The full URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.url
    }

    /// The model named in requests.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The cache key (and file stem) `messages` would use; `None` when the messages cannot be
    /// sent (see [`ChatClient::chat`]).
    pub fn cache_key(&self, messages: &[ChatMessage]) -> Option<String> {
        let json = messages_json(&self.url, messages).ok()?;
        Some(chat_key(&self.url, &self.model, &json.to_string()))
    }

    /// Sends `messages` and returns `choices[0].message.content`. A cache hit returns the stored
    /// reply without any request.
    pub fn chat(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::InvalidInput {
                url: self.url.clone(),
                problem: "no messages".into(),
            });
        }
        let messages = messages_json(&self.url, messages)?;
        let key = self
            .cache
            .as_ref()
            .map(|_| chat_key(&self.url, &self.model, &messages.to_string()));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(content) = cache.get(key) {
                tracing::debug!(url = %self.url, key = %key, "chat cache hit");
                return Ok(content);
            }
        }
        let content = self
            .send(messages, &serde_json::Map::new())?
            .require_content(&self.url)?;
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            // A cache that cannot be written costs a repeated request later, not this answer.
            if let Err(e) = cache.put(key, &self.url, &self.model, &content) {
                tracing::warn!(error = %e, "cannot write chat cache entry");
            }
        }
        Ok(content)
    }
}

impl ChatClient {
    /// [`ChatClient::chat`] with more request fields merged into the body (`temperature`,
    /// `max_tokens`, `response_format`, ...; they cannot replace `model` or `messages`), returning
    /// how the reply ended as well as its text. Never cached: callers that keep the replies (an
    /// evaluation's judge verdicts) store them themselves.
    pub fn chat_with(
        &self,
        messages: &[ChatMessage],
        fields: &serde_json::Map<String, Value>,
    ) -> Result<ChatReply, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::InvalidInput {
                url: self.url.clone(),
                problem: "no messages".into(),
            });
        }
        let messages = messages_json(&self.url, messages)?;
        self.send(messages, fields)
    }

    fn send(
        &self,
        messages: Value,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<ChatReply, ApiError> {
        let mut body = fields.clone();
        body.insert("model".into(), Value::String(self.model.clone()));
        body.insert("messages".into(), messages);
        let body = serde_json::to_vec(&body).map_err(|e| ApiError::InvalidInput {
            url: self.url.clone(),
            problem: format!("cannot serialise request: {e}"),
        })?;
        let reply = self.poster.post_json(&self.url, &body)?;
        parse_chat_reply(&self.url, &reply)
    }
}

/// A chat reply: `choices[0].message.content` (`None` when null, as with a refusal), its
/// `finish_reason` and `refusal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    pub refusal: Option<String>,
}

impl ChatReply {
    /// The text, or an error naming the field when the reply has none.
    fn require_content(self, url: &str) -> Result<String, ApiError> {
        self.content.ok_or_else(|| {
            let reason = self
                .finish_reason
                .map(|r| format!(" (finish_reason: {r})"))
                .unwrap_or_default();
            ApiError::MalformedReply {
                url: url.to_string(),
                field: "choices[0].message.content".into(),
                problem: format!("is null instead of a string{reason}"),
            }
        })
    }
}

/// The `messages` array of the request. A message whose only part is text is sent with a plain
/// string `content` (what every OpenAI-compatible server accepts, system messages included);
/// otherwise `content` is an array of `text` and `image_url` parts.
fn messages_json(url: &str, messages: &[ChatMessage]) -> Result<Value, ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let content = match m.content.as_slice() {
            [ChatContent::Text(t)] => Value::String(t.clone()),
            parts => {
                let mut items = Vec::with_capacity(parts.len());
                for (j, part) in parts.iter().enumerate() {
                    items.push(match part {
                        ChatContent::Text(t) => json!({ "type": "text", "text": t }),
                        ChatContent::ImagePng(png) => {
                            if !png.starts_with(PNG_SIGNATURE) {
                                return Err(ApiError::InvalidInput {
                                    url: url.to_string(),
                                    problem: format!(
                                        "messages[{i}].content[{j}] is not PNG data (no PNG signature)"
                                    ),
                                });
                            }
                            let b64 = base64::engine::general_purpose::STANDARD.encode(png);
                            json!({
                                "type": "image_url",
                                "image_url": { "url": format!("data:image/png;base64,{b64}") }
                            })
                        }
                    });
                }
                Value::Array(items)
            }
        };
        out.push(json!({ "role": m.role, "content": content }));
    }
    Ok(Value::Array(out))
}

/// `choices[0]` of a chat-completions reply. `content` given as an array of
/// `{"type": "text", "text": ...}` parts is joined; a null one is `None`.
fn parse_chat_reply(url: &str, body: &[u8]) -> Result<ChatReply, ApiError> {
    let malformed = |field: &str, problem: String| ApiError::MalformedReply {
        url: url.to_string(),
        field: field.to_string(),
        problem,
    };
    let v: Value = serde_json::from_slice(body).map_err(|cause| ApiError::MalformedJson {
        url: url.to_string(),
        cause,
        snippet: snippet(body, 200),
    })?;
    let Some(choices) = v.get("choices") else {
        let why = match v.get("error") {
            Some(err) => format!("is missing; the reply carries an error: {err}"),
            None => format!("is missing (reply: {})", snippet(body, 200)),
        };
        return Err(malformed("choices", why));
    };
    let choices = choices
        .as_array()
        .ok_or_else(|| malformed("choices", format!("is not an array but {}", kind(choices))))?;
    let first = choices
        .first()
        .ok_or_else(|| malformed("choices", "is empty".into()))?;
    let message = first
        .get("message")
        .ok_or_else(|| malformed("choices[0].message", "is missing".into()))?;
    let content = message
        .get("content")
        .ok_or_else(|| malformed("choices[0].message.content", "is missing".into()))?;
    let text = |field: &Value| field.as_str().map(str::to_string);
    let reply = |content: Option<String>| ChatReply {
        content,
        finish_reason: first.get("finish_reason").and_then(text),
        refusal: message.get("refusal").and_then(text),
    };
    match content {
        Value::Null => Ok(reply(None)),
        Value::String(s) => Ok(reply(Some(s.clone()))),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, p) in parts.iter().enumerate() {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => text.push_str(t),
                    None => {
                        return Err(malformed(
                            &format!("choices[0].message.content[{i}].text"),
                            "is missing or not a string".into(),
                        ))
                    }
                }
            }
            Ok(reply(Some(text)))
        }
        other => {
            let reason = first
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(|r| format!(" (finish_reason: {r})"))
                .unwrap_or_default();
            Err(malformed(
                "choices[0].message.content",
                format!("is {} instead of a string{reason}", kind(other)),
            ))
        }
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_fields() {
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        let text = |body: &[u8]| parse_chat_reply("u", body).and_then(|r| r.require_content("u"));
        assert_eq!(text(ok).unwrap(), "hi");
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(text(parts).unwrap(), "ab");
        // A refusal: no text, and what the reply says instead.
        let refused =
            br#"{"choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}]}"#;
        let r = parse_chat_reply("u", refused).unwrap();
        assert_eq!((r.content, r.refusal.as_deref()), (None, Some("no")));
        let cases: [(&[u8], &str); 6] = [
            (br#"{"id":"x"}"#, "`choices` is missing"),
            (br#"{"choices":{}}"#, "`choices` is not an array"),
            (br#"{"choices":[]}"#, "`choices` is empty"),
            (br#"{"choices":[{}]}"#, "`choices[0].message` is missing"),
            (
                br#"{"choices":[{"message":{}}]}"#,
                "`choices[0].message.content` is missing",
            ),
            (
                br#"{"choices":[{"message":{"content":null},"finish_reason":"length"}]}"#,
                "is null instead of a string (finish_reason: length)",
            ),
        ];
        for (body, want) in cases {
            let url = "http://x/chat/completions";
            let e = parse_chat_reply(url, body)
                .and_then(|r| r.require_content(url))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            assert!(e.contains("http://x/chat/completions"), "{e}");
        }
        let e = parse_chat_reply("u", br#"{"error":{"message":"quota"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("quota"), "{e}");
        let e = parse_chat_reply("u", b"<html>").unwrap_err();
        assert!(matches!(e, ApiError::MalformedJson { .. }), "{e}");
        assert!(e.to_string().contains("<html>"), "{e}");
    }

    #[test]
    fn message_shapes() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let msgs = vec![
            ChatMessage::system("sys"),
            ChatMessage::user("look").with_png(png.clone()),
        ];
        let v = messages_json("u", &msgs).unwrap();
        assert_eq!(v[0], json!({"role": "system", "content": "sys"}));
        assert_eq!(v[1]["content"][0], json!({"type": "text", "text": "look"}));
        let url = v[1]["content"][1]["image_url"]["url"].as_str().unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            png
        );
        let bad = vec![ChatMessage::user("x").with_png(b"GIF89a".to_vec())];
        let e = messages_json("u", &bad).unwrap_err().to_string();
        assert!(e.contains("messages[0].content[1]"), "{e}");
    }

    #[test]
    fn endpoint_joining() {
        assert_eq!(
            endpoint("http://h:1/v1/", "/chat/completions").unwrap(),
            "http://h:1/v1/chat/completions"
        );
        assert!(endpoint("h:1/v1", "/x").is_err());
    }
}
