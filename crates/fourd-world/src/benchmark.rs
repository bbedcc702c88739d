//! A DSR-Bench-format multiple-choice benchmark built from synthetic ground truth
//! (`fourd synth benchmark`).
//!
//! Each clip's [`ClipTruth`] yields candidate questions; a seeded RNG picks up to `per_clip` of
//! them, then the correct answers' letters are assigned in blocks of four (a random permutation of
//! A-D per block), so over `n` questions each letter is correct `n / 4` times, up to one.
//! Distractors are other valid labels of the same kind, in random order.
//!
//! Question kinds and the DSR-Bench `type` key each is filed under (the keys of
//! `fourd_eval::report::SUBTASKS`):
//!
//! | question | `type` | labels |
//! |---|---|---|
//! | direction an object moves, relative to the first frame's view | `abs_dir` | the 11 [`Direction`] labels |
//! | how an object's speed changes | `abs_spd` | the 6 [`SpeedPattern`] labels (not asked for stationary objects) |
//! | net change of an object's distance to the camera, first frame to last | `abs_dis` | the 3 [`DistanceChange`] labels plus the distractor [`DIS_EXTRA`] (never correct: the question asks about the net change) |
//! | how the camera moves during one segment with a single motion label | `rel_dir` | the 12 [`CameraLabel::MOTIONS`] and `Stay` |
//! | which of two objects moves faster (mean speed in the scene while moving, camera motion excluded; ≥ 1.3× is faster, ≤ 1.1× the same, in between not asked) | `abs_spd_comp` | `The <a> moves faster`, `The <b> moves faster`, [`SPD_SAME`], [`SPD_NEITHER`] |
//! | which of two objects is closer to the camera centre at the first and at the last frame (asked when the distances differ by > 10% at both) | `rel_dis` | `The <a> at both`, `The <b> at both`, and the two switches |
//! | **prediction**, video cut before the end: where an object moves during the held-out frames, relative to the camera's view in the last frame shown | `abs_dir_pred` | the 11 [`Direction`] labels, classified from the true displacement by [`view_direction`] |
//! | **prediction**: where object A will be relative to object B at the last (held-out) frame, seen from the camera of the last frame shown: left/right (projected) and closer/farther (depth) | `rel_dir_pred` | [`REL_PRED`] |
//!
//! Pair questions are asked only about objects whose names are unique in the clip (so the
//! options can name them) and that are both visible in the first frame. Prediction questions use a second video,
//! `<videoID>_first<K>.mp4`, holding the first `K` = `N - max(2, N / 4)` frames of the clip
//! ([`BenchmarkQuestion::shown_frames`]); the answer comes from the full clip. The candidates of a
//! clip are shuffled and then interleaved by type, so the `per_clip` chosen cover as many types
//! as possible.
//!
//! DSR-Bench has no camera-motion key; camera motion is the viewpoint's direction relative to the
//! static scene, so it is filed under `rel_dir` (relative direction), the closest key.
//! `abs_dis` (absolute distance change of one object to the observer) is used rather than
//! `rel_dis` (distance between two objects).
//!
//! Output: `benchmark.parquet` with columns `videoID`, `question`, `options` (`list<string>`,
//! `"A. ..."`..`"D. ..."`), `answer` (a letter) and `type`, the layout
//! `fourd_eval::benchmark::load` reads; and `truth.jsonl` (`index`, `videoID`, `type`, `answer`,
//! `label`, `shown_frames`) for inspection. Same inputs give byte-identical files.

use std::path::Path;
use std::sync::Arc;

use fourd_records::letters::{letter, options_with_answer_at, LetterBalancer};
use fourd_records::prompt::lettered;
use fourd_records::{McQuestion, Media};
use glam::DVec3;

use crate::camera::CameraLabel;
use crate::camera::Pose;
use crate::error::{Result, WorldError};
use crate::generate::{ClipTruth, DistanceChange, ObjectTruth, SplitMix64};
use crate::motion::{Direction, SpeedPattern};

/// The never-correct fourth option of `abs_dis` questions.
pub const DIS_EXTRA: &str = "First Getting Closer, Then Farther from Camera";

