//! How each benchmark scores a reply: its own published rule (`reference` scoring), ported with
//! its quirks, beside ours (`strict`). Sources and the departures are in docs/eval.md
//! ("Benchmark formats") and docs/benchmark-formats.md.
//!
//! | benchmark | reference rule | source |
//! | --- | --- | --- |
//! | DSR-Bench | the first capital A-D anywhere ([`reference_choice`]) | 4DThinker `dsr_eval.py` |
//! | VLM4D | as DSR-Bench (its own judge is o4-mini, not reproducible offline) | VLM4D `acc_evaluation.py` |
//! | VSI-Bench | the first space-separated token; MC: equal ignoring case; numbers: [`mean_relative_accuracy`] | thinking-in-space `vsibench/utils.py` |
//! | STI-Bench | six answer patterns, else the reply; the *last* character must be the letter | STI-Bench `opensource_test.py` |
//! | Dyn-Bench | the first whitespace token, punctuation stripped, upper-cased | Thinking-in-Dynamics `cal_metrics.py` |
//!
//! The benchmarks other than DSR-Bench were made for models that answer directly. A 4DThinker
//! reply reasons first and puts its final answer in `<answer>...</answer>`, so their rules read
//! that span (the whole reply when there is none); `dsr_eval.py` handles the span itself.
//!
//! `strict` is the same for every benchmark: an option by standalone letter or by its text
//! ([`extract_choice`]), or a number from the answer span, scored by the benchmark's metric.

use std::sync::OnceLock;

use fourd_records::answer::{
    answer_span, extract_choice, reference_choice, reference_truth, Scoring,
};
use fourd_records::AnswerKind;

/// Which benchmark a sample belongs to: its scoring rule and its results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Benchmark {
    /// DSR-Bench, as a parquet or VLMEvalKit's TSV, and any table read through a column mapping.
    #[default]
    #[serde(rename = "dsr")]
    Dsr,
    #[serde(rename = "vlm4d")]
    Vlm4d,
    #[serde(rename = "vsibench")]
    VsiBench,
    #[serde(rename = "stibench")]
    StiBench,
    #[serde(rename = "dynbench")]
    DynBench,
}

impl Benchmark {
    pub fn is_dsr(&self) -> bool {
        *self == Benchmark::Dsr
    }

    /// Where the reference rule of this benchmark comes from, for people reading a table.
    pub fn reference_rule(self) -> &'static str {
        match self {
            Benchmark::Dsr => {
                "4DThinker's dsr_eval.py: the first capital A-D anywhere; the published DSR-Bench figures use it"
            }
            Benchmark::Vlm4d => {
                "4DThinker's dsr_eval.py extraction (VLM4D's own figures come from an o4-mini judge, not ported)"
            }
            Benchmark::VsiBench => {
                "thinking-in-space vsibench/utils.py on the answer span: first space-separated token; mean relative accuracy for numbers"
            }
            Benchmark::StiBench => {
                "STI-Bench opensource_test.py on the answer span: six answer patterns, then the last character"
            }
            Benchmark::DynBench => {
                "Thinking-in-Dynamics cal_metrics.py on the answer span: the first token, punctuation stripped"
            }
        }
    }
}

/// One reply scored: the truth and the prediction as the rule reads them, and the score in
/// [0, 1] (1 or 0 for a choice; the mean relative accuracy for a number).
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub truth: String,
    pub pred: String,
    pub score: f64,
}

/// Scores `raw` against `truth` (a letter, or a number's text) under `scoring`, by the rule of
/// `benchmark`. `options` are the question's option lines in letter order.
pub fn score(
    benchmark: Benchmark,
    scoring: Scoring,
    kind: AnswerKind,
    raw: &str,
    truth: &str,
    options: &[String],
) -> Scored {
    match scoring {
        Scoring::Strict => strict(kind, raw, truth, options),
        Scoring::Reference => reference(benchmark, kind, raw, truth),
        // A judge's verdict is stored with the sample, not derived from the reply
        // (`report::score_sample` applies it); without one nothing scores.
        Scoring::Judge => Scored {
            truth: truth.trim().to_string(),
            pred: String::new(),
            score: 0.0,
        },
    }
}

fn strict(kind: AnswerKind, raw: &str, truth: &str, options: &[String]) -> Scored {
    let truth = truth.trim().to_string();
    match kind {
        AnswerKind::Choice => {
            let pred = extract_choice(raw, options);
            let score = f64::from(u8::from(!pred.is_empty() && pred == truth));
            Scored { truth, pred, score }
        }
        AnswerKind::Number => {
            let pred = strict_number(raw).unwrap_or_default();
            let score = match (python_float(&pred), python_float(&truth)) {
                (Some(p), Some(t)) => mean_relative_accuracy(p, t),
                _ => 0.0,
            };
            Scored { truth, pred, score }
        }
    }
}

