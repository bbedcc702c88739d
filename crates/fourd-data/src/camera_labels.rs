//! Stage 2a, camera motion: labels computed from `poses.npy` with SpatialVID's rule
//! (`preprocess.md` §2.3) in three variants, compared with `instructions.json`.
//!
//! Every variant is reduced to one label set per *unit step* `t -> t+1` so they can be compared
//! with each other, with `instructions.json` and with `truth.json`:
//! - [`CameraRule::Exact`]: the rule's thresholds (τ_t = 0.02, τ_r = 0.5°) on every consecutive
//!   pair without smoothing (`fourd_world::INSTRUCTION_RULE`): segment boundaries stay exact.
//! - [`CameraRule::Original`]: `get_instructions.py` (pairs `(i, i+2)`, EMA α = 0.1); each unit
//!   step takes the labels of the pair that covers it.
//! - [`CameraRule::Enhanced`]: `get_instructions_enhanced.py`'s voting over windows {1, 3, 5} ×
//!   α {0.03, 0.05, 0.1}, with the metadata CSV's `moveDist` (or the poses' own travel).
//!
//! `instructions.json` wins when present (as in the reference); the computed labels fill in
//! when it is absent, and the agreement of every variant with it is recorded either way.

use std::collections::BTreeMap;

use fourd_world::{
    label_poses, label_poses_enhanced, move_dist, CameraLabel, EnhancedParams, RuleParams,
    INSTRUCTION_RULE,
};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::ingest::InstructionSegment;

/// Which pose-labelling variant fills in when `instructions.json` is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CameraRule {
    #[default]
    Exact,
    Original,
    Enhanced,
}

impl CameraRule {
    pub const ALL: [CameraRule; 3] = [
        CameraRule::Exact,
        CameraRule::Original,
        CameraRule::Enhanced,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CameraRule::Exact => "exact",
            CameraRule::Original => "original",
            CameraRule::Enhanced => "enhanced",
        }
    }
}

impl std::str::FromStr for CameraRule {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "exact" => Ok(Self::Exact),
            "original" => Ok(Self::Original),
            "enhanced" => Ok(Self::Enhanced),
            _ => Err(DataError::Config(format!(
                "camera rule {s:?}: expected exact, original or enhanced"
            ))),
        }
    }
}