/// `abs_spd_comp`: both move at about the same speed.
pub const SPD_SAME: &str = "They move at about the same speed";
/// `abs_spd_comp`: neither object moves.
pub const SPD_NEITHER: &str = "Neither of them moves";

/// `rel_dir_pred` labels: A's position relative to B ("it").
pub const REL_PRED: [&str; 4] = [
    "To the left of it, and closer to the camera",
    "To the left of it, and farther from the camera",
    "To the right of it, and closer to the camera",
    "To the right of it, and farther from the camera",
];

/// One question of the benchmark with the truth behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkQuestion {
    /// The row `benchmark.parquet` holds: `media` is its `videoID`, options are `"A. label"` ..
    /// `"D. label"`, `task_type` a DSR-Bench sub-task key (see the module docs).
    pub mc: McQuestion,
    /// The correct option's label text (without the letter).
    pub label: String,
    /// The full clip's videoID (equal to `video_id` unless this is a prediction question).
    pub clip_id: String,
    /// Prediction questions: the video holds only the clip's first `K` frames.
    pub shown_frames: Option<usize>,
}

impl BenchmarkQuestion {
    /// The `videoID` of the question's video.
    pub fn video_id(&self) -> &str {
        match &self.mc.media {
            Media::VideoId(id) => id,
            _ => "",
        }
    }
    /// The correct letter.
    pub fn answer(&self) -> char {
        self.mc.answer.chars().next().unwrap_or('?')
    }
    /// The DSR-Bench sub-task key.
    pub fn task_type(&self) -> &str {
        &self.mc.task_type
    }
}

/// A question before its options are lettered.
#[derive(Debug, Clone)]
struct Draft {
    question: String,
    task_type: &'static str,
    correct: String,
    /// Every other valid label (at least 3).
    others: Vec<String>,
    shown_frames: Option<usize>,
}

fn others<T: Copy + PartialEq>(all: &[T], correct: T, name: impl Fn(T) -> String) -> Vec<String> {
    all.iter()
        .filter(|&&x| x != correct)
        .map(|&x| name(x))
        .collect()
}

