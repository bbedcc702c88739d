//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Keys are what `PeftModel.save_pretrained` writes for Qwen2.5-VL: `base_model.model.` + the
//! module's path + `.lora_A.weight` / `.lora_B.weight`, and `…embed_tokens.token_adapter.
//! trainable_tokens_delta` / `lm_head.token_adapter.trainable_tokens_delta` for token rows.
//! Module paths come in both of transformers' layouts; the reader takes either (an adapter
//! trained on transformers 4.50 says `model.layers.N`, one on 4.52+ `model.language_model.
//! layers.N`) and the writer writes the nested one, because PEFT does not rename keys when it
//! loads: an adapter in the legacy layout fails to load onto transformers 5 (checked with peft
//! 0.21.2).
//!
//! `target_modules` is written as a regular expression that leaves the vision tower out: a list
//! of leaf names (`["q_proj", …, "down_proj"]`) would also adapt the vision tower's MLPs,
//! whose modules are called `gate_proj`/`up_proj`/`down_proj` too.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::error::{read_json, ModelError, Result};
use crate::lora::{
    lora_scale, Adapter, LoraSettings, LowRank, TokenRows, EMBED_ROWS, LM_HEAD_ROWS,
};
use crate::weights::KeyLayout;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Every key of a PEFT adapter starts with this.
const PREFIX: &str = "base_model.model.";

/// Whether `dir` holds a PEFT adapter (rather than a model).
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// Reads the adapter in `dir` onto `device` in `dtype` (float32 for training; inference may use
/// the model's dtype, as PEFT's `autocast_adapter_dtype=False` does).
pub fn read_adapter(dir: &Path, dtype: DType, device: &Device) -> Result<Adapter> {
    let cfg_path = dir.join(CONFIG_FILE);
    if !cfg_path.is_file() {
        return Err(ModelError::input(format!(
            "{}: no {CONFIG_FILE}; an adapter folder is what PEFT's save_pretrained writes",
            dir.display()
        )));
    }
    let cfg = read_json(&cfg_path)?;
    let header = AdapterConfig::parse(&cfg, &cfg_path)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    if !weights_path.is_file() {
        let bin = dir.join("adapter_model.bin");
        return Err(ModelError::input(format!(
            "{}: no {WEIGHTS_FILE}{}",
            dir.display(),
            if bin.exists() {
                " (adapter_model.bin is a pickle, which is not read: save with PEFT's safe_serialization=True)"
            } else {
                ""
            }
        )));
    }
    let tensors = candle_core::safetensors::load(&weights_path, device).map_err(|e| {
        ModelError::Safetensors {
            path: weights_path.clone(),
            msg: e.to_string(),
        }
    })?;
    let mut a_mats: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut b_mats: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut embed_values = None;
    let mut head_values = None;
    for (key, t) in tensors {
        let bad = |msg: &str| ModelError::Tensor {
            name: key.clone(),
            msg: format!("in {}: {msg}", weights_path.display()),
        };
        let path = key.strip_prefix(PREFIX).ok_or_else(|| {
            bad("does not start with `base_model.model.` (not a PEFT adapter key)")
        })?;
        let canonical = KeyLayout::canonical_name(path);
        let t = t.to_dtype(dtype)?;
        if let Some(module) = lora_module(&canonical, "lora_A") {
            a_mats.insert(module, t);
        } else if let Some(module) = lora_module(&canonical, "lora_B") {
            b_mats.insert(module, t);
        } else if canonical == EMBED_ROWS {
            embed_values = Some(t);
        } else if canonical == LM_HEAD_ROWS {
            head_values = Some(t);
        } else {
            return Err(bad(
                "is neither a LoRA matrix (lora_A / lora_B) nor token rows (trainable_tokens_delta); other PEFT methods are not supported",
            ));
        }
    }
    let mut modules = BTreeMap::new();
    for (module, a) in a_mats {
        let b = b_mats.remove(&module).ok_or_else(|| ModelError::Tensor {
            name: format!("{module}.lora_B.weight"),
            msg: format!("missing from {} (it has lora_A)", weights_path.display()),
        })?;
        let (rank, _) = a.dims2()?;
        if b.dims2()?.1 != rank {
            return Err(ModelError::Tensor {
                name: format!("{module}.lora_B.weight"),
                msg: format!("has shape {:?}, lora_A has rank {rank}", b.dims()),
            });
        }
        let alpha = header.alpha_for(&KeyLayout::Nested.stored_name(&module));
        modules.insert(
            module,
            LowRank {
                a,
                b,
                scale: lora_scale(alpha, rank, header.use_rslora),
            },
        );
    }
    if let Some(module) = b_mats.into_keys().next() {
        return Err(ModelError::Tensor {
            name: format!("{module}.lora_A.weight"),
            msg: format!("missing from {} (it has lora_B)", weights_path.display()),
        });
    }
    let rows =
        |values: Option<Tensor>, ids: Option<Vec<u32>>, what: &str| -> Result<Option<TokenRows>> {
            match (values, ids) {
                (None, _) => Ok(None),
                (Some(values), Some(ids)) => {
                    if values.dim(0)? != ids.len() {
                        return Err(ModelError::config(
                            &cfg_path,
                            "trainable_token_indices",
                            format!(
                                "lists {} ids for {what}, its rows number {}",
                                ids.len(),
                                values.dim(0)?
                            ),
                        ));
                    }
                    Ok(Some(TokenRows { ids, values }))
                }
                (Some(_), None) => Err(ModelError::config(
                    &cfg_path,
                    "trainable_token_indices",
                    format!("the weights have token rows for {what} but no ids are listed for it"),
                )),
            }
        };
    let settings = LoraSettings {
        rank: header.rank,
        alpha: header.alpha,
        dropout: header.dropout,
        targets: header.targets,
        use_rslora: header.use_rslora,
    };
    Ok(Adapter {
        settings,
        modules,
        embed_rows: rows(embed_values, header.embed_ids, "embed_tokens")?,
        lm_head_rows: rows(head_values, header.head_ids, "lm_head")?,
    })
}

