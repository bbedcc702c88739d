//! Checkpoint configuration: `config.json` in both layouts users have (transformers 4.x flat text
//! fields with `vision_config` nested; 5.x `text_config` + `vision_config`), plus
//! `preprocessor_config.json` and `generation_config.json`. Sizes and ids are always read from the
//! files: the class defaults of transformers do not match the released models.
//!
//! The 4DThinker checkpoints (`model/dift/checkpoints/`, `model/4drl/`) were written by the fork's
//! transformers 4.50.0.dev0, so they have the 4.x layout as 4.50 saves it:
//! - text fields at the top level, `rope_theta` beside them, and `rope_scaling` holding the M-RoPE
//!   sections. 4.50 rewrites `{"type": "mrope"}` to `{"type": "default", "rope_type": "default"}`
//!   when it loads a config, so saved checkpoints say `default`; only `mrope_section` is read;
//! - `vision_config` with both `in_channels` and the older `in_chans` / `spatial_patch_size` (read:
//!   `in_channels`, `patch_size`; the others are ignored, as transformers does);
//! - `torch_dtype` (5.x says `dtype`): the dtype the weights were saved in, kept for reference; the
//!   compute dtype is the caller's choice;
//! - the fork's own attributes (`latent_*`, `compress_strategy`, `stage`, `ce_loss_weight`,
//!   `sim_loss_weight`; see [`LatentConfig`]) at the top level;
//! - `vocab_size` as `resize_token_embeddings(len(tokenizer))` left it (the tokenizer's length, so
//!   it can be smaller than the base model's).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{read_json, ModelError, Result};

/// Reads typed fields out of a JSON object, naming the file and the field on failure.
struct Fields<'a> {
    file: &'a Path,
    /// Objects searched in order; the first that has the key wins.
    scopes: Vec<(&'a str, &'a Value)>,
}

impl<'a> Fields<'a> {
    fn find(&self, key: &str) -> Option<(String, &'a Value)> {
        self.scopes.iter().find_map(|(prefix, obj)| {
            obj.get(key)
                .filter(|v| !v.is_null())
                .map(|v| (format!("{prefix}{key}"), v))
        })
    }
    fn err(&self, key: &str, msg: &str) -> ModelError {
        // Named where this file's layout keeps it: a 4.x (flat) file has no `text_config`.
        let prefix = self
            .scopes
            .iter()
            .find(|s| s.1.is_object())
            .map_or("", |s| s.0);
        ModelError::config(self.file, format!("{prefix}{key}"), msg)
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.err(key, "missing"))
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.find(key) {
            None => Ok(None),
            Some((name, v)) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                ModelError::config(
                    self.file,
                    name,
                    format!("expected a non-negative integer, got {v}"),
                )
            }),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.find(key) {
            None => Ok(None),
            Some((name, v)) => v.as_f64().map(Some).ok_or_else(|| {
                ModelError::config(self.file, name, format!("expected a number, got {v}"))
            }),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.find(key) {
            None => Ok(default),
            Some((name, v)) => v.as_bool().ok_or_else(|| {
                ModelError::config(self.file, name, format!("expected true/false, got {v}"))
            }),
        }
    }
    fn usize_list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        match self.find(key) {
            None => Ok(None),
            Some((name, v)) => {
                let bad = || {
                    ModelError::config(
                        self.file,
                        name.clone(),
                        format!("expected a list of integers, got {v}"),
                    )
                };
                let arr = v.as_array().ok_or_else(bad)?;
                arr.iter()
                    .map(|x| x.as_u64().map(|x| x as usize).ok_or_else(bad))
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
        }
    }
    /// An id field that may be a single integer or a list (e.g. `eos_token_id`).
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.find(key) {
            None => Ok(vec![]),
            Some((name, v)) => {
                let bad = || {
                    ModelError::config(
                        self.file,
                        name.clone(),
                        format!("expected a token id or a list of ids, got {v}"),
                    )
                };
                match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_u64().map(|x| x as u32).ok_or_else(bad))
                        .collect(),
                    _ => v.as_u64().map(|x| vec![x as u32]).ok_or_else(bad),
                }
            }
        }
    }
    fn str_opt(&self, key: &str) -> Option<String> {
        self.find(key)
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }
}