/// A label set as text: table order, 4DThinker spelling, joined like the reference's
/// `format_movement` ("A", "A and B", "A, B and C").
pub fn format_labels(labels: &[CameraLabel]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    l.dedup();
    let names: Vec<&str> = l.iter().map(|x| x.as_str()).collect();
    match names.len() {
        0 => String::new(),
        1 => names[0].to_string(),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// Parses labels written by [`format_labels`] or listed one by one.
pub fn parse_labels(items: &[String]) -> Result<Vec<CameraLabel>> {
    let mut out = Vec::new();
    for s in items {
        out.push(
            s.parse::<CameraLabel>()
                .map_err(|e| DataError::Config(e.to_string()))?,
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Labels of every unit step `t -> t+1` (`poses.len() - 1` entries) under `rule`.
pub fn unit_step_labels(
    poses: &[[f64; 7]],
    rule: CameraRule,
    csv_move_dist: Option<f64>,
) -> Result<Vec<Vec<CameraLabel>>> {
    let n = poses.len();
    let err = |e: fourd_world::WorldError| {
        DataError::Config(format!("camera rule {}: {e}", rule.as_str()))
    };
    let steps = match rule {
        CameraRule::Exact => label_poses(poses, &INSTRUCTION_RULE).map_err(err)?,
        CameraRule::Original => label_poses(poses, &RuleParams::default()).map_err(err)?,
        CameraRule::Enhanced => {
            let md = csv_move_dist.unwrap_or_else(|| move_dist(poses));
            label_poses_enhanced(poses, &EnhancedParams::new(md)).map_err(err)?
        }
    };
    let mut out: Vec<Option<Vec<CameraLabel>>> = vec![None; n.saturating_sub(1)];
    for s in &steps {
        for slot in out.iter_mut().take(s.end).skip(s.start) {
            *slot = Some(s.labels.clone());
        }
    }
    // The original rule's pairs (i, i+2) leave the last step uncovered for an even frame count:
    // it takes the previous step's labels (the motion the rule last saw).
    let mut last = vec![CameraLabel::Stay];
    Ok(out
        .into_iter()
        .map(|o| {
            if let Some(l) = o {
                last = l;
            }
            last.clone()
        })
        .collect())
}

/// Unit-step labels of `instructions.json` segments (`None` for steps no segment covers).
pub fn instruction_steps(
    segments: &[InstructionSegment],
    frames: usize,
) -> Result<Vec<Option<Vec<CameraLabel>>>> {
    let mut out = vec![None; frames.saturating_sub(1)];
    for s in segments {
        let labels = parse_labels(&s.labels)?;
        for slot in out.iter_mut().take(s.end).skip(s.start) {
            *slot = Some(labels.clone());
        }
    }
    Ok(out)
}

/// A camera segment `start -> end` (annotated frame positions) with its label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraSegment {
    pub start: usize,
    pub end: usize,
    pub labels: Vec<String>,
}

/// Merges consecutive equal unit steps into segments.
pub fn merge_steps(steps: &[Vec<CameraLabel>]) -> Vec<CameraSegment> {
    let mut out: Vec<(usize, usize, Vec<CameraLabel>)> = Vec::new();
    for (t, l) in steps.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.2 == *l => last.1 = t + 1,
            _ => out.push((t, t + 1, l.clone())),
        }
    }
    out.into_iter()
        .map(|(start, end, labels)| CameraSegment {
            start,
            end,
            labels: labels.iter().map(|l| l.as_str().to_string()).collect(),
        })
        .collect()
}

/// Fraction of steps (where both sides have labels) whose label sets are equal, and the count.
pub fn step_agreement(a: &[Vec<CameraLabel>], b: &[Option<Vec<CameraLabel>>]) -> (usize, usize) {
    let mut same = 0;
    let mut total = 0;
    for (x, y) in a.iter().zip(b) {
        if let Some(y) = y {
            total += 1;
            same += (x == y) as usize;
        }
    }
    (same, total)
}

/// Everything stage 2 records about the camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraReport {
    /// The segments questions are asked about.
    pub segments: Vec<CameraSegment>,
    /// `instructions.json` or `poses (<rule> rule)`.
    pub source: String,
    /// Unit-step labels of each computed variant.
    pub computed: BTreeMap<String, Vec<Vec<String>>>,
    /// Per variant: `[equal steps, compared steps]` against `instructions.json`.
    pub agreement_with_instructions: BTreeMap<String, [usize; 2]>,
}

/// Computes every variant, compares with `instructions`, and picks the segments to ask about.
pub fn camera_report(
    poses: &[[f64; 7]],
    instructions: Option<&[InstructionSegment]>,
    csv_move_dist: Option<f64>,
    fill_rule: CameraRule,
) -> Result<CameraReport> {
    let mut computed = BTreeMap::new();
    let mut agreement = BTreeMap::new();
    let mut fill = Vec::new();
    let instr_steps = instructions
        .map(|s| instruction_steps(s, poses.len()))
        .transpose()?;
    for rule in CameraRule::ALL {
        let steps = unit_step_labels(poses, rule, csv_move_dist)?;
        if let Some(is) = &instr_steps {
            let (same, total) = step_agreement(&steps, is);
            agreement.insert(rule.as_str().to_string(), [same, total]);
        }
        computed.insert(
            rule.as_str().to_string(),
            steps
                .iter()
                .map(|l| l.iter().map(|x| x.as_str().to_string()).collect())
                .collect(),
        );
        if rule == fill_rule {
            fill = steps;
        }
    }
    let (segments, source) = match instructions {
        Some(s) => (
            s.iter()
                .map(|s| CameraSegment {
                    start: s.start,
                    end: s.end,
                    labels: s.labels.clone(),
                })
                .collect(),
            "instructions.json".to_string(),
        ),
        None => (
            merge_steps(&fill),
            format!("poses ({} rule)", fill_rule.as_str()),
        ),
    };
    Ok(CameraReport {
        segments,
        source,
        computed,
        agreement_with_instructions: agreement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fourd_world::glam::DVec3;
    use fourd_world::{CameraSegment as WorldSegment, CameraTrajectory, Pose};

    #[test]
    fn exact_rule_recovers_segments() {
        let start = Pose::look_at(DVec3::new(0.0, 1.5, 0.0), DVec3::new(0.0, 1.0, 6.0)).unwrap();
        let traj = CameraTrajectory::new(
            start,
            vec![
                WorldSegment::from_labels(4, &[("Pan Left", 2.0)]).unwrap(),
                WorldSegment::stay(3).unwrap(),
                WorldSegment::from_labels(5, &[("Dolly In", 0.06), ("Tilt Up", 1.5)]).unwrap(),
            ],
        )
        .unwrap();
        let poses: Vec<[f64; 7]> = traj.poses().iter().map(|p| p.to_w2c_array()).collect();
        let steps = unit_step_labels(&poses, CameraRule::Exact, None).unwrap();
        let segs = merge_steps(&steps);
        assert_eq!(segs.len(), 3);
        assert_eq!(
            (segs[0].start, segs[0].end, segs[0].labels.clone()),
            (0, 4, vec!["Pan Left".to_string()])
        );
        assert_eq!(segs[1].labels, vec!["Stay"]);
        assert_eq!(segs[2].labels, vec!["Dolly In", "Tilt Up"]);
        assert_eq!(
            format_labels(&parse_labels(&segs[2].labels).unwrap()),
            "Dolly In and Tilt Up"
        );
        // The original rule (EMA, pairs of 2) and the enhanced vote still cover every step.
        for rule in [CameraRule::Original, CameraRule::Enhanced] {
            assert_eq!(unit_step_labels(&poses, rule, None).unwrap().len(), 12);
        }
        let instr = vec![InstructionSegment {
            start: 0,
            end: 4,
            labels: vec!["Pan Left".into()],
        }];
        let report = camera_report(&poses, Some(&instr), None, CameraRule::Exact).unwrap();
        assert_eq!(report.agreement_with_instructions["exact"], [4, 4]);
        assert_eq!(report.source, "instructions.json");
    }
}
