//! Stage 3, questions: kinds, wording templates, answer balancing and option sets that carry no
//! option-only signal.
//!
//! # Why the options cannot leak the answer
//! The reference builds distractors *from the answer* (its opposite, its "related" directions,
//! its components), so the answer is the odd one out or the shared part of the four options
//! (`preprocess.md` §15 item 9). Here the option set of a question is drawn so that, given the
//! four options, each of them is equally likely to be the answer:
//!
//! 1. **Balance** (per question kind): answers are kept so that no label is more than 1/4 of the
//!    kind's questions ([`balance`]; the excess of over-represented labels is dropped, chosen by
//!    a seeded hash of the question id). Call the resulting answer distribution `π`.
//! 2. **Options by conditional systematic sampling** ([`option_set`]): labels of the kind are put
//!    in a random order and laid on a line as intervals of length `4·π(label)` (total 4, each at
//!    most 1); a point `u ∈ [0, 1)` picks the labels under `u, u+1, u+2, u+3`: four distinct
//!    labels, label `l` included with probability `4·π(l)`. Conditioning on the answer being
//!    included (drawing `u` inside the answer's interval) makes
//!    `P(answer = l | options) = π(l) · P(options | l) / P(options) = 1/4` for every option `l`.
//!
//! So any rule that sees only the options (shared component, odd one out, most frequent label,
//! longest option, ...) scores 25% in expectation; `baselines` measures it. Distractors are
//! labels that are real answers elsewhere in the data: `Stay` is a distractor as often as it is
//! an answer, compound labels are correct as often as they appear, and the answer's opposite is
//! an option only by chance.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Question kinds. `rl_type` is the 4DRL / DSR-Bench `Type` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// Camera motion over one segment (12 labels, Stay, combinations).
    Camera,
    /// An object's direction (11 labels), object named.
    Direction,
    /// An object's direction, object given by its first-frame box.
    BoxDirection,
    /// Change of an object's distance to the camera (3 net + 2 compound labels).
    Distance,
    /// An object's speed pattern (6 labels).
    Speed,
}

impl QuestionKind {
    pub const ALL: [QuestionKind; 5] = [
        Self::Camera,
        Self::Direction,
        Self::BoxDirection,
        Self::Distance,
        Self::Speed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Direction => "direction",
            Self::BoxDirection => "box_direction",
            Self::Distance => "distance",
            Self::Speed => "speed",
        }
    }
    /// DSR-Bench keys, as `fourd synth benchmark` files them (camera motion under `rel_dir`).
    pub fn rl_type(self) -> &'static str {
        match self {
            Self::Camera => "rel_dir",
            Self::Direction | Self::BoxDirection => "abs_dir",
            Self::Distance => "abs_dis",
            Self::Speed => "abs_spd",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::str::FromStr for QuestionKind {
    type Err = crate::error::DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.trim()).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            crate::error::DataError::Config(format!(
                "unknown question kind {s:?} (expected one of {})",
                all.join(", ")
            ))
        })
    }
}

/// Question wording templates; `{obj}`, `{a}`, `{b}` and `{box}` are filled in. `{a}` and `{b}`
/// are times with their unit ("2.4s"), see [`crate::cot::Timeline`].
pub fn templates(kind: QuestionKind) -> &'static [&'static str] {
    match kind {
        QuestionKind::Camera => &[
            "How does the camera move from {a} to {b}?",
            "Which camera movement happens between {a} and {b}?",
            "From {a} to {b}, what is the motion of the camera?",
            "Between {a} and {b}, how is the camera moving relative to the scene?",
        ],
        QuestionKind::Direction => &[
            "As seen from the camera, in which direction does the {obj} move between {a} and {b}?",
            "From the camera's viewpoint, how does the {obj} move from {a} to {b}?",
            "Between {a} and {b}, which way is the {obj} moving in the camera's view?",
        ],
        QuestionKind::BoxDirection => &[
            "At {a} an object lies inside the box {box} (pixel coordinates of the frames shown). As seen from the camera, in which direction does it move by {b}?",
            "Consider the object in the box {box} at {a} (pixel coordinates of the frames shown). From the camera's viewpoint, where does it move between {a} and {b}?",
        ],
        QuestionKind::Distance => &[
            "How does the distance between the {obj} and the camera change from {a} to {b}?",
            "Between {a} and {b}, does the {obj} get closer to the camera, farther from it, or neither?",
        ],
        QuestionKind::Speed => &[
            "How does the speed of the {obj} change between {a} and {b}?",
            "From {a} to {b}, what best describes how fast the {obj} moves?",
        ],
    }
}

/// A question before balancing and lettering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `<group>/<clip>#<kind>-<detail>`: unique in a run.
    pub id: String,
    pub clip_key: String,
    pub kind: QuestionKind,
    /// The question without options.
    pub question: String,
    /// The correct label.
    pub answer: String,
    /// Inside of `<think>...</think>`, with one `<output_image>` per `image_output` entry.
    pub think: String,
    /// All frames of the clip (paths relative to the output folder).
    pub image_input: Vec<String>,
    /// Overlays, in time order (relative paths).
    pub image_output: Vec<String>,
    /// Set when an API rewrite was tried: `accepted`, or why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
}