/// Which `get_rope_index` rule places the text that follows a vision span.
///
/// transformers 4.50 (what Qwen2.5-VL and the 4DThinker checkpoints were trained with) resumes at
/// `max(all positions so far) + 1`; transformers 5.x resumes at `offset + max(h, w) / merge`, which
/// ignores a video's temporal extent and lets text positions overlap long videos. We default to the
/// 4.50 rule, the one the checkpoints expect; `V5` reproduces current transformers exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RopeIndexStyle {
    #[default]
    V4_50,
    V5,
}

impl std::str::FromStr for RopeIndexStyle {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "v4.50" | "4.50" | "v4" => Ok(RopeIndexStyle::V4_50),
            "v5" | "5" => Ok(RopeIndexStyle::V5),
            _ => Err(ModelError::input(format!(
                "unknown rope index style `{s}` (expected v4.50 or v5)"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Rotary half-dims given to the temporal, height and width axes; sums to `head_dim / 2`.
    pub mrope_section: Vec<usize>,
    pub tie_word_embeddings: bool,
}

#[derive(Clone, Debug)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    /// Window side in pixels.
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    pub out_hidden_size: usize,
    pub tokens_per_second: f64,
    pub rope_theta: f64,
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Values in one flattened patch row: C x temporal x patch x patch.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

/// Fields the 4DThinker fork adds to checkpoints (top-level attributes set by `dift/src/main.py`
/// before training, so every saved config has them); absent in a base Qwen2.5-VL.
#[derive(Clone, Debug, Default)]
pub struct LatentConfig {
    pub latent_size: Option<usize>,
    pub latent_token_id: Option<u32>,
    pub latent_start_id: Option<u32>,
    pub latent_end_id: Option<u32>,
    pub compress_strategy: Option<String>,
    /// DIFT's `--stage` (`"stage1"`); informational.
    pub stage: Option<String>,
    /// DIFT's loss weights (`--ce_loss_weight`, `--sim_loss_weight`); informational, training
    /// takes its weights from its own flags.
    pub ce_loss_weight: Option<f64>,
    pub sim_loss_weight: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Qwen25VlConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: Option<u32>,
    pub video_token_id: Option<u32>,
    pub vision_start_token_id: Option<u32>,
    pub vision_end_token_id: Option<u32>,
    pub eos_token_id: Vec<u32>,
    pub latent: LatentConfig,
    /// `torch_dtype` (4.x) or `dtype` (5.x): what the weights were saved as, e.g. `"bfloat16"`.
    pub torch_dtype: Option<String>,
    pub rope_index: RopeIndexStyle,
    /// The file as read, kept so that a checkpoint can be written back with its own fields.
    pub raw: Value,
    pub path: PathBuf,
}

impl Qwen25VlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = read_json(path)?;
        Self::from_value(raw, path)
    }

    pub fn from_value(raw: Value, path: &Path) -> Result<Self> {
        if !raw.is_object() {
            return Err(ModelError::config(path, "<root>", "expected a JSON object"));
        }
        let views = ConfigViews::new(&raw, path)?;
        views.check_supported()?;
        let text = views.text_config()?;
        let vision = views.vision_config(text.hidden_size)?;
        let latent = views.latent_config()?;
        let image_token_id = views.token_id("image_token_id")?;
        let video_token_id = views.token_id("video_token_id")?;
        let vision_start_token_id = views.token_id("vision_start_token_id")?;
        let vision_end_token_id = views.token_id("vision_end_token_id")?;
        let eos_token_id = views.top.ids("eos_token_id")?;
        let torch_dtype = views
            .top
            .str_opt("torch_dtype")
            .or_else(|| views.top.str_opt("dtype"));
        Ok(Qwen25VlConfig {
            text,
            vision,
            image_token_id,
            video_token_id,
            vision_start_token_id,
            vision_end_token_id,
            eos_token_id,
            latent,
            torch_dtype,
            rope_index: RopeIndexStyle::default(),
            raw,
            path: path.to_path_buf(),
        })
    }
}

/// Stands in for an absent `text_config` (4.x layout), so both layouts are searched alike.
static NO_TEXT_CONFIG: Value = Value::Null;

/// The views of one `config.json` that its fields are read through. 5.x keeps text fields in
/// `text_config`, 4.x at the top level, so text and whole-model fields look in both, each family
/// in the order its layout makes authoritative.
struct ConfigViews<'a> {
    path: &'a Path,
    /// Language-model fields: `text_config` first, then the top level.
    text: Fields<'a>,
    /// Whole-model fields (token ids, tying, latent settings): top level first, then `text_config`.
    top: Fields<'a>,
    /// Vision-tower fields: `vision_config` only.
    vis: Fields<'a>,
    vision_obj: &'a Value,
}

