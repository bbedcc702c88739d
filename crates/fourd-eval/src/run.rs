//! The evaluation loop. A background thread decodes videos (in benchmark order, reusing the last
//! decoded video, since several questions share one) while the model answers earlier samples in
//! batches. Every finished sample is appended to the JSONL and flushed; a rerun skips the indices
//! already there, so nothing is scored twice and a crash loses at most the batch in flight.
//!
//! A rerun is the same run only when its manifest (model identity, benchmark digest, settings;
//! `fourd_job`) equals the one beside the results; the results file is locked while a run
//! writes it. Samples that cannot be answered (no video, an inference error) are not results:
//! they are listed with their reason and retried by the next run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use fourd_model::generation::{generate, GenerationConfig};
use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::tokenizer::{Content, Message};
use fourd_model::ModelBundle;
use fourd_video::{SamplingOptions, TimeRange};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};

use fourd_job::identity::{file_digest, model_identity, tree_digest};
use fourd_job::{JobManifest, OutputLock, Start};
use fourd_records::answer::{reply_text, Scoring};
use fourd_records::{AnswerKind, McQuestion, Media};

use crate::benchmark::{self, video_path, ColumnMap, Loaded};
use crate::error::{EvalError, Result};
use crate::official::Benchmark;
use crate::report::{
    read_jsonl, write_reports, EvalSummary, FramesUsed, JsonlAppender, ResultFiles, SampleResult,
    Skipped,
};

#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub benchmark: PathBuf,
    /// The benchmark's layout (`Auto`: by the file).
    pub format: benchmark::BenchmarkFormat,
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
    /// Replace results of a run with other inputs or settings instead of stopping.
    pub overwrite: bool,
    pub progress: bool,
    pub title: String,
    /// How replies are scored in the sample lines and the top-level figures (the summary always
    /// has both modes).
    pub scoring: Scoring,
}

/// The rows this run (or shard) is responsible for, and their benchmark.
pub fn select_records(cfg: &EvalConfig) -> Result<Loaded> {
    let mut loaded = benchmark::load_from(
        &cfg.benchmark,
        &cfg.columns,
        cfg.data_root.as_deref(),
        cfg.format,
    )?;
    let records = &mut loaded.questions;
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
    Ok(loaded)
}

/// What the model is shown for a question: its frames, and for a question about part of the
/// video, which ones they are.
struct Shown {
    frames: Vec<RgbImage>,
    used: Option<FramesUsed>,
}

