//! Outcome rewards of 4DRL. A [`Reward`] scores one completion's text (latent tokens kept, cut
//! at the first end of turn) against the record's answer key.

use fourd_records::answer::{answer_span, option_letter, option_named};
use fourd_records::letters::letters_for;

/// What a completion is graded against.
#[derive(Debug, Clone, Copy)]
pub struct AnswerKey<'a> {
    /// The correct letter.
    pub correct: &'a str,
    /// The question's options in letter order (`A. text` or bare text).
    pub options: &'a [String],
}

pub trait Reward: Send + Sync {
    /// Name used in logs (`rewards/<name>`).
    fn name(&self) -> &str;
    fn weight(&self) -> f64;
    fn score(&self, completion: &str, key: AnswerKey<'_>) -> f64;
}

/// 1 when the option in the first `<answer>...</answer>` block is the correct one: its letter,
/// or, when it has no letter, the option whose text it names (as evaluation reads it). Unlike the
/// reference, a completion without an answer block scores 0 (the reference grades the first
/// capital A-F anywhere, so "Camera ..." in the reasoning counted as C), and a letter inside a
/// word never counts.
pub struct AccuracyReward {
    pub weight: f64,
}

impl Reward for AccuracyReward {
    fn name(&self) -> &str {
        "accuracy"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn score(&self, completion: &str, key: AnswerKey<'_>) -> f64 {
        let gt = key
            .correct
            .trim()
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase());
        let letters = letters_for(key.options.len());
        let pred = answer_span(completion).and_then(|s| {
            option_letter(s, &letters).or_else(|| option_named(s, key.options, &letters))
        });
        f64::from(u8::from(gt.is_some() && pred == gt))
    }
}

/// 1 when the text has `<think>...</think>`, optional whitespace, then `<answer>...</answer>`
/// (the reference's `re.search(r"<think>.*?</think>\s*<answer>.*?</answer>", DOTALL)`).
pub struct FormatReward {
    pub weight: f64,
}

impl Reward for FormatReward {
    fn name(&self) -> &str {
        "format"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn score(&self, completion: &str, _key: AnswerKey<'_>) -> f64 {
        f64::from(u8::from(has_think_then_answer(completion)))
    }
}

/// The search the regex does, including its backtracking over later `</think>` occurrences.
pub fn has_think_then_answer(s: &str) -> bool {
    let Some(open) = s.find("<think>") else {
        return false;
    };
    let mut from = open + "<think>".len();
    while let Some(rel) = s[from..].find("</think>") {
        let after = from + rel + "</think>".len();
        let rest = s[after..].trim_start();
        if let Some(body) = rest.strip_prefix("<answer>") {
            if body.contains("</answer>") {
                return true;
            }
        }
        from = after;
    }
    false
}

impl std::fmt::Debug for dyn Reward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (weight {})", self.name(), self.weight())
    }
}

/// The reference's rewards: accuracy (1.0) and format (0.2).
pub fn default_rewards() -> Vec<std::sync::Arc<dyn Reward>> {
    vec![
        std::sync::Arc::new(AccuracyReward { weight: 1.0 }),
        std::sync::Arc::new(FormatReward { weight: 0.2 }),
    ]
}