fn shuffle<T>(rng: &mut SplitMix64, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

/// How `o` is referred to: by name, or by name and first-frame box when the name is shared.
fn subject(truth: &ClipTruth, o: &ObjectTruth, b: [u32; 4]) -> String {
    let same_name = truth.objects.iter().filter(|p| p.name == o.name).count();
    if same_name > 1 {
        format!(
            "the {} whose bounding box in the first frame is [{}, {}, {}, {}] (x1, y1, x2, y2 in pixels)",
            o.name, b[0], b[1], b[2], b[3]
        )
    } else {
        format!("the {}", o.name)
    }
}

/// The direction label of a world displacement `d` of an object at `position`, as seen by
/// `camera`: Toward/Away when the component along the camera-to-object line is more than 1.5×
/// the sideways one (and vice versa for the 8 image-plane directions, by 45° sectors of the
/// sideways part in camera x right / y down). `None` when the displacement is under 1 cm, or too
/// close to a boundary (ratio between 1/1.5 and 1.5, or within 7.5° of a sector edge) to have one
/// clear answer.
pub fn view_direction(d: DVec3, position: DVec3, camera: &Pose) -> Option<Direction> {
    if d.length() < 0.01 {
        return None;
    }
    let line = (position - camera.center).normalize_or_zero();
    let radial = d.dot(line);
    let sideways = camera.rotation_c2w.conjugate() * (d - line * radial);
    let lateral = (sideways.x * sideways.x + sideways.y * sideways.y).sqrt();
    if radial.abs() > 1.5 * lateral {
        return Some(if radial > 0.0 {
            Direction::AwayFromCamera
        } else {
            Direction::TowardCamera
        });
    }
    if lateral < 1.5 * radial.abs() {
        return None;
    }
    let angle = sideways.y.atan2(sideways.x).to_degrees(); // 0 = right, 90 = down
    let sector = ((angle + 360.0 + 22.5) / 45.0).floor() as i64 % 8;
    let centre = sector as f64 * 45.0;
    let off = ((angle - centre + 540.0) % 360.0 - 180.0).abs();
    if off > 15.0 {
        return None;
    }
    Some(
        [
            Direction::Right,
            Direction::RightDown,
            Direction::Down,
            Direction::LeftDown,
            Direction::Left,
            Direction::LeftUp,
            Direction::Up,
            Direction::RightUp,
        ][sector as usize],
    )
}

/// Frames shown in a prediction question's video for a clip of `n` frames (`None` when the clip
/// is too short to hold some back and still show motion).
pub fn prediction_shown_frames(n: usize) -> Option<usize> {
    let shown = n.checked_sub(2.max(n / 4))?;
    (shown >= 4).then_some(shown)
}

/// All candidate questions of one clip, in a fixed order.
fn drafts(truth: &ClipTruth) -> Vec<Draft> {
    let mut out = single_object_drafts(truth);
    out.extend(pair_drafts(truth));
    out.extend(prediction_drafts(truth));
    out
}

/// `abs_dir`, `abs_spd`, `abs_dis` and `rel_dir` (camera) questions.
fn single_object_drafts(truth: &ClipTruth) -> Vec<Draft> {
    let mut out = Vec::new();
    for o in &truth.objects {
        let Some(b) = o.first_bbox else { continue }; // hidden in frame 0: cannot be referred to
        let subject = subject(truth, o, b);
        out.push(Draft {
            question: format!(
                "Relative to the camera's view in the first frame, in which direction does {subject} move?"
            ),
            task_type: "abs_dir",
            correct: o.direction.as_str().to_string(),
            others: others(&Direction::ALL, o.direction, |d| d.as_str().to_string()),
            shown_frames: None,
        });
        if o.direction != Direction::Stationary {
            out.push(Draft {
                question: format!("How does the speed of {subject} change during the video?"),
                task_type: "abs_spd",
                correct: o.speed.as_str().to_string(),
                others: others(&SpeedPattern::ALL, o.speed, |s| s.as_str().to_string()),
                shown_frames: None,
            });
        }
        let dis = [
            DistanceChange::Closer,
            DistanceChange::Farther,
            DistanceChange::Same,
        ];
        let mut dis_others = others(&dis, o.distance_change, |d| d.as_str().to_string());
        dis_others.push(DIS_EXTRA.to_string());
        out.push(Draft {
            question: format!(
                "From the first frame to the last, how does the distance between {subject} and the camera change overall?"
            ),
            task_type: "abs_dis",
            correct: o.distance_change.as_str().to_string(),
            others: dis_others,
            shown_frames: None,
        });
    }
    // Camera: the longest segment with a single label (Stay when it has none).
    let mut best: Option<(usize, usize, CameraLabel)> = None;
    for (s, e, labels) in &truth.camera {
        let label = match labels.as_slice() {
            [] => CameraLabel::Stay,
            [l] => *l,
            _ => continue,
        };
        if best.is_none_or(|(bs, be, _)| e - s > be - bs) {
            best = Some((*s, *e, label));
        }
    }
    if let Some((s, e, label)) = best {
        let mut all: Vec<CameraLabel> = CameraLabel::MOTIONS.to_vec();
        all.push(CameraLabel::Stay);
        out.push(Draft {
            question: format!(
                "Between frame {s} and frame {e} of the video (counting from 0), how does the camera move?"
            ),
            task_type: "rel_dir",
            correct: label.as_str().to_string(),
            others: others(&all, label, |l| l.as_str().to_string()),
            shown_frames: None,
        });
    }
    out
}

/// Pairs `(a, b)`, `a` before `b`, of objects visible in frame 0 whose names are unique in the
/// clip (so "the <name>" refers to one object).
fn named_pairs(truth: &ClipTruth) -> Vec<(&ObjectTruth, &ObjectTruth)> {
    let unique: Vec<&ObjectTruth> = truth
        .objects
        .iter()
        .filter(|o| {
            o.first_bbox.is_some() && truth.objects.iter().filter(|p| p.name == o.name).count() == 1
        })
        .collect();
    let mut out = Vec::new();
    for (i, a) in unique.iter().enumerate() {
        for b in &unique[i + 1..] {
            out.push((*a, *b));
        }
    }
    out
}

/// `abs_spd_comp` and `rel_dis` questions about two objects.
fn pair_drafts(truth: &ClipTruth) -> Vec<Draft> {
    let mut out = Vec::new();
    let Some(last) = truth.poses.len().checked_sub(1) else {
        return out;
    };
    for (a, b) in named_pairs(truth) {
        let (an, bn) = (&a.name, &b.name);
        // Speed comparison.
        let (sa, sb) = (a.mean_speed(), b.mean_speed());
        let faster_a = format!("The {an} moves faster");
        let faster_b = format!("The {bn} moves faster");
        let correct = if sa == 0.0 && sb == 0.0 {
            Some(SPD_NEITHER.to_string())
        } else if sa.max(sb) >= 1.3 * sa.min(sb) {
            Some(if sa > sb {
                faster_a.clone()
            } else {
                faster_b.clone()
            })
        } else if sa.max(sb) <= 1.1 * sa.min(sb) {
            Some(SPD_SAME.to_string())
        } else {
            None // too close to call either way
        };
        if let Some(correct) = correct {
            let others = [
                faster_a,
                faster_b,
                SPD_SAME.to_string(),
                SPD_NEITHER.to_string(),
            ]
            .into_iter()
            .filter(|l| *l != correct)
            .collect();
            out.push(Draft {
                question: format!(
                    "Which moves faster on average while it is moving, the {an} or the {bn}? Compare their own speeds in the scene, not how fast they move across the image."
                ),
                task_type: "abs_spd_comp",
                correct,
                others,
                shown_frames: None,
            });
        }
        // Which is closer to the camera, at the first and at the last frame.
        let dist = |o: &ObjectTruth, f: usize| (o.trajectory[f] - truth.poses[f].center).length();
        let clear = |x: f64, y: f64| (x - y).abs() > 0.1 * x.min(y);
        let (a0, b0, a1, b1) = (dist(a, 0), dist(b, 0), dist(a, last), dist(b, last));
        if clear(a0, b0) && clear(a1, b1) {
            let labels = [
                format!("The {an} at both"),
                format!("The {bn} at both"),
                format!("The {an} at the first frame, the {bn} at the last"),
                format!("The {bn} at the first frame, the {an} at the last"),
            ];
            let k = match (a0 < b0, a1 < b1) {
                (true, true) => 0,
                (false, false) => 1,
                (true, false) => 2,
                (false, true) => 3,
            };
            out.push(Draft {
                question: format!(
                    "Which is closer to the camera, the {an} or the {bn}, at the first frame and at the last frame of the video?"
                ),
                task_type: "rel_dis",
                correct: labels[k].clone(),
                others: labels
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .map(|(_, l)| l.clone())
                    .collect(),
                shown_frames: None,
            });
        }
    }
    out
}

/// `abs_dir_pred` and `rel_dir_pred` questions, answered from the frames held out of the video.
fn prediction_drafts(truth: &ClipTruth) -> Vec<Draft> {
    let mut out = Vec::new();
    let n = truth.poses.len();
    let Some(shown) = prediction_shown_frames(n) else {
        return out;
    };
    let (k, last) = (shown - 1, n - 1);
    let held = last - k;
    let camera = &truth.poses[k];
    // Moving in the held-out part, and already seen moving.
    let keeps_moving = |o: &ObjectTruth| o.moving.is_some_and(|(a, b)| a + 1 < shown && b > k);
    for o in &truth.objects {
        let Some(b) = o.first_bbox else { continue };
        if !keeps_moving(o) {
            continue;
        }
        let d = o.trajectory[last] - o.trajectory[k];
        if d.length() < 0.03 {
            continue; // too little motion left to ask about
        }
        let Some(dir) = view_direction(d, o.trajectory[k], camera) else {
            continue;
        };
        out.push(Draft {
            question: format!(
                "The video stops before the end of the clip. Assuming {} keeps moving the way it has been moving, in which direction will it move during the next {held} frames, relative to the camera's view in the last frame of the video?",
                subject(truth, o, b)
            ),
            task_type: "abs_dir_pred",
            correct: dir.as_str().to_string(),
            others: others(&Direction::ALL, dir, |d| d.as_str().to_string()),
            shown_frames: Some(shown),
        });
    }
    for (a, b) in named_pairs(truth) {
        for (p, q) in [(a, b), (b, a)] {
            if !keeps_moving(p) && !keeps_moving(q) {
                continue;
            }
            let (pc, qc) = (
                camera.world_to_cam(p.trajectory[last]),
                camera.world_to_cam(q.trajectory[last]),
            );
            if pc.z < 0.3 || qc.z < 0.3 {
                continue;
            }
            let sideways = pc.x / pc.z - qc.x / qc.z; // projected, < 0 = left
            let depth = pc.z - qc.z; // < 0 = closer
            if sideways.abs() < 0.05 || depth.abs() < 0.3_f64.max(0.08 * pc.z.min(qc.z)) {
                continue;
            }
            let j = 2 * usize::from(sideways > 0.0) + usize::from(depth > 0.0);
            out.push(Draft {
                question: format!(
                    "The video stops before the end of the clip. Assuming both keep moving the way they have been moving, where will the {} be relative to the {} at the end of the next {held} frames, as seen from the camera's viewpoint in the last frame of the video?",
                    p.name, q.name
                ),
                task_type: "rel_dir_pred",
                correct: REL_PRED[j].to_string(),
                others: REL_PRED
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != j)
                    .map(|(_, l)| l.to_string())
                    .collect(),
                shown_frames: Some(shown),
            });
            break; // one direction of each pair is enough
        }
    }
    out
}

