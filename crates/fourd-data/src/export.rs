//! Stage 4, export: balances answers, draws option sets, assigns letters and writes the two
//! training files.
//!
//! - DIFT (`dift.jsonl`): `id`, `text_input` (question, a blank line, `A. ...` to `D. ...`),
//!   `text_output` (`<think>...</think>` then `<answer>X. label</answer>`), `image_input` (every
//!   frame of the clip), `image_output` (the overlays, in the order of the `<output_image>` tags).
//!   Questions without imagery (no depth for a camera landmark) are left out of this file.
//! - 4DRL (`4drl.jsonl`): `Question`, `A`-`D`, `Correct` (a letter), `frame_paths`, `Type`
//!   (DSR-Bench key), plus `id`.
//!
//! Letters: questions are sorted by id and taken in blocks of four; each block gets a seeded
//! permutation of A-D for its answers, so over `n` questions each letter is correct `n/4` times
//! (up to 3). The distractors fill the other letters in seeded random order.

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::cot::{assemble, assemble_label, assemble_with_option_check};
use crate::error::Result;
use crate::questions::{balance, baselines, option_set, Balanced, Baselines, Candidate};

pub const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// A finished question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub candidate: Candidate,
    /// Options in letter order.
    pub options: Vec<String>,
    pub correct: usize,
}

impl Question {
    pub fn letter(&self) -> char {
        LETTERS[self.correct]
    }
    pub fn text_input(&self) -> String {
        let opts: Vec<String> = self
            .options
            .iter()
            .zip(LETTERS)
            .map(|(o, l)| format!("{l}. {o}"))
            .collect();
        format!("{}\n\n{}", self.candidate.question, opts.join("\n"))
    }
    pub fn text_output(&self) -> String {
        assemble(
            &self.candidate.think,
            self.letter(),
            &self.options[self.correct],
        )
    }
    /// `text_output` with the option check closing the reasoning (see
    /// [`assemble_with_option_check`]).
    pub fn text_output_checked(&self) -> String {
        assemble_with_option_check(&self.candidate.think, &self.options, self.correct, &LETTERS)
    }
    /// `text_output` answering with the label alone (see [`assemble_label`]).
    pub fn text_output_label(&self) -> String {
        assemble_label(&self.candidate.think, &self.options[self.correct])
    }
    /// `text_output` in the requested form.
    pub fn text_output_as(&self, form: ReplyForm) -> String {
        match form {
            ReplyForm::Letter => self.text_output(),
            ReplyForm::OptionCheck => self.text_output_checked(),
            ReplyForm::Label => self.text_output_label(),
        }
    }
}

/// How a DIFT reply closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyForm {
    /// `<answer>X. label</answer>` after the reasoning (the reference's form).
    #[default]
    Letter,
    /// An option check (`A. label: no` ... `C. label: yes`) closes the reasoning, then the
    /// lettered answer.
    OptionCheck,
    /// `<answer>label</answer>`: the concluded label alone, no letter.
    Label,
}

impl std::str::FromStr for ReplyForm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "letter" => Ok(Self::Letter),
            "option-check" => Ok(Self::OptionCheck),
            "label" => Ok(Self::Label),
            other => Err(format!(
                "unknown reply form {other:?} (letter, option-check, label)"
            )),
        }
    }
}

/// What export did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ExportStats {
    pub candidates: usize,
    pub questions: usize,
    pub dift_records: usize,
    /// Per kind: questions dropped to keep every answer label at most 1/4 of its kind.
    pub dropped_for_balance: BTreeMap<String, usize>,
    /// Per kind: kept questions.
    pub per_kind: BTreeMap<String, usize>,
    /// Per kind: answer label -> count.
    pub answers: BTreeMap<String, BTreeMap<String, usize>>,
    pub letters: BTreeMap<String, usize>,
    pub baselines: Option<Baselines>,
}