/// The module of a `<module>.<which>.weight` (or `<module>.<which>.<adapter name>.weight`) key.
fn lora_module(key: &str, which: &str) -> Option<String> {
    let rest = key.strip_suffix(".weight")?;
    if let Some(m) = rest.strip_suffix(&format!(".{which}")) {
        return Some(m.to_string());
    }
    // Written with the adapter's name (`lora_A.default.weight`) by some tools.
    let (head, _name) = rest.rsplit_once('.')?;
    head.strip_suffix(&format!(".{which}")).map(str::to_string)
}

/// What `adapter_config.json` says, checked.
struct AdapterConfig {
    rank: usize,
    alpha: f64,
    dropout: f64,
    use_rslora: bool,
    targets: Vec<String>,
    alpha_pattern: Vec<(String, f64)>,
    embed_ids: Option<Vec<u32>>,
    head_ids: Option<Vec<u32>>,
}

impl AdapterConfig {
    fn parse(v: &Value, path: &Path) -> Result<Self> {
        let field = |k: &str| v.get(k).filter(|x| !x.is_null());
        let bad = |k: &str, msg: &str| ModelError::config(path, k, msg);
        match field("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return Err(bad(
                    "peft_type",
                    &format!("is {other}; only LORA adapters are supported"),
                ))
            }
            None => return Err(bad("peft_type", "missing")),
        }
        for (k, why) in [
            ("use_dora", "DoRA is not supported"),
            (
                "fan_in_fan_out",
                "only for GPT-2's Conv1D layers, which Qwen2.5-VL has none of",
            ),
            ("lora_bias", "LoRA biases are not supported"),
        ] {
            if field(k).and_then(Value::as_bool) == Some(true) {
                return Err(bad(k, &format!("is true: {why}")));
            }
        }
        if let Some(b) = field("bias").and_then(Value::as_str) {
            if b != "none" {
                return Err(bad(
                    "bias",
                    &format!("is {b:?}; only \"none\" is supported"),
                ));
            }
        }
        if field("modules_to_save").is_some_and(|m| m.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(bad(
                "modules_to_save",
                "whole modules saved beside the adapter are not supported (trainable_token_indices is)",
            ));
        }
        let rank = field("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("r", "missing or not a positive integer"))?
            as usize;
        let alpha = field("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("lora_alpha", "missing or not a number"))?;
        let targets = match field("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(re)) => target_names_in_regex(re),
            _ => vec![],
        };
        let alpha_pattern = match field("alpha_pattern") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, x)| {
                    x.as_f64()
                        .map(|a| (k.clone(), a))
                        .ok_or_else(|| bad("alpha_pattern", &format!("`{k}` is not a number")))
                })
                .collect::<Result<_>>()?,
            _ => vec![],
        };
        let ids = |x: &Value, what: &str| -> Result<Vec<u32>> {
            x.as_array()
                .and_then(|a| a.iter().map(|i| i.as_u64().map(|i| i as u32)).collect())
                .ok_or_else(|| {
                    bad(
                        "trainable_token_indices",
                        &format!("{what}: expected a list of token ids"),
                    )
                })
        };
        let (embed_ids, head_ids) = match field("trainable_token_indices") {
            None => (None, None),
            Some(x @ Value::Array(_)) => (Some(ids(x, "the list")?), None),
            Some(Value::Object(m)) => {
                let (mut e, mut h) = (None, None);
                for (layer, x) in m {
                    let leaf = layer.rsplit('.').next().unwrap_or(layer);
                    match leaf {
                        "embed_tokens" => e = Some(ids(x, layer)?),
                        "lm_head" => h = Some(ids(x, layer)?),
                        _ => {
                            return Err(bad(
                                "trainable_token_indices",
                                &format!("`{layer}` is neither embed_tokens nor lm_head"),
                            ))
                        }
                    }
                }
                (e, h)
            }
            Some(_) => {
                return Err(bad(
                    "trainable_token_indices",
                    "expected a list or an object",
                ))
            }
        };
        Ok(AdapterConfig {
            rank,
            alpha,
            dropout: field("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            use_rslora: field("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            targets,
            alpha_pattern,
            embed_ids,
            head_ids,
        })
    }

    /// `lora_alpha`, or the `alpha_pattern` entry matching the module as PEFT matches it: the
    /// pattern is the module's path or a suffix of it after a dot.
    fn alpha_for(&self, module: &str) -> f64 {
        for (pattern, alpha) in &self.alpha_pattern {
            let matches = module == pattern
                || regex::Regex::new(&format!(r"^(.*\.)?(?:{pattern})$"))
                    .is_ok_and(|re| re.is_match(module));
            if matches {
                return *alpha;
            }
        }
        self.alpha
    }
}

