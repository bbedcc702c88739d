//! `Qwen2_5_VLProcessor`: rendered prompts plus their images and videos become token ids (each
//! `<|image_pad|>` / `<|video_pad|>` expanded to one token per merged patch), an attention mask and
//! the patches for the vision tower.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::error::{ModelError, Result};
use crate::mrope::VisionItem;
use crate::processor::{ImageProcessor, VisualPatches};
use crate::tokenizer::QwenTokenizer;

/// A video: frames in time order and the rate they were sampled at.
#[derive(Clone, Debug)]
pub struct VideoFrames {
    pub frames: Vec<RgbImage>,
    pub fps: f64,
}

/// One prompt: text rendered by the chat template (one placeholder per item) and its media in
/// order of appearance.
#[derive(Clone, Debug, Default)]
pub struct PromptInput {
    pub text: String,
    pub images: Vec<RgbImage>,
    pub videos: Vec<VideoFrames>,
}

/// What the model consumes: a left-padded batch of ids and the vision patches.
#[derive(Clone, Debug)]
pub struct ModelInputs {
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u8>>,
    pub images: Vec<VisualPatches>,
    pub videos: Vec<VisualPatches>,
    /// Seconds per temporal patch of each video.
    pub second_per_grid: Vec<f64>,
}

impl ModelInputs {
    pub fn batch_size(&self) -> usize {
        self.input_ids.len()
    }
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }
    pub fn image_grids(&self) -> Vec<[usize; 3]> {
        self.images.iter().map(|p| p.grid_thw).collect()
    }
    pub fn video_grids(&self) -> Vec<[usize; 3]> {
        self.videos.iter().map(|p| p.grid_thw).collect()
    }
    /// Vision items in batch order, for `get_rope_index`.
    pub fn vision_items(&self) -> Vec<VisionItem> {
        let mut items: Vec<VisionItem> = self
            .images
            .iter()
            .map(|p| VisionItem::Image {
                grid_thw: p.grid_thw,
            })
            .collect();
        items.extend(
            self.videos
                .iter()
                .zip(&self.second_per_grid)
                .map(|(p, &s)| VisionItem::Video {
                    grid_thw: p.grid_thw,
                    second_per_grid: s,
                }),
        );
        items
    }
    /// `[patches, patch_dim]` of all images (or videos), or `None` when there are none.
    pub fn pixel_tensor(items: &[VisualPatches], device: &Device) -> Result<Option<Tensor>> {
        let Some(first) = items.first() else {
            return Ok(None);
        };
        let dim = first.patch_dim;
        let data: Vec<f32> = items.iter().flat_map(|p| p.data.iter().copied()).collect();
        let rows = data.len() / dim;
        Ok(Some(Tensor::from_vec(data, (rows, dim), device)?))
    }
}

pub struct Processor {
    pub image_processor: ImageProcessor,
    pub image_pad: u32,
    pub video_pad: u32,
    pub pad_id: u32,
}

impl Processor {
    pub fn new(
        image_processor: ImageProcessor,
        tokenizer: &QwenTokenizer,
        pad_id: Option<u32>,
    ) -> Result<Self> {
        let s = &tokenizer.special;
        let image_pad = s
            .image_pad
            .ok_or_else(|| tokenizer_missing(tokenizer, "<|image_pad|>"))?;
        let video_pad = s
            .video_pad
            .ok_or_else(|| tokenizer_missing(tokenizer, "<|video_pad|>"))?;
        let pad_id = pad_id
            .or(s.endoftext)
            .ok_or_else(|| tokenizer_missing(tokenizer, "<|endoftext|> (padding)"))?;
        Ok(Processor {
            image_processor,
            image_pad,
            video_pad,
            pad_id,
        })
    }

    /// Tokenises and expands a batch of prompts; rows are left-padded to one length.
    pub fn prepare(
        &self,
        tokenizer: &QwenTokenizer,
        prompts: &[PromptInput],
    ) -> Result<ModelInputs> {
        let merge = self.image_processor.config.merge_size;
        let tp = self.image_processor.config.temporal_patch_size as f64;
        let mut rows = Vec::with_capacity(prompts.len());
        let mut images = Vec::new();
        let mut videos = Vec::new();
        let mut second_per_grid = Vec::new();
        for (n, prompt) in prompts.iter().enumerate() {
            let ids = tokenizer.encode(&prompt.text)?;
            let n_img = ids.iter().filter(|&&t| t == self.image_pad).count();
            let n_vid = ids.iter().filter(|&&t| t == self.video_pad).count();
            if n_img != prompt.images.len() {
                return Err(ModelError::input(format!(
                    "prompt {n} has {n_img} image placeholder(s) but {} image(s) were given",
                    prompt.images.len()
                )));
            }
            if n_vid != prompt.videos.len() {
                return Err(ModelError::input(format!(
                    "prompt {n} has {n_vid} video placeholder(s) but {} video(s) were given",
                    prompt.videos.len()
                )));
            }
            let img: Vec<VisualPatches> = prompt
                .images
                .iter()
                .map(|im| self.image_processor.preprocess_image(im))
                .collect::<Result<_>>()?;
            let mut vid = Vec::with_capacity(prompt.videos.len());
            for v in &prompt.videos {
                if !(v.fps.is_finite() && v.fps > 0.0) {
                    return Err(ModelError::input(format!(
                        "video fps must be positive, got {}",
                        v.fps
                    )));
                }
                vid.push(self.image_processor.preprocess_frames(&v.frames)?);
                second_per_grid.push(tp / v.fps);
            }
            let (mut ii, mut vi) = (img.iter(), vid.iter());
            let mut expanded = Vec::with_capacity(ids.len());
            for &t in &ids {
                let count = if t == self.image_pad {
                    ii.next().map(|p| p.llm_tokens(merge))
                } else if t == self.video_pad {
                    vi.next().map(|p| p.llm_tokens(merge))
                } else {
                    None
                };
                match count {
                    Some(c) => expanded.extend(std::iter::repeat_n(t, c)),
                    None => expanded.push(t),
                }
            }
            rows.push(expanded);
            images.extend(img);
            videos.extend(vid);
        }
        let max_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut attention_mask = Vec::with_capacity(rows.len());
        for r in rows {
            let pad = max_len - r.len();
            let mut ids = vec![self.pad_id; pad];
            ids.extend(r);
            let mut mask = vec![0u8; pad];
            mask.extend(std::iter::repeat_n(1, max_len - pad));
            input_ids.push(ids);
            attention_mask.push(mask);
        }
        Ok(ModelInputs {
            input_ids,
            attention_mask,
            images,
            videos,
            second_per_grid,
        })
    }
}

fn tokenizer_missing(tok: &QwenTokenizer, what: &str) -> ModelError {
    ModelError::Tokenizer {
        path: tok.path().to_path_buf(),
        msg: format!("has no {what} token"),
    }
}
