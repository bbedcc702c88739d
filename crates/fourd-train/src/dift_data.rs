//! DIFT records -> model-ready examples, as the reference's `4dthinker` task builds them
//! (`preprocess.md` section 12):
//!
//! * user turn: the `image_input` frames as one video at 1 fps (each frame resized to at most
//!   256*28*28 pixels), then `text_input` plus the 4DThinker suffix;
//! * assistant turn: `text_output` in which the k-th `<output_image>` becomes
//!   `<|latent_start|>`, `latent_size` x `<|latent_pad|>`, `<|latent_end|>`, bound to the k-th
//!   `image_output` image (same pixel cap), whose vision features are average-pooled into the
//!   pad positions;
//! * labels: every assistant token after `<|im_start|>assistant\n` (latent start and end
//!   included, so the model learns to open and close imagery) except the latent pads; the prompt
//!   is never a target.
//!
//! Relative paths in a record resolve by `fourd_records::paths` (the JSONL file's folder, or
//! `--data-root`). A record that cannot be
//! used (tag/image count mismatch, no `<answer>`, missing image, too long) is skipped with its id
//! and the reason; training goes on.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use fourd_model::generation::LatentTokens;
use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::processor::{load_image, VisualPatches, DEFAULT_DECODE_PIXEL_CAP};
use fourd_model::tokenizer::{Content, Message, LATENT_END, LATENT_PAD, LATENT_START};
use fourd_model::ModelBundle;
use fourd_records::prompt::with_suffix;
use fourd_records::PathRule;

use crate::error::{Result, TrainError};

pub use fourd_records::dift::OUTPUT_IMAGE_TAG;
pub use fourd_records::DiftRecord;

/// Pixel cap of the reference for both the frames and the helper images.
pub const DIFT_MAX_PIXELS: usize = fourd_video::DEFAULT_MAX_PIXELS;

/// A record and where it came from.
#[derive(Clone, Debug)]
pub struct LoadedRecord {
    pub record: DiftRecord,
    pub line: usize,
    /// How the record's image paths resolve (see `fourd_records::paths`).
    pub paths: PathRule,
}

/// Reads a DIFT JSONL file; its paths resolve against its folder.
pub fn read_dift_jsonl(path: &Path) -> Result<Vec<LoadedRecord>> {
    read_dift_records(path, None)
}

/// Reads a DIFT JSONL file whose relative paths resolve against `data_root` when given, else its
/// folder. Malformed lines are whole-file errors naming the line: a file that does not parse is
/// a wrong file, not a bad record.
pub fn read_dift_records(path: &Path, data_root: Option<&Path>) -> Result<Vec<LoadedRecord>> {
    let paths = PathRule::for_file(path, data_root);
    Ok(fourd_records::dift::read_file(path)?
        .into_iter()
        .map(|(line, record)| LoadedRecord {
            record,
            line,
            paths: paths.clone(),
        })
        .collect())
}

/// How many skip reasons an error lists.
const REASONS_SHOWN: usize = 5;

