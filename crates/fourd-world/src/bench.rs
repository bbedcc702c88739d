//! A DSR-Bench-format multiple-choice benchmark built from synthetic ground truth
//! (`fourd synth bench`).
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
//!
//! DSR-Bench has no camera-motion key; camera motion is the viewpoint's direction relative to the
//! static scene, so it is filed under `rel_dir` (relative direction), the closest key.
//! `abs_dis` (absolute distance change of one object to the observer) is used rather than
//! `rel_dis` (distance between two objects).
//!
//! Output: `benchmark.parquet` with columns `videoID`, `question`, `options` (`list<string>`,
//! `"A. ..."`..`"D. ..."`), `answer` (a letter) and `type`, the layout
//! `fourd_eval::benchmark::load` reads; and `truth.jsonl` (`index`, `videoID`, `type`, `answer`,
//! `label`) for inspection. Same inputs give byte-identical files.

use std::path::Path;
use std::sync::Arc;

use crate::camera::CameraLabel;
use crate::error::{Result, WorldError};
use crate::generate::{ClipTruth, DistanceChange, SplitMix64};
use crate::motion::{Direction, SpeedPattern};

/// The never-correct fourth option of `abs_dis` questions.
pub const DIS_EXTRA: &str = "First Getting Closer, Then Farther from Camera";

/// Answer letters.
pub const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// One question of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchQuestion {
    pub video_id: String,
    pub question: String,
    /// `"A. label"` .. `"D. label"`.
    pub options: Vec<String>,
    /// The correct letter.
    pub answer: char,
    /// A DSR-Bench sub-task key (see the module docs).
    pub task_type: &'static str,
    /// The correct option's label text (without the letter).
    pub label: String,
}

/// A question before its options are lettered.
#[derive(Debug, Clone)]
struct Draft {
    question: String,
    task_type: &'static str,
    correct: String,
    /// Every other valid label (at least 3).
    others: Vec<String>,
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

/// All candidate questions of one clip, in a fixed order.
fn drafts(truth: &ClipTruth) -> Vec<Draft> {
    let mut out = Vec::new();
    for o in &truth.objects {
        let Some(b) = o.first_bbox else { continue }; // hidden in frame 0: cannot be referred to
        let same_name = truth.objects.iter().filter(|p| p.name == o.name).count();
        let subject = if same_name > 1 {
            format!(
                "the {} whose bounding box in the first frame is [{}, {}, {}, {}] (x1, y1, x2, y2 in pixels)",
                o.name, b[0], b[1], b[2], b[3]
            )
        } else {
            format!("the {}", o.name)
        };
        out.push(Draft {
            question: format!(
                "Relative to the camera's view in the first frame, in which direction does {subject} move?"
            ),
            task_type: "abs_dir",
            correct: o.direction.as_str().to_string(),
            others: others(&Direction::ALL, o.direction, |d| d.as_str().to_string()),
        });
        if o.direction != Direction::Stationary {
            out.push(Draft {
                question: format!("How does the speed of {subject} change during the video?"),
                task_type: "abs_spd",
                correct: o.speed.as_str().to_string(),
                others: others(&SpeedPattern::ALL, o.speed, |s| s.as_str().to_string()),
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
        });
    }
    out
}

/// Builds the benchmark from `(videoID, truth)` pairs in order: up to `per_clip` questions per
/// clip, chosen, lettered and ordered by an RNG seeded with `seed`.
pub fn build_benchmark(
    clips: &[(String, ClipTruth)],
    seed: u64,
    per_clip: usize,
) -> Vec<BenchQuestion> {
    let mut rng = SplitMix64::new(seed ^ 0xB3C4_D5E6_F708_1920);
    let mut chosen: Vec<(String, Draft)> = Vec::new();
    for (id, truth) in clips {
        let mut d = drafts(truth);
        shuffle(&mut rng, &mut d);
        d.truncate(per_clip);
        chosen.extend(d.into_iter().map(|d| (id.clone(), d)));
    }
    let mut perm = [0usize; 4];
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, (video_id, d))| {
            if i % 4 == 0 {
                perm = [0, 1, 2, 3];
                shuffle(&mut rng, &mut perm);
            }
            let slot = perm[i % 4];
            let mut others = d.others;
            shuffle(&mut rng, &mut others);
            let mut labels: Vec<String> = others.into_iter().take(3).collect();
            labels.insert(slot, d.correct.clone());
            let options = labels
                .iter()
                .zip(LETTERS)
                .map(|(l, c)| format!("{c}. {l}"))
                .collect();
            BenchQuestion {
                video_id,
                question: d.question,
                options,
                answer: LETTERS[slot],
                task_type: d.task_type,
                label: d.correct,
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
pub fn write_parquet(path: &Path, qs: &[BenchQuestion]) -> Result<()> {
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
            .set_created_by("fourd-world synth bench".to_string())
            .build(),
    );
    let file = std::fs::File::create(path).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(perr)?;
    let mut rg = w.next_row_group().map_err(perr)?;
    let ba = |s: &str| ByteArray::from(s);
    let flat = |f: &dyn Fn(&BenchQuestion) -> String| -> Vec<ByteArray> {
        qs.iter().map(|q| ba(&f(q))).collect()
    };
    let answers: Vec<String> = qs.iter().map(|q| q.answer.to_string()).collect();
    type Column = (Vec<ByteArray>, Option<Vec<i16>>, Option<Vec<i16>>);
    let columns: Vec<Column> = vec![
        (flat(&|q| q.video_id.clone()), None, None),
        (flat(&|q| q.question.clone()), None, None),
        (
            qs.iter()
                .flat_map(|q| q.options.iter().map(|o| ba(o)))
                .collect(),
            Some(
                qs.iter()
                    .flat_map(|q| vec![3i16; q.options.len()])
                    .collect(),
            ),
            Some(
                qs.iter()
                    .flat_map(|q| (0..q.options.len()).map(|k| if k == 0 { 0i16 } else { 1 }))
                    .collect(),
            ),
        ),
        (answers.iter().map(|a| ba(a)).collect(), None, None),
        (flat(&|q| q.task_type.to_string()), None, None),
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
pub fn truth_jsonl(qs: &[BenchQuestion]) -> String {
    let mut s = String::new();
    for (i, q) in qs.iter().enumerate() {
        let v = serde_json::json!({
            "index": i,
            "videoID": q.video_id,
            "type": q.task_type,
            "answer": q.answer.to_string(),
            "label": q.label,
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
            assert_eq!(q.options.len(), 4);
            let k = LETTERS.iter().position(|&c| c == q.answer).unwrap();
            counts[k] += 1;
            assert_eq!(q.options[k], format!("{}. {}", q.answer, q.label));
            let labels: Vec<&str> = q.options.iter().map(|o| &o[3..]).collect();
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
}