/// Per kind: the answer labels' counts.
pub type Prior = BTreeMap<QuestionKind, BTreeMap<String, usize>>;

pub fn prior_of<'a>(cands: impl IntoIterator<Item = &'a Candidate>) -> Prior {
    let mut p: Prior = BTreeMap::new();
    for c in cands {
        *p.entry(c.kind)
            .or_default()
            .entry(c.answer.clone())
            .or_default() += 1;
    }
    p
}

/// The largest per-label count `T` with `4·T <= Σ min(count, T)`: keeping at most `T`
/// questions per label makes every label at most 1/4 of the kind. `None` when fewer than four
/// labels occur (no exchangeable four-option set exists then).
pub fn balance_cap(counts: &BTreeMap<String, usize>) -> Option<usize> {
    if counts.values().filter(|&&c| c > 0).count() < 4 {
        return None;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    (1..=max)
        .rev()
        .find(|&t| 4 * t <= counts.values().map(|&c| c.min(t)).sum::<usize>())
}

/// The result of [`balance`].
#[derive(Debug, Clone, PartialEq)]
pub struct Balanced {
    /// Kept questions, sorted by id.
    pub kept: Vec<Candidate>,
    /// Per kind: the kept answers' distribution `π` (label, share).
    pub answer_distribution: BTreeMap<QuestionKind, Vec<(String, f64)>>,
    /// Per kind: questions dropped.
    pub dropped: BTreeMap<QuestionKind, usize>,
}

/// Keeps, per kind, at most [`balance_cap`] questions per answer label (lowest seeded hash of
/// the id first, so the choice does not depend on order, jobs or shards). With `cap_answers`
/// false every question is kept (the raw distribution, for inspection).
pub fn balance(cands: Vec<Candidate>, seed: u64, cap_answers: bool) -> Balanced {
    let prior = prior_of(&cands);
    let caps: BTreeMap<QuestionKind, Option<usize>> = prior
        .iter()
        .map(|(k, c)| {
            (
                *k,
                if cap_answers {
                    balance_cap(c)
                } else {
                    Some(usize::MAX)
                },
            )
        })
        .collect();
    let mut by_label: BTreeMap<(QuestionKind, String), Vec<Candidate>> = BTreeMap::new();
    for c in cands {
        by_label
            .entry((c.kind, c.answer.clone()))
            .or_default()
            .push(c);
    }
    let mut kept = Vec::new();
    let mut dropped: BTreeMap<QuestionKind, usize> = BTreeMap::new();
    for ((kind, _), mut v) in by_label {
        let cap = caps[&kind].unwrap_or(0);
        v.sort_by_key(|c| {
            (
                crate::fsio::fnv1a(&c.id) ^ seed.rotate_left(29),
                c.id.clone(),
            )
        });
        let n = v.len();
        if n > cap {
            *dropped.entry(kind).or_default() += n - cap;
        }
        kept.extend(v.into_iter().take(cap));
    }
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    let mut pi: BTreeMap<QuestionKind, Vec<(String, f64)>> = BTreeMap::new();
    for (kind, counts) in prior_of(&kept) {
        let total: usize = counts.values().sum();
        pi.insert(
            kind,
            counts
                .into_iter()
                .map(|(l, c)| (l, c as f64 / total as f64))
                .collect(),
        );
    }
    Balanced {
        kept,
        answer_distribution: pi,
        dropped,
    }
}

/// Four distinct labels including `answer`, by systematic sampling with inclusion probabilities
/// `4·π` conditioned on `answer` (see the module docs). `pi` must sum to 1 with every entry at
/// most 1/4 and contain `answer`. Returned in sampling order (shuffle before lettering).
pub fn option_set<R: Rng>(answer: &str, pi: &[(String, f64)], rng: &mut R) -> Option<Vec<String>> {
    if pi.len() < 4 || pi.iter().any(|(_, p)| *p > 0.25 + 1e-9) {
        return None;
    }
    let mut order: Vec<&(String, f64)> = pi.iter().collect();
    order.shuffle(rng);
    let total: f64 = order.iter().map(|(_, p)| 4.0 * p).sum();
    let mut start = 0.0;
    let mut intervals = Vec::with_capacity(order.len());
    for (l, p) in &order {
        let len = 4.0 * p * 4.0 / total; // renormalised against rounding
        intervals.push((start, start + len, l.as_str()));
        start += len;
    }
    let &(lo, hi, _) = intervals.iter().find(|(_, _, l)| *l == answer)?;
    let x = rng.random_range(lo..hi.max(lo + 1e-12));
    let u = x - x.floor();
    let mut out = Vec::with_capacity(4);
    for j in 0..4 {
        let point = u + j as f64;
        let label = intervals
            .iter()
            .find(|(a, b, _)| point >= *a && point < *b)
            .map(|i| i.2)
            .unwrap_or(intervals[intervals.len() - 1].2);
        if !out.iter().any(|o: &String| o == label) {
            out.push(label.to_string());
        }
    }
    (out.len() == 4 && out.iter().any(|o| o == answer)).then_some(out)
}

/// Components of an option for the "shared component" and "odd one out" rules: its words, with
/// `and`/`Then`/`Moving`-style glue removed and hyphenated parts split.
pub fn components(option: &str) -> BTreeSet<String> {
    option
        .split([',', ' ', '-'])
        .map(|w| w.trim().to_ascii_lowercase())
        .filter(|w| {
            !w.is_empty()
                && ![
                    "and", "then", "first", "moving", "the", "to", "from", "camera", "a",
                ]
                .contains(&w.as_str())
        })
        .collect()
}

/// Accuracy of option-only rules on `(options, correct index)` items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    pub questions: usize,
    /// Rule name -> accuracy in percent.
    pub accuracy: BTreeMap<String, f64>,
}