type Frames = Arc<Shown>;

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
        // What was shown: the media and the window.
        type Shows = (Media, Option<(f64, f64)>);
        type Decoded = std::result::Result<Frames, Arc<EvalError>>;
        let mut last: Option<(Shows, Decoded)> = None;
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
            } else if r.options.is_empty() && r.kind == AnswerKind::Choice {
                Prepared::Skip(r, "question has no options".into())
            } else {
                let key = (r.media.clone(), r.window);
                let decoded = match &last {
                    Some((k, res)) if *k == key => res.clone(),
                    _ => {
                        let res = show(&r, &path, &opts).map(Arc::new).map_err(Arc::new);
                        last = Some((key, res.clone()));
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

/// Decodes what question `r` shows: its frames, its video, or the part of the video it asks
/// about (seeking to it).
fn show(r: &McQuestion, path: &Path, opts: &SamplingOptions) -> Result<Shown> {
    if let Media::Frames(paths) = &r.media {
        return Ok(Shown {
            frames: load_frames(paths, opts)?,
            used: None,
        });
    }
    let range = r
        .window
        .map(|(a, b)| TimeRange::new(a, b).map_err(EvalError::Input))
        .transpose()?;
    let video = fourd_video::decode_video_range(path, opts, range)?;
    Ok(Shown {
        used: r.window.map(|(a, b)| FramesUsed {
            window: [a, b],
            indices: video.indices.clone(),
            times: video.timestamps.clone(),
        }),
        frames: video.frames,
    })
}

impl EvalConfig {
    /// Checks every setting before anything is loaded or decoded; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(EvalError::Input(msg));
        let fps = self.video.fps;
        if !(fps.is_finite() && fps > 0.0) {
            return bad(format!("--fps must be a finite number > 0 (got {fps})"));
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.generation.max_new_tokens == 0 {
            return bad("--max-new-tokens must be at least 1".into());
        }
        if self.video.max_pixels < self.video.factor * self.video.factor {
            return bad(format!(
                "--max-pixels must be at least {} (one {}x{} patch)",
                self.video.factor * self.video.factor,
                self.video.factor,
                self.video.factor
            ));
        }
        self.generation.sampling.validate()?;
        if self.scoring == Scoring::Judge {
            return bad(
                "--scoring judge: a judge's verdicts come after the run; run `fourd eval judge \
                 DIR` on its results"
                    .into(),
            );
        }
        if !self.benchmark.exists() {
            return bad(format!(
                "--benchmark {}: no such file or folder",
                self.benchmark.display()
            ));
        }
        Ok(())
    }

    /// What a run is started with: the model's and the benchmark's identities and every
    /// setting that changes results (not the batch size, threads or progress bar).
    /// `benchmark`: whose questions the file turned out to hold (`--format auto` resolved).
    pub fn manifest(
        &self,
        model: &Path,
        adapter: Option<&Path>,
        benchmark: Benchmark,
    ) -> Result<JobManifest> {
        let g = &self.generation;
        // A folder benchmark (Dyn-Bench) is its question files.
        let questions = if self.benchmark.is_dir() {
            tree_digest(&self.benchmark.join("multi_json"))?
        } else {
            file_digest(&self.benchmark)?
        };
        let mut manifest = JobManifest::new("fourd eval").input("model", model_identity(model)?);
        if let Some(adapter) = adapter {
            manifest = manifest.input("adapter", model_identity(adapter)?);
        }
        let mut manifest = manifest.input("benchmark", questions);
        // Not for DSR-Bench, so runs from before other benchmarks were read still resume.
        if benchmark != Benchmark::Dsr {
            manifest = manifest.setting("format", benchmark);
        }
        Ok(manifest
            .setting("columns", format!("{:?}", self.columns))
            .setting("data_root", &self.data_root)
            .setting("video_root", &self.video_root)
            .setting("video_ext", &self.video_ext)
            .setting("max_samples", self.max_samples)
            .setting("shard", self.shard)
            .setting("fps", self.video.fps)
            .setting("max_frames", self.video.max_frames)
            .setting("max_pixels", self.video.max_pixels)
            .setting("decoding", g.sampling.describe())
            .setting("max_new_tokens", g.max_new_tokens)
            .setting("latent_size", g.latent.map(|l| l.size))
            .setting("suffix", self.suffix))
    }
}

/// Fails when not one question's video or frames exist (a wrong `--video-root` or
/// `--data-root`): that is a mistake in the command, not an accuracy of 0 / 0.
pub fn check_media(records: &[McQuestion], cfg: &EvalConfig) -> Result<()> {
    let no_media = |q: &McQuestion| matches!(&q.media, Media::Frames(f) if f.is_empty());
    let exists = |q: &McQuestion| match &q.media {
        Media::VideoId(id) => video_path(&cfg.video_root, id, &cfg.video_ext).is_file(),
        Media::Video(p) => p.is_file(),
        Media::Frames(f) => f.first().is_some_and(|p| p.is_file()),
    };
    if records.is_empty() || records.iter().any(|q| !no_media(q) && exists(q)) {
        return Ok(());
    }
    let first = &records[0];
    let looked = match &first.media {
        Media::VideoId(id) => video_path(&cfg.video_root, id, &cfg.video_ext),
        Media::Video(p) => p.clone(),
        Media::Frames(f) => f.first().cloned().unwrap_or_default(),
    };
    Err(EvalError::Input(format!(
        "none of the {} questions of {} has its video (the first was looked for at {}); check \
         --video-root, --video-ext or --data-root",
        records.len(),
        cfg.benchmark.display(),
        looked.display()
    )))
}

/// Evaluates one checkpoint; returns the summary of everything in the output files.
///
/// The output file is locked for the run (a second evaluation into it stops at once), and its
/// manifest must match this run's: results of another model, benchmark or settings are never
/// mixed in (`overwrite` replaces them).
pub fn evaluate(pipe: &ModelBundle, cfg: &EvalConfig) -> Result<EvalSummary> {
    cfg.validate()?;
    let Loaded {
        benchmark,
        questions: records,
    } = select_records(cfg)?;
    check_media(&records, cfg)?;
    let total = records.len();
    let files = ResultFiles::new(&cfg.output);
    let _lock = open_results(pipe, cfg, benchmark, &files)?;
    let pending = pending_records(records, &files)?;
    tracing::info!(
        "{}: {total} rows, {} already scored, {} to evaluate; decoding: {}",
        cfg.benchmark.display(),
        total - pending.len(),
        pending.len(),
        cfg.generation.sampling.describe()
    );
    answer_pending(pipe, cfg, benchmark, pending, &files)?;
    write_reports(&files, total, &cfg.title, cfg.scoring)
}

/// Locks the output file and checks its manifest; with `overwrite` and other inputs, clears the
/// earlier results.
fn open_results(
    pipe: &ModelBundle,
    cfg: &EvalConfig,
    benchmark: Benchmark,
    files: &ResultFiles,
) -> Result<OutputLock> {
    if let Some(dir) = files.samples.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::error::io(dir, e))?;
    }
    let lock = OutputLock::at(&files.lock, &files.samples, "fourd eval")?;
    let hint = "give --overwrite to replace them, or another --output-dir (results of a model \
                go to <output-dir>/<model folder name>-<model identity>/ already)";
    let start = cfg
        .manifest(&pipe.dir, pipe.adapter.as_deref(), benchmark)?
        .begin(&files.job, cfg.overwrite, hint)?;
    if start == Start::Fresh {
        for p in [&files.samples, &files.skipped] {
            if p.exists() {
                std::fs::remove_file(p).map_err(|e| crate::error::io(p, e))?;
            }
        }
    }
    Ok(lock)
}

/// The records not scored yet. Skipped samples are retried on every run (the video may have
/// appeared, an inference error may have been passing): their old entries go.
fn pending_records(records: Vec<McQuestion>, files: &ResultFiles) -> Result<Vec<McQuestion>> {
    let done: HashSet<usize> = read_jsonl::<SampleResult>(&files.samples)?
        .into_iter()
        .map(|r| r.index)
        .collect();
    if files.skipped.exists() {
        std::fs::remove_file(&files.skipped).map_err(|e| crate::error::io(&files.skipped, e))?;
    }
    Ok(records
        .into_iter()
        .filter(|r| !done.contains(&r.index))
        .collect())
}

/// Decodes on a background thread and answers in batches; every answer is appended (and
/// flushed) as it comes, skips go to the skip list with their reason.
fn answer_pending(
    pipe: &ModelBundle,
    cfg: &EvalConfig,
    benchmark: Benchmark,
    pending: Vec<McQuestion>,
    files: &ResultFiles,
) -> Result<()> {
    let mut out = Outputs {
        samples: JsonlAppender::open(&files.samples)?,
        skipped: JsonlAppender::open(&files.skipped)?,
        bar: progress_bar(cfg.progress, pending.len()),
    };
    let answerer = Answerer {
        pipe,
        cfg,
        benchmark,
    };
    let (tx, rx) = mpsc::sync_channel(cfg.batch_size.max(1) * 2);
    let decoder = spawn_decoder(pending, cfg, tx);
    let mut tally = Tally::default();
    let mut batch: Vec<(McQuestion, PathBuf, Frames)> = Vec::new();
    for item in rx {
        match item {
            Prepared::Skip(r, reason) => {
                skip(&mut out.skipped, r, reason)?;
                out.bar.inc(1);
            }
            Prepared::Ready(r, p, f) => {
                batch.push((r, p, f));
                if batch.len() >= cfg.batch_size.max(1) {
                    tally.flush(&answerer, &mut batch, &mut out)?;
                }
            }
        }
    }
    tally.flush(&answerer, &mut batch, &mut out)?;
    out.bar.finish_and_clear();
    decoder
        .join()
        .map_err(|_| EvalError::Input("the video decoding thread panicked".into()))
}

fn progress_bar(show: bool, len: usize) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(len as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn skip(skipped: &mut JsonlAppender, r: McQuestion, reason: String) -> Result<()> {
    tracing::warn!("sample {} ({}): skipped: {reason}", r.index, video_id(&r));
    skipped.append(&Skipped {
        index: r.index,
        video_id: video_id(&r),
        subtask_type: r.task_type,
        reason,
    })
}

/// Answers so far, for the progress bar and to tell a broken setup from a bad sample.
#[derive(Default)]
struct Tally {
    correct: usize,
    scored: usize,
    failed: usize,
}

/// What answers a batch: the model, the settings, and whose rules score the samples.
struct Answerer<'a> {
    pipe: &'a ModelBundle,
    cfg: &'a EvalConfig,
    benchmark: Benchmark,
}

/// Where answers go: the sample and skip files, and the progress bar.
struct Outputs {
    samples: JsonlAppender,
    skipped: JsonlAppender,
    bar: ProgressBar,
}

impl Tally {
    /// Answers the batch. A sample whose inference fails is not a result: it goes to the skip
    /// list (retried on the next run); when nothing has been answered yet and a whole batch
    /// fails, the setup is at fault and the run stops with the error.
    fn flush(
        &mut self,
        answerer: &Answerer,
        batch: &mut Vec<(McQuestion, PathBuf, Frames)>,
        out: &mut Outputs,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut answers = answer_batch(answerer, batch);
        if self.scored == 0 && answers.iter().all(|a| a.is_err()) {
            if let Some(Err(e)) = answers.drain(..).next() {
                return Err(EvalError::Input(format!(
                    "inference failed on the first samples, so no sample is scored: {e}"
                )));
            }
        }
        for ((q, _, _), answer) in batch.drain(..).zip(answers) {
            match answer {
                Ok(r) => {
                    self.correct += r.hit as usize;
                    self.scored += 1;
                    out.samples.append(&r)?;
                }
                Err(e) => {
                    self.failed += 1;
                    skip(&mut out.skipped, q, format!("inference failed: {e}"))?;
                }
            }
            out.bar.inc(1);
        }
        out.bar.set_message(format!(
            "accuracy {:.1}% of {}",
            100.0 * self.correct as f64 / self.scored.max(1) as f64,
            self.scored
        ));
        Ok(())
    }
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
            frames: frames.frames.clone(),
            fps: cfg.video.fps,
        }],
    })
}

/// Answers a batch; if the batch fails, each sample alone. A sample that fails alone gives its
/// error (the reference scored it as wrong; here it is not a result).
fn answer_batch(
    answerer: &Answerer,
    batch: &[(McQuestion, PathBuf, Frames)],
) -> Vec<Result<SampleResult>> {
    let Answerer {
        pipe,
        cfg,
        benchmark,
    } = *answerer;
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
        .map(|((r, path, shown), raw)| {
            let raw = raw.inspect_err(|e| {
                tracing::warn!("sample {}: inference failed: {e}", r.index);
            })?;
            let mut sample = SampleResult {
                index: r.index,
                video_id: video_id(r),
                video_path: path.display().to_string(),
                question: r.text(),
                hit: 0,
                gt: r.answer.clone(),
                answer: String::new(),
                pred: String::new(),
                raw,
                subtask_type: r.task_type.clone(),
                benchmark,
                kind: r.kind,
                score: None,
                frames: shown.used.clone(),
                judge: None,
            };
            // The one scoring rule, the one `rescore` applies too.
            crate::report::score_sample(&mut sample, cfg.scoring);
            Ok(sample)
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
fn load_frames(paths: &[PathBuf], opts: &SamplingOptions) -> Result<Vec<RgbImage>> {
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
