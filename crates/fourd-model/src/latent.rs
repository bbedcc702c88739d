//! Preparing a base Qwen2.5-VL checkpoint for DIFT, as the reference does: add the latent tokens
//! `<|latent_pad|>`, `<|latent_start|>`, `<|latent_end|>` (in that order, as plain added tokens), grow
//! the embedding matrix (and an untied `lm_head`) to the tokenizer's length with the mean of the
//! existing rows, and record the ids and `latent_size` in `config.json`.
//!
//! Where the reference differs: transformers' `resize_token_embeddings(len(tokenizer))` also
//! *shrinks* a matrix that is larger than the tokenizer (the 3B has 151,936 rows for 151,668
//! tokens), dropping unused rows; we never shrink. In that case, as in the reference, the latent
//! tokens take existing (untrained padding) rows.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::error::{read_json, ModelError, Result};
use crate::tokenizer::{LATENT_END, LATENT_PAD, LATENT_START};
use crate::weights::{CheckpointWeights, KeyLayout};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedLatentTokens {
    pub pad: u32,
    pub start: u32,
    pub end: u32,
    pub vocab_before: usize,
    pub vocab_after: usize,
    pub tokenizer_len: usize,
}

/// Files copied unchanged from the base checkpoint when present.
const PASSTHROUGH: &[&str] = &[
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
];

/// Writes to `out` the checkpoint at `base` prepared for DIFT with `latent_size` latent steps per
/// imagery segment (see the module documentation for what changes).
pub fn add_latent_tokens(base: &Path, out: &Path, latent_size: usize) -> Result<AddedLatentTokens> {
    check_request(out, latent_size)?;
    let tok = LatentTokenizer::extend(base)?;
    let cfg = BaseVocab::read(base)?;
    let vocab_after = cfg.vocab_before.max(tok.len);
    let tensors = grown_weights(base, vocab_after, cfg.tied)?;
    save_weights(out, &tensors)?;
    write_config(out, cfg.config, cfg.nested, vocab_after, &tok, latent_size)?;
    tok.write(base, out)?;
    copy_passthrough(base, out)?;
    Ok(AddedLatentTokens {
        pad: tok.pad,
        start: tok.start,
        end: tok.end,
        vocab_before: cfg.vocab_before,
        vocab_after,
        tokenizer_len: tok.len,
    })
}

/// Rejects a zero `latent_size` and a non-empty output folder before anything is read, so a
/// previous result is never overwritten.
fn check_request(out: &Path, latent_size: usize) -> Result<()> {
    if latent_size == 0 {
        return Err(ModelError::input("latent_size must be at least 1"));
    }
    check_empty_output(out)
}

/// Refuses an output folder that exists and holds anything, so a previous result is never
/// overwritten.
pub(crate) fn check_empty_output(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| ModelError::io(out, e))?
            .next()
            .is_some()
    {
        return Err(ModelError::input(format!(
            "output folder {} exists and is not empty",
            out.display()
        )));
    }
    Ok(())
}

/// The base tokenizer with the three latent tokens added, and their ids.
struct LatentTokenizer {
    tok: tokenizers::Tokenizer,
    pad: u32,
    start: u32,
    end: u32,
    /// Vocabulary size including added tokens.
    len: usize,
}

