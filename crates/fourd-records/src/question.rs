//! A multiple-choice question about a video: one type for a benchmark row (DSR-Bench's
//! `benchmark.parquet`, `fourd synth benchmark`), a 4DRL training line, and what evaluation, GRPO
//! rollouts and the demo answer.

use std::path::PathBuf;

use crate::prompt::{question_text, with_suffix};

/// Where a question's video comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Media {
    /// A benchmark's `videoID`: the file is `<video root>/<id>.<ext>`.
    VideoId(String),
    /// A video file (already resolved by the path rule).
    Video(PathBuf),
    /// The video's frames in order (already resolved by the path rule).
    Frames(Vec<PathBuf>),
}

impl Media {
    /// A short name for messages: the video id, the file, or the first frame's folder.
    pub fn describe(&self) -> String {
        match self {
            Media::VideoId(id) => id.clone(),
            Media::Video(p) => p.display().to_string(),
            Media::Frames(f) => match f.first().and_then(|p| p.parent()) {
                Some(dir) => format!("{} ({} frames)", dir.display(), f.len()),
                None => format!("{} frames", f.len()),
            },
        }
    }
}

/// What a question's answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerKind {
    /// One of the options, by letter.
    #[default]
    Choice,
    /// A number (VSI-Bench's numerical-answer questions), scored by closeness.
    Number,
}

impl AnswerKind {
    pub fn is_choice(&self) -> bool {
        *self == AnswerKind::Choice
    }
}

/// A question about a video: multiple-choice (every benchmark) or numerical (VSI-Bench).
#[derive(Clone, Debug, PartialEq)]
pub struct McQuestion {
    /// Position in its file (row or line order, from 0); evaluation results are keyed by it.
    pub index: usize,
    /// The record's id (its `id` field, else `row N` / `line N`).
    pub id: String,
    pub question: String,
    /// The option lines as the prompt shows them (`A. Pan Left`), in letter order.
    pub options: Vec<String>,
    /// The correct letter, upper case (a number's text for [`AnswerKind::Number`]); empty when
    /// the file gives none.
    pub answer: String,
    pub kind: AnswerKind,
    /// The part of the video the question is about, in seconds from its start (STI-Bench's
    /// `time_start`, `time_end`); `None`: all of it.
    pub window: Option<(f64, f64)>,
    /// The sub-task key (DSR-Bench `type`, the 4DRL `Type`).
    pub task_type: String,
    pub media: Media,
}

impl McQuestion {
    /// Question, blank line, option lines (the reference's `text_input`).
    pub fn text(&self) -> String {
        question_text(&self.question, &self.options)
    }

    /// [`Self::text`] with the 4DThinker instruction when `suffix` is set.
    pub fn prompt_text(&self, suffix: bool) -> String {
        with_suffix(&self.text(), suffix)
    }

    /// The correct option's text without its letter, when the answer names an option.
    pub fn answer_text(&self) -> Option<&str> {
        let letter = self.answer.chars().next()?;
        self.options
            .iter()
            .find(|o| o.starts_with(letter))
            .map(|o| crate::answer::option_text(o, letter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_text_is_its_option_without_the_letter() {
        let q = McQuestion {
            index: 0,
            id: "q".into(),
            question: "How?".into(),
            options: crate::prompt::lettered(&["Pan Left".into(), "Stay".into()]),
            answer: "B".into(),
            kind: AnswerKind::Choice,
            window: None,
            task_type: "rel_dir".into(),
            media: Media::VideoId("v".into()),
        };
        assert_eq!(q.answer_text(), Some("Stay"));
        assert_eq!(q.text(), "How?\n\nA. Pan Left\nB. Stay");
    }
}
