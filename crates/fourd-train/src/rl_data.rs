//! 4DRL records: `Question`, `A`-`D`, `Correct`, and `frame_paths` or `video_path` (`Type`
//! optional). Frames: at most `max_frames` (16) chosen evenly (numpy `linspace`, ends included),
//! each downscaled so its long side is at most `max_side` (448) px, fed as one video at 1 fps.
//! The prompt is the evaluator's: question, blank line, `A. ...` lines, then the 4DThinker
//! suffix. (The reference RL prompt opens the think block with `</think>` and so contradicts its
//! own format reward; we use the DIFT/evaluation suffix the model was trained with.)

use std::io::BufRead;
use std::path::{Path, PathBuf};

use fourd_model::inputs::{PromptInput, VideoFrames, FOUR_D_THINKER_SUFFIX};
use fourd_model::processor::load_image;
use fourd_model::tokenizer::{Content, Message, QwenTokenizer};
use image::RgbImage;

use crate::error::{Result, TrainError};

#[derive(Clone, Debug)]
pub struct RlRecord {
    pub id: String,
    pub question: String,
    /// `A. text` lines for the non-empty options.
    pub options: Vec<String>,
    /// Upper-cased letter.
    pub correct: String,
    pub frames: Vec<PathBuf>,
    pub video: Option<PathBuf>,
    pub task_type: String,
}

/// Reads a 4DRL JSONL. Records without `Correct` are dropped (as the reference does), with a
/// warning; a line that is not JSON is an error naming the line.
pub fn read_rl_jsonl(path: &Path) -> Result<Vec<RlRecord>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| TrainError::Record {
            path: path.to_path_buf(),
            line: i + 1,
            msg: format!("not JSON: {e}"),
        })?;
        let s = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let correct = s("Correct")
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase().to_string())
            .unwrap_or_default();
        let id = v
            .get("id")
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .unwrap_or_else(|| format!("line {}", i + 1));
        if correct.is_empty() {
            tracing::warn!("{}: record {id} has no `Correct`; dropped", path.display());
            continue;
        }
        let options = ["A", "B", "C", "D"].iter().filter_map(|l| {
            let t = s(l);
            (!t.is_empty()).then(|| format!("{l}. {t}"))
        });
        let frames = v
            .get("frame_paths")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|p| p.as_str()).map(resolve).collect())
            .unwrap_or_default();
        let video = v.get("video_path").and_then(|x| x.as_str()).map(resolve);
        out.push(RlRecord {
            id,
            question: s("Question"),
            options: options.collect(),
            correct,
            frames,
            video,
            task_type: s("Type"),
        });
    }
    if out.is_empty() {
        return Err(TrainError::Record {
            path: path.to_path_buf(),
            line: 0,
            msg: "no usable records".into(),
        });
    }
    Ok(out)
}

/// Question, blank line, options, suffix.
pub fn rl_question_text(question: &str, options: &[String]) -> String {
    format!(
        "{question}\n\n{}{FOUR_D_THINKER_SUFFIX}",
        options.join("\n")
    )
}

/// `np.linspace(0, n - 1, k).astype(int)` when `n > k`, else all.
pub fn even_indices(n: usize, k: usize) -> Vec<usize> {
    if n <= k || k == 0 {
        return (0..n).collect();
    }
    (0..k)
        .map(|i| ((i as f64) * (n - 1) as f64 / (k - 1).max(1) as f64) as usize)
        .collect()
}

/// The record's frames, sampled and downscaled; an error message when they cannot be read.
pub fn load_rl_frames(
    r: &RlRecord,
    max_frames: usize,
    max_side: u32,
) -> std::result::Result<Vec<RgbImage>, String> {
    let frames: Vec<RgbImage> = if !r.frames.is_empty() {
        even_indices(r.frames.len(), max_frames)
            .into_iter()
            .map(|i| load_image(&r.frames[i], 1 << 28).map_err(|e| e.to_string()))
            .collect::<std::result::Result<_, _>>()?
    } else if let Some(v) = &r.video {
        let opts = fourd_video::SamplingOptions {
            fps: 1.0,
            max_frames: usize::MAX,
            ..fourd_video::SamplingOptions::all_frames()
        };
        let decoded = fourd_video::decode_video(v, &opts).map_err(|e| e.to_string())?;
        let all: Vec<RgbImage> = decoded.frames;
        let keep = even_indices(all.len(), max_frames);
        keep.into_iter().map(|i| all[i].clone()).collect()
    } else {
        return Err("record has neither frame_paths nor video_path".into());
    };
    if frames.is_empty() {
        return Err("no frames".into());
    }
    let (w0, h0) = (frames[0].width(), frames[0].height());
    Ok(frames
        .into_iter()
        .map(|f| {
            let f = if (f.width(), f.height()) != (w0, h0) {
                image::imageops::resize(&f, w0, h0, image::imageops::FilterType::Triangle)
            } else {
                f
            };
            let long = f.width().max(f.height());
            if long > max_side {
                let s = max_side as f64 / long as f64;
                let (w, h) = (
                    ((f.width() as f64) * s).round().max(1.0) as u32,
                    ((f.height() as f64) * s).round().max(1.0) as u32,
                );
                image::imageops::resize(&f, w, h, image::imageops::FilterType::Triangle)
            } else {
                f
            }
        })
        .collect())
}

/// The rendered prompt with its video.
pub fn rl_prompt(
    tokenizer: &QwenTokenizer,
    r: &RlRecord,
    frames: Vec<RgbImage>,
) -> Result<PromptInput> {
    let text = rl_question_text(&r.question, &r.options);
    let rendered = tokenizer.apply_chat_template(
        &[Message::new(
            "user",
            vec![Content::Video, Content::Text(text)],
        )],
        true,
    )?;
    Ok(PromptInput {
        text: rendered,
        images: vec![],
        videos: vec![VideoFrames { frames, fps: 1.0 }],
    })
}
