//! Optional LLM rewriting of question wording and chains of thought. A rewrite is kept only if
//! it passes [`crate::cot::validate_rewrite`] (same tag count, one imagery sentence, no markup,
//! the ground-truth label still concluded) and, for questions, if it does not name any label of
//! the options' vocabulary (which could leak or change the answer); otherwise the template text
//! stays and the reason is recorded in the candidate's `rewrite` field.

use crate::cot::validate_rewrite;
use crate::pipeline::Rewriter;
use crate::questions::Candidate;

/// Checks a rewritten question: one or two sentences, no option list, no answer label.
pub fn validate_question(q: &str, answer: &str) -> Result<String, String> {
    let q = q.trim().trim_matches('"').trim().to_string();
    if q.len() < 10 {
        return Err("question shorter than 10 characters".into());
    }
    if q.contains('\n') {
        return Err("question spans several lines (options must not be listed)".into());
    }
    if q.to_ascii_lowercase()
        .contains(&answer.to_ascii_lowercase())
    {
        return Err("question names the answer".into());
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
