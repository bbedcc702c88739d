//! Shared helpers of the parity tests: fixtures written by tools/reference/*.py.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use fourd_model::inputs::{PromptInput, VideoFrames};
use fourd_model::processor::{list_frames, load_image, DEFAULT_DECODE_PIXEL_CAP};
use fourd_model::tokenizer::{Content, Message, QwenTokenizer};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/qwen25vl")
}

pub fn latent_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/latent")
}

pub struct Case {
    pub root: PathBuf,
    pub name: String,
    pub meta: Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Case {
    pub fn load(name: &str) -> Case {
        Case::load_from(&fixtures(), name)
    }
    pub fn load_from(root: &Path, name: &str) -> Case {
        let dir = root.join("cases");
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu)
                .unwrap();
        Case {
            root: root.to_path_buf(),
            name: name.to_string(),
            meta,
            tensors,
        }
    }
    pub fn t(&self, k: &str) -> &Tensor {
        self.tensors
            .get(k)
            .unwrap_or_else(|| panic!("case {}: no tensor {k}", self.name))
    }
    pub fn has(&self, k: &str) -> bool {
        self.tensors.contains_key(k) || self.meta["pixel_sources"].get(k).is_some()
    }
    /// Pixel values of the case: stored in the case, or (newer fixtures) concatenated from the
    /// per-item store `pixels.safetensors`, as listed in `pixel_sources`.
    pub fn pixels(&self, k: &str) -> Tensor {
        if let Some(t) = self.tensors.get(k) {
            return t.clone();
        }
        let sources = self.meta["pixel_sources"][k]
            .as_array()
            .unwrap_or_else(|| panic!("case {}: no pixels {k}", self.name));
        let store =
            candle_core::safetensors::load(self.root.join("pixels.safetensors"), &Device::Cpu)
                .unwrap();
        let parts: Vec<Tensor> = sources
            .iter()
            .map(|s| store[s.as_str().unwrap()].clone())
            .collect();
        Tensor::cat(&parts, 0).unwrap()
    }
    pub fn ids2(&self, k: &str) -> Vec<Vec<i64>> {
        self.t(k)
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec2::<i64>()
            .unwrap()
    }
    pub fn model_dir(&self) -> PathBuf {
        self.root.join(self.meta["model"].as_str().unwrap())
    }
    /// The case's conversations as our message types plus their media, one per batch row.
    pub fn prompts(&self, tok: &QwenTokenizer) -> Vec<PromptInput> {
        let rows = self.meta["messages"].as_array().unwrap();
        let mut out = Vec::new();
        for conv in rows {
            let mut prompt = PromptInput::default();
            let mut messages = Vec::new();
            for m in conv.as_array().unwrap() {
                let mut content = Vec::new();
                for item in m["content"].as_array().unwrap() {
                    match item["type"].as_str().unwrap() {
                        "image" => {
                            let p = self.root.join(item["path"].as_str().unwrap());
                            prompt
                                .images
                                .push(load_image(&p, DEFAULT_DECODE_PIXEL_CAP).unwrap());
                            content.push(Content::Image);
                        }
                        "video" => {
                            let dir = self.root.join(item["frames"].as_str().unwrap());
                            let frames = list_frames(&dir)
                                .unwrap()
                                .iter()
                                .map(|p| load_image(p, DEFAULT_DECODE_PIXEL_CAP).unwrap())
                                .collect();
                            prompt.videos.push(VideoFrames {
                                frames,
                                fps: item["fps"].as_f64().unwrap(),
                            });
                            content.push(Content::Video);
                        }
                        "text" => {
                            content.push(Content::Text(item["text"].as_str().unwrap().to_string()))
                        }
                        other => panic!("unknown content type {other}"),
                    }
                }
                messages.push(Message::new(m["role"].as_str().unwrap(), content));
            }
            prompt.text = tok.apply_chat_template(&messages, true).unwrap();
            out.push(prompt);
        }
        out
    }
}

/// Largest absolute difference between two tensors of one shape (compared in f32).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