impl<'a> ConfigViews<'a> {
    /// Sets up the three views; fails when there is no `vision_config` (not a Qwen2.5-VL file).
    fn new(raw: &'a Value, path: &'a Path) -> Result<Self> {
        let text_obj = raw.get("text_config").unwrap_or(&NO_TEXT_CONFIG);
        let vision_obj = raw.get("vision_config").ok_or_else(|| {
            ModelError::config(
                path,
                "vision_config",
                "missing (is this a Qwen2.5-VL checkpoint?)",
            )
        })?;
        Ok(ConfigViews {
            path,
            text: Fields {
                file: path,
                scopes: vec![("text_config.", text_obj), ("", raw)],
            },
            top: Fields {
                file: path,
                scopes: vec![("", raw), ("text_config.", text_obj)],
            },
            vis: Fields {
                file: path,
                scopes: vec![("vision_config.", vision_obj)],
            },
            vision_obj,
        })
    }

    /// Rejects other architectures and activations up front, before any size is read.
    fn check_supported(&self) -> Result<()> {
        if let Some(mt) = self.top.str_opt("model_type") {
            if mt != "qwen2_5_vl" {
                return Err(ModelError::config(
                    self.path,
                    "model_type",
                    format!("`{mt}` is not supported (expected qwen2_5_vl)"),
                ));
            }
        }
        if let Some(act) = self.text.str_opt("hidden_act") {
            if act != "silu" {
                return Err(ModelError::config(
                    self.path,
                    "hidden_act",
                    format!("`{act}` is not supported (expected silu)"),
                ));
            }
        }
        Ok(())
    }

    /// The language model: attention shape and rotary settings first (they constrain each
    /// other), then the remaining sizes.
    fn text_config(&self) -> Result<TextConfig> {
        let attn = self.text_attention()?;
        let (rope_theta, mrope_section) = self.text_rope(attn.head_dim)?;
        Ok(TextConfig {
            vocab_size: self.text.usize("vocab_size")?,
            hidden_size: attn.hidden_size,
            intermediate_size: self.text.usize("intermediate_size")?,
            num_hidden_layers: self.text.usize("num_hidden_layers")?,
            num_attention_heads: attn.num_attention_heads,
            num_key_value_heads: attn.num_key_value_heads,
            head_dim: attn.head_dim,
            rms_norm_eps: self.text.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta,
            mrope_section,
            tie_word_embeddings: self.top.bool_or("tie_word_embeddings", false)?,
        })
    }

