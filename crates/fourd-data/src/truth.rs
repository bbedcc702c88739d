//! Agreement of the computed labels with `truth.json` (written by `fourd synth`; absent for
//! real data). Camera labels are compared per unit step `t -> t+1`; objects are matched to truth
//! by instance id (instance backend) or by mask overlap with `instance_ids.npy` (other
//! backends), then direction, net distance change, the full distance label (with the compound
//! "first closer, then farther" ones; truth files written before it have no `distance` and are
//! not counted) and speed pattern are compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::arrays::{read_file, read_u16};
use crate::camera_labels::{parse_labels, step_agreement};
use crate::error::Result;
use crate::ingest::IngestRecord;
use crate::label::LabelRecord;
use crate::object_motion::SecondOpinion;

/// `[agreeing, compared]` counters; `percent()` for printing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Count(pub usize, pub usize);

impl Count {
    pub fn add(&mut self, other: Count) {
        self.0 += other.0;
        self.1 += other.1;
    }
    pub fn percent(&self) -> Option<f64> {
        (self.1 > 0).then(|| 100.0 * self.0 as f64 / self.1 as f64)
    }
}

/// Agreement over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub clips: usize,
    /// Camera unit steps per source: `instructions.json`, `exact`, `original`, `enhanced`, and
    /// `used` (what questions are asked from).
    pub camera_steps: BTreeMap<String, Count>,
    pub objects_in_truth: usize,
    pub objects_matched: usize,
    /// Matched objects that were measured (visible enough).
    pub objects_measured: usize,
    pub direction: Count,
    pub distance: Count,
    /// The five-label distance (`distance` of `truth.json`, compound labels included).
    #[serde(default)]
    pub distance_full: Count,
    pub speed: Count,
    /// The second opinion (when one was asked) against the measured direction, and against truth.
    pub second_opinion_vs_measured: Count,
    pub second_opinion_vs_truth: Count,
    /// A few disagreements, for inspection: `clip track: field measured vs truth`.
    pub examples: Vec<String>,
}

impl Agreement {
    pub fn merge(&mut self, o: &Agreement) {
        self.clips += o.clips;
        for (k, v) in &o.camera_steps {
            self.camera_steps.entry(k.clone()).or_default().add(*v);
        }
        self.objects_in_truth += o.objects_in_truth;
        self.objects_matched += o.objects_matched;
        self.objects_measured += o.objects_measured;
        self.direction.add(o.direction);
        self.distance.add(o.distance);
        self.distance_full.add(o.distance_full);
        self.speed.add(o.speed);
        self.second_opinion_vs_measured
            .add(o.second_opinion_vs_measured);
        self.second_opinion_vs_truth.add(o.second_opinion_vs_truth);
        for e in &o.examples {
            if self.examples.len() < 30 {
                self.examples.push(e.clone());
            }
        }
    }

    pub fn render(&self) -> String {
        let p = |c: &Count| {
            c.percent()
                .map_or("n/a".to_string(), |v| format!("{v:.1}% ({}/{})", c.0, c.1))
        };
        let mut s = format!("agreement with truth.json over {} clip(s):\n", self.clips);
        for (k, v) in &self.camera_steps {
            s.push_str(&format!("  camera steps, {k}: {}\n", p(v)));
        }
        s.push_str(&format!(
            "  objects: {} in truth, {} matched, {} measured\n  object direction: {}\n  object distance (net): {}\n  object distance (with compound labels): {}\n  object speed pattern: {}\n",
            self.objects_in_truth,
            self.objects_matched,
            self.objects_measured,
            p(&self.direction),
            p(&self.distance),
            p(&self.distance_full),
            p(&self.speed)
        ));
        if self.second_opinion_vs_measured.1 > 0 {
            s.push_str(&format!(
                "  second opinion on direction: {} agree with the measurement, {} with truth\n",
                p(&self.second_opinion_vs_measured),
                p(&self.second_opinion_vs_truth)
            ));
        }
        s
    }
}

