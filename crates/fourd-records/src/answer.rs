//! Answer extraction, as the reference does it (first `<answer>...</answer>` span, stock prefixes
//! removed, first option letter; then the whole output as a fallback), with two fixes: a letter
//! inside a word never counts ("Dolly In" is not "D", "Camera" is not "C"), and an answer that
//! names an option's text instead of its letter ("Dolly In") counts as that option, as
//! VLMEvalKit's matching does (the reference reads the "D" of "Dolly" there, right or wrong by
//! accident, and otherwise falls back to the first capital of the reasoning).

use crate::letters::letters_for;

const PREFIXES: &[&str] = &[
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer:",
    "Option:",
];

/// Content of the first `<answer>...</answer>` (case-insensitive, across lines), trimmed.
pub fn answer_span(raw: &str) -> Option<&str> {
    let lower = raw.to_ascii_lowercase();
    let open = lower.find("<answer>")?;
    let start = open + "<answer>".len();
    let end = lower[start..].find("</answer>")? + start;
    Some(raw[start..end].trim())
}

/// The first standalone option letter among `letters` in `text` after the stock prefixes are
/// removed. Standalone: not preceded or followed by a letter or digit.
pub fn option_letter(text: &str, letters: &[char]) -> Option<char> {
    let mut s = text.to_string();
    for p in PREFIXES {
        s = s.replace(p, "");
    }
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !letters.contains(&c) {
            continue;
        }
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        let word = |x: Option<char>| x.is_some_and(|x| x.is_alphanumeric());
        if !word(before) && !word(after) {
            return Some(c);
        }
    }
    None
}

/// An option's text without its letter prefix (`A. `, `A) `, `(A) `, `A: `) when it has one.
pub fn option_text(option: &str, letter: char) -> &str {
    let o = option.trim();
    let rest = o
        .strip_prefix('(')
        .and_then(|r| r.strip_prefix(letter))
        .and_then(|r| r.strip_prefix(')'));
    let rest = rest.or_else(|| {
        o.strip_prefix(letter)
            .and_then(|r| r.strip_prefix(['.', ')', ':']))
    });
    rest.map_or(o, str::trim)
}

/// Lower case, words separated by single spaces, surrounding punctuation gone.
fn normalise(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    words
        .join(" ")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// The letter of the option whose text `span` names: the span is that text (case, spacing and
/// surrounding punctuation aside), or else it contains that text as whole words and no other
/// option's. `None` when no option or several options match.
pub fn option_named(span: &str, options: &[String], letters: &[char]) -> Option<char> {
    let span = normalise(span);
    let texts: Vec<(char, String)> = options
        .iter()
        .zip(letters)
        .map(|(o, &l)| (l, normalise(option_text(o, l))))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    if let Some((l, _)) = texts.iter().find(|(_, t)| *t == span) {
        return Some(*l);
    }
    let contains_word = |hay: &str, needle: &str| {
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back();
            let after = hay[i + needle.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    };
    let mut found = texts.iter().filter(|(_, t)| contains_word(&span, t));
    match (found.next(), found.next()) {
        (Some((l, _)), None) => Some(*l),
        _ => None,
    }
}

/// The predicted letter, or "" when none is found: a letter in the answer span, else the option
/// the span names, else the first letter anywhere in the output (the reference's fallback).
/// `options` are the question's options in letter order (with or without their `A. ` prefix;
/// none: letters A-D, no text matching).
pub fn extract_choice(raw: &str, options: &[String]) -> String {
    let letters = letters_for(options.len());
    let found = match answer_span(raw) {
        Some(span) => option_letter(span, &letters)
            .or_else(|| option_named(span, options, &letters))
            .or_else(|| option_letter(raw, &letters)),
        None => option_letter(raw, &letters),
    };
    found.map(String::from).unwrap_or_default()
}

/// How a reply is scored (`fourd_eval::official` applies each mode on every benchmark).
///
/// * `Strict` (ours, the default): [`extract_choice`], a standalone letter or the text of one
///   option; an empty prediction never scores.
/// * `Reference`: the benchmark's own rule; on DSR-Bench exactly 4DThinker's
///   `evaluation/dsr_eval.py` ([`reference_choice`], [`reference_truth`]), bugs included: the
///   first capital A-D anywhere, so "Dolly In" reads as D and a reply without a letter takes the
///   first capital of its reasoning. The published DSR-Bench figures (DIFT 31.07%, 4DRL 34.18%)
///   were computed this way.
/// * `Judge`: an LLM judge's verdicts, stored with the results by `fourd eval judge` (VLM4D's
///   official scoring); not a rule over the reply.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    #[default]
    Strict,
    Reference,
    Judge,
}

impl Scoring {
    pub const ALL: [Scoring; 3] = [Scoring::Strict, Scoring::Reference, Scoring::Judge];

    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::Strict => "strict",
            Scoring::Reference => "reference",
            Scoring::Judge => "judge",
        }
    }
}