    /// Hidden size and head counts, with `head_dim` and the key-value heads defaulted as
    /// transformers does; heads must split the hidden size and the key-value groups evenly.
    fn text_attention(&self) -> Result<AttentionShape> {
        let text = &self.text;
        let hidden_size = text.usize("hidden_size")?;
        let num_attention_heads = text.usize("num_attention_heads")?;
        if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
            return Err(text.err("num_attention_heads", "must divide hidden_size"));
        }
        let head_dim = text
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_attention_heads);
        let num_key_value_heads = text
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(text.err("num_key_value_heads", "must divide num_attention_heads"));
        }
        Ok(AttentionShape {
            hidden_size,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
        })
    }

    /// Rotary base and M-RoPE sections: 5.x `rope_parameters`, 4.x `rope_theta` + `rope_scaling`.
    /// The sections must cover `head_dim / 2` in three parts (temporal, height, width).
    fn text_rope(&self, head_dim: usize) -> Result<(f64, Vec<usize>)> {
        let rope_params = self.text.find("rope_parameters").map(|(_, v)| v);
        let rope_scaling = self.text.find("rope_scaling").map(|(_, v)| v);
        let rope_theta = match rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
        {
            Some(t) => t,
            None => self.text.f64_or("rope_theta", 1_000_000.0)?,
        };
        let section_value = rope_params
            .and_then(|p| p.get("mrope_section"))
            .or_else(|| rope_scaling.and_then(|p| p.get("mrope_section")));
        let mrope_section = parse_mrope_section(self.path, section_value)?;
        if mrope_section.len() != 3 || mrope_section.iter().sum::<usize>() * 2 != head_dim {
            return Err(ModelError::config(
                self.path,
                "rope_scaling.mrope_section",
                format!(
                    "{mrope_section:?} must have 3 entries summing to head_dim/2 = {}",
                    head_dim / 2
                ),
            ));
        }
        Ok((rope_theta, mrope_section))
    }

    /// The vision tower, defaults as in transformers, checked against the language model's
    /// `text_hidden_size` (its output feeds the LLM) and against its own patch grid.
    fn vision_config(&self, text_hidden_size: usize) -> Result<VisionConfig> {
        let vis = &self.vis;
        let v_hidden = vis.usize("hidden_size")?;
        let v_heads = vis.usize("num_heads")?;
        if v_heads == 0 || v_hidden % v_heads != 0 || (v_hidden / v_heads) % 4 != 0 {
            return Err(vis.err(
                "num_heads",
                "hidden_size / num_heads must be a multiple of 4 (2-D rotary)",
            ));
        }
        let vision_theta = self
            .vision_obj
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        let vision = VisionConfig {
            depth: vis.usize("depth")?,
            hidden_size: v_hidden,
            intermediate_size: vis.usize("intermediate_size")?,
            num_heads: v_heads,
            // config.json of the releases says `in_chans`, which transformers ignores; so do we.
            in_channels: vis.opt_usize("in_channels")?.unwrap_or(3),
            patch_size: vis.opt_usize("patch_size")?.unwrap_or(14),
            temporal_patch_size: vis.opt_usize("temporal_patch_size")?.unwrap_or(2),
            spatial_merge_size: vis.opt_usize("spatial_merge_size")?.unwrap_or(2),
            window_size: vis.opt_usize("window_size")?.unwrap_or(112),
            fullatt_block_indexes: vis
                .usize_list("fullatt_block_indexes")?
                .unwrap_or_else(|| vec![7, 15, 23, 31]),
            out_hidden_size: vis.usize("out_hidden_size")?,
            tokens_per_second: vis.f64_or("tokens_per_second", 4.0)?,
            rope_theta: vision_theta,
        };
        if vision.out_hidden_size != text_hidden_size {
            return Err(vis.err(
                "out_hidden_size",
                &format!(
                    "{} differs from the LLM hidden_size {}",
                    vision.out_hidden_size, text_hidden_size
                ),
            ));
        }
        let unit = vision.spatial_merge_size * vision.patch_size;
        if !vision.window_size.is_multiple_of(unit) {
            return Err(vis.err(
                "window_size",
                &format!("must be a multiple of patch_size*spatial_merge_size = {unit}"),
            ));
        }
        Ok(vision)
    }

    /// The fields the 4DThinker fork adds; all optional.
    fn latent_config(&self) -> Result<LatentConfig> {
        Ok(LatentConfig {
            latent_size: self.top.opt_usize("latent_size")?,
            latent_token_id: self.token_id("latent_token_id")?,
            latent_start_id: self.token_id("latent_start_id")?,
            latent_end_id: self.token_id("latent_end_id")?,
            compress_strategy: self.top.str_opt("compress_strategy"),
            stage: self.top.str_opt("stage"),
            ce_loss_weight: self.top.opt_f64("ce_loss_weight")?,
            sim_loss_weight: self.top.opt_f64("sim_loss_weight")?,
        })
    }

    /// An optional single token id, a whole-model field.
    fn token_id(&self, key: &str) -> Result<Option<u32>> {
        Ok(self.top.opt_usize(key)?.map(|x| x as u32))
    }
}

/// The language model's attention sizes, read and checked together.
struct AttentionShape {
    hidden_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
}