/// Balanced, lettered questions from all candidates of a run (deterministic in `seed` and the
/// candidate set, independent of their order).
pub fn build_questions(
    mut cands: Vec<Candidate>,
    seed: u64,
    balance_answers: bool,
) -> (Vec<Question>, ExportStats) {
    cands.sort_by(|a, b| a.id.cmp(&b.id));
    let n_cands = cands.len();
    let Balanced {
        kept,
        answer_distribution: pi,
        dropped,
    } = balance(cands, seed, balance_answers);
    let mut stats = ExportStats {
        candidates: n_cands,
        ..Default::default()
    };
    for (k, d) in dropped {
        stats.dropped_for_balance.insert(k.as_str().into(), d);
    }
    let mut with_options: Vec<(Candidate, Vec<String>)> = Vec::new();
    for c in kept {
        let Some(p) = pi.get(&c.kind) else { continue };
        let mut rng = crate::fsio::clip_rng(seed, &c.id, "options");
        match option_set(&c.answer, p, &mut rng) {
            Some(o) => with_options.push((c, o)),
            None => {
                *stats
                    .dropped_for_balance
                    .entry(c.kind.as_str().into())
                    .or_default() += 1
            }
        }
    }
    let mut questions = Vec::with_capacity(with_options.len());
    for (block_index, block) in with_options.chunks(4).enumerate() {
        let mut rng = crate::fsio::clip_rng(seed, &format!("letters-{block_index}"), "letters");
        let mut letters = [0usize, 1, 2, 3];
        letters.shuffle(&mut rng);
        for ((c, opts), &slot) in block.iter().zip(&letters) {
            let mut distractors: Vec<String> =
                opts.iter().filter(|o| **o != c.answer).cloned().collect();
            let mut qrng = crate::fsio::clip_rng(seed, &c.id, "distractor-order");
            distractors.shuffle(&mut qrng);
            let mut options = Vec::with_capacity(4);
            let mut it = distractors.into_iter();
            for i in 0..4 {
                options.push(if i == slot {
                    c.answer.clone()
                } else {
                    it.next().unwrap_or_default()
                });
            }
            questions.push(Question {
                candidate: c.clone(),
                options,
                correct: slot,
            });
        }
    }
    for q in &questions {
        *stats
            .per_kind
            .entry(q.candidate.kind.as_str().into())
            .or_default() += 1;
        *stats
            .answers
            .entry(q.candidate.kind.as_str().into())
            .or_default()
            .entry(q.candidate.answer.clone())
            .or_default() += 1;
        *stats.letters.entry(q.letter().to_string()).or_default() += 1;
    }
    stats.questions = questions.len();
    let items: Vec<(Vec<String>, usize)> = questions
        .iter()
        .map(|q| (q.options.clone(), q.correct))
        .collect();
    stats.baselines = (!items.is_empty()).then(|| baselines(&items));
    (questions, stats)
}

fn path_str(out_root: &Path, rel: &str) -> String {
    out_root.join(rel).to_string_lossy().into_owned()
}

/// Writes `dift.jsonl` and `4drl.jsonl` under `out_root` (atomically); paths in the records are
/// `out_root` joined with the stored relative paths.
pub fn write_outputs(
    questions: &[Question],
    out_root: &Path,
    stats: &mut ExportStats,
    form: ReplyForm,
) -> Result<()> {
    let mut dift = String::new();
    let mut rl = String::new();
    for q in questions {
        let c = &q.candidate;
        let frames: Vec<String> = c
            .image_input
            .iter()
            .map(|p| path_str(out_root, p))
            .collect();
        if !c.image_output.is_empty() {
            let rec = serde_json::json!({
                "id": c.id,
                "text_input": q.text_input(),
                "text_output": q.text_output_as(form),
                "image_input": frames,
                "image_output": c.image_output.iter().map(|p| path_str(out_root, p)).collect::<Vec<_>>(),
            });
            dift.push_str(&rec.to_string());
            dift.push('\n');
            stats.dift_records += 1;
        }
        let rec = serde_json::json!({
            "id": c.id,
            "Question": c.question,
            "A": q.options[0],
            "B": q.options[1],
            "C": q.options[2],
            "D": q.options[3],
            "Correct": q.letter().to_string(),
            "frame_paths": frames,
            "Type": c.kind.rl_type(),
            "Kind": c.kind.as_str(),
        });
        rl.push_str(&rec.to_string());
        rl.push('\n');
    }
    crate::fsio::write_atomic(&out_root.join(DIFT_FILE), dift.as_bytes())?;
    crate::fsio::write_atomic(&out_root.join(RL_FILE), rl.as_bytes())?;
    Ok(())
}

/// File names of the two outputs.
pub const DIFT_FILE: &str = "dift.jsonl";
pub const RL_FILE: &str = "4drl.jsonl";
