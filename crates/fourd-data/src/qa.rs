//! Stage 3, questions and chains of thought of one labelled clip (`candidates.json`). Balancing,
//! options and letters need the whole run and happen at export (`export`).

use rand::seq::IndexedRandom;

use crate::camera::{format_labels, parse_labels};
use crate::cot::{imagery_sentence, join_and};
use crate::error::Result;
use crate::ingest::IngestRecord;
use crate::label::LabelRecord;
use crate::motion::ObjectMeasurement;
use crate::questions::{templates, Candidate, QuestionKind};

/// Options of the question stage.
#[derive(Debug, Clone, PartialEq)]
pub struct QaOptions {
    pub kinds: Vec<QuestionKind>,
    pub seed: u64,
}

/// A first-frame box in the coordinates of the frames the model is shown: DIFT resizes frames
/// above 200,704 px (`fourd_video::model_frame_size`), so the box is scaled the same way (the
/// reference used `smart_resize` at ~1 MP instead, `preprocess.md` §15 item 13).
pub fn model_box(bbox: [u32; 4], width: u32, height: u32) -> [u32; 4] {
    let Some((mw, mh)) = fourd_video::model_frame_size(
        width,
        height,
        fourd_video::DEFAULT_MAX_PIXELS,
        fourd_video::DEFAULT_FACTOR,
    ) else {
        return bbox;
    };
    let sx = mw as f64 / width as f64;
    let sy = mh as f64 / height as f64;
    let f = |v: u32, s: f64, side: u32| {
        ((v as f64 + 0.5) * s - 0.5)
            .round()
            .clamp(0.0, side as f64 - 1.0) as u32
    };
    [
        f(bbox[0], sx, mw),
        f(bbox[1], sy, mh),
        f(bbox[2], sx, mw),
        f(bbox[3], sy, mh),
    ]
}

fn fill(t: &str, obj: &str, a: usize, b: usize, bx: &str) -> String {
    t.replace("{obj}", obj)
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
        .replace("{box}", bx)
}

fn signed(v: f64, pos: &str, neg: &str, unit: &str) -> String {
    if v >= 0.0 {
        format!("{:.2}{unit} {pos}", v)
    } else {
        format!("{:.2}{unit} {neg}", -v)
    }
}

/// Why the camera labels follow from the measured relative pose.
fn camera_reason(labels: &[fourd_world::CameraLabel]) -> String {
    use fourd_world::CameraLabel::*;
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            match l {
                PanLeft => {
                    "the view turns to the left about the vertical axis, so the scene slides right"
                }
                PanRight => {
                    "the view turns to the right about the vertical axis, so the scene slides left"
                }
                TiltUp => "the view tilts upward, so the scene slides down",
                TiltDown => "the view tilts downward, so the scene slides up",
                RollClockwise => "the view rotates clockwise about the viewing axis",
                RollCounterClockwise => "the view rotates counter-clockwise about the viewing axis",
                DollyIn => "the camera moves forward, so the landmark grows",
                DollyOut => "the camera moves backward, so the landmark shrinks",
                TruckLeft => "the camera slides to the left",
                TruckRight => "the camera slides to the right",
                PedestalUp => "the camera rises",
                PedestalDown => "the camera lowers",
                Stay => "neither rotation nor translation passes the motion thresholds",
            }
            .to_string()
        })
        .collect();
    join_and(&parts)
}

/// Scale from source pixels to the pixels of the frames the model is shown (DIFT's resize), so
/// that every coordinate a chain of thought quotes is one the model can see.
pub fn shown_scale(width: u32, height: u32) -> (f64, f64) {
    match fourd_video::model_frame_size(
        width,
        height,
        fourd_video::DEFAULT_MAX_PIXELS,
        fourd_video::DEFAULT_FACTOR,
    ) {
        Some((w, h)) => (w as f64 / width as f64, h as f64 / height as f64),
        None => (1.0, 1.0),
    }
}