/// The leaf names a `target_modules` regular expression written by [`write_adapter`] lists
/// (recorded in the settings; which modules are adapted comes from the weights, never from it).
fn target_names_in_regex(re: &str) -> Vec<String> {
    crate::lora::LANGUAGE_MODEL_TARGETS
        .iter()
        .filter(|t| re.contains(*t))
        .map(|t| t.to_string())
        .collect()
}

/// `target_modules` for PEFT: the given leaf names anywhere outside the vision tower, in either
/// key layout.
pub fn target_modules_regex(targets: &[String]) -> String {
    format!(
        r"^(?!(?:model\.)?visual\.)(?:.*\.)?(?:{})$",
        targets.join("|")
    )
}

/// Writes `adapter` to `dir` (which must exist) as PEFT does; `base` is recorded as
/// `base_model_name_or_path`. Token rows are written as PEFT writes them: a list when only the
/// embedding has rows (a tied `lm_head` follows it), else an object per layer.
pub fn write_adapter(dir: &Path, adapter: &Adapter, base: &Path) -> Result<()> {
    let mut tensors = std::collections::HashMap::new();
    for (name, t) in adapter.named_tensors() {
        let key = format!("{PREFIX}{}", KeyLayout::Nested.stored_name(&name));
        tensors.insert(key, t.to_device(&Device::Cpu)?.contiguous()?);
    }
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join(format!(".{WEIGHTS_FILE}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp).map_err(|e| ModelError::Safetensors {
        path: weights.clone(),
        msg: e.to_string(),
    })?;
    std::fs::rename(&tmp, &weights).map_err(|e| ModelError::io(&weights, e))?;
    let s = &adapter.settings;
    let tokens = match (&adapter.embed_rows, &adapter.lm_head_rows) {
        (None, None) => Value::Null,
        (Some(e), None) => json!(e.ids),
        (e, h) => {
            let mut m = serde_json::Map::new();
            if let Some(e) = e {
                m.insert("embed_tokens".into(), json!(e.ids));
            }
            if let Some(h) = h {
                m.insert("lm_head".into(), json!(h.ids));
            }
            Value::Object(m)
        }
    };
    // Modules whose rank or scale differ from the settings' are listed by their full path, which
    // PEFT's patterns match exactly.
    let (mut rank_pattern, mut alpha_pattern) = (serde_json::Map::new(), serde_json::Map::new());
    for (module, m) in &adapter.modules {
        let rank = m.a.dim(0)?;
        let path = KeyLayout::Nested.stored_name(module);
        if rank != s.rank {
            rank_pattern.insert(path.clone(), json!(rank));
        }
        let unit = lora_scale(1.0, rank, s.use_rslora);
        let alpha = m.scale / unit;
        if (m.scale - lora_scale(s.alpha, rank, s.use_rslora)).abs() > 1e-12 * m.scale.abs() {
            alpha_pattern.insert(path, json!(alpha));
        }
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base.to_string_lossy(),
        "r": s.rank,
        "lora_alpha": s.alpha,
        "lora_dropout": s.dropout,
        "use_rslora": s.use_rslora,
        "target_modules": target_modules_regex(&s.targets),
        "trainable_token_indices": tokens,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "auto_mapping": {
            "base_model_class": "Qwen2_5_VLForConditionalGeneration",
            "parent_library": "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl"
        },
    });
    let text = serde_json::to_string_pretty(&config).map_err(|cause| ModelError::Json {
        path: dir.join(CONFIG_FILE),
        cause,
    })?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))
}

