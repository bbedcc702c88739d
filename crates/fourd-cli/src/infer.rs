//! `fourd infer`: one question about images or a video, answered with streaming output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fourd_model::generation::{generate, GenerationConfig, Sampling, SamplingOverrides, TokenKind};
use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::processor::{list_frames, load_image};
use fourd_model::tokenizer::{Content, Message};
use fourd_model::ModelBundle;
use serde_json::json;

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer.json, ...).
    #[arg(long)]
    pub model: PathBuf,
    /// Image file(s), in prompt order.
    #[arg(long, num_args = 1.., conflicts_with = "frames")]
    pub image: Vec<PathBuf>,
    /// A folder of frames, read in name order as one video.
    #[arg(long, conflicts_with = "video")]
    pub frames: Option<PathBuf>,
    /// A video file, decoded with FFmpeg: frames sampled at --fps from t = 0, at most
    /// --max-frames (uniformly subsampled), scaled to at most 256*28*28 pixels.
    #[arg(long, conflicts_with = "image")]
    pub video: Option<PathBuf>,
    /// Frames per second: the rate --frames were sampled at (default 2, transformers' default), or
    /// the rate to sample --video at (default 1, as 4DThinker's evaluation). Sets the temporal
    /// M-RoPE positions.
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, default_value_t = 50)]
    pub max_frames: usize,
    /// The question, put verbatim into the user turn after the images / video.
    #[arg(long)]
    pub question: String,
    /// Append the 4DThinker think/answer instruction to the question.
    #[arg(long)]
    pub suffix: bool,
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Greedy decoding (overrides generation_config.json).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub run: crate::model_args::RunModelArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InferArgs) -> Result<()> {
    let dtype = a.run.dtype;
    let device = a.run.device.open()?;
    let mut pipe = ModelBundle::load(&a.model, dtype, &device)
        .with_context(|| format!("loading {}", a.model.display()))?;
    if let Some(dir) = &a.run.adapter {
        pipe.attach_adapter(dir)
            .with_context(|| format!("--adapter {}", dir.display()))?;
    }
    pipe.model.config.rope_index = a.run.rope_index;

    let mut content = Vec::new();
    let mut prompt = PromptInput::default();
    for p in &a.image {
        prompt
            .images
            .push(load_image(p, pipe.processor.image_processor.pixel_cap)?);
        content.push(Content::Image);
    }
    if let Some(dir) = &a.frames {
        let frames = list_frames(dir)?
            .iter()
            .map(|p| load_image(p, pipe.processor.image_processor.pixel_cap))
            .collect::<fourd_model::Result<Vec<_>>>()?;
        prompt.videos.push(VideoFrames {
            frames,
            fps: a.fps.unwrap_or(2.0),
        });
        content.push(Content::Video);
    }
    if let Some(path) = &a.video {
        let opts = fourd_video::SamplingOptions {
            fps: a.fps.unwrap_or(1.0),
            max_frames: a.max_frames,
            ..Default::default()
        };
        let v = fourd_video::decode_video(path, &opts)?;
        tracing::info!(
            "{}: {} frames sampled of {} ({:.1} s at {:.2} fps)",
            path.display(),
            v.frames.len(),
            v.source_frames,
            v.duration,
            v.source_fps
        );
        prompt.videos.push(VideoFrames {
            frames: v.frames,
            fps: opts.fps,
        });
        content.push(Content::Video);
    }
    content.push(Content::Text(fourd_records::prompt::with_suffix(
        &a.question,
        a.suffix,
    )));
    prompt.text = pipe
        .tokenizer
        .apply_chat_template(&[Message::new("user", content)], true)?;

    let sampling = Sampling::resolve(
        &pipe.generation,
        &SamplingOverrides {
            greedy: a.greedy.then_some(true),
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
            seed: a.seed,
        },
    );
    tracing::info!("decoding: {}", sampling.describe());
    let latent = pipe.latent_tokens(a.run.latent_size)?;
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        sampling,
        stop_ids: pipe.stop_ids(),
        latent,
    };

    let inputs = pipe.processor.prepare(&pipe.tokenizer, &[prompt])?;
    let params = pipe.rope_params();
    let started = std::time::Instant::now();
    let mut stream = TextStream::default();
    let outputs = generate(&pipe.model, &inputs, &params, &cfg, |_, id, kind| {
        if !a.json {
            stream.push(&pipe.tokenizer, id, kind);
        }
    })?;
    let out = &outputs[0];
    let text_ids: Vec<u32> = out
        .token_ids
        .iter()
        .zip(&out.kinds)
        .filter(|(_, k)| **k == TokenKind::Text)
        .map(|(&t, _)| t)
        .collect();
    let text = pipe.tokenizer.decode(&text_ids, true)?;
    let secs = started.elapsed().as_secs_f64();
    if !a.json {
        stream.finish();
    }
    tracing::info!(
        "{} tokens in {secs:.2}s ({:.1} tokens/s), prompt {} tokens",
        out.token_ids.len(),
        out.token_ids.len() as f64 / secs,
        inputs.seq_len()
    );
    if a.json {
        let segments: Vec<_> = out
            .latent_segments
            .iter()
            .map(|s| json!({"start": s.start, "count": s.len}))
            .collect();
        let v = json!({
            "text": text,
            "token_ids": out.token_ids,
            "logprobs": out.logprobs,
            "latent_segments": segments,
            "finish_reason": format!("{:?}", out.finish_reason).to_lowercase(),
            "prompt_tokens": inputs.seq_len(),
        });
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(())
}

/// Prints text as it is generated: decodes the text ids so far and writes what is new; imagery
/// segments are shown as `[imagery xN]`.
#[derive(Default)]
struct TextStream {
    ids: Vec<u32>,
    printed: usize,
    latent: usize,
}

impl TextStream {
    fn push(&mut self, tok: &fourd_model::tokenizer::QwenTokenizer, id: u32, kind: TokenKind) {
        let mut out = std::io::stdout();
        match kind {
            TokenKind::Text => {
                self.ids.push(id);
                if let Ok(text) = tok.decode(&self.ids, true) {
                    // Hold back an incomplete UTF-8 sequence (shown as U+FFFD) until it completes.
                    if !text.ends_with('\u{FFFD}') && text.len() > self.printed {
                        let _ = write!(out, "{}", &text[self.printed..]);
                        self.printed = text.len();
                    }
                }
            }
            TokenKind::LatentStart => self.latent = 0,
            TokenKind::LatentPad => self.latent += 1,
            TokenKind::LatentEnd => {
                let _ = write!(out, "[imagery x{}]", self.latent);
            }
        }
        let _ = out.flush();
    }
    fn finish(&mut self) {
        if self.latent > 0 && self.ids.is_empty() {
            print!("[imagery x{}]", self.latent);
        }
        println!();
    }
}
