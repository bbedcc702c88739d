//! Stage 4, export: balances answers, draws option sets, assigns letters and writes the two
//! training files.
//!
//! - DIFT (`dift.jsonl`, `fourd_records::DiftRecord`): `id`, `text_input` (question, a blank
//!   line, `A. ...` to `D. ...`), `text_output` (`<think>...</think>` then
//!   `<answer>X. label</answer>`), `image_input` (every frame of the clip), `image_output` (the
//!   overlays, in the order of the `<output_image>` tags). Questions without imagery (no depth for
//!   a camera landmark) are left out of this file.
//! - 4DRL (`4drl.jsonl`, `fourd_records::RlRecord`): `Question`, `A`-`D`, `Correct` (a letter),
//!   `frame_paths`, `Type` (DSR-Bench key), plus `id` and `Kind`.
//!
//! Image paths are stored relative to the output folder the two files live in
//! (`fourd_records::paths`), so the folder reads from anywhere and can be moved.
//!
//! Letters (`fourd_records::letters`): questions are sorted by id and taken in blocks of four;
//! each block gets a seeded permutation of A-D for its answers, so over `n` questions each letter
//! is correct `n/4` times (up to 3). The distractors fill the other letters in seeded random
//! order.

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use fourd_records::letters::{letter, options_with_answer_at, LetterBalancer, LETTERS};
use fourd_records::prompt::{lettered, question_text};
use fourd_records::{DiftRecord, RlRecord};

use crate::cot::{assemble, assemble_label, assemble_with_option_check};
use crate::error::Result;
use crate::questions::{balance, baselines, option_set, Balanced, Baselines, Candidate};

/// A candidate with its lettered options: what export writes as a DIFT and a 4DRL record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LetteredCandidate {
    pub candidate: Candidate,
    /// Options in letter order.
    pub options: Vec<String>,
    pub correct: usize,
}

impl LetteredCandidate {
    pub fn letter(&self) -> char {
        letter(self.correct)
    }
    pub fn text_input(&self) -> String {
        question_text(&self.candidate.question, &lettered(&self.options))
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
    type Err = crate::error::DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "letter" => Ok(Self::Letter),
            "option-check" => Ok(Self::OptionCheck),
            "label" => Ok(Self::Label),
            other => Err(crate::error::DataError::Config(format!(
                "unknown reply form {other:?} (letter, option-check, label)"
            ))),
        }
    }
}

impl std::fmt::Display for ReplyForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Letter => "letter",
            Self::OptionCheck => "option-check",
            Self::Label => "label",
        })
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
) -> (Vec<LetteredCandidate>, ExportStats) {
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
    let mut balancer = LetterBalancer::new();
    for (c, opts) in with_options {
        let slot = balancer.next_slot(|block, perm| {
            perm.shuffle(&mut crate::fsio::clip_rng(
                seed,
                &format!("letters-{block}"),
                "letters",
            ))
        });
        let mut distractors: Vec<String> =
            opts.iter().filter(|o| **o != c.answer).cloned().collect();
        distractors.shuffle(&mut crate::fsio::clip_rng(seed, &c.id, "distractor-order"));
        questions.push(LetteredCandidate {
            options: options_with_answer_at(slot, &c.answer, distractors),
            candidate: c,
            correct: slot,
        });
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

/// Writes `dift.jsonl` and `4drl.jsonl` under `out_root` (atomically). The candidates' paths
/// are relative to `out_root`, the files' own folder, and are stored as they are.
pub fn write_outputs(
    questions: &[LetteredCandidate],
    out_root: &Path,
    stats: &mut ExportStats,
    form: ReplyForm,
) -> Result<()> {
    let mut dift = Vec::new();
    let mut rl = Vec::with_capacity(questions.len());
    for q in questions {
        let c = &q.candidate;
        if !c.image_output.is_empty() {
            dift.push(DiftRecord {
                id: Some(c.id.clone().into()),
                text_input: q.text_input(),
                text_output: q.text_output_as(form),
                image_input: c.image_input.clone(),
                image_output: c.image_output.clone(),
            });
        }
        rl.push(RlRecord {
            id: Some(c.id.clone().into()),
            frame_paths: c.image_input.clone(),
            task_type: c.kind.rl_type().to_string(),
            kind: Some(c.kind.as_str().to_string()),
            ..RlRecord::new(&c.question, &q.options, q.letter())
        });
    }
    stats.dift_records = dift.len();
    use fourd_records::jsonl::to_string;
    crate::fsio::write_atomic(&out_root.join(DIFT_FILE), to_string(&dift).as_bytes())?;
    crate::fsio::write_atomic(&out_root.join(RL_FILE), to_string(&rl).as_bytes())?;
    Ok(())
}

/// File names of the two outputs.
pub const DIFT_FILE: &str = "dift.jsonl";
pub const RL_FILE: &str = "4drl.jsonl";