/// Builds the benchmark from `(videoID, truth)` pairs in order: up to `per_clip` questions per
/// clip, chosen, lettered and ordered by an RNG seeded with `seed`.
pub fn build_benchmark(
    clips: &[(String, ClipTruth)],
    seed: u64,
    per_clip: usize,
) -> Vec<BenchmarkQuestion> {
    let mut rng = SplitMix64::new(seed ^ 0xB3C4_D5E6_F708_1920);
    let mut chosen: Vec<(String, Draft)> = Vec::new();
    for (id, truth) in clips {
        let mut d = drafts(truth);
        shuffle(&mut rng, &mut d);
        // Interleave by type (first of each type, then the second of each, ...), keeping the
        // shuffled order within a rank, so a clip's questions cover as many types as possible.
        let mut seen: Vec<&'static str> = Vec::new();
        let mut ranked: Vec<(usize, Draft)> = d
            .into_iter()
            .map(|x| {
                let rank = seen.iter().filter(|t| **t == x.task_type).count();
                seen.push(x.task_type);
                (rank, x)
            })
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        let mut d: Vec<Draft> = ranked.into_iter().map(|(_, x)| x).collect();
        d.truncate(per_clip);
        chosen.extend(d.into_iter().map(|d| (id.clone(), d)));
    }
    let mut balancer = LetterBalancer::new();
    chosen
        .into_iter()
        .enumerate()
        .map(|(index, (video_id, d))| {
            let slot = balancer.next_slot(|_, perm| shuffle(&mut rng, perm));
            let mut others = d.others;
            shuffle(&mut rng, &mut others);
            let labels = options_with_answer_at(slot, &d.correct, others.into_iter().take(3));
            let shown_id = match d.shown_frames {
                Some(k) => format!("{video_id}_first{k}"),
                None => video_id.clone(),
            };
            BenchmarkQuestion {
                mc: McQuestion {
                    index,
                    id: shown_id.clone(),
                    question: d.question,
                    options: lettered(&labels),
                    answer: letter(slot).to_string(),
                    kind: fourd_records::AnswerKind::Choice,
                    window: None,
                    task_type: d.task_type.to_string(),
                    media: Media::VideoId(shown_id),
                },
                label: d.correct,
                clip_id: video_id,
                shown_frames: d.shown_frames,
            }
        })
        .collect()
}