/// The benchmark's own rule on a 4DThinker reply: DSR-Bench's and VLM4D's on the whole reply
/// (`dsr_eval.py` finds the answer span itself), the others' on the answer span.
fn reference(benchmark: Benchmark, kind: AnswerKind, raw: &str, truth: &str) -> Scored {
    let text = match benchmark {
        Benchmark::Dsr | Benchmark::Vlm4d => raw,
        _ => answer_span(raw).unwrap_or(raw),
    };
    official_rule(benchmark, kind, text, truth)
}

/// The benchmark's own rule applied to `text` exactly as its code receives a prediction.
pub fn official_rule(benchmark: Benchmark, kind: AnswerKind, text: &str, truth: &str) -> Scored {
    match benchmark {
        Benchmark::Dsr | Benchmark::Vlm4d => {
            let (pred, truth) = (reference_choice(text), reference_truth(truth));
            // dsr_eval.py: `pred == gt`, so an empty prediction scores on an empty truth.
            let score = f64::from(u8::from(pred == truth));
            Scored { truth, pred, score }
        }
        Benchmark::VsiBench => vsibench(kind, text, truth),
        Benchmark::StiBench => stibench(text, truth),
        Benchmark::DynBench => dynbench(text, truth),
    }
}

/// thinking-in-space `vsibench_process_results`: `fuzzy_matching` keeps the first
/// space-separated token (a line break does not split), its trailing dots removed, then
/// surrounding whitespace; a choice is right when it equals the truth ignoring case, a number
/// scores its [`mean_relative_accuracy`], and a token that is not a number scores 0 (the
/// `TypeError` the code catches).
fn vsibench(kind: AnswerKind, reply: &str, truth: &str) -> Scored {
    let first = reply.split(' ').next().unwrap_or("");
    let pred = first
        .trim_end_matches('.')
        .trim_matches(python_whitespace)
        .to_string();
    let score = match kind {
        AnswerKind::Choice => f64::from(u8::from(pred.to_lowercase() == truth.to_lowercase())),
        AnswerKind::Number => match (python_float(&pred), python_float(truth)) {
            (Some(p), Some(t)) => mean_relative_accuracy(p, t),
            _ => 0.0,
        },
    };
    Scored {
        truth: truth.to_string(),
        pred,
        score,
    }
}

/// STI-Bench `opensource_test.py`: the first of its answer patterns that matches gives the
/// letter, else the reply stripped is kept whole; the answer is right when that text's *last*
/// character is one of A-E and equals the truth.
fn stibench(reply: &str, truth: &str) -> Scored {
    let pred =
        sti_extract(reply).unwrap_or_else(|| reply.trim_matches(python_whitespace).to_string());
    let last = pred.chars().last();
    let right = last.is_some_and(|c| "ABCDE".contains(c) && truth == c.to_string());
    Scored {
        truth: truth.to_string(),
        pred,
        score: f64::from(u8::from(right)),
    }
}

/// STI-Bench's `ANSWER_PATTERNS`, tried in order (case-insensitive, `^`/`$` at line ends); the
/// first that matches gives its letter, upper-cased.
fn sti_extract(reply: &str) -> Option<String> {
    static PATTERNS: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            r"\(([A-E])\)",
            r#"Ans\s*=\s*['"]?([A-E])['"]?"#,
            r"Answer\s*[:=]\s*([A-E])",
            r"Option\s+([A-E])",
            r"\b([A-E])\s*(?:is|was)\s*correct",
            r"\b([A-E])[\.\)]\s*$",
        ]
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p)
                .case_insensitive(true)
                .multi_line(true)
                .build()
                .expect("a valid pattern")
        })
        .collect()
    });
    patterns
        .iter()
        .find_map(|p| p.captures(reply))
        .map(|c| c[1].to_uppercase())
}

/// Thinking-in-Dynamics `cal_metrics.py`: the first whitespace-separated token, stripped of
/// `.,;:!?` and upper-cased, equals the truth stripped and upper-cased.
fn dynbench(reply: &str, truth: &str) -> Scored {
    let pred = reply
        .split(python_whitespace)
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .trim_end_matches(|c| ".,;:!?".contains(c))
        .to_uppercase();
    let truth = truth.trim_matches(python_whitespace).to_uppercase();
    let score = f64::from(u8::from(pred == truth));
    Scored { truth, pred, score }
}

/// Our number in a reply: the first number in its answer span, else the last number in the
/// whole reply (its conclusion), as text; `None` when there is none.
pub fn strict_number(raw: &str) -> Option<String> {
    static NUMBER: OnceLock<regex::Regex> = OnceLock::new();
    let number = NUMBER.get_or_init(|| {
        regex::Regex::new(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?").expect("valid")
    });
    match answer_span(raw) {
        Some(span) => number.find(span).map(|m| m.as_str().to_string()),
        None => number.find_iter(raw).last().map(|m| m.as_str().to_string()),
    }
}

/// Whitespace as Python's `str.split()` and `str.strip()` see it: Unicode's, plus the
/// information separators U+001C-U+001F.
pub fn python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The first code point of each Unicode block of decimal digits (category Nd) that Python's
/// `float()` reads as 0-9, besides ASCII: Arabic-Indic, extended Arabic-Indic, NKo, Devanagari,
/// Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada, Malayalam, Sinhala, Thai, Lao,
/// Tibetan, Myanmar, Khmer, Mongolian and full-width forms.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x17E0, 0x1810, 0xFF10,
];

