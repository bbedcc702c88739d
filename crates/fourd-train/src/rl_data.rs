//! 4DRL records: `Question`, `A`-`D`, `Correct`, and `frame_paths` or `video_path` (`Type`
//! optional). Frames: at most `max_frames` (16) chosen evenly (numpy `linspace`, ends included),
//! each downscaled so its long side is at most `max_side` (448) px, fed as one video at 1 fps.
//! The prompt is the evaluator's (`fourd_records::prompt`): question, blank line, `A. ...` lines,
//! then the 4DThinker suffix. (The reference RL prompt opens the think block with `</think>` and so contradicts its
//! own format reward; we use the DIFT/evaluation suffix the model was trained with.)

use std::path::Path;

use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::processor::{load_image, DEFAULT_DECODE_PIXEL_CAP};
use fourd_model::tokenizer::{Content, Message, QwenTokenizer};
use fourd_records::{McQuestion, Media, PathRule};
use image::RgbImage;

use crate::error::{Result, TrainError};

/// The questions of a 4DRL JSONL (`fourd_records::rl`), paths resolved against `data_root` when
/// given, else the file's folder. Records without `Correct` or a video are dropped (as the
/// reference drops those without `Correct`), with a warning; a line that is not a record is an
/// error naming the line.
pub fn read_rl_jsonl(path: &Path, data_root: Option<&Path>) -> Result<Vec<McQuestion>> {
    let rule = PathRule::for_file(path, data_root);
    let (questions, dropped) = fourd_records::rl::read_questions(path, &rule)?;
    if let Some(first) = dropped.first() {
        tracing::warn!(
            "{}: {} record(s) without `Correct` or a video dropped (first: {first})",
            path.display(),
            dropped.len()
        );
    }
    Ok(questions)
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

/// The record's frames, sampled and downscaled; an error naming the file that cannot be read.
pub fn load_rl_frames(r: &McQuestion, max_frames: usize, max_side: u32) -> Result<Vec<RgbImage>> {
    let frames: Vec<RgbImage> = match &r.media {
        Media::Frames(paths) => even_indices(paths.len(), max_frames)
            .into_iter()
            .map(|i| load_image(&paths[i], DEFAULT_DECODE_PIXEL_CAP))
            .collect::<fourd_model::Result<_>>()?,
        Media::Video(v) => {
            let opts = fourd_video::SamplingOptions {
                fps: 1.0,
                max_frames: usize::MAX,
                ..fourd_video::SamplingOptions::all_frames()
            };
            let all: Vec<RgbImage> = fourd_video::decode_video(v, &opts)?.frames;
            let keep = even_indices(all.len(), max_frames);
            keep.into_iter().map(|i| all[i].clone()).collect()
        }
        Media::VideoId(id) => {
            return Err(TrainError::Frames(format!(
                "record {} names video {id:?} without a file (4DRL records give frame_paths or \
                 video_path)",
                r.id
            )))
        }
    };
    if frames.is_empty() {
        return Err(TrainError::Frames(format!("record {} has no frames", r.id)));
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
    r: &McQuestion,
    frames: Vec<RgbImage>,
) -> Result<PromptInput> {
    let text = r.prompt_text(true);
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