/// Agreement of one clip, `None` when it has no `truth.json`.
pub fn clip_agreement(ingest: &IngestRecord, labels: &LabelRecord) -> Result<Option<Agreement>> {
    let path = ingest.annotations.join("truth.json");
    if !path.is_file() {
        return Ok(None);
    }
    let truth: serde_json::Value = crate::fsio::read_json(&path)?;
    let n = labels.frames;
    let mut a = Agreement {
        clips: 1,
        ..Default::default()
    };
    // Camera: truth segments -> unit steps.
    let mut truth_steps: Vec<Option<Vec<fourd_world::CameraLabel>>> = vec![None; n - 1];
    for seg in truth["camera"].as_array().into_iter().flatten() {
        let (Some(s), Some(e)) = (seg["start"].as_u64(), seg["end"].as_u64()) else {
            continue;
        };
        let l: Vec<String> = seg["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let parsed = parse_labels(&l)?;
        for slot in truth_steps.iter_mut().take(e as usize).skip(s as usize) {
            *slot = Some(parsed.clone());
        }
    }
    let mut sources: Vec<(String, Vec<Vec<fourd_world::CameraLabel>>)> = Vec::new();
    for (rule, steps) in &labels.camera.computed {
        sources.push((
            rule.clone(),
            steps
                .iter()
                .map(|s| parse_labels(s))
                .collect::<Result<_>>()?,
        ));
    }
    let mut used = vec![vec![fourd_world::CameraLabel::Stay]; n - 1];
    for s in &labels.camera.segments {
        let l = parse_labels(&s.labels)?;
        for slot in used.iter_mut().take(s.end).skip(s.start) {
            *slot = l.clone();
        }
    }
    sources.push(("used".into(), used));
    if let Some(instr) = &ingest.instructions {
        let steps = crate::camera_labels::instruction_steps(instr, n)?;
        sources.push((
            "instructions.json".into(),
            steps.into_iter().map(|s| s.unwrap_or_default()).collect(),
        ));
    }
    for (name, steps) in sources {
        let (same, total) = step_agreement(&steps, &truth_steps);
        a.camera_steps.insert(name, Count(same, total));
    }
    // Objects.
    let truth_objects: Vec<&serde_json::Value> = truth["objects"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    a.objects_in_truth = truth_objects.len();
    let ids_path = ingest.annotations.join("instance_ids.npy");
    let ids = if labels.objects.iter().any(|o| o.instance_id.is_none()) && ids_path.is_file() {
        Some(read_u16(&read_file(&ids_path)?, &ids_path)?)
    } else {
        None
    };
    let px = (labels.width * labels.height) as usize;
    for m in &labels.objects {
        // Match: the instance id, else the id most of the first observed mask's... centroid
        // pixels belong to (the centroid pixel of each observation, majority vote).
        let id = m.instance_id.map(|i| i as u64).or_else(|| {
            let ids = ids.as_ref()?;
            let mut votes: BTreeMap<u16, usize> = BTreeMap::new();
            for o in &m.observations {
                let (x, y) = (
                    o.centroid[0].round() as usize,
                    o.centroid[1].round() as usize,
                );
                let v = *ids.data.get(o.frame * px + y * labels.width as usize + x)?;
                if v != 0 {
                    *votes.entry(v).or_default() += 1;
                }
            }
            votes.into_iter().max_by_key(|x| x.1).map(|x| x.0 as u64)
        });
        let Some(t) = id.and_then(|id| truth_objects.iter().find(|o| o["id"].as_u64() == Some(id)))
        else {
            continue;
        };
        a.objects_matched += 1;
        if m.direction.is_none() {
            continue;
        }
        a.objects_measured += 1;
        let mut cmp = |field: &str, measured: &Option<String>, counter: &mut Count| {
            let (Some(mv), Some(tv)) = (measured, t[field].as_str()) else {
                return;
            };
            counter.1 += 1;
            if mv == tv {
                counter.0 += 1;
            } else if a.examples.len() < 30 {
                a.examples.push(format!(
                    "{} track {}: {field} measured {mv:?}, truth {tv:?}",
                    ingest.key, m.track_id
                ));
            }
        };
        let mut dir = a.direction;
        cmp("direction", &m.direction, &mut dir);
        let mut dis = a.distance;
        cmp("distance_change", &m.net_distance, &mut dis);
        let mut dis_full = a.distance_full;
        cmp("distance", &m.distance, &mut dis_full);
        // Speed is undefined for stationary objects in truth (they never move).
        let mut spd = a.speed;
        if t["direction"].as_str() != Some("Stationary") {
            cmp("speed", &m.speed, &mut spd);
        }
        if let Some(SecondOpinion {
            direction: Some(d), ..
        }) = &m.second_opinion
        {
            a.second_opinion_vs_measured.1 += 1;
            a.second_opinion_vs_measured.0 += (Some(d) == m.direction.as_ref()) as usize;
            a.second_opinion_vs_truth.1 += 1;
            a.second_opinion_vs_truth.0 += (Some(d.as_str()) == t["direction"].as_str()) as usize;
        }
        a.direction = dir;
        a.distance = dis;
        a.distance_full = dis_full;
        a.speed = spd;
    }
    Ok(Some(a))
}
