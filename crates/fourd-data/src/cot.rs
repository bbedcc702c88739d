//! Stage 3b, chains of thought: built from the measured evidence (which frames, which
//! displacement, which compensation), with exactly one `<output_image>` tag per overlay, all in
//! one sentence; and the checks every chain (ours, or an LLM's rewrite) must pass.
//!
//! Final form (the reference's, after `convert_format.py`):
//! `<think>\n{reasoning}\n</think>\n<answer>\n{letter}. {label}\n</answer>`; or, with label
//! answers, `<answer>\n{label}\n</answer>` (evaluation maps the label to its option's letter).

/// The imagery tag DIFT replaces with latent tokens.
pub const TAG: &str = "<output_image>";

/// When each annotated frame was taken, and how text names that time.
///
/// The time of annotated frame `k` is its source video frame over the video's frame rate
/// ([`crate::IngestRecord::seconds`]): SpatialVID annotates every `int(0.2·fps)`-th frame, so
/// real clips step by about 0.2 s. 4DThinker instead read the annotated position as seconds
/// (`preprocess.md` §2.2, §15 item 12), which on SpatialVID makes every time five times too
/// large; positions are used only when the frame rate is unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    seconds: Vec<f64>,
}

impl Timeline {
    pub fn new(seconds: Vec<f64>) -> Self {
        Timeline { seconds }
    }

    /// Annotated position `k` read as `k` seconds (the reference's convention).
    pub fn positions(n: usize) -> Self {
        Timeline::new((0..n).map(|k| k as f64).collect())
    }

