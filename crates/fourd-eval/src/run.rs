//! The evaluation loop. A background thread decodes videos (in benchmark order, reusing the last
//! decoded video, since several questions share one) while the model answers earlier samples in
//! batches. Every finished sample is appended to the JSONL and flushed; a rerun skips the indices
//! already there, so nothing is scored twice and a crash loses at most the batch in flight.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use fourd_model::generation::{generate, GenerationConfig};
use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::tokenizer::{Content, Message};
use fourd_model::ModelBundle;
use fourd_video::SamplingOptions;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};

use fourd_records::answer::{extract_choice, reply_text};
use fourd_records::{McQuestion, Media};

use crate::benchmark::{self, video_path, ColumnMap};
use crate::error::{EvalError, Result};
use crate::report::{
    read_jsonl, write_reports, EvalSummary, JsonlAppender, ResultFiles, SampleResult, Skipped,
};

#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub benchmark: PathBuf,
    pub columns: ColumnMap,
    /// Where relative frame and video paths of a 4DRL benchmark resolve (default: its folder).
    pub data_root: Option<PathBuf>,
    pub video_root: PathBuf,
    pub video_ext: String,
    /// Per-sample JSONL; the other files sit beside it.
    pub output: PathBuf,
    /// `(i, n)`, 1-based: this process evaluates the rows whose index % n == i - 1.
    pub shard: Option<(usize, usize)>,
    pub max_samples: Option<usize>,
    pub video: SamplingOptions,
    pub generation: GenerationConfig,
    pub batch_size: usize,
    /// Append the 4DThinker think/answer instruction (the reference always does).
    pub suffix: bool,
    pub progress: bool,
    pub title: String,
}

/// The rows this run (or shard) is responsible for.
pub fn select_records(cfg: &EvalConfig) -> Result<Vec<McQuestion>> {
    let mut records = benchmark::load_from(&cfg.benchmark, &cfg.columns, cfg.data_root.as_deref())?;
    if let Some(m) = cfg.max_samples {
        records.truncate(m);
    }
    if let Some((i, n)) = cfg.shard {
        if n == 0 || i == 0 || i > n {
            return Err(EvalError::Input(format!(
                "shard {i}/{n}: expected 1 <= i <= n"
            )));
        }
        records.retain(|r| r.index % n == i - 1);
    }
    Ok(records)
}

type Frames = Arc<Vec<RgbImage>>;

enum Prepared {
    Ready(McQuestion, PathBuf, Frames),
    Skip(McQuestion, String),
}

/// Decodes the videos of `records` in order on a background thread.
fn spawn_decoder(
    records: Vec<McQuestion>,
    cfg: &EvalConfig,
    tx: mpsc::SyncSender<Prepared>,
) -> std::thread::JoinHandle<()> {
    let (root, ext, opts) = (
        cfg.video_root.clone(),
        cfg.video_ext.clone(),
        cfg.video.clone(),
    );
    std::thread::spawn(move || {
        // Several questions share a video: the last decoding (or its failure) is reused.
        let mut last: Option<(Media, std::result::Result<Frames, Arc<EvalError>>)> = None;
        for r in records {
            let path = match &r.media {
                Media::VideoId(id) => video_path(&root, id, &ext),
                Media::Video(p) => p.clone(),
                Media::Frames(f) => f
                    .first()
                    .and_then(|p| p.parent())
                    .map(PathBuf::from)
                    .unwrap_or_default(),
            };
            let item = if r.media == Media::VideoId(String::new()) {
                Prepared::Skip(r, "no video id".into())
            } else if r.options.is_empty() {
                Prepared::Skip(r, "question has no options".into())
            } else {
                let decoded = match &last {
                    Some((media, res)) if *media == r.media => res.clone(),
                    _ => {
                        let res = match &r.media {
                            Media::Frames(paths) => load_frames(paths, &opts),
                            _ => fourd_video::decode_video(&path, &opts)
                                .map(|v| v.frames)
                                .map_err(EvalError::from),
                        }
                        .map(Arc::new)
                        .map_err(Arc::new);
                        last = Some((r.media.clone(), res.clone()));
                        res
                    }
                };
                match decoded {
                    Ok(frames) => Prepared::Ready(r, path, frames),
                    Err(e) => Prepared::Skip(r, e.to_string()),
                }
            };
            if tx.send(item).is_err() {
                return; // the evaluator stopped
            }
        }
    })
}

