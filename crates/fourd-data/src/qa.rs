//! Stage 3, questions and chains of thought of one labelled clip (`candidates.json`). Balancing,
//! options and letters need the whole run and happen at export (`export`).

use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use crate::camera_labels::{format_labels, parse_labels, CameraSegment};
use crate::cot::{imagery_sentence, join_and, Timeline};
use crate::error::Result;
use crate::ingest::IngestRecord;
use crate::label::{Imagery, LabelRecord};
use crate::object_motion::ObjectMeasurement;
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

fn fill(t: &str, obj: &str, (a, b): (String, String), bx: &str) -> String {
    t.replace("{obj}", obj)
        .replace("{a}", &a)
        .replace("{b}", &b)
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

fn object_evidence(m: &ObjectMeasurement, (sx, sy): (f64, f64), timeline: &Timeline) -> String {
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
        "Its mask centre moves from ({:.0}, {:.0}) at {} to ({:.0}, {:.0}) at {}, {} and {}, and its area changes by a factor of {:.2}.",
        first.centroid[0] * sx,
        first.centroid[1] * sy,
        timeline.at(first.frame),
        last.centroid[0] * sx,
        last.centroid[1] * sy,
        timeline.at(last.frame),
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
        "Its displacement per frame step averages {:.3} in the first third, {:.3} in the middle and {:.3} in the last third (minimum {:.3}, maximum {:.3}).",
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
    let mut qa = ClipQa::new(ingest, labels, opts);
    let mut out = Vec::new();
    if qa.want(QuestionKind::Camera) {
        for seg in &labels.camera.segments {
            out.push(qa.camera_candidate(seg)?);
        }
    }
    for m in &labels.objects {
        qa.object_candidates(m, &mut out);
    }
    Ok(out)
}

/// What every question about one clip shares.
struct ClipQa<'a> {
    ingest: &'a IngestRecord,
    labels: &'a LabelRecord,
    opts: &'a QaOptions,
    /// One stream per clip, drawn in a fixed order (camera segments, then each object's kinds),
    /// so the same seed picks the same templates.
    rng: ChaCha8Rng,
    /// Source pixels to the pixels the model is shown.
    scale: (f64, f64),
    /// First sentence of every chain of thought.
    intro: String,
    /// Time of each annotated frame, as the text names it.
    timeline: Timeline,
}

impl<'a> ClipQa<'a> {
    fn new(ingest: &'a IngestRecord, labels: &'a LabelRecord, opts: &'a QaOptions) -> Self {
        let n = labels.frames;
        let timeline = Timeline::new(ingest.seconds());
        ClipQa {
            ingest,
            labels,
            opts,
            rng: crate::fsio::clip_rng(opts.seed, &ingest.key, "qa"),
            scale: shown_scale(labels.width, labels.height),
            intro: format!(
                "The video has {n} frames, {}from {} to {}.",
                timeline
                    .rate_phrase()
                    .map_or(String::new(), |r| format!("{r}, ")),
                timeline.at(0),
                timeline.at(n - 1)
            ),
            timeline,
        }
    }

    /// The times of annotated frames `a` and `b`, as text.
    fn times(&self, a: usize, b: usize) -> (String, String) {
        (self.timeline.at(a), self.timeline.at(b))
    }

    fn want(&self, kind: QuestionKind) -> bool {
        self.opts.kinds.contains(&kind)
    }