/// The first skip reasons, one `id: reason` per line.
pub fn first_reasons<'a>(skips: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    skips
        .take(REASONS_SHOWN)
        .map(|(id, reason)| format!("  {id}: {reason}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl LoadedRecord {
    /// The first image of the record that does not exist, by the path rule.
    pub fn missing_file(&self) -> Option<PathBuf> {
        let r = &self.record;
        r.image_input
            .iter()
            .chain(&r.image_output)
            .map(|p| self.paths.resolve(p))
            .find(|p| !p.is_file())
    }
}

/// Checks that the records' images exist before any model is loaded: when none of the records
/// has all its images (a moved folder, a wrong `--data-root`), there is nothing to train on and
/// the error names the first missing files; when some lack images, a warning says how many.
pub fn check_files(data: &Path, records: &[LoadedRecord]) -> Result<()> {
    let missing: Vec<(String, String)> = records
        .iter()
        .filter_map(|r| {
            r.missing_file().map(|p| {
                (
                    r.record.display_id(r.line),
                    format!("{} not found", p.display()),
                )
            })
        })
        .collect();
    if missing.len() == records.len() {
        return Err(TrainError::NothingToTrain {
            path: data.to_path_buf(),
            count: missing.len(),
            reasons: format!(
                "{}\n(relative paths resolve against {}; give --data-root for files written relative to another folder)",
                first_reasons(missing.iter().map(|(a, b)| (a, b))),
                records[0].paths.base().display()
            ),
        });
    }
    if let Some((id, reason)) = missing.first() {
        tracing::warn!(
            "{}: {} of {} record(s) lack an image and will be skipped (first: {id}: {reason})",
            data.display(),
            missing.len(),
            records.len()
        );
    }
    Ok(())
}

/// A record ready for the model (one sequence, no padding).
#[derive(Clone, Debug)]
pub struct DiftExample {
    pub id: String,
    pub input_ids: Vec<u32>,
    /// Target of position `i` (predicted from position `i - 1`), `None` where no loss applies.
    pub labels: Vec<Option<u32>>,
    /// Length of the prompt (everything up to and including `<|im_start|>assistant\n`).
    pub prompt_len: usize,
    /// First position after the reply's last `<answer>` tag (`input_ids.len()` without one).
    pub answer_start: usize,
    pub video: VisualPatches,
    pub second_per_grid: f64,
    /// The helper images in tag order.
    pub latent_images: Vec<VisualPatches>,
    pub question: String,
    pub target: String,
}

/// Why a record was skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

pub struct ExampleBuilder {
    pub pipeline: Arc<ModelBundle>,
    pub latent: LatentTokens,
    pub max_length: usize,
    pub max_pixels: usize,
    pub fps: f64,
}

impl ExampleBuilder {
    /// Builds the example, or says why the record cannot be used.
    pub fn build(&self, rec: &LoadedRecord) -> std::result::Result<DiftExample, Skipped> {
        let id = rec.record.display_id(rec.line);
        let skip = |reason: String| Skipped {
            id: id.clone(),
            reason,
        };
        let r = &rec.record;
        let tags = r.text_output.matches(OUTPUT_IMAGE_TAG).count();
        if tags != r.image_output.len() {
            return Err(skip(format!(
                "text_output has {tags} {OUTPUT_IMAGE_TAG} tag(s) but image_output lists {} image(s)",
                r.image_output.len()
            )));
        }
        if !r.text_output.contains("<answer>") || !r.text_output.contains("</answer>") {
            return Err(skip("text_output has no <answer>...</answer>".into()));
        }
        if r.image_input.is_empty() {
            return Err(skip(
                "image_input is empty (the question needs its frames)".into(),
            ));
        }
        let load = |p: &str| -> std::result::Result<image::RgbImage, Skipped> {
            let path = rec.paths.resolve(p);
            let img =
                load_image(&path, DEFAULT_DECODE_PIXEL_CAP).map_err(|e| skip(e.to_string()))?;
            Ok(fourd_video::resize_for_model(&img, self.max_pixels, 28))
        };
        let frames = r
            .image_input
            .iter()
            .map(|p| load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let helpers = r
            .image_output
            .iter()
            .map(|p| load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if let Some(f) = frames
            .iter()
            .find(|f| (f.width(), f.height()) != (frames[0].width(), frames[0].height()))
        {
            return Err(skip(format!(
                "frames differ in size ({}x{} vs {}x{}); a video needs one frame size",
                f.width(),
                f.height(),
                frames[0].width(),
                frames[0].height()
            )));
        }
        self.assemble(id.clone(), r, frames, helpers)
            .map_err(|e| skip(e.to_string()))
    }

    fn assemble(
        &self,
        id: String,
        r: &DiftRecord,
        frames: Vec<image::RgbImage>,
        helpers: Vec<image::RgbImage>,
    ) -> Result<DiftExample> {
        let p = &self.pipeline;
        let question = with_suffix(&r.text_input, true);
        let block = format!(
            "{LATENT_START}{}{LATENT_END}",
            LATENT_PAD.repeat(self.latent.size)
        );
        let reply = r.text_output.replace(OUTPUT_IMAGE_TAG, &block);
        let user = Message::new(
            "user",
            vec![Content::Video, Content::Text(question.clone())],
        );
        let prompt_text = p
            .tokenizer
            .apply_chat_template(std::slice::from_ref(&user), true)?;
        let full_text = p.tokenizer.apply_chat_template(
            &[user, Message::new("assistant", vec![Content::Text(reply)])],
            false,
        )?;
        if !full_text.starts_with(&prompt_text) {
            return Err(TrainError::Config(
                "the chat template renders the prompt differently with and without a reply".into(),
            ));
        }
        let inputs = p.processor.prepare(
            &p.tokenizer,
            &[PromptInput {
                text: full_text,
                images: vec![],
                videos: vec![VideoFrames {
                    frames,
                    fps: self.fps,
                }],
            }],
        )?;
        let input_ids = inputs.input_ids.into_iter().next().unwrap_or_default();
        let video = inputs
            .videos
            .into_iter()
            .next()
            .ok_or_else(|| TrainError::Config("the prompt lost its video".into()))?;
        let second_per_grid = inputs.second_per_grid.first().copied().unwrap_or(1.0);
        // Prompt length: the prompt's own tokens with the video placeholder expanded like the
        // full text's. Tokenising the two texts separately must agree on that prefix.
        let merge = p.processor.image_processor.config.merge_size;
        let prompt_ids = p.tokenizer.encode(&prompt_text)?;
        let mut expanded = Vec::with_capacity(prompt_ids.len() + video.llm_tokens(merge));
        for &t in &prompt_ids {
            if t == p.processor.video_pad {
                expanded.extend(std::iter::repeat_n(t, video.llm_tokens(merge)));
            } else {
                expanded.push(t);
            }
        }
        if input_ids.len() < expanded.len() || input_ids[..expanded.len()] != expanded[..] {
            return Err(TrainError::Config(
                "the reply's tokens merge with the prompt's; cannot place the labels".into(),
            ));
        }
        let prompt_len = expanded.len();
        if input_ids.len() > self.max_length {
            return Err(TrainError::Config(format!(
                "{} tokens is longer than --max-length {}",
                input_ids.len(),
                self.max_length
            )));
        }
        let labels = input_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| (i >= prompt_len && t != self.latent.pad).then_some(t))
            .collect();
        // The answer span: the shortest reply prefix whose text holds the last `<answer>`
        // (found by bisection over decoded prefixes, as tags may split into several tokens).
        let answer_start = match r.text_output.matches("<answer>").count() {
            0 => input_ids.len(),
            n => {
                let reply_ids = &input_ids[prompt_len..];
                let holds = |k: usize| -> Result<bool> {
                    Ok(p.tokenizer
                        .decode(&reply_ids[..k], false)?
                        .matches("<answer>")
                        .count()
                        >= n)
                };
                let (mut lo, mut hi) = (0, reply_ids.len());
                if !holds(hi)? {
                    input_ids.len()
                } else {
                    while lo < hi {
                        let mid = (lo + hi) / 2;
                        if holds(mid)? {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    prompt_len + lo
                }
            }
        };
        let latent_images = helpers
            .iter()
            .map(|im| p.processor.image_processor.preprocess_image(im))
            .collect::<fourd_model::Result<Vec<_>>>()?;
        Ok(DiftExample {
            id,
            input_ids,
            labels,
            prompt_len,
            answer_start,
            video,
            second_per_grid,
            latent_images,
            question: r.text_input.clone(),
            target: r.text_output.clone(),
        })
    }
}

/// Examples built ahead of training by `workers` threads, delivered in `order`. Worker `w`
/// builds items `w, w + workers, ...`; reading the channels round-robin keeps the order exact.
pub struct Prefetcher {
    channels: Vec<Receiver<(usize, std::result::Result<DiftExample, Skipped>)>>,
    next: usize,
    len: usize,
}

impl Prefetcher {
    pub fn start(
        builder: Arc<ExampleBuilder>,
        records: Arc<Vec<LoadedRecord>>,
        order: Vec<usize>,
        workers: usize,
        depth: usize,
    ) -> Self {
        let workers = workers.max(1);
        let order = Arc::new(order);
        let len = order.len();
        let channels = (0..workers)
            .map(|w| {
                let (tx, rx) = sync_channel(depth.max(1));
                let (builder, records, order) = (builder.clone(), records.clone(), order.clone());
                std::thread::spawn(move || {
                    for k in (w..order.len()).step_by(workers) {
                        let idx = order[k];
                        let item = builder.build(&records[idx]);
                        if tx.send((idx, item)).is_err() {
                            return; // the trainer stopped early
                        }
                    }
                });
                rx
            })
            .collect();
        Prefetcher {
            channels,
            next: 0,
            len,
        }
    }
}

impl Iterator for Prefetcher {
    /// (record index, example or skip reason)
    type Item = (usize, std::result::Result<DiftExample, Skipped>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.len {
            return None;
        }
        let ch = &self.channels[self.next % self.channels.len()];
        self.next += 1;
        ch.recv().ok()
    }
}