/// `c` as an ASCII digit when it is a decimal digit of another script.
fn ascii_digit(c: char) -> Option<char> {
    let n = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&n))
        .and_then(|z| char::from_digit(n - z, 10))
}

/// `float(s)` as Python reads it: surrounding whitespace, a sign, digits (of any script) with
/// single underscores between them, `inf`/`infinity`/`nan` in any case; `None` where Python
/// raises.
pub fn python_float(s: &str) -> Option<f64> {
    let chars: Vec<char> = s
        .trim_matches(python_whitespace)
        .chars()
        .map(|c| ascii_digit(c).unwrap_or(c))
        .collect();
    let mut plain = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let digit = |j: Option<&char>| j.is_some_and(char::is_ascii_digit);
            if !(i > 0 && digit(chars.get(i - 1)) && digit(chars.get(i + 1))) {
                return None;
            }
            continue;
        }
        plain.push(c);
    }
    let lower = plain.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() - unsigned.len() > 1 {
        return None;
    }
    match unsigned {
        "inf" | "infinity" | "nan" => lower.parse().ok(),
        u if u.chars().all(|c| c.is_ascii_digit() || ".e+-".contains(c)) => lower.parse().ok(),
        _ => None,
    }
}

/// VSI-Bench's confidence levels, `numpy.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))`
/// (10 of them; numpy: `i × step + start`, the last exactly `stop`), as the thresholds
/// `1 − C` that a relative error must not exceed.
pub fn mra_thresholds() -> [f64; 10] {
    let (start, stop) = (0.5_f64, 0.95_f64);
    let num = ((stop - start) / 0.05 + 2.0) as usize;
    debug_assert_eq!(num, 10);
    let step = (stop - start) / (num - 1) as f64;
    let mut out = [0.0; 10];
    for (i, t) in out.iter_mut().enumerate() {
        let c = if i == num - 1 {
            stop
        } else {
            i as f64 * step + start
        };
        *t = 1.0 - c;
    }
    out
}

/// VSI-Bench's Mean Relative Accuracy: the share of [`mra_thresholds`] that
/// `|pred − truth| / truth` is at most (`<=`, as the code has it; the paper writes `<`). A truth
/// of 0 makes the official code raise; here the relative error is then infinite or NaN and
/// scores 0.
pub fn mean_relative_accuracy(pred: f64, truth: f64) -> f64 {
    let relative = (pred - truth).abs() / truth;
    let thresholds = mra_thresholds();
    thresholds.iter().filter(|&&t| relative <= t).count() as f64 / thresholds.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_accepts_what_python_does() {
        for (s, v) in [
            ("3", 3.0),
            (" 1.9 ", 1.9),
            ("3.", 3.0),
            (".5", 0.5),
            ("1e1", 10.0),
            ("-2", -2.0),
            ("1_000", 1000.0),
        ] {
            assert_eq!(python_float(s), Some(v), "{s}");
        }
        assert_eq!(python_float("INF"), Some(f64::INFINITY));
        assert!(python_float("nan").unwrap().is_nan());
        assert_eq!(python_float("\u{ff13}"), Some(3.0));
        for s in ["", "1.9m", "1__0", "_1", "--1", "one", "0x10", "1,5"] {
            assert_eq!(python_float(s), None, "{s}");
        }
    }

    #[test]
    fn our_number_is_the_answer_spans_first_else_the_replys_last() {
        assert_eq!(
            strict_number("<think>2 or 3</think><answer>about 2.5 m</answer>").as_deref(),
            Some("2.5")
        );
        assert_eq!(strict_number("It is 4, no, 5").as_deref(), Some("5"));
        assert_eq!(strict_number("no idea"), None);
    }

    #[test]
    fn direct_answer_rules_read_a_4dthinker_replys_answer_span() {
        let reply = "<think>It turns. Option C looks wrong.</think><answer>B</answer>";
        for b in [
            Benchmark::StiBench,
            Benchmark::DynBench,
            Benchmark::VsiBench,
        ] {
            let s = score(b, Scoring::Reference, AnswerKind::Choice, reply, "B", &[]);
            assert_eq!((s.pred.as_str(), s.score), ("B", 1.0), "{b:?}");
            // On the whole reply, the official rules read something else.
            assert_eq!(
                official_rule(b, AnswerKind::Choice, reply, "B").score,
                0.0,
                "{b:?}"
            );
        }
        let n = score(
            Benchmark::VsiBench,
            Scoring::Reference,
            AnswerKind::Number,
            "<answer>2.1</answer>",
            "2.0",
            &[],
        );
        assert_eq!(n.score, 1.0);
    }

    #[test]
    fn dynbench_reads_the_first_token() {
        assert_eq!(dynbench("b. because", "B").score, 1.0);
        assert_eq!(dynbench("", "B").score, 0.0);
    }
}