/// Group-normalised advantages `(r - mean) / (std + 1e-4)` over consecutive groups of `g`
/// (unbiased std, as `torch.std`). Groups whose rewards are all equal get `None`: they carry no
/// learning signal and are left out of the update (and counted), instead of producing 0/0.
pub fn group_advantages(rewards: &[f64], g: usize) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(g.max(1)) {
        let n = group.len() as f64;
        let mean = group.iter().sum::<f64>() / n;
        let all_equal = group.iter().all(|&r| (r - group[0]).abs() < 1e-12);
        if all_equal || group.len() < 2 {
            out.extend(std::iter::repeat_n(None, group.len()));
            continue;
        }
        let var = group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let std = var.sqrt();
        out.extend(group.iter().map(|r| Some((r - mean) / (std + 1e-4))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATENT: &str =
        "<|latent_start|><|latent_pad|><|latent_pad|><|latent_pad|><|latent_pad|><|latent_end|>";

    fn options() -> Vec<String> {
        ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Stay"]
            .map(String::from)
            .to_vec()
    }

    /// The accuracy reward of `completion` when `correct` is the key, over [`options`].
    fn accuracy(completion: &str, correct: &str) -> f64 {
        let options = options();
        AccuracyReward { weight: 1.0 }.score(
            completion,
            AnswerKey {
                correct,
                options: &options,
            },
        )
    }

    #[test]
    fn accuracy_reads_the_first_answer_block_only() {
        let good = format!("<think>The camera {LATENT} pans.</think><answer>B. Pan Right</answer>");
        assert_eq!(accuracy(&good, "B"), 1.0);
        assert_eq!(accuracy(&good, "b"), 1.0);
        assert_eq!(accuracy(&good, "C"), 0.0);
        // Letters in the reasoning never count when there is no answer block.
        assert_eq!(
            accuracy("<think>Camera moves. C is wrong, B is right</think>", "B"),
            0.0
        );
        // Only the first block counts.
        assert_eq!(accuracy("<answer>A</answer><answer>B</answer>", "B"), 0.0);
        // A letter inside a word is not an answer ("Dolly In" is not D).
        assert_eq!(accuracy("<answer>Dolly In</answer>", "D"), 0.0);
        assert_eq!(accuracy("<answer>The answer is (D)</answer>", "D"), 1.0);
        // Empty ground truth never matches.
        assert_eq!(accuracy("<answer>A</answer>", ""), 0.0);
    }

    #[test]
    fn accuracy_reads_an_answer_that_names_the_option() {
        // The demo's label answers: the reasoning's capitals ("A camera move ...") never count.
        let named = format!("<think>A camera move shows as the background shifting {LATENT}. So the camera motion is Pan Right.\n</think>\n<answer>\nPan Right\n</answer>");
        assert_eq!(accuracy(&named, "B"), 1.0);
        assert_eq!(accuracy(&named, "A"), 0.0);
        // A letter in the span wins over the text it names, as evaluation reads it.
        assert_eq!(accuracy("<answer>A. Pan Right</answer>", "B"), 0.0);
        // Not an option, or two options: no answer.
        assert_eq!(accuracy("<answer>Dolly In</answer>", "B"), 0.0);
        assert_eq!(accuracy("<answer>Pan Left or Pan Right</answer>", "B"), 0.0);
    }

    #[test]
    fn format_needs_think_then_answer() {
        let f = FormatReward { weight: 0.2 };
        let options = options();
        let key = AnswerKey {
            correct: "",
            options: &options,
        };
        assert_eq!(
            f.score(
                &format!("<think>a {LATENT} b</think>\n <answer>C</answer>"),
                key
            ),
            1.0
        );
        assert_eq!(f.score("<think>a</think>text<answer>C</answer>", key), 0.0);
        assert_eq!(f.score("<answer>C</answer><think>a</think>", key), 0.0);
        assert_eq!(f.score("<think>a</think><answer>C", key), 0.0);
        // Backtracking: the second </think> is followed by the answer.
        assert_eq!(
            f.score("<think>x</think> y </think><answer>A</answer>", key),
            1.0
        );
        // The RL prompt's stray `</think>` opener does not satisfy the format.
        assert_eq!(f.score("</think> x </think><answer>A</answer>", key), 0.0);
    }

    #[test]
    fn advantages_are_group_normalised_and_flat_groups_drop_out() {
        let a = group_advantages(&[1.0, 0.0, 1.2, 0.2, 0.0, 0.0, 0.0, 0.0], 4);
        assert!(a[4..].iter().all(Option::is_none));
        let first: Vec<f64> = a[..4].iter().map(|x| x.unwrap()).collect();
        let mean = 0.6;
        let std = ((0.16 + 0.36 + 0.36 + 0.16) / 3.0f64).sqrt();
        assert!((first[0] - (1.0 - mean) / (std + 1e-4)).abs() < 1e-12);
        assert!(first.iter().sum::<f64>().abs() < 1e-9);
        assert!(a.iter().all(|x| x.is_none_or(f64::is_finite)));
    }
}