/// Evaluates one checkpoint; returns the summary of everything in the output files.
pub fn evaluate(pipe: &ModelBundle, cfg: &EvalConfig) -> Result<EvalSummary> {
    let records = select_records(cfg)?;
    let total = records.len();
    let files = ResultFiles::new(&cfg.output);
    let done: HashSet<usize> = read_jsonl::<SampleResult>(&files.samples)?
        .into_iter()
        .map(|r| r.index)
        .collect();
    // Skipped samples are retried on every run (the video may have appeared); drop old entries.
    let retried: Vec<Skipped> = read_jsonl(&files.skipped)?;
    if !retried.is_empty() {
        std::fs::remove_file(&files.skipped).map_err(|e| crate::error::io(&files.skipped, e))?;
    }
    let pending: Vec<McQuestion> = records
        .into_iter()
        .filter(|r| !done.contains(&r.index))
        .collect();
    tracing::info!(
        "{}: {total} rows, {} already scored, {} to evaluate; decoding: {}",
        cfg.benchmark.display(),
        done.len(),
        pending.len(),
        cfg.generation.sampling.describe()
    );
    let mut samples = JsonlAppender::open(&files.samples)?;
    let mut skipped = JsonlAppender::open(&files.skipped)?;

    let bar = if cfg.progress {
        ProgressBar::new(pending.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (tx, rx) = mpsc::sync_channel(cfg.batch_size.max(1) * 2);
    let decoder = spawn_decoder(pending, cfg, tx);
    let (mut correct, mut scored) = (0usize, 0usize);
    let mut batch: Vec<(McQuestion, PathBuf, Frames)> = Vec::new();
    let mut flush = |batch: &mut Vec<(McQuestion, PathBuf, Frames)>,
                     samples: &mut JsonlAppender|
     -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        for r in answer_batch(pipe, cfg, batch) {
            correct += r.hit as usize;
            scored += 1;
            samples.append(&r)?;
            bar.inc(1);
        }
        bar.set_message(format!(
            "accuracy {:.1}% of {scored}",
            100.0 * correct as f64 / scored.max(1) as f64
        ));
        batch.clear();
        Ok(())
    };
    for item in rx {
        match item {
            Prepared::Skip(r, reason) => {
                tracing::warn!("sample {} ({}): skipped: {reason}", r.index, video_id(&r));
                skipped.append(&Skipped {
                    index: r.index,
                    video_id: video_id(&r),
                    subtask_type: r.task_type,
                    reason,
                })?;
                bar.inc(1);
            }
            Prepared::Ready(r, p, f) => {
                batch.push((r, p, f));
                if batch.len() >= cfg.batch_size.max(1) {
                    flush(&mut batch, &mut samples)?;
                }
            }
        }
    }
    flush(&mut batch, &mut samples)?;
    bar.finish_and_clear();
    decoder
        .join()
        .map_err(|_| EvalError::Input("the video decoding thread panicked".into()))?;
    write_reports(&files, total, &cfg.title)
}

fn prompt(
    pipe: &ModelBundle,
    cfg: &EvalConfig,
    r: &McQuestion,
    frames: &Frames,
) -> Result<PromptInput> {
    let text = r.prompt_text(cfg.suffix);
    let rendered = pipe.tokenizer.apply_chat_template(
        &[Message::new(
            "user",
            vec![Content::Video, Content::Text(text)],
        )],
        true,
    )?;
    Ok(PromptInput {
        text: rendered,
        images: vec![],
        videos: vec![VideoFrames {
            frames: frames.as_ref().clone(),
            fps: cfg.video.fps,
        }],
    })
}

/// Answers a batch; if the batch fails, each sample alone; a sample that fails alone is scored as
/// wrong with the error as its output, as the reference does.
fn answer_batch(
    pipe: &ModelBundle,
    cfg: &EvalConfig,
    batch: &[(McQuestion, PathBuf, Frames)],
) -> Vec<SampleResult> {
    let run = |items: &[(McQuestion, PathBuf, Frames)]| -> Result<Vec<String>> {
        let prompts = items
            .iter()
            .map(|(r, _, f)| prompt(pipe, cfg, r, f))
            .collect::<Result<Vec<_>>>()?;
        let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts)?;
        let outs = generate(
            &pipe.model,
            &inputs,
            &pipe.rope_params(),
            &cfg.generation,
            |_, _, _| {},
        )?;
        outs.iter()
            .map(|o| Ok(reply_text(&pipe.tokenizer.decode(&o.token_ids, false)?)))
            .collect()
    };
    let raws: Vec<Result<String>> = match run(batch) {
        Ok(r) => r.into_iter().map(Ok).collect(),
        Err(e) if batch.len() > 1 => {
            tracing::warn!("batch failed ({e}); retrying its samples one by one");
            batch
                .iter()
                .map(|it| run(std::slice::from_ref(it)).map(|mut v| v.remove(0)))
                .collect()
        }
        Err(e) => vec![Err(e)],
    };
    batch
        .iter()
        .zip(raws)
        .map(|((r, path, _), raw)| {
            let (pred, raw) = match raw {
                Ok(raw) => (extract_choice(&raw, &r.options), raw),
                Err(e) => {
                    tracing::warn!("sample {}: inference failed: {e}", r.index);
                    (String::new(), format!("error: {e}"))
                }
            };
            SampleResult {
                index: r.index,
                video_id: video_id(r),
                video_path: path.display().to_string(),
                question: r.text(),
                hit: u8::from(!pred.is_empty() && pred == r.answer),
                gt: r.answer.clone(),
                answer: pred.clone(),
                pred,
                raw,
                subtask_type: r.task_type.clone(),
            }
        })
        .collect()
}

/// What result files name a question's video by: its `videoID`, else the record's id.
pub fn video_id(q: &McQuestion) -> String {
    match &q.media {
        Media::VideoId(id) => id.clone(),
        _ => q.id.clone(),
    }
}

/// A video given as its frames: all of them, or `max_frames` evenly spaced (ends included), each
/// read with the image reader's pixel cap and scaled to the model's frame size.
fn load_frames(
    paths: &[PathBuf],
    opts: &SamplingOptions,
) -> Result<Vec<RgbImage>> {
    if paths.is_empty() {
        return Err(EvalError::Input("the record lists no frames".into()));
    }
    let keep = fourd_video::sample_indices(paths.len(), 1.0, 1.0, opts.max_frames);
    keep.into_iter()
        .map(|i| {
            let img = fourd_model::processor::load_image(
                &paths[i],
                fourd_model::processor::DEFAULT_DECODE_PIXEL_CAP,
            )?;
            Ok(fourd_video::resize_for_model(
                &img,
                opts.max_pixels,
                opts.factor,
            ))
        })
        .collect()
}
