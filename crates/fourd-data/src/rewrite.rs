//! Optional LLM rewriting of question wording and chains of thought. A rewrite is kept only if
//! it passes [`crate::cot::validate_rewrite`] (same tag count, one imagery sentence, no markup,
//! the ground-truth label still concluded) and, for questions, if it does not name any label of
//! the options' vocabulary (which could leak or change the answer); otherwise the template text
//! stays and the reason is recorded in the candidate's `rewrite` field.

use crate::cot::validate_rewrite;
use crate::pipeline::Rewriter;
use crate::questions::Candidate;

/// Why a rewritten question is refused (see [`validate_question`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuestionError {
    #[error("question shorter than 10 characters")]
    TooShort,
    /// A line break: the model probably listed the options.
    #[error("question spans several lines (options must not be listed)")]
    SeveralLines,
    /// The question contains the answer label, which would leak it.
    #[error("question names the answer")]
    NamesAnswer,
}

/// Checks a rewritten question: one or two sentences, no option list, no answer label.
pub fn validate_question(q: &str, answer: &str) -> Result<String, QuestionError> {
    let q = q.trim().trim_matches('"').trim().to_string();
    if q.len() < 10 {
        return Err(QuestionError::TooShort);
    }
    if q.contains('\n') {
        return Err(QuestionError::SeveralLines);
    }
    if q.to_ascii_lowercase()
        .contains(&answer.to_ascii_lowercase())
    {
        return Err(QuestionError::NamesAnswer);
    }
    Ok(q)
}

/// Asks `rw` for a rewrite of `c` and keeps what passes the checks.
pub fn apply(rw: &dyn Rewriter, c: &mut Candidate) {
    let tags = c.image_output.len();
    match rw.rewrite(c) {
        Err(e) => c.rewrite = Some(format!("rejected: {e}")),
        Ok((question, think)) => {
            let mut notes = Vec::new();
            if let Some(q) = question {
                match validate_question(&q, &c.answer) {
                    Ok(q) => {
                        c.question = q;
                        notes.push("question accepted".to_string());
                    }
                    Err(e) => notes.push(format!("question rejected: {e}")),
                }
            }
            if let Some(t) = think {
                match validate_rewrite(&t, tags, &c.answer) {
                    Ok(t) => {
                        c.think = t;
                        notes.push("reasoning accepted".to_string());
                    }
                    Err(e) => notes.push(format!("reasoning rejected: {e}")),
                }
            }
            c.rewrite = Some(notes.join("; "));
        }
    }
}