impl std::fmt::Display for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scoring {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Scoring::Strict),
            "reference" => Ok(Scoring::Reference),
            "judge" => Ok(Scoring::Judge),
            _ => Err(format!(
                "unknown scoring {s:?} (expected strict, reference or judge)"
            )),
        }
    }
}

/// `dsr_eval.py`'s `extract_option_letter` (after DSR_Suite's VideoMME
/// `extract_characters_regex`): the stock prefixes removed (literal, case-sensitive, in order),
/// then the first capital A, B, C or D anywhere. Its "more than 10 words and no A-D" rule is left
/// out: it returns "" exactly when the search would.
fn reference_letter(text: &str) -> Option<char> {
    let mut s = text.trim().to_string();
    for p in PREFIXES {
        s = s.replace(p, "");
    }
    s.chars().find(|c| matches!(c, 'A'..='D'))
}

/// `dsr_eval.py`'s cascade (`../shared/reference/eval.md` §7.2): the first `<answer>` span (the
/// whole reply when there is none), then the whole reply, then the reply without latent tokens
/// (which cannot change the result, as the digest notes, and is kept for fidelity).
pub fn reference_choice(raw: &str) -> String {
    let content = answer_span(raw).unwrap_or(raw.trim());
    reference_letter(content)
        .or_else(|| reference_letter(raw))
        .or_else(|| {
            let mut cleaned = raw.to_string();
            for t in ["<|latent_start|>", "<|latent_end|>", "<|latent_pad|>"] {
                cleaned = cleaned.replace(t, " ");
            }
            reference_letter(&cleaned.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .map(String::from)
        .unwrap_or_default()
}

/// `dsr_eval.py`'s ground truth: the answer trimmed and upper-cased, its first character when
/// longer.
pub fn reference_truth(answer: &str) -> String {
    let g = answer.trim().to_uppercase();
    g.chars().next().map(String::from).unwrap_or_default()
}

/// The option lines of a question as [`crate::prompt::question_text`] writes it (question, a
/// blank line, one `X. text` line per option), which is also how the reference's result files
/// store it: the lines after the last blank line that all start with consecutive letters.
pub fn options_in_question(question: &str) -> Vec<String> {
    let Some((_, tail)) = question.rsplit_once("\n\n") else {
        return Vec::new();
    };
    let lines: Vec<&str> = tail.lines().collect();
    let lettered = lines
        .iter()
        .zip(crate::letters::LETTERS.iter())
        .all(|(l, &c)| {
            let t = l.trim_start();
            t.starts_with(c) && t[c.len_utf8()..].starts_with(['.', ')', ':'])
        });
    if lines.is_empty() || lines.len() > crate::letters::LETTERS.len() || !lettered {
        return Vec::new();
    }
    lines.iter().map(|l| l.to_string()).collect()
}

/// A decoded reply up to its first stop token (`<|im_end|>`, `<|endoftext|>`), trimmed: the text
/// that answers are extracted from and that result files store.
pub fn reply_text(decoded: &str) -> String {
    let mut s = decoded;
    for stop in ["<|im_end|>", "<|endoftext|>"] {
        if let Some(i) = s.find(stop) {
            s = &s[..i];
        }
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (model output, options, expected letter). Realistic 4DThinker-style outputs.
    const CASES: &[(&str, usize, &str)] = &[
        ("<think>The camera pans left.</think><answer>A</answer>", 4, "A"),
        ("<think>...</think><answer> B </answer>", 4, "B"),
        ("<think>x</think><answer>C. dolly in</answer>", 4, "C"),
        ("<think>x</think><answer>(D)</answer>", 4, "D"),
        ("<think>x</think><answer>The answer is B</answer>", 4, "B"),
        ("<think>x</think><answer>Answer: C</answer>", 4, "C"),
        ("<think>x</think><answer>Best answer: D</answer>", 4, "D"),
        ("<think>x</think><answer>Best option: A.</answer>", 4, "A"),
        ("<think>x</think><answer>The correct answer is (B) right</answer>", 4, "B"),
        ("<think>x</think><ANSWER>c</ANSWER>", 4, ""),
        ("<think>x</think><ANSWER>C</ANSWER>", 4, "C"),
        ("<think>x</think><answer>\nB\n</answer>", 4, "B"),
        ("<think>x</think><answer>Dolly In</answer>", 4, ""),
        ("<think>x</think><answer>Dolly in (option C)</answer>", 4, "C"),
        ("<think>x</think><answer>A</answer><answer>B</answer>", 4, "A"),
        ("<think>Camera moves. Answer is B.</think><answer>Dolly In</answer>", 4, "B"),
        ("<think>x</think><answer>C, because the car turns</answer>", 4, "C"),
        ("<think>x</think><answer>B: right</answer>", 4, "B"),
        ("<think>x</think><answer>[A]</answer>", 4, "A"),
        ("<think>x</think><answer>Option: D</answer>", 4, "D"),
        ("<think>x</think><answer>E</answer>", 4, ""),
        ("<think>x</think><answer>E</answer>", 5, "E"),
        ("<think>x</think><answer>B) the ball</answer>", 4, "B"),
        ("<think>x</think><answer>**C**</answer>", 4, "C"),
        ("<think>x</think><answer>'A'</answer>", 4, "A"),
        ("<think>x</think><answer>A1</answer>", 4, ""),
        ("B", 4, "B"),
        ("The answer is C.", 4, "C"),
        ("C", 4, "C"),
        ("Answer: A", 4, "A"),
        ("I think it is D", 4, "D"),
        ("Dolly In", 4, ""),
        ("Counter-clockwise", 4, ""),
        ("", 4, ""),
        ("No idea.", 4, ""),
        ("<think>The person walks. <|latent_start|><|latent_pad|><|latent_pad|><|latent_end|> So B.</think><answer>B</answer>", 4, "B"),
        ("<think><|latent_start|><|latent_pad|><|latent_end|></think><answer>A</answer>", 4, "A"),
        ("<think><|latent_start|><|latent_pad|><|latent_end|>", 4, ""),
        ("<think>x</think><answer>a</answer>", 4, ""),
        ("<think>x</think><answer>B.</answer><|im_end|>", 4, "B"),
        ("<think>x</think><answer>The best option is C</answer>", 4, "C"),
        ("<think>x</think><answer>the car (D) moves</answer>", 4, "D"),
        ("<answer>ABCD</answer>", 4, ""),
        ("<answer>A or B</answer>", 4, "A"),
        ("<answer>Backward</answer> B", 4, "B"),
        ("<answer>C</answer", 4, "C"),
    ];

    #[test]
    fn table_of_outputs() {
        assert!(CASES.len() >= 40);
        for (raw, n, want) in CASES {
            // Options whose texts none of the outputs name: only letters decide.
            let options: Vec<String> = letters_for(*n)
                .iter()
                .map(|l| format!("{l}. choice number {l}"))
                .collect();
            assert_eq!(extract_choice(raw, &options), *want, "output: {raw:?}");
        }
    }

    /// The reference mode against a Python port of `dsr_eval.py`'s cascade
    /// (`tools/reference/make_dsr_scoring_fixture.py`): every case, prediction, truth and hit.
    #[test]
    fn reference_mode_matches_the_python_port() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dsr_scoring/reference_cases.json"
        );
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for c in cases {
            let raw = c["raw"].as_str().unwrap();
            let (pred, gt) = (
                reference_choice(raw),
                reference_truth(c["answer"].as_str().unwrap()),
            );
            assert_eq!(pred, c["pred"].as_str().unwrap(), "{}", c["what"]);
            assert_eq!(gt, c["gt"].as_str().unwrap(), "{}", c["what"]);
            // dsr_eval.py's `pred == gt`: an empty prediction scores on an empty truth.
            assert_eq!(pred == gt, c["hit"].as_u64().unwrap() == 1, "{}", c["what"]);
        }
        // The two modes part on an option named by its text.
        let options: Vec<String> = ["A. Pan Left", "B. Truck Right", "C. Stay", "D. Dolly In"]
            .map(String::from)
            .to_vec();
        assert_eq!(reference_choice("<answer>Truck Right</answer>"), "");
        assert_eq!(
            extract_choice("<answer>Truck Right</answer>", &options),
            "B"
        );
        assert_eq!(reference_choice("<answer>Dolly In</answer>"), "D");
    }

    #[test]
    fn options_are_read_back_from_the_question() {
        let options: Vec<String> = ["A. Pan Left", "B. Stay"].map(String::from).to_vec();
        let q =
            crate::prompt::question_text("How does the camera move?\n\nFrom 0s to 2s.", &options);
        assert_eq!(options_in_question(&q), options);
        assert!(options_in_question("No options here.").is_empty());
        assert!(options_in_question("Q?\n\nB. first\nA. second").is_empty());
        assert_eq!("reference".parse::<Scoring>().unwrap(), Scoring::Reference);
        assert!("loose".parse::<Scoring>().is_err());
    }

    /// Answers that name an option's text, against the demo's camera options.
    #[test]
    fn answers_naming_an_option() {
        let options: Vec<String> = ["A. Tilt Up", "B. Dolly In", "C. Pan Left", "D. Pan Right"]
            .map(String::from)
            .to_vec();
        let cases: &[(&str, &str)] = &[
            ("<think>It pans. A camera move shows as the background shifting.</think>\n<answer>\nPan Left\n</answer>", "C"),
            ("<think>x</think><answer>dolly in.</answer>", "B"),
            ("<think>x</think><answer>  Tilt   up </answer>", "A"),
            ("<think>x</think><answer>The camera motion is Pan Right</answer>", "D"),
            ("<think>x</think><answer>D. Pan Left</answer>", "D"),
            // Two options named: no text match; the fallback finds the reasoning's first letter.
            ("<think>A guess.</think><answer>Pan Left or Pan Right</answer>", "A"),
            ("<think>x</think><answer>Pan Left or Pan Right</answer>", ""),
            // A motion that is not an option, or part of a word.
            ("<think>x</think><answer>Tilt Down</answer>", ""),
            ("<think>x</think><answer>Pan Lefty</answer>", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(extract_choice(raw, &options), *want, "output: {raw:?}");
        }
        // Options without letter prefixes, and other prefix shapes.
        let bare: Vec<String> = ["Left", "Right"].map(String::from).to_vec();
        assert_eq!(extract_choice("<answer>right</answer>", &bare), "B");
        assert_eq!(option_text("(C) Stay", 'C'), "Stay");
        assert_eq!(option_text("B) Stay", 'B'), "Stay");
        assert_eq!(option_text("A: Stay", 'A'), "Stay");
        assert_eq!(option_text("Apple", 'A'), "Apple");
        // The longer option wins only when it is the whole answer.
        let nested: Vec<String> = ["A. Left", "B. Pan Left"].map(String::from).to_vec();
        assert_eq!(extract_choice("<answer>Pan Left</answer>", &nested), "B");
        assert_eq!(
            extract_choice("<answer>it is Pan Left</answer>", &nested),
            ""
        );
    }

    #[test]
    fn letters() {
        assert_eq!(letters_for(0), vec!['A', 'B', 'C', 'D']);
        assert_eq!(letters_for(2), vec!['A', 'B']);
    }
}
