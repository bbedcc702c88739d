//! Tokenizer (`tokenizer.json`) and the checkpoint's own chat template (minijinja, configured like
//! transformers: `trim_blocks`, `lstrip_blocks`, Python string methods). Special-token ids are looked
//! up by their text, never assumed.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{read_json, ModelError, Result};

/// One item of a user or assistant turn.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Image,
    Video,
    Text(String),
}

#[derive(Clone, Debug)]
pub struct Message {
    pub role: String,
    pub content: Vec<Content>,
}

impl Message {
    pub fn new(role: &str, content: Vec<Content>) -> Self {
        Message {
            role: role.to_string(),
            content,
        }
    }
    fn to_json(&self) -> Value {
        let items: Vec<Value> = self
            .content
            .iter()
            .map(|c| match c {
                Content::Image => json!({"type": "image"}),
                Content::Video => json!({"type": "video"}),
                Content::Text(t) => json!({"type": "text", "text": t}),
            })
            .collect();
        json!({"role": self.role, "content": items})
    }
}

/// Ids of the special tokens the model and generation need, found by text.
#[derive(Clone, Debug)]
pub struct SpecialTokens {
    pub im_start: Option<u32>,
    pub im_end: Option<u32>,
    pub endoftext: Option<u32>,
    pub vision_start: Option<u32>,
    pub vision_end: Option<u32>,
    pub image_pad: Option<u32>,
    pub video_pad: Option<u32>,
    pub latent_pad: Option<u32>,
    pub latent_start: Option<u32>,
    pub latent_end: Option<u32>,
}

pub const IMAGE_PAD: &str = "<|image_pad|>";
pub const VIDEO_PAD: &str = "<|video_pad|>";
pub const LATENT_PAD: &str = "<|latent_pad|>";
pub const LATENT_START: &str = "<|latent_start|>";
pub const LATENT_END: &str = "<|latent_end|>";

pub struct QwenTokenizer {
    pub inner: tokenizers::Tokenizer,
    pub special: SpecialTokens,
    chat_template: Option<String>,
    path: PathBuf,
}

impl QwenTokenizer {
    /// Loads `tokenizer.json` and the chat template from `chat_template.jinja`,
    /// `chat_template.json` or `tokenizer_config.json` (in that order).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(ModelError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let chat_template = find_chat_template(dir)?;
        Ok(Self::from_parts(inner, chat_template, path))
    }

    pub fn from_parts(
        inner: tokenizers::Tokenizer,
        chat_template: Option<String>,
        path: PathBuf,
    ) -> Self {
        let id = |t: &str| inner.token_to_id(t);
        let special = SpecialTokens {
            im_start: id("<|im_start|>"),
            im_end: id("<|im_end|>"),
            endoftext: id("<|endoftext|>"),
            vision_start: id("<|vision_start|>"),
            vision_end: id("<|vision_end|>"),
            image_pad: id(IMAGE_PAD),
            video_pad: id(VIDEO_PAD),
            latent_pad: id(LATENT_PAD),
            latent_start: id(LATENT_START),
            latent_end: id(LATENT_END),
        };
        QwenTokenizer {
            inner,
            special,
            chat_template,
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn vocab_len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The bytes token `id` stands for, as OpenAI's `logprobs` give them: a byte-level BPE
    /// piece mapped back through GPT-2's byte alphabet (so a piece holding part of a multi-byte
    /// character gives just those bytes), an added token as its UTF-8 text. `None` for an
    /// unknown id.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if let Some(added) = self.inner.get_added_vocabulary().simple_id_to_token(id) {
            return Some(added.into_bytes());
        }
        let piece = self.inner.id_to_token(id)?;
        let mut out = Vec::with_capacity(piece.len());
        for c in piece.chars() {
            match byte_of_char(c) {
                Some(b) => out.push(b),
                // Not a byte-level piece (another tokenizer family): its own text.
                None => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        Some(out)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })
    }

    /// Renders `messages` with the checkpoint's chat template, as `apply_chat_template` does.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            ModelError::Template(format!(
                "the checkpoint beside {} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json)",
                self.path.display()
            ))
        })?;
        render_chat_template(template, messages, add_generation_prompt)
    }
}

pub fn render_chat_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| ModelError::Template(format!("does not parse: {e}")))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| ModelError::Template(e.to_string()))?;
    let msgs: Vec<Value> = messages.iter().map(Message::to_json).collect();
    let ctx = minijinja::context! {
        messages => msgs,
        add_generation_prompt => add_generation_prompt,
        add_vision_id => false,
    };
    tmpl.render(ctx)
        .map_err(|e| ModelError::Template(format!("rendering failed: {e}")))
}

fn find_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| ModelError::io(&jinja, e));
    }
    let json_file = dir.join("chat_template.json");
    if json_file.exists() {
        let v = read_json(&json_file)?;
        return match v.get("chat_template") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(ModelError::config(
                &json_file,
                "chat_template",
                "missing or not a string",
            )),
        };
    }
    let cfg = dir.join("tokenizer_config.json");
    if cfg.exists() {
        let v = read_json(&cfg)?;
        return match v.get("chat_template") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // A list of named templates: take "default".
            Some(Value::Array(list)) => Ok(list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned)),
            Some(_) => Err(ModelError::config(
                &cfg,
                "chat_template",
                "expected a string or a list of named templates",
            )),
        };
    }
    Ok(None)
}

/// GPT-2's byte-level alphabet read backwards: the byte a piece's character stands for. Bytes
/// that are printable in Latin-1 (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other
/// 68 are the characters from U+0100 on, in byte order.
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let n = c as u32;
    if n < 0x100 {
        return printable(n).then_some(n as u8);
    }
    let k = (n - 0x100) as usize;
    (0u32..0x100)
        .filter(|&b| !printable(b))
        .nth(k)
        .map(|b| b as u8)
}

#[cfg(test)]
mod byte_tests {
    use super::byte_of_char;

    #[test]
    fn the_byte_level_alphabet_reads_back() {
        assert_eq!(byte_of_char('a'), Some(b'a'));
        assert_eq!(byte_of_char('\u{120}'), Some(b' ')); // Ġ
        assert_eq!(byte_of_char('\u{10A}'), Some(b'\n')); // Ċ
        assert_eq!(byte_of_char('\u{100}'), Some(0));
        assert_eq!(byte_of_char('\u{143}'), Some(0xAD)); // the last of the 68
        assert_eq!(byte_of_char('\u{144}'), None);
        assert_eq!(byte_of_char(' '), None); // a space is never a byte-level character
                                             // All 256 bytes, each once.
        let mut seen: Vec<u8> = (0..0x144u32)
            .filter_map(char::from_u32)
            .filter_map(byte_of_char)
            .collect();
        seen.sort();
        assert_eq!(seen, (0..=255).collect::<Vec<u8>>());
    }
}