    /// `"2.4s"`: seconds to two decimals, trailing zeros dropped (`"3s"`, `"0.13s"`).
    pub fn at(&self, frame: usize) -> String {
        let t = self.seconds.get(frame).copied().unwrap_or(frame as f64);
        let s = format!("{t:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    }

    /// The time between consecutive frames when it is the same throughout (SpatialVID's fixed
    /// extraction interval; our synthetic clips).
    pub fn spacing(&self) -> Option<f64> {
        let steps: Vec<f64> = self.seconds.windows(2).map(|w| w[1] - w[0]).collect();
        let first = *steps.first()?;
        steps
            .iter()
            .all(|s| (s - first).abs() <= 1e-9 * first.abs().max(1.0))
            .then_some(first)
    }

    /// How often frames were taken, for the first sentence of a chain of thought: `"one per
    /// second"` (the reference's wording, right when the spacing is 1 s), `"one every 0.2s"`, or
    /// nothing when the spacing varies.
    pub fn rate_phrase(&self) -> Option<String> {
        let d = self.spacing()?;
        if (d - 1.0).abs() < 1e-9 {
            return Some("one per second".into());
        }
        let s = format!("{d:.2}");
        Some(format!(
            "one every {}s",
            s.trim_end_matches('0').trim_end_matches('.')
        ))
    }

    /// `"0s, 0.5s and 1s"`.
    pub fn list(&self, frames: &[usize]) -> String {
        let t: Vec<String> = frames.iter().map(|&f| self.at(f)).collect();
        join_and(&t)
    }
}

/// `"a, b and c"`.
pub fn join_and(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// The one imagery sentence: `"{lead} at 0s, 1s and 2s: <output_image>, <output_image> and
/// <output_image>."`.
pub fn imagery_sentence(lead: &str, timeline: &Timeline, frames: &[usize]) -> String {
    let tags: Vec<String> = frames.iter().map(|_| TAG.to_string()).collect();
    format!("{lead} at {}: {}.", timeline.list(frames), join_and(&tags))
}

/// The full `text_output`.
pub fn assemble(think: &str, letter: char, label: &str) -> String {
    assemble_answer(think, &format!("{letter}. {label}"))
}

/// The full `text_output` answering with the option's label alone (no letter): a model that
/// cannot yet read the option list (the demo's, trained from scratch) answers what it concluded,
/// and evaluation and the accuracy reward map the label to its option.
pub fn assemble_label(think: &str, label: &str) -> String {
    assemble_answer(think, label)
}

fn assemble_answer(think: &str, answer: &str) -> String {
    format!(
        "<think>\n{}\n</think>\n<answer>\n{answer}\n</answer>",
        think.trim()
    )
}

/// The full `text_output` with an option check closing the reasoning: every option on its own
/// line as the prompt writes it, then whether it is the conclusion (`A. Pan Left: no`,
/// `B. Tilt Up: yes`, ...). Writing each line takes copying what follows its letter in the
/// prompt (the same tokens, as both start a line), and the answer letter then follows the one
/// "yes", instead of a search of the prompt for the concluded label, whose letter precedes it
/// there: a reverse lookup that small models learn slowly.
pub fn assemble_with_option_check(
    think: &str,
    options: &[String],
    correct: usize,
    letters: &[char],
) -> String {
    let checks: Vec<String> = options
        .iter()
        .zip(letters)
        .enumerate()
        .map(|(i, (o, l))| format!("{l}. {o}: {}", if i == correct { "yes" } else { "no" }))
        .collect();
    let check = format!("{OPTION_CHECK_LEAD}\n{}", checks.join("\n"));
    assemble(
        &format!("{}\n{check}", think.trim()),
        letters[correct],
        &options[correct],
    )
}

/// How the option check starts (readers of the reasoning cut it off there).
pub const OPTION_CHECK_LEAD: &str = "Checking each option against this:";

/// Why a `text_output` (or an LLM rewrite of its think body) is malformed: the verdict of
/// [`validate`] and [`validate_rewrite`]. The messages are what `fourd data check` and the
/// candidates' `rewrite` field show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CotError {
    #[error("does not start with <think>")]
    NoThinkStart,
    #[error("no </think>")]
    NoThinkEnd,
    #[error("more than one think block")]
    SeveralThinkBlocks,
    #[error("<answer> inside the think block")]
    AnswerInsideThink,
    #[error("the think block must be followed by exactly <answer>...</answer> and nothing else")]
    NoAnswerBlock,
    #[error("more than one answer block")]
    SeveralAnswerBlocks,
    /// `count` imagery tags stand after the think block.
    #[error("{count} {TAG} tag(s) outside the think block")]
    TagsOutsideThink { count: usize },
    /// The think block has `found` imagery tags, not one per `image_output`.
    #[error("{found} {TAG} tag(s), expected {expected} (one per image_output)")]
    TagCount { found: usize, expected: usize },
    /// A sentence ends between the first and the last imagery tag.
    #[error("the {TAG} tags are not in one sentence")]
    TagsSplit,
    #[error("empty answer")]
    EmptyAnswer,
    #[error("answer letter {letter:?} is not A-D")]
    AnswerLetter { letter: char },
    #[error("answer has no label")]
    NoLabel,
    #[error("rewrite shorter than 40 characters")]
    RewriteTooShort,
    #[error("rewrite contains think/answer markup")]
    RewriteMarkup,
    /// The rewrite no longer states the ground-truth label `label`.
    #[error("rewrite no longer concludes {label:?}")]
    RewriteConclusion { label: String },
}

/// Why a `text_output` is malformed, or `Ok` with the `(letter, label)` of its answer (no letter
/// for a label answer).
///
/// Checks: exactly one `<think>...</think>` followed by exactly one `<answer>...</answer>` and
/// nothing else around them; `expected_tags` `<output_image>` tags, all inside the think block
/// and within one sentence (no sentence end `. `/`.\n`/`? `/`! ` between the first and the last);
/// the answer is `X. label` with `X` in A-D, or a label alone.
pub fn validate(text: &str, expected_tags: usize) -> Result<(Option<char>, String), CotError> {
    let t = text.trim();
    let rest = t.strip_prefix("<think>").ok_or(CotError::NoThinkStart)?;
    let (think, after) = rest.split_once("</think>").ok_or(CotError::NoThinkEnd)?;
    if think.contains("<think>") || after.contains("<think>") || after.contains("</think>") {
        return Err(CotError::SeveralThinkBlocks);
    }
    if think.contains("<answer>") {
        return Err(CotError::AnswerInsideThink);
    }
    let after = after.trim();
    let inner = after
        .strip_prefix("<answer>")
        .and_then(|a| a.strip_suffix("</answer>"))
        .ok_or(CotError::NoAnswerBlock)?;
    if inner.contains("<answer>") || inner.contains("</answer>") {
        return Err(CotError::SeveralAnswerBlocks);
    }
    let tags_inside = think.matches(TAG).count();
    let tags_total = t.matches(TAG).count();
    if tags_total != tags_inside {
        return Err(CotError::TagsOutsideThink {
            count: tags_total - tags_inside,
        });
    }
    if tags_inside != expected_tags {
        return Err(CotError::TagCount {
            found: tags_inside,
            expected: expected_tags,
        });
    }
    if expected_tags > 0 {
        let first = think.find(TAG).expect("tags present");
        let last = think.rfind(TAG).expect("tags present");
        let span = &think[first..last];
        if [". ", ".\n", "? ", "! ", "\n\n"]
            .iter()
            .any(|end| span.contains(end))
        {
            return Err(CotError::TagsSplit);
        }
    }
    let inner = inner.trim();
    if inner.is_empty() {
        return Err(CotError::EmptyAnswer);
    }
    let mut chars = inner.chars();
    let first = chars.next().ok_or(CotError::EmptyAnswer)?;
    let rest = chars.as_str();
    let lettered = first.is_ascii_uppercase() && (rest == "." || rest.starts_with(". "));
    if !lettered {
        // A label answer.
        return Ok((None, inner.to_string()));
    }
    let label = &rest[1..];
    if !('A'..='D').contains(&first) {
        return Err(CotError::AnswerLetter { letter: first });
    }
    let label = label.trim();
    if label.is_empty() {
        return Err(CotError::NoLabel);
    }
    Ok((Some(first), label.to_string()))
}

/// Checks an LLM rewrite of a think body against the original: same number of tags, one
/// imagery sentence, the answer label still stated, no answer block, not empty.
pub fn validate_rewrite(
    rewritten: &str,
    expected_tags: usize,
    answer_label: &str,
) -> Result<String, CotError> {
    let body = rewritten
        .trim()
        .trim_start_matches("<think>")
        .trim_end_matches("</think>")
        .trim()
        .to_string();
    if body.len() < 40 {
        return Err(CotError::RewriteTooShort);
    }
    if body.contains("<answer>") || body.contains("<think>") || body.contains("</think>") {
        return Err(CotError::RewriteMarkup);
    }
    validate(&assemble(&body, 'A', answer_label), expected_tags)?;
    if !body
        .to_ascii_lowercase()
        .contains(&answer_label.to_ascii_lowercase())
    {
        return Err(CotError::RewriteConclusion {
            label: answer_label.to_string(),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod option_check_tests {
    use super::*;

    #[test]
    fn the_option_check_names_every_option_once_and_stays_valid() {
        let opts: Vec<String> = ["Tilt Down", "Dolly Out", "Pan Left and Tilt Up", "Stay"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = assemble_with_option_check(
            "I picture it at 0s and 7s: <output_image> and <output_image>. It tilts.",
            &opts,
            2,
            &fourd_records::letters::LETTERS,
        );
        assert!(
            t.contains("It tilts.\nChecking each option against this:\nA. Tilt Down: no\nB. Dolly Out: no\nC. Pan Left and Tilt Up: yes\nD. Stay: no\n</think>"),
            "{t}"
        );
        assert_eq!(
            validate(&t, 2).unwrap(),
            (Some('C'), "Pan Left and Tilt Up".to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_and_tags() {
        let s = imagery_sentence(
            "I picture the red box",
            &Timeline::positions(10),
            &[0, 5, 9],
        );
        assert_eq!(s, "I picture the red box at 0s, 5s and 9s: <output_image>, <output_image> and <output_image>.");
        // SpatialVID timing: every 6th frame of a 30 fps video, and 29.97 fps every 5th.
        let real = Timeline::new((0..4).map(|k| (6 * k) as f64 / 30.0).collect());
        assert_eq!(real.list(&[0, 1, 3]), "0s, 0.2s and 0.6s");
        assert_eq!(real.rate_phrase().as_deref(), Some("one every 0.2s"));
        assert_eq!(
            Timeline::positions(8).rate_phrase().as_deref(),
            Some("one per second")
        );
        assert_eq!(Timeline::new(vec![0.0, 0.2, 0.6]).rate_phrase(), None);
        let ntsc = Timeline::new((0..3).map(|k| (5 * k) as f64 / 29.97).collect());
        assert_eq!(ntsc.list(&[1, 2]), "0.17s and 0.33s");
        let ok = assemble(
            &format!("Setup. {s} It moves 3.5 px left. So Moving Left."),
            'C',
            "Moving Left",
        );
        assert_eq!(validate(&ok, 3), Ok((Some('C'), "Moving Left".into())));
        let named = assemble_label(&format!("Setup. {s} So Moving Left."), "Moving Left");
        assert!(
            named.ends_with("So Moving Left.\n</think>\n<answer>\nMoving Left\n</answer>"),
            "{named}"
        );
        assert_eq!(validate(&named, 3), Ok((None, "Moving Left".into())));
        assert_eq!(
            validate(&assemble_label("x", " "), 0)
                .unwrap_err()
                .to_string(),
            "empty answer"
        );
        assert!(validate(&ok.replace("C. Moving Left", "C. "), 3)
            .unwrap_err()
            .to_string()
            .contains("no label"));
        assert!(validate(&ok, 2)
            .unwrap_err()
            .to_string()
            .contains("expected 2"));
        let split = assemble("A <output_image>. Then <output_image>.", 'A', "x");
        assert!(validate(&split, 2)
            .unwrap_err()
            .to_string()
            .contains("one sentence"));
        let outside = format!("{ok} {TAG}");
        assert!(validate(&outside, 3).is_err());
        assert!(validate(&ok.replace("C. Moving", "E. Moving"), 3).is_err());
        assert!(validate_rewrite(
            &format!("Looking closely, {s} so it is Moving Left."),
            3,
            "Moving Left"
        )
        .is_ok());
        assert!(validate_rewrite(
            &format!("Looking closely, {s} so it is Moving Right."),
            3,
            "Moving Left"
        )
        .is_err());
    }
}