/// What `fourd model merge-lora` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedCheckpoint {
    /// Linear layers that received an update.
    pub merged_layers: usize,
    /// Token rows replaced (embedding plus untied `lm_head`).
    pub replaced_rows: usize,
    pub tensors: usize,
}

/// Writes to `out` the checkpoint at `base` with the adapter in `adapter_dir` merged in: each
/// adapted weight becomes `W + scale * B A` (computed in float32, stored in the base's dtype and
/// key layout), token rows replace the base's, everything else (config, tokenizer, processor)
/// is copied. The result loads as a plain model anywhere the base does.
pub fn merge_checkpoint(base: &Path, adapter_dir: &Path, out: &Path) -> Result<MergedCheckpoint> {
    crate::latent::check_empty_output(out)?;
    let adapter = read_adapter(adapter_dir, DType::F32, &Device::Cpu)?;
    let config = crate::Qwen25VlConfig::from_file(&crate::model::config_file(base)?)?;
    let weights = crate::weights::CheckpointWeights::open(base)?;
    let layout = weights.layout;
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let stored: Vec<String> = weights.tensor_names().cloned().collect();
    for name in &stored {
        tensors.insert(KeyLayout::canonical_name(name), weights.load_stored(name)?);
    }
    crate::lora::merge_into(&mut tensors, &adapter, config.text.tie_word_embeddings)?;
    let count = tensors.len();
    let by_stored: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| (layout.stored_name(&k), t))
        .collect();
    crate::latent::save_weights(out, &by_stored)?;
    crate::latent::copy_passthrough(base, out)?;
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        let src = base.join(f);
        if src.exists() {
            std::fs::copy(&src, out.join(f)).map_err(|e| ModelError::io(&src, e))?;
        }
    }
    Ok(MergedCheckpoint {
        merged_layers: adapter.modules.len(),
        replaced_rows: adapter.embed_rows.as_ref().map_or(0, |r| r.ids.len())
            + adapter.lm_head_rows.as_ref().map_or(0, |r| r.ids.len()),
        tensors: count,
    })
}
