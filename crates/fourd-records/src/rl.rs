//! The 4DRL training record (`4drl.jsonl`, the reference's format): `Question`, the options `A`
//! to `D` (texts without letters; an empty one is left out), `Correct` (a letter), the video as
//! `frame_paths` (frames in order) or `video_path`, `Type` (DSR-Bench key), plus our `id` and
//! `Kind` (the pipeline's question kind). Paths follow [`crate::paths`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{RecordError, Result};
use crate::letters::LETTERS;
use crate::paths::PathRule;
use crate::question::{McQuestion, Media};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RlRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    #[serde(rename = "Question", default)]
    pub question: String,
    #[serde(rename = "A", default)]
    pub a: String,
    #[serde(rename = "B", default)]
    pub b: String,
    #[serde(rename = "C", default)]
    pub c: String,
    #[serde(rename = "D", default)]
    pub d: String,
    #[serde(rename = "Correct", default)]
    pub correct: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_path: Option<String>,
    #[serde(rename = "Type", default)]
    pub task_type: String,
    #[serde(rename = "Kind", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl RlRecord {
    /// A record for option texts in letter order (at most four).
    pub fn new(question: &str, options: &[String], correct: char) -> Self {
        let opt = |i: usize| options.get(i).cloned().unwrap_or_default();
        RlRecord {
            question: question.to_string(),
            a: opt(0),
            b: opt(1),
            c: opt(2),
            d: opt(3),
            correct: correct.to_string(),
            ..Default::default()
        }
    }

    /// The option texts `A` to `D`.
    pub fn option_texts(&self) -> [&str; 4] {
        [&self.a, &self.b, &self.c, &self.d].map(|s| s.trim())
    }

    /// The question this record asks; `None` when it has no `Correct` (the reference drops
    /// such records) or no video.
    pub fn to_question(&self, index: usize, line: usize, rule: &PathRule) -> Option<McQuestion> {
        let answer = self
            .correct
            .trim()
            .chars()
            .next()?
            .to_ascii_uppercase()
            .to_string();
        let media = if !self.frame_paths.is_empty() {
            Media::Frames(self.frame_paths.iter().map(|p| rule.resolve(p)).collect())
        } else {
            Media::Video(rule.resolve(self.video_path.as_deref()?))
        };
        let options = self
            .option_texts()
            .iter()
            .zip(LETTERS)
            .filter(|(t, _)| !t.is_empty())
            .map(|(t, l)| format!("{l}. {t}"))
            .collect();
        Some(McQuestion {
            index,
            id: crate::dift::display_id(self.id.as_ref(), line),
            question: self.question.trim().to_string(),
            options,
            answer,
            kind: crate::question::AnswerKind::Choice,
            window: None,
            task_type: self.task_type.trim().to_string(),
            media,
        })
    }
}

/// The questions of a 4DRL file, paths resolved by `rule`, and the ids of records dropped for
/// having no `Correct` or no video. A file with no usable record is an error.
pub fn read_questions(path: &Path, rule: &PathRule) -> Result<(Vec<McQuestion>, Vec<String>)> {
    let mut questions = Vec::new();
    let mut dropped = Vec::new();
    for (line, r) in crate::jsonl::read::<RlRecord>(path, "a 4DRL record")? {
        match r.to_question(questions.len(), line, rule) {
            Some(q) => questions.push(q),
            None => dropped.push(crate::dift::display_id(r.id.as_ref(), line)),
        }
    }
    if questions.is_empty() {
        return Err(RecordError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((questions, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_record_reads_back_as_the_same_question() {
        let dir = std::env::temp_dir().join(format!("fourd-records-rl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("4drl.jsonl");
        let mut r = RlRecord::new("How?", &["Pan Left".into(), "Stay".into()], 'B');
        r.frame_paths = vec!["clips/f0.png".into(), "clips/f1.png".into()];
        r.id = Some(serde_json::json!("q1"));
        let no_answer = RlRecord {
            correct: String::new(),
            ..r.clone()
        };
        std::fs::write(&path, crate::jsonl::to_string(&[r, no_answer])).unwrap();
        let rule = PathRule::for_file(&path, None);
        let (qs, dropped) = read_questions(&path, &rule).unwrap();
        assert_eq!(dropped, vec!["q1"]);
        assert_eq!(qs[0].options, vec!["A. Pan Left", "B. Stay"]);
        assert_eq!(qs[0].answer, "B");
        assert_eq!(
            qs[0].media,
            Media::Frames(vec![dir.join("clips/f0.png"), dir.join("clips/f1.png")])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