impl LatentTokenizer {
    /// Loads `tokenizer.json` and appends the latent tokens (as plain added tokens, in the
    /// reference's order); a tokenizer that already has one is refused.
    fn extend(base: &Path) -> Result<Self> {
        let tok_path = base.join("tokenizer.json");
        let mut tok =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| ModelError::Tokenizer {
                path: tok_path.clone(),
                msg: e.to_string(),
            })?;
        for t in [LATENT_PAD, LATENT_START, LATENT_END] {
            if tok.token_to_id(t).is_some() {
                return Err(ModelError::Tokenizer {
                    path: tok_path.clone(),
                    msg: format!("already has {t}"),
                });
            }
        }
        let added: Vec<tokenizers::AddedToken> = [LATENT_PAD, LATENT_START, LATENT_END]
            .iter()
            .map(|t| tokenizers::AddedToken::from(t.to_string(), false))
            .collect();
        tok.add_tokens(&added);
        let id = |t: &str| {
            tok.token_to_id(t).ok_or_else(|| ModelError::Tokenizer {
                path: tok_path.clone(),
                msg: format!("could not add {t}"),
            })
        };
        let (pad, start, end) = (id(LATENT_PAD)?, id(LATENT_START)?, id(LATENT_END)?);
        let len = tok.get_vocab_size(true);
        Ok(LatentTokenizer {
            tok,
            pad,
            start,
            end,
            len,
        })
    }

    /// The latent tokens with their ids, in the order they were added.
    fn ids(&self) -> [(&'static str, u32); 3] {
        [
            (LATENT_PAD, self.pad),
            (LATENT_START, self.start),
            (LATENT_END, self.end),
        ]
    }

    /// Writes `tokenizer.json`, and the base's `tokenizer_config.json` and `added_tokens.json`
    /// (when present) with the latent tokens recorded, so every loader sees the same ids.
    fn write(&self, base: &Path, out: &Path) -> Result<()> {
        let tok_out = out.join("tokenizer.json");
        self.tok
            .save(&tok_out, true)
            .map_err(|e| ModelError::Tokenizer {
                path: tok_out.clone(),
                msg: e.to_string(),
            })?;
        let tc_path = base.join("tokenizer_config.json");
        if tc_path.exists() {
            let mut tc = read_json(&tc_path)?;
            if let Some(dec) = tc
                .get_mut("added_tokens_decoder")
                .and_then(Value::as_object_mut)
            {
                for (t, i) in self.ids() {
                    dec.insert(
                        i.to_string(),
                        json!({"content": t, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": false}),
                    );
                }
            }
            write_json(&out.join("tokenizer_config.json"), &tc)?;
        }
        let added_tokens = base.join("added_tokens.json");
        if added_tokens.exists() {
            let mut at = read_json(&added_tokens)?;
            if let Some(m) = at.as_object_mut() {
                for (t, i) in self.ids() {
                    m.insert(t.to_string(), json!(i));
                }
            }
            write_json(&out.join("added_tokens.json"), &at)?;
        }
        Ok(())
    }
}

/// What the base `config.json` says about the vocabulary, in either layout.
struct BaseVocab {
    /// The file as read, rewritten into the output.
    config: Value,
    /// 5.x layout: `vocab_size` lives in `text_config`.
    nested: bool,
    vocab_before: usize,
    /// Tied embeddings: `lm_head` is the embedding matrix and is not grown separately.
    tied: bool,
}

impl BaseVocab {
    fn read(base: &Path) -> Result<Self> {
        let cfg_path = base.join("config.json");
        let cfg = read_json(&cfg_path)?;
        let nested = cfg
            .get("text_config")
            .is_some_and(|t| t.get("vocab_size").is_some());
        let vocab_before = if nested {
            cfg["text_config"]["vocab_size"].as_u64()
        } else {
            cfg["vocab_size"].as_u64()
        }
        .ok_or_else(|| ModelError::config(&cfg_path, "vocab_size", "missing"))?
            as usize;
        let tied = cfg
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .or_else(|| {
                cfg.get("text_config")
                    .and_then(|t| t.get("tie_word_embeddings"))
                    .and_then(Value::as_bool)
            })
            .unwrap_or(false);
        Ok(BaseVocab {
            config: cfg,
            nested,
            vocab_before,
            tied,
        })
    }
}

/// Every tensor of the base checkpoint in its stored dtype, with the embedding matrix (and an
/// untied `lm_head`) grown to `vocab_after` rows.
fn grown_weights(base: &Path, vocab_after: usize, tied: bool) -> Result<HashMap<String, Tensor>> {
    let weights = CheckpointWeights::open(base)?;
    let embed_name = weights.layout.stored_name("model.embed_tokens.weight");
    let head_name = KeyLayout::Legacy.stored_name("lm_head.weight");
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut names: Vec<String> = weights.tensor_names().cloned().collect();
    names.sort();
    for name in names {
        let t = weights.load_stored(&name)?;
        let t = if name == embed_name || (name == head_name && !tied) {
            grow_rows(&t, vocab_after, &name)?
        } else {
            t
        };
        tensors.insert(name, t);
    }
    if !tensors.contains_key(&embed_name) {
        return Err(ModelError::Tensor {
            name: embed_name,
            msg: format!("not found in {}", base.display()),
        });
    }
    Ok(tensors)
}

/// Creates the output folder and writes all weights as one `model.safetensors`.
pub(crate) fn save_weights(out: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let st_path = out.join("model.safetensors");
    candle_core::safetensors::save(tensors, &st_path).map_err(|e| ModelError::Safetensors {
        path: st_path.clone(),
        msg: e.to_string(),
    })
}

/// Writes the base `config.json` with the grown vocabulary (where that layout keeps it) and the
/// latent fields the fork reads.
fn write_config(
    out: &Path,
    mut cfg: Value,
    nested: bool,
    vocab_after: usize,
    tok: &LatentTokenizer,
    latent_size: usize,
) -> Result<()> {
    if nested {
        cfg["text_config"]["vocab_size"] = json!(vocab_after);
    } else {
        cfg["vocab_size"] = json!(vocab_after);
    }
    cfg["latent_token_id"] = json!(tok.pad);
    cfg["latent_start_id"] = json!(tok.start);
    cfg["latent_end_id"] = json!(tok.end);
    cfg["latent_size"] = json!(latent_size);
    cfg["compress_strategy"] = json!("average");
    write_json(&out.join("config.json"), &cfg)
}

/// Copies the [`PASSTHROUGH`] files the base has.
pub(crate) fn copy_passthrough(base: &Path, out: &Path) -> Result<()> {
    for f in PASSTHROUGH {
        let src = base.join(f);
        if src.exists() {
            std::fs::copy(&src, out.join(f)).map_err(|e| ModelError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Appends rows equal to the mean of the existing rows (computed in f32) up to `rows`.
fn grow_rows(t: &Tensor, rows: usize, name: &str) -> Result<Tensor> {
    let (n, _) = t.dims2().map_err(|e| ModelError::Tensor {
        name: name.to_string(),
        msg: e.to_string(),
    })?;
    if rows <= n {
        return Ok(t.clone());
    }
    let mean = t
        .to_dtype(DType::F32)?
        .mean_keepdim(0)?
        .to_dtype(t.dtype())?;
    let extra = mean.repeat((rows - n, 1))?;
    Ok(Tensor::cat(&[t, &extra], 0)?)
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|cause| ModelError::Json {
        path: path.to_path_buf(),
        cause,
    })?;
    std::fs::write(path, s + "\n").map_err(|e| ModelError::io(path, e))
}
