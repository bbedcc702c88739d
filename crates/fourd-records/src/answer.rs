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