fn object_evidence(m: &ObjectMeasurement, (sx, sy): (f64, f64)) -> String {
    let e = &m.evidence;
    // The measurement's endpoints (clean frames), not the first and last sightings.
    let at = |f: usize| {
        m.observations
            .iter()
            .find(|o| o.frame == f)
            .unwrap_or(&m.observations[0])
    };
    let (first, last) = (at(m.span[0]), at(m.span[1]));
    let mut s = format!(
        "Its mask centre moves from ({:.0}, {:.0}) at {}s to ({:.0}, {:.0}) at {}s, {} and {}, and its area changes by a factor of {:.2}.",
        first.centroid[0] * sx,
        first.centroid[1] * sy,
        first.frame,
        last.centroid[0] * sx,
        last.centroid[1] * sy,
        last.frame,
        signed(e.centroid_shift_px[0] * sx, "to the right", "to the left", " px"),
        signed(e.centroid_shift_px[1] * sy, "down", "up", " px"),
        e.area_ratio
    );
    if let Some(d) = e.displacement_cam0 {
        s.push_str(&format!(
            " Removing the camera's own motion with the depth and the camera poses, the object itself moves {}, {} and {} in the first view's axes",
            signed(d[0], "right", "left", ""),
            signed(d[1], "down", "up", ""),
            signed(d[2], "forward", "backward", "")
        ));
        if let (Some(a), Some(b)) = (e.distance_first, e.distance_last) {
            s.push_str(&format!(
                ", and its distance to the camera goes from {a:.2} to {b:.2}"
            ));
        }
        s.push('.');
    } else {
        s.push_str(
            " The camera stays still over this time, so the image motion is the object's own.",
        );
    }
    s
}

fn speed_evidence(m: &ObjectMeasurement) -> String {
    let v = &m.evidence.step_speeds;
    let k = v.len();
    let third = (k / 3).max(1);
    let avg = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    format!(
        "Its displacement per second averages {:.3} in the first third, {:.3} in the middle and {:.3} in the last third (minimum {:.3}, maximum {:.3}).",
        avg(&v[..third]),
        avg(&v[third..k - third]),
        avg(&v[k - third..]),
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(0.0, f64::max)
    )
}

