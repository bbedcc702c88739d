//! The question text a model sees, built one way for training, rollouts, evaluation and the
//! demo: the question, a blank line, one `A. ...` line per option (the reference's `text_input`),
//! then, for 4DThinker models, the think/answer instruction.

/// The instruction 4DThinker appends to every question (`FOUR_D_THINKER_TEXT_INPUT_SUFFIX` of the
/// reference, leading newline included).
pub const FOUR_D_THINKER_SUFFIX: &str = concat!(
    "\nFirst, think about the reasoning process with mental imagery of the relevant object or ",
    "region, then provide the user with the answer. Put the reasoning in <think>...</think> and ",
    "only the final answer in <answer>...</answer>, e.g. <think> reasoning process (with mental ",
    "imagery as needed) </think><answer> answer here </answer>."
);

/// `A. text` lines for option texts given in letter order.
pub fn lettered(options: &[String]) -> Vec<String> {
    options
        .iter()
        .zip(crate::letters::letters_for(options.len()))
        .map(|(o, l)| format!("{l}. {o}"))
        .collect()
}

/// The question, a blank line, then the option lines as given; the question alone when it has
/// no options.
pub fn question_text(question: &str, option_lines: &[String]) -> String {
    if option_lines.is_empty() {
        question.to_string()
    } else {
        format!("{question}\n\n{}", option_lines.join("\n"))
    }
}

/// `text` followed by the 4DThinker instruction when `suffix` is set.
pub fn with_suffix(text: &str, suffix: bool) -> String {
    if suffix {
        format!("{text}{FOUR_D_THINKER_SUFFIX}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_then_blank_line_then_options_then_instruction() {
        let opts = lettered(&["Left".into(), "Right".into()]);
        assert_eq!(opts, vec!["A. Left", "B. Right"]);
        let text = with_suffix(&question_text("Where?", &opts), true);
        assert!(text.starts_with("Where?\n\nA. Left\nB. Right\nFirst, think"));
        assert!(text.ends_with("<answer> answer here </answer>."));
        assert_eq!(question_text("Q", &[]), "Q");
    }
}