/// The M-RoPE sections as a list of integers; Qwen2.5-VL cannot run without them.
fn parse_mrope_section(path: &Path, value: Option<&Value>) -> Result<Vec<usize>> {
    match value {
        Some(v) => v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().map(|x| x as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                ModelError::config(
                    path,
                    "rope_scaling.mrope_section",
                    format!("expected a list of integers, got {v}"),
                )
            }),
        None => Err(ModelError::config(
            path,
            "rope_scaling.mrope_section",
            "missing: Qwen2.5-VL needs M-RoPE sections",
        )),
    }
}

/// `preprocessor_config.json` of `Qwen2VLImageProcessor`.
#[derive(Clone, Debug)]
pub struct PreprocessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
}

pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Default for PreprocessorConfig {
    /// transformers' class defaults, used when a checkpoint ships no preprocessor config.
    fn default() -> Self {
        PreprocessorConfig {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            rescale_factor: 1.0 / 255.0,
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
        }
    }
}

impl PreprocessorConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = read_json(path)?;
        let f = Fields {
            file: path,
            scopes: vec![("", &raw)],
        };
        let d = PreprocessorConfig::default();
        // As in transformers: `size` first, then explicit min_pixels / max_pixels override it.
        let size = raw.get("size");
        let from_size = |k: &str| {
            size.and_then(|s| s.get(k))
                .and_then(Value::as_u64)
                .map(|x| x as usize)
        };
        let min_pixels = f
            .opt_usize("min_pixels")?
            .or_else(|| from_size("shortest_edge"))
            .unwrap_or(d.min_pixels);
        let max_pixels = f
            .opt_usize("max_pixels")?
            .or_else(|| from_size("longest_edge"))
            .unwrap_or(d.max_pixels);
        if min_pixels > max_pixels {
            return Err(ModelError::config(
                path,
                "min_pixels",
                format!("{min_pixels} exceeds max_pixels {max_pixels}"),
            ));
        }
        let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => {
                    let a: Option<Vec<f32>> = v
                        .as_array()
                        .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
                    match a {
                        Some(a) if a.len() == 3 => Ok([a[0], a[1], a[2]]),
                        _ => Err(ModelError::config(
                            path,
                            key,
                            format!("expected 3 numbers, got {v}"),
                        )),
                    }
                }
            }
        };
        Ok(PreprocessorConfig {
            min_pixels,
            max_pixels,
            patch_size: f.opt_usize("patch_size")?.unwrap_or(d.patch_size),
            temporal_patch_size: f
                .opt_usize("temporal_patch_size")?
                .unwrap_or(d.temporal_patch_size),
            merge_size: f.opt_usize("merge_size")?.unwrap_or(d.merge_size),
            image_mean: triple("image_mean", d.image_mean)?,
            image_std: triple("image_std", d.image_std)?,
            rescale_factor: f.f64_or("rescale_factor", d.rescale_factor)?,
            do_resize: f.bool_or("do_resize", true)?,
            do_rescale: f.bool_or("do_rescale", true)?,
            do_normalize: f.bool_or("do_normalize", true)?,
        })
    }

    /// Side length every resized image is a multiple of.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }
}

/// `generation_config.json`: the defaults a checkpoint suggests. Explicit flags always win.
#[derive(Clone, Debug, Default)]
pub struct GenerationDefaults {
    pub eos_token_id: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub max_new_tokens: Option<usize>,
}

impl GenerationDefaults {
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = read_json(path)?;
        let f = Fields {
            file: path,
            scopes: vec![("", &raw)],
        };
        let opt_f64 = |k: &str| -> Result<Option<f64>> {
            Ok(if f.find(k).is_some() {
                Some(f.f64_or(k, 0.0)?)
            } else {
                None
            })
        };
        Ok(GenerationDefaults {
            eos_token_id: f.ids("eos_token_id")?,
            pad_token_id: f.ids("pad_token_id")?.first().copied(),
            do_sample: if f.find("do_sample").is_some() {
                Some(f.bool_or("do_sample", false)?)
            } else {
                None
            },
            temperature: opt_f64("temperature")?,
            top_k: f.opt_usize("top_k")?,
            top_p: opt_f64("top_p")?,
            repetition_penalty: opt_f64("repetition_penalty")?,
            max_new_tokens: f.opt_usize("max_new_tokens")?,
        })
    }
}