/// Every question the clip supports, with its chain of thought (no options, no letter yet).
pub fn clip_candidates(
    ingest: &IngestRecord,
    labels: &LabelRecord,
    opts: &QaOptions,
) -> Result<Vec<Candidate>> {
    let mut rng = crate::fsio::clip_rng(opts.seed, &ingest.key, "qa");
    let n = labels.frames;
    let mut out = Vec::new();
    let want = |k: QuestionKind| opts.kinds.contains(&k);
    let scale = shown_scale(labels.width, labels.height);
    let intro = format!(
        "The video has {n} frames, one per second, from 0s to {}s.",
        n - 1
    );

    if want(QuestionKind::Camera) {
        for seg in &labels.camera.segments {
            let parsed = parse_labels(&seg.labels)?;
            let answer = format_labels(&parsed);
            let t = templates(QuestionKind::Camera)
                .choose(&mut rng)
                .copied()
                .unwrap_or_default();
            let rel =
                fourd_world::relative_motion(&ingest.poses[seg.start], &ingest.poses[seg.end]);
            let [dx, dy, dz] = rel.translation.to_array();
            let poses = format!(
                "over the segment the view turns {:.1} degrees in yaw, {:.1} in pitch and {:.1} in roll, and the camera moves {}, {} and {}",
                rel.yaw_deg,
                rel.pitch_deg,
                rel.roll_deg,
                signed(dx, "right", "left", ""),
                signed(dy, "down", "up", ""),
                signed(dz, "forward", "backward", "")
            );
            let imagery = labels
                .camera_imagery
                .iter()
                .find(|ci| ci.start == seg.start && ci.end == seg.end);
            // Without a landmark (no depth) the reasoning rests on the poses alone and the question
            // has no imagery: it goes to the 4DRL file only.
            let (middle, image_output) = match imagery {
                Some(ci) => (
                    format!(
                        "A camera move shows as the static background shifting, so I fix a textured static patch of the scene as a landmark. {} From the first to the last of these the landmark's centre shifts {} and {}, and its area changes by a factor of {:.2}. The camera poses agree: {poses}.",
                        imagery_sentence("I picture the landmark, highlighted in red,", &ci.imagery.frames),
                        signed(ci.landmark_shift_px[0] * scale.0, "to the right", "to the left", " px"),
                        signed(ci.landmark_shift_px[1] * scale.1, "down", "up", " px"),
                        ci.landmark_area_ratio
                    ),
                    ci.imagery.paths.clone(),
                ),
                None => (format!("The camera poses show that {poses}."), Vec::new()),
            };
            out.push(Candidate {
                id: format!("{}#camera-{}-{}", ingest.key, seg.start, seg.end),
                clip_key: ingest.key.clone(),
                kind: QuestionKind::Camera,
                question: fill(t, "", seg.start, seg.end, ""),
                think: format!(
                    "{intro} The question is about {}s to {}s. {middle} That means {}. So the camera motion is {answer}.",
                    seg.start,
                    seg.end,
                    camera_reason(&parsed)
                ),
                answer,
                image_input: ingest.frames.clone(),
                image_output,
                rewrite: None,
            });
        }
    }

    for m in &labels.objects {
        let (Some(direction), Some(img)) = (&m.direction, labels.object_imagery.get(&m.track_id))
        else {
            continue;
        };
        let [a, b] = m.span;
        let evidence = object_evidence(m, scale);
        let sentence = imagery_sentence(
            &format!("To follow it I picture the {} highlighted in red", m.name),
            &img.frames,
        );
        let base = |kind: QuestionKind, answer: &str, question: String, conclusion: String| {
            Candidate {
            id: format!("{}#{}-obj{}", ingest.key, kind.as_str(), m.track_id),
            clip_key: ingest.key.clone(),
            kind,
            question,
            answer: answer.to_string(),
            think: format!("{intro} The question is about the {} from {a}s to {b}s. {sentence} {evidence} {conclusion}", m.name),
            image_input: ingest.frames.clone(),
            image_output: img.paths.clone(),
            rewrite: None,
        }
        };
        if want(QuestionKind::Direction) {
            let t = templates(QuestionKind::Direction)
                .choose(&mut rng)
                .copied()
                .unwrap_or_default();
            out.push(base(
                QuestionKind::Direction,
                direction,
                fill(t, &m.name, a, b, ""),
                format!(
                    "So, as seen from the camera, the {} is {}.",
                    m.name,
                    direction.to_lowercase()
                ),
            ));
        }
        if want(QuestionKind::BoxDirection) {
            let first = &m.observations[0];
            let bx = model_box(first.bbox, labels.width, labels.height);
            let bx_s = format!("[{},{},{},{}]", bx[0], bx[1], bx[2], bx[3]);
            let t = templates(QuestionKind::BoxDirection)
                .choose(&mut rng)
                .copied()
                .unwrap_or_default();
            let mut c = base(
                QuestionKind::BoxDirection,
                direction,
                fill(t, "", first.frame, b, &bx_s),
                format!(
                    "So, as seen from the camera, the object is {}.",
                    direction.to_lowercase()
                ),
            );
            c.think = c.think.replacen(
                &format!("the {} from", m.name),
                &format!(
                    "the object in the box {bx_s} at {a}s, which is the {}, from",
                    m.name
                ),
                1,
            );
            out.push(c);
        }
        if want(QuestionKind::Distance) {
            if let Some(d) = &m.distance {
                let t = templates(QuestionKind::Distance)
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or_default();
                out.push(base(
                    QuestionKind::Distance,
                    d,
                    fill(t, &m.name, a, b, ""),
                    format!("So the best description of its distance to the camera is: {d}."),
                ));
            }
        }
        if want(QuestionKind::Speed) {
            if let Some(s) = &m.speed {
                let t = templates(QuestionKind::Speed)
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or_default();
                let mut c = base(
                    QuestionKind::Speed,
                    s,
                    fill(t, &m.name, a, b, ""),
                    format!(
                        "That profile matches {} best, so the answer is {s}.",
                        s.to_lowercase()
                    ),
                );
                c.think =
                    c.think
                        .replacen(&evidence, &format!("{evidence} {}", speed_evidence(m)), 1);
                out.push(c);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_follow_the_model_resize() {
        // 64x64 is below the pixel budget: unchanged.
        assert_eq!(model_box([1, 2, 30, 40], 64, 64), [1, 2, 30, 40]);
        // 1280x720 is shown at 588x336.
        let b = model_box([0, 0, 1279, 719], 1280, 720);
        assert_eq!(b, [0, 0, 587, 335]);
    }
}
