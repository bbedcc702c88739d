//! Adapters to the HTTP clients of `fourd-api`: a [`Segmenter`] backed by the segmentation
//! service, object naming and question / chain-of-thought rewriting through an
//! OpenAI-compatible chat model. Every model output is checked before use and the geometric
//! pipeline never depends on one: a failed or rejected call keeps the template text or the
//! colour name, and only a failed segmentation call fails its clip (there are no masks then).

use std::sync::Arc;

use fourd_api::{ChatClient, ChatMessage, SegmentClient};
use image::RgbImage;

use crate::error::{DataError, Result};
use crate::masks::{
    disambiguate_names, fit_mask, Mask, SegmentInput, Segmenter, SegmenterChoice, TrackedObject,
};
use crate::object_motion::JudgeError;
use crate::pipeline::{RewriteError, Rewriter};
use crate::questions::Candidate;

/// Words that describe motion; a name containing one could leak or contradict the answer
/// (`preprocess.md` §15 item 14), so such names are refused.
const MOTION_WORDS: [&str; 20] = [
    "left",
    "right",
    "up",
    "down",
    "toward",
    "towards",
    "away",
    "closer",
    "farther",
    "moving",
    "moves",
    "move",
    "stationary",
    "still",
    "static",
    "fast",
    "slow",
    "speed",
    "approaching",
    "receding",
];

/// Why a model's object name is refused (see [`validate_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty after trimming quotes and articles, or longer than 8 words.
    #[error("name {raw:?} is not 1-8 words")]
    WordCount { raw: String },
    /// Digits, punctuation or other non-letters (hyphens and spaces are allowed).
    #[error("name {raw:?} has characters other than letters")]
    NotLetters { raw: String },
    /// One of the words describes motion ([`MOTION_WORDS`]) and could leak the answer.
    #[error("name {raw:?} describes motion ({word:?})")]
    DescribesMotion { raw: String, word: String },
}

