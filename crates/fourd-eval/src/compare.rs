//! Comparing accuracies: against chance, and two models on the same questions.

/// How many binomial standard errors of a chance-level guesser over `n` questions `accuracy`
/// lies above `chance`.
pub fn standard_errors_above_chance(accuracy: f64, chance: f64, n: usize) -> f64 {
    (accuracy - chance) / (chance * (1.0 - chance) / n.max(1) as f64).sqrt()
}

/// A paired comparison of two models on the same questions: how many the second got right that
/// the first did not (`gained`) and the reverse (`lost`), and the exact two-sided McNemar
/// p-value (binomial, p = 1/2, over the questions on which they disagree).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Paired {
    pub gained: usize,
    pub lost: usize,
    #[serde(rename = "mcnemar_p")]
    pub p_value: f64,
}

/// `before[i]` / `after[i]`: whether each model answered question `i` right.
pub fn paired(before: &[bool], after: &[bool]) -> Paired {
    let gained = before
        .iter()
        .zip(after)
        .filter(|(b, a)| !**b && **a)
        .count();
    let lost = before
        .iter()
        .zip(after)
        .filter(|(b, a)| **b && !**a)
        .count();
    let n = gained + lost;
    // P(X <= min) for X ~ Binomial(n, 1/2), summed in log space so large n cannot overflow.
    let ln_choose =
        |n: usize, k: usize| -> f64 { (1..=k).map(|i| ((n + 1 - i) as f64 / i as f64).ln()).sum() };
    let tail: f64 = (0..=gained.min(lost))
        .map(|k| (ln_choose(n, k) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    Paired {
        gained,
        lost,
        p_value: if n == 0 { 1.0 } else { (2.0 * tail).min(1.0) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_comparison_counts_disagreements_and_gives_the_exact_p_value() {
        let t = true;
        let f = false;
        // Four gained, none lost: p = 2 * (1/2)^4.
        let p = paired(&[f, f, f, f, t], &[t, t, t, t, t]);
        assert_eq!((p.gained, p.lost), (4, 0));
        assert!((p.p_value - 0.125).abs() < 1e-12, "{p:?}");
        // Three gained, one lost: p = 2 * (1 + 4) / 16.
        let p = paired(&[f, f, f, t], &[t, t, t, f]);
        assert!((p.p_value - 0.625).abs() < 1e-12, "{p:?}");
        // No disagreement: nothing to test.
        assert_eq!(paired(&[t, f], &[t, f]).p_value, 1.0);
        // Symmetric, never above 1, and finite for many questions.
        let before: Vec<bool> = (0..2000).map(|i| i % 3 == 0).collect();
        let after: Vec<bool> = (0..2000).map(|i| i % 2 == 0).collect();
        let (a, b) = (paired(&before, &after), paired(&after, &before));
        assert_eq!((a.gained, a.lost), (b.lost, b.gained));
        assert!((a.p_value - b.p_value).abs() < 1e-12 && a.p_value <= 1.0 && a.p_value.is_finite());
    }

    #[test]
    fn chance_margin_in_standard_errors() {
        // 200 questions at chance 1/4: one standard error is sqrt(3/16/200).
        let se = (0.1875f64 / 200.0).sqrt();
        assert!((standard_errors_above_chance(0.25 + 2.0 * se, 0.25, 200) - 2.0).abs() < 1e-9);
        assert_eq!(standard_errors_above_chance(0.25, 0.25, 200), 0.0);
    }
}