    /// Draws a question template of `kind`.
    fn template(&mut self, kind: QuestionKind) -> &'static str {
        templates(kind)
            .choose(&mut self.rng)
            .copied()
            .unwrap_or_default()
    }

    /// The question about one camera segment; its reasoning cites the landmark imagery when the
    /// segment has some, the relative pose always.
    fn camera_candidate(&mut self, seg: &CameraSegment) -> Result<Candidate> {
        let parsed = parse_labels(&seg.labels)?;
        let answer = format_labels(&parsed);
        let t = self.template(QuestionKind::Camera);
        let poses = self.camera_poses(seg);
        let (middle, image_output) = self.camera_evidence(seg, &poses);
        Ok(Candidate {
            id: format!("{}#camera-{}-{}", self.ingest.key, seg.start, seg.end),
            clip_key: self.ingest.key.clone(),
            kind: QuestionKind::Camera,
            question: fill(t, "", self.times(seg.start, seg.end), ""),
            think: format!(
                "{} The question is about {} to {}. {middle} That means {}. So the camera motion is {answer}.",
                self.intro,
                self.timeline.at(seg.start),
                self.timeline.at(seg.end),
                camera_reason(&parsed)
            ),
            answer,
            image_input: self.ingest.frames.clone(),
            image_output,
            rewrite: None,
        })
    }

    /// The relative pose over the segment in words: rotation, then translation.
    fn camera_poses(&self, seg: &CameraSegment) -> String {
        let rel = fourd_world::relative_motion(
            &self.ingest.poses[seg.start],
            &self.ingest.poses[seg.end],
        );
        let [dx, dy, dz] = rel.translation.to_array();
        format!(
            "over the segment the view turns {:.1} degrees in yaw, {:.1} in pitch and {:.1} in roll, and the camera moves {}, {} and {}",
            rel.yaw_deg,
            rel.pitch_deg,
            rel.roll_deg,
            signed(dx, "right", "left", ""),
            signed(dy, "down", "up", ""),
            signed(dz, "forward", "backward", "")
        )
    }

    /// The middle of a camera chain of thought and the imagery it shows. Without a landmark (no
    /// depth) the reasoning rests on the poses alone and the question has no imagery: it goes
    /// to the 4DRL file only.
    fn camera_evidence(&self, seg: &CameraSegment, poses: &str) -> (String, Vec<String>) {
        let imagery = self
            .labels
            .camera_imagery
            .iter()
            .find(|ci| ci.start == seg.start && ci.end == seg.end);
        let scale = self.scale;
        match imagery {
            Some(ci) => (
                format!(
                    "A camera move shows as the static background shifting, so I fix a textured static patch of the scene as a landmark. {} From the first to the last of these the landmark's centre shifts {} and {}, and its area changes by a factor of {:.2}. The camera poses agree: {poses}.",
                    imagery_sentence("I picture the landmark, highlighted in red,", &self.timeline, &ci.imagery.frames),
                    signed(ci.landmark_shift_px[0] * scale.0, "to the right", "to the left", " px"),
                    signed(ci.landmark_shift_px[1] * scale.1, "down", "up", " px"),
                    ci.landmark_area_ratio
                ),
                ci.imagery.paths.clone(),
            ),
            None => (format!("The camera poses show that {poses}."), Vec::new()),
        }
    }

    /// The questions about one object, in kind order: direction, box direction, distance,
    /// speed. Objects without a direction or without imagery get none.
    fn object_candidates(&mut self, m: &'a ObjectMeasurement, out: &mut Vec<Candidate>) {
        let (Some(direction), Some(img)) =
            (&m.direction, self.labels.object_imagery.get(&m.track_id))
        else {
            return;
        };
        let obj = ObjectStory {
            m,
            img,
            evidence: object_evidence(m, self.scale, &self.timeline),
            sentence: imagery_sentence(
                &format!("To follow it I picture the {} highlighted in red", m.name),
                &self.timeline,
                &img.frames,
            ),
        };
        if self.want(QuestionKind::Direction) {
            out.push(self.direction_candidate(&obj, direction));
        }
        if self.want(QuestionKind::BoxDirection) {
            out.push(self.box_direction_candidate(&obj, direction));
        }
        if self.want(QuestionKind::Distance) {
            out.extend(self.distance_candidate(&obj));
        }
        if self.want(QuestionKind::Speed) {
            out.extend(self.speed_candidate(&obj));
        }
    }

    /// A question about `obj` whose chain of thought is the shared story plus `conclusion`.
    fn object_candidate(
        &self,
        obj: &ObjectStory,
        kind: QuestionKind,
        answer: &str,
        question: String,
        conclusion: String,
    ) -> Candidate {
        let m = obj.m;
        let [a, b] = m.span;
        Candidate {
            id: format!("{}#{}-obj{}", self.ingest.key, kind.as_str(), m.track_id),
            clip_key: self.ingest.key.clone(),
            kind,
            question,
            answer: answer.to_string(),
            think: format!(
                "{} The question is about the {} from {} to {}. {} {} {conclusion}",
                self.intro,
                m.name,
                self.timeline.at(a),
                self.timeline.at(b),
                obj.sentence,
                obj.evidence
            ),
            image_input: self.ingest.frames.clone(),
            image_output: obj.img.paths.clone(),
            rewrite: None,
        }
    }

    /// Which way the named object moves, as seen from the camera.
    fn direction_candidate(&mut self, obj: &ObjectStory, direction: &str) -> Candidate {
        let m = obj.m;
        let [a, b] = m.span;
        let t = self.template(QuestionKind::Direction);
        self.object_candidate(
            obj,
            QuestionKind::Direction,
            direction,
            fill(t, &m.name, self.times(a, b), ""),
            format!(
                "So, as seen from the camera, the {} is {}.",
                m.name,
                direction.to_lowercase()
            ),
        )
    }

    /// The direction question with the object given as its first box (in the shown frame's
    /// pixels) instead of its name; the reasoning names it once, tied to the box.
    fn box_direction_candidate(&mut self, obj: &ObjectStory, direction: &str) -> Candidate {
        let m = obj.m;
        let [a, b] = m.span;
        let first = &m.observations[0];
        let bx = model_box(first.bbox, self.labels.width, self.labels.height);
        let bx_s = format!("[{},{},{},{}]", bx[0], bx[1], bx[2], bx[3]);
        let t = self.template(QuestionKind::BoxDirection);
        let mut c = self.object_candidate(
            obj,
            QuestionKind::BoxDirection,
            direction,
            fill(t, "", self.times(first.frame, b), &bx_s),
            format!(
                "So, as seen from the camera, the object is {}.",
                direction.to_lowercase()
            ),
        );
        c.think = c.think.replacen(
            &format!("the {} from", m.name),
            &format!(
                "the object in the box {bx_s} at {}, which is the {}, from",
                self.timeline.at(a),
                m.name
            ),
            1,
        );
        c
    }

    /// How the object's distance to the camera changes, when it was measured.
    fn distance_candidate(&mut self, obj: &ObjectStory) -> Option<Candidate> {
        let m = obj.m;
        let [a, b] = m.span;
        let d = m.distance.as_ref()?;
        let t = self.template(QuestionKind::Distance);
        Some(self.object_candidate(
            obj,
            QuestionKind::Distance,
            d,
            fill(t, &m.name, self.times(a, b), ""),
            format!("So the best description of its distance to the camera is: {d}."),
        ))
    }

    /// How the object's speed changes, when it was measured; the reasoning adds the per-third
    /// speed profile after the shared evidence.
    fn speed_candidate(&mut self, obj: &ObjectStory) -> Option<Candidate> {
        let m = obj.m;
        let [a, b] = m.span;
        let s = m.speed.as_ref()?;
        let t = self.template(QuestionKind::Speed);
        let mut c = self.object_candidate(
            obj,
            QuestionKind::Speed,
            s,
            fill(t, &m.name, self.times(a, b), ""),
            format!(
                "That profile matches {} best, so the answer is {s}.",
                s.to_lowercase()
            ),
        );
        c.think = c.think.replacen(
            &obj.evidence,
            &format!("{} {}", obj.evidence, speed_evidence(m)),
            1,
        );
        Some(c)
    }
}

/// What every question about one object shares: its measurement, imagery, and the sentences
/// of evidence its chains of thought quote.
struct ObjectStory<'a> {
    m: &'a ObjectMeasurement,
    img: &'a Imagery,
    /// Measured motion in the shown frame's pixels (`object_evidence`).
    evidence: String,
    /// How the imagery follows the object (`imagery_sentence`).
    sentence: String,
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