impl Baselines {
    /// The best rule and its accuracy.
    pub fn best(&self) -> (String, f64) {
        self.accuracy
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v))
            .unwrap_or_default()
    }
}

/// Scores option-only rules: shared component (most components in common with the other
/// options), odd one out (fewest), most frequent label (the option that is most often the
/// correct answer in the whole set, i.e. a label prior fitted on the answers themselves), most
/// frequent option (most often an option at all), longest and shortest option. Ties go to the
/// earliest letter.
pub fn baselines(items: &[(Vec<String>, usize)]) -> Baselines {
    let mut answer_freq: BTreeMap<&str, usize> = BTreeMap::new();
    let mut option_freq: BTreeMap<&str, usize> = BTreeMap::new();
    for (opts, c) in items {
        *answer_freq.entry(opts[*c].as_str()).or_default() += 1;
        for o in opts {
            *option_freq.entry(o.as_str()).or_default() += 1;
        }
    }
    let argmax = |scores: Vec<f64>| {
        scores
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &s)| if s > b.1 { (i, s) } else { b },
            )
            .0
    };
    let mut hits: BTreeMap<&str, usize> = BTreeMap::new();
    for (opts, correct) in items {
        let comps: Vec<BTreeSet<String>> = opts.iter().map(|o| components(o)).collect();
        let shared: Vec<f64> = (0..opts.len())
            .map(|i| {
                (0..opts.len())
                    .filter(|&j| j != i)
                    .map(|j| comps[i].intersection(&comps[j]).count() as f64)
                    .sum()
            })
            .collect();
        let picks = [
            ("shared component", argmax(shared.clone())),
            ("odd one out", argmax(shared.iter().map(|s| -s).collect())),
            (
                "most frequent label",
                argmax(
                    opts.iter()
                        .map(|o| answer_freq.get(o.as_str()).copied().unwrap_or(0) as f64)
                        .collect(),
                ),
            ),
            (
                "most frequent option",
                argmax(
                    opts.iter()
                        .map(|o| option_freq.get(o.as_str()).copied().unwrap_or(0) as f64)
                        .collect(),
                ),
            ),
            (
                "longest option",
                argmax(opts.iter().map(|o| o.len() as f64).collect()),
            ),
            (
                "shortest option",
                argmax(opts.iter().map(|o| -(o.len() as f64)).collect()),
            ),
        ];
        for (name, pick) in picks {
            *hits.entry(name).or_default() += (pick == *correct) as usize;
        }
    }
    let n = items.len().max(1) as f64;
    Baselines {
        questions: items.len(),
        accuracy: hits
            .into_iter()
            .map(|(k, v)| (k.to_string(), 100.0 * v as f64 / n))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn option_sets_are_distinct_and_contain_the_answer() {
        let pi: Vec<(String, f64)> = ["a", "b", "c", "d", "e"]
            .iter()
            .zip([0.25, 0.25, 0.2, 0.2, 0.1])
            .map(|(l, p)| (l.to_string(), p))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            for (ans, _) in &pi {
                let s = option_set(ans, &pi, &mut rng).unwrap();
                assert_eq!(s.len(), 4);
                assert!(s.contains(ans));
                assert_eq!(s.iter().collect::<BTreeSet<_>>().len(), 4);
            }
        }
        // Labels at exactly 1/4 are in every set.
        let s = option_set("e", &pi, &mut rng).unwrap();
        assert!(s.contains(&"a".to_string()) && s.contains(&"b".to_string()));
    }

    #[test]
    fn balance_caps_every_label_at_a_quarter() {
        let counts: BTreeMap<String, usize> =
            [("x", 100), ("y", 10), ("z", 10), ("w", 10), ("v", 5)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
        let t = balance_cap(&counts).unwrap();
        let total: usize = counts.values().map(|&c| c.min(t)).sum();
        assert!(4 * t <= total, "t {t} total {total}");
        assert!(4 * (t + 1) > counts.values().map(|&c| c.min(t + 1)).sum::<usize>());
        let three: BTreeMap<String, usize> = [("x", 5), ("y", 5), ("z", 5)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(balance_cap(&three), None);
    }
}