/// Why [`ApiNamer`] gave no name: the call failed, or the model's reply is unusable.
#[derive(Debug, thiserror::Error)]
pub enum NamerError {
    /// A frame could not be encoded for the request.
    #[error(transparent)]
    Encode(#[from] DataError),
    /// The chat request failed.
    #[error(transparent)]
    Api(#[from] fourd_api::ApiError),
    /// The model named something, but not an acceptable name.
    #[error(transparent)]
    Refused(#[from] NameError),
    /// The model answered `null`: it sees nothing that moves.
    #[error("the model sees no moving object")]
    NoMovingObject,
}

/// Checks an object name from a model: 1-8 words, letters only, no motion words.
pub fn validate_name(raw: &str) -> std::result::Result<String, NameError> {
    let name = raw
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c.is_whitespace())
        .to_ascii_lowercase();
    let name = name
        .strip_prefix("the ")
        .or_else(|| name.strip_prefix("a "))
        .or_else(|| name.strip_prefix("an "))
        .unwrap_or(&name)
        .to_string();
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.is_empty() || words.len() > 8 {
        return Err(NameError::WordCount { raw: raw.into() });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '-')
    {
        return Err(NameError::NotLetters { raw: raw.into() });
    }
    if let Some(w) = words
        .iter()
        .find(|w| MOTION_WORDS.contains(&w.trim_matches('-')))
    {
        return Err(NameError::DescribesMotion {
            raw: raw.into(),
            word: (*w).to_string(),
        });
    }
    Ok(name)
}

fn png(img: &RgbImage) -> Result<Vec<u8>> {
    fourd_api::png_from_rgb(img)
        .map_err(|e| DataError::Api(format!("cannot encode a frame as PNG: {e}")))
}

/// Names objects with a chat model from their first overlay.
#[derive(Clone)]
pub struct ApiNamer {
    pub client: ChatClient,
}

impl ApiNamer {
    /// A short noun phrase for the object highlighted in red in `overlay`.
    pub fn name(&self, overlay: &RgbImage) -> std::result::Result<String, NamerError> {
        let msg = ChatMessage::user(
            "The red-tinted, red-outlined region in this image marks one object. Name it with a short noun phrase of 2-5 words including its colour or shape (for example: \"red sphere\", \"person in a white shirt\"). Do not describe where it is or how it moves. Reply with the name only.",
        )
        .with_png(png(overlay)?);
        let reply = self.client.chat(&[msg])?;
        Ok(validate_name(&reply)?)
    }

    /// The prompt for the segmentation service: one prominent moving object in `frames`.
    pub fn moving_object(&self, frames: &[RgbImage]) -> std::result::Result<String, NamerError> {
        let n = frames.len();
        let picks: Vec<usize> = (0..n.min(10))
            .map(|i| {
                if n.min(10) == 1 {
                    0
                } else {
                    i * (n - 1) / (n.min(10) - 1)
                }
            })
            .collect();
        let mut msg = ChatMessage::user(
            "These are frames of one video. Name one prominent object that moves in it, as a short noun phrase of 2-5 words with its colour or shape (for example: \"red car\"). Do not say how it moves. Reply with the name only, or null if nothing moves.",
        );
        for i in picks {
            msg = msg.with_png(png(&frames[i])?);
        }
        let reply = self.client.chat(&[msg])?;
        if reply.trim().eq_ignore_ascii_case("null") {
            return Err(NamerError::NoMovingObject);
        }
        Ok(validate_name(&reply)?)
    }
}

/// Renames the objects of another backend with [`ApiNamer`]; a failed or refused name keeps the
/// geometric colour name (logged).
pub struct NamingSegmenter {
    pub inner: SegmenterChoice,
    pub namer: ApiNamer,
}

impl Segmenter for NamingSegmenter {
    fn name(&self) -> String {
        format!("{}+namer", self.inner.describe())
    }
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>> {
        let mut objects = self.inner.for_clip(input.record).segment(input)?;
        for o in &mut objects {
            let Some((t, m)) = o
                .masks
                .iter()
                .enumerate()
                .find_map(|(t, m)| m.as_ref().map(|m| (t, m)))
            else {
                continue;
            };
            match self
                .namer
                .name(&crate::imagery::overlay(&input.frames[t], m))
            {
                Ok(n) => o.name = n,
                Err(e) => tracing::warn!(
                    "{} object {}: keeping {:?}: {e}",
                    input.record.key,
                    o.track_id,
                    o.name
                ),
            }
        }
        disambiguate_names(&mut objects);
        Ok(objects)
    }
}

/// Masks from the segmentation service (`fourd_api::SegmentClient`, protocol in
/// `docs/api.md`): one object per prompt. Prompts are `prompts`, or, with a namer, the moving
/// object the chat model names in the clip's frames (the reference's GPT-4.1 + SAM3 step).
pub struct HttpSegmenter {
    pub client: SegmentClient,
    pub prompts: Vec<String>,
    pub namer: Option<ApiNamer>,
}

impl Segmenter for HttpSegmenter {
    fn name(&self) -> String {
        format!("http:{}", self.client.endpoint())
    }
    fn segment(&self, input: &SegmentInput) -> Result<Vec<TrackedObject>> {
        let prompts = match &self.namer {
            Some(n) => match n.moving_object(input.frames) {
                Ok(p) => vec![p],
                Err(e) => {
                    return Err(DataError::Segmenter {
                        backend: self.name(),
                        msg: format!("no object to segment: {e}"),
                    })
                }
            },
            None => self.prompts.clone(),
        };
        let (w, h) = (input.record.width, input.record.height);
        let mut objects = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let masks =
                self.client
                    .segment(input.frames, prompt)
                    .map_err(|e| DataError::Segmenter {
                        backend: self.name(),
                        msg: e.to_string(),
                    })?;
            let mut per_frame = Vec::with_capacity(masks.len());
            for m in &masks {
                let m = fit_mask(
                    Mask::from_gray(m),
                    (w, h),
                    std::path::Path::new(self.client.endpoint()),
                )?;
                per_frame.push((m.area() > 0).then_some(m));
            }
            objects.push(TrackedObject {
                track_id: i as u32 + 1,
                name: prompt.clone(),
                masks: per_frame,
                instance_id: None,
            });
        }
        disambiguate_names(&mut objects);
        Ok(objects)
    }
}

/// Rewrites question wording and the chain of thought with a chat model. The reply must be JSON
/// `{"question": "...", "reasoning": "..."}`; [`crate::rewrite::apply`] then checks both.
pub struct ChatRewriter {
    pub client: ChatClient,
}

fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .unwrap_or(t);
    t.strip_suffix("```").unwrap_or(t).trim()
}