/// The parquet schema of `benchmark.parquet` (DSR-Bench's layout).
pub const PARQUET_SCHEMA: &str = "message schema {
    REQUIRED BYTE_ARRAY videoID (UTF8);
    REQUIRED BYTE_ARRAY question (UTF8);
    OPTIONAL group options (LIST) {
        repeated group list {
            OPTIONAL BYTE_ARRAY element (UTF8);
        }
    }
    REQUIRED BYTE_ARRAY answer (UTF8);
    REQUIRED BYTE_ARRAY type (UTF8);
}";

/// Writes `benchmark.parquet` (one row group, uncompressed, fixed `created_by`: byte-stable).
pub fn write_parquet(path: &Path, qs: &[BenchmarkQuestion]) -> Result<()> {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let perr = |e: parquet::errors::ParquetError| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let schema =
        Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).map_err(perr)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by("fourd-world synth benchmark".to_string())
            .build(),
    );
    let file = std::fs::File::create(path).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(perr)?;
    let mut rg = w.next_row_group().map_err(perr)?;
    let ba = |s: &str| ByteArray::from(s);
    let flat = |f: &dyn Fn(&BenchmarkQuestion) -> String| -> Vec<ByteArray> {
        qs.iter().map(|q| ba(&f(q))).collect()
    };
    let answers: Vec<String> = qs.iter().map(|q| q.mc.answer.clone()).collect();
    type Column = (Vec<ByteArray>, Option<Vec<i16>>, Option<Vec<i16>>);
    let columns: Vec<Column> = vec![
        (flat(&|q| q.video_id().to_string()), None, None),
        (flat(&|q| q.mc.question.clone()), None, None),
        (
            qs.iter()
                .flat_map(|q| q.mc.options.iter().map(|o| ba(o)))
                .collect(),
            Some(
                qs.iter()
                    .flat_map(|q| vec![3i16; q.mc.options.len()])
                    .collect(),
            ),
            Some(
                qs.iter()
                    .flat_map(|q| (0..q.mc.options.len()).map(|k| if k == 0 { 0i16 } else { 1 }))
                    .collect(),
            ),
        ),
        (answers.iter().map(|a| ba(a)).collect(), None, None),
        (flat(&|q| q.task_type().to_string()), None, None),
    ];
    for (values, def, rep) in &columns {
        let mut col = rg.next_column().map_err(perr)?.ok_or_else(|| {
            WorldError::InvalidParameter("parquet schema has too few columns".into())
        })?;
        col.typed::<ByteArrayType>()
            .write_batch(values, def.as_deref(), rep.as_deref())
            .map_err(perr)?;
        col.close().map_err(perr)?;
    }
    rg.close().map_err(perr)?;
    w.close().map_err(perr)?;
    Ok(())
}

/// `truth.jsonl`: one line per question (`index`, `videoID`, `type`, `answer`, `label`).
pub fn truth_jsonl(qs: &[BenchmarkQuestion]) -> String {
    let mut s = String::new();
    for (i, q) in qs.iter().enumerate() {
        let v = serde_json::json!({
            "index": i,
            "videoID": q.video_id(),
            "type": q.task_type(),
            "answer": q.mc.answer,
            "label": q.label,
            "shown_frames": q.shown_frames,
        });
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{random_clip, GenConfig};
    use fourd_records::letters::index_of;

    fn truths(n: usize) -> Vec<(String, ClipTruth)> {
        let cfg = GenConfig {
            frames: 6,
            width: 32,
            height: 32,
            hfov_deg: 60.0,
            max_objects: 3,
        };
        (0..n)
            .map(|i| {
                (
                    format!("v{i}"),
                    random_clip(i as u64 * 7 + 1, &cfg).unwrap().1,
                )
            })
            .collect()
    }

    #[test]
    fn letters_balanced_and_options_valid() {
        let t = truths(12);
        let qs = build_benchmark(&t, 3, 4);
        assert!(qs.len() >= 24, "{} questions", qs.len());
        let mut counts = [0usize; 4];
        for q in &qs {
            assert_eq!(q.mc.options.len(), 4);
            let k = index_of(q.answer()).unwrap();
            counts[k] += 1;
            assert_eq!(q.mc.options[k], format!("{}. {}", q.answer(), q.label));
            let labels: Vec<&str> = q.mc.options.iter().map(|o| &o[3..]).collect();
            for (i, l) in labels.iter().enumerate() {
                assert!(!labels[i + 1..].contains(l), "duplicate option in {q:?}");
            }
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{counts:?}");
        assert_eq!(build_benchmark(&t, 3, 4), qs);
    }

    #[test]
    fn parquet_bytes_are_deterministic() {
        let t = truths(3);
        let qs = build_benchmark(&t, 1, 3);
        let dir = std::env::temp_dir().join(format!("fourd-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.parquet"), dir.join("b.parquet"));
        write_parquet(&a, &qs).unwrap();
        write_parquet(&b, &build_benchmark(&t, 1, 3)).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Text between `pre` and `post` in `s`.
    fn between<'a>(s: &'a str, pre: &str, post: &str) -> &'a str {
        let a = s.find(pre).map(|i| i + pre.len()).expect("prefix");
        let b = s[a..].find(post).expect("suffix") + a;
        &s[a..b]
    }

    #[test]
    fn comparison_and_prediction_answers_match_the_geometry() {
        let cfg = GenConfig {
            frames: 16,
            width: 64,
            height: 48,
            hfov_deg: 60.0,
            max_objects: 3,
        };
        let clips: Vec<(String, crate::Clip, ClipTruth)> = (0..40u64)
            .map(|i| {
                let (c, t) = random_clip(i * 13 + 5, &cfg).unwrap();
                (format!("v{i}"), c, t)
            })
            .collect();
        let pairs: Vec<(String, ClipTruth)> = clips
            .iter()
            .map(|(id, _, t)| (id.clone(), t.clone()))
            .collect();
        let qs = build_benchmark(&pairs, 11, 8);
        let mut types: Vec<&str> = qs.iter().map(|q| q.task_type()).collect();
        types.sort();
        types.dedup();
        assert_eq!(
            types,
            [
                "abs_dir",
                "abs_dir_pred",
                "abs_dis",
                "abs_spd",
                "abs_spd_comp",
                "rel_dir",
                "rel_dir_pred",
                "rel_dis"
            ]
        );
        let mut counts = [0usize; 4];
        let mut checked = [0usize; 4];
        for q in &qs {
            counts[index_of(q.answer()).unwrap()] += 1;
            let (_, clip, truth) = clips.iter().find(|(id, _, _)| *id == q.clip_id).unwrap();
            let poses = clip.poses();
            let traj = clip.object_trajectories();
            let last = poses.len() - 1;
            let by_name = |n: &str| {
                let i = clip.scene.objects.iter().position(|o| o.name == n).unwrap();
                (i, &clip.scene.objects[i])
            };
            match q.task_type() {
                "abs_spd_comp" => {
                    let (a, b) = (
                        between(&q.mc.question, "moving, the ", " or the "),
                        between(&q.mc.question, " or the ", "?"),
                    );
                    // Speed from the generator's own motion parameters, not from the truth.
                    let speed = |n: &str| {
                        let m = by_name(n).1.motion.as_ref().unwrap();
                        if m.direction == Direction::Stationary {
                            0.0
                        } else {
                            m.distance / (m.end_frame - m.start_frame) as f64
                        }
                    };
                    let (sa, sb) = (speed(a), speed(b));
                    match q.label.as_str() {
                        SPD_NEITHER => assert!(sa == 0.0 && sb == 0.0),
                        SPD_SAME => assert!(sa.max(sb) <= 1.1 * sa.min(sb) + 1e-12),
                        l if l == format!("The {a} moves faster") => assert!(sa >= 1.3 * sb),
                        l => {
                            assert_eq!(l, format!("The {b} moves faster"));
                            assert!(sb >= 1.3 * sa);
                        }
                    }
                    checked[0] += 1;
                }
                "rel_dis" => {
                    let (a, b) = (
                        between(&q.mc.question, "camera, the ", " or the "),
                        between(&q.mc.question, " or the ", ", at the first"),
                    );
                    let dist =
                        |n: &str, f: usize| (traj[f][by_name(n).0] - poses[f].center).length();
                    let first = if dist(a, 0) < dist(b, 0) { a } else { b };
                    let end = if dist(a, last) < dist(b, last) { a } else { b };
                    let want = if first == end {
                        format!("The {first} at both")
                    } else {
                        format!("The {first} at the first frame, the {end} at the last")
                    };
                    assert_eq!(q.label, want);
                    checked[1] += 1;
                }
                "abs_dir_pred" => {
                    let k = q.shown_frames.unwrap() - 1;
                    let o = truth
                        .objects
                        .iter()
                        .find(|o| {
                            o.first_bbox.is_some_and(|b| {
                                q.mc.question
                                    .contains(&format!("{} keeps", subject(truth, o, b)))
                            })
                        })
                        .unwrap();
                    let i = clip
                        .scene
                        .objects
                        .iter()
                        .position(|x| x.id == o.id)
                        .unwrap();
                    // Project with the intrinsics: the image motion (at the last shown view)
                    // agrees with the label's horizontal and vertical senses; depth with
                    // toward/away.
                    let (pk, pl) = (
                        poses[k].world_to_cam(traj[k][i]),
                        poses[k].world_to_cam(traj[last][i]),
                    );
                    let dir: Direction = q.label.parse().unwrap();
                    match dir {
                        Direction::TowardCamera => assert!(pl.z < pk.z),
                        Direction::AwayFromCamera => assert!(pl.z > pk.z),
                        d => {
                            let (du, dv) = d.image_dir();
                            let (uk, vk) = clip.intrinsics.project_cam(pk).unwrap();
                            let (ul, vl) = clip.intrinsics.project_cam(pl).unwrap();
                            if du != 0.0 {
                                assert_eq!((ul - uk).signum(), du.signum(), "{q:?}");
                            }
                            if dv != 0.0 {
                                assert_eq!((vl - vk).signum(), dv.signum(), "{q:?}");
                            }
                        }
                    }
                    assert_eq!(q.video_id(), format!("{}_first{}", q.clip_id, k + 1));
                    checked[2] += 1;
                }
                "rel_dir_pred" => {
                    let k = q.shown_frames.unwrap() - 1;
                    let (a, b) = (
                        between(&q.mc.question, "where will the ", " be relative"),
                        between(&q.mc.question, "relative to the ", " at the end"),
                    );
                    let cam = |n: &str| poses[k].world_to_cam(traj[last][by_name(n).0]);
                    let (pa, pb) = (cam(a), cam(b));
                    let (ua, _) = clip.intrinsics.project_cam(pa).unwrap();
                    let (ub, _) = clip.intrinsics.project_cam(pb).unwrap();
                    let side = if ua < ub { "left" } else { "right" };
                    let near = if pa.z < pb.z {
                        "closer to"
                    } else {
                        "farther from"
                    };
                    assert_eq!(
                        q.label,
                        format!("To the {side} of it, and {near} the camera")
                    );
                    checked[3] += 1;
                }
                _ => assert_eq!(q.shown_frames, None),
            }
        }
        assert!(checked.iter().all(|&c| c >= 3), "{checked:?}");
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{counts:?}");
        assert_eq!(build_benchmark(&pairs, 11, 8), qs);
    }

    #[test]
    fn view_direction_sectors_and_ambiguity() {
        let cam = Pose::look_at(DVec3::new(0.0, 1.0, 0.0), DVec3::new(0.0, 1.0, 5.0)).unwrap();
        let p = DVec3::new(0.0, 1.0, 5.0);
        // Camera x (right) is world -X here; camera y (down) is world -Y.
        let right = cam.cam_dir_to_world(DVec3::X);
        let down = cam.cam_dir_to_world(DVec3::Y);
        assert_eq!(view_direction(right, p, &cam), Some(Direction::Right));
        assert_eq!(view_direction(-down, p, &cam), Some(Direction::Up));
        assert_eq!(
            view_direction(right + down, p, &cam),
            Some(Direction::RightDown)
        );
        assert_eq!(
            view_direction(-DVec3::Z, p, &cam),
            Some(Direction::TowardCamera)
        );
        assert_eq!(
            view_direction(DVec3::Z * 0.5, p, &cam),
            Some(Direction::AwayFromCamera)
        );
        // 22.5° between Right and Right-Down: no clear answer; nor half sideways, half away.
        let edge = right * 22.5f64.to_radians().cos() + down * 22.5f64.to_radians().sin();
        assert_eq!(view_direction(edge, p, &cam), None);
        assert_eq!(view_direction(right + DVec3::Z, p, &cam), None);
        assert_eq!(view_direction(right * 0.001, p, &cam), None);
        assert_eq!(prediction_shown_frames(16), Some(12));
        assert_eq!(prediction_shown_frames(5), None);
    }
}