impl Rewriter for ChatRewriter {
    fn name(&self) -> String {
        format!("chat:{}:{}", self.client.endpoint(), self.client.model())
    }
    fn rewrite(
        &self,
        c: &Candidate,
    ) -> std::result::Result<(Option<String>, Option<String>), RewriteError> {
        let prompt = format!(
            "Rewrite a video question and its step-by-step reasoning in fluent, varied English without changing their meaning.\n\
             Rules: keep every number; keep the conclusion \"{answer}\"; keep exactly {n} <output_image> tags, all inside one sentence, in the same order; \
             do not list answer options; do not add <think> or <answer> tags. The question must not mention the answer.\n\
             Reply with JSON only: {{\"question\": \"...\", \"reasoning\": \"...\"}}.\n\nQuestion: {q}\n\nReasoning: {t}",
            answer = c.answer,
            n = c.image_output.len(),
            q = c.question,
            t = c.think
        );
        let reply = self.client.chat(&[ChatMessage::user(prompt)])?;
        let v: serde_json::Value = serde_json::from_str(strip_fences(&reply))
            .map_err(|cause| RewriteError::NotJson { cause })?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if field("question").is_none() && field("reasoning").is_none() {
            return Err(RewriteError::NoFields);
        }
        Ok((field("question"), field("reasoning")))
    }
}

/// A VLM's judgement of an object's direction from its overlays: a second opinion recorded in
/// `labels.json` and compared with the measurement, never used as the answer. The reply must be
/// exactly one of the 11 labels (parsed whole, not by substring: the reference's substring
/// parser collapsed diagonals into Left/Right, `preprocess.md` §15 item 6).
pub struct ChatJudge {
    pub client: ChatClient,
}

impl crate::object_motion::DirectionJudge for ChatJudge {
    fn name(&self) -> String {
        format!("chat:{}:{}", self.client.endpoint(), self.client.model())
    }
    fn direction(
        &self,
        overlays: &[RgbImage],
        frames: &[usize],
        object: &str,
    ) -> std::result::Result<fourd_world::Direction, JudgeError> {
        let labels: Vec<&str> = fourd_world::Direction::ALL
            .iter()
            .map(|d| d.as_str())
            .collect();
        let mut msg = ChatMessage::user(format!(
            "These images are keyframes of a video at {}, with the {object} highlighted in red. Judge the direction the {object} itself moves as seen from the camera at the first keyframe, discounting the camera's own motion. Reply with exactly one of: {}.",
            crate::cot::Timeline::positions(frames.iter().max().map_or(0, |m| m + 1)).list(frames),
            labels.join("; ")
        ));
        for o in overlays {
            msg = msg.with_png(png(o)?);
        }
        let reply = self.client.chat(&[msg])?;
        reply
            .trim()
            .trim_end_matches('.')
            .parse::<fourd_world::Direction>()
            .map_err(|_| JudgeError::NotADirection {
                reply: reply.chars().take(80).collect(),
            })
    }
}

/// Wraps `inner` so objects get model names.
pub fn with_namer(inner: SegmenterChoice, namer: ApiNamer) -> SegmenterChoice {
    SegmenterChoice::Custom(Arc::new(NamingSegmenter { inner, namer }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_not_describe_motion() {
        assert_eq!(
            validate_name(" \"A red sphere.\" "),
            Ok("red sphere".into())
        );
        assert!(validate_name("ball moving left")
            .unwrap_err()
            .to_string()
            .contains("motion"));
        assert!(validate_name("car #3").is_err());
        assert!(validate_name("").is_err());
    }
}
