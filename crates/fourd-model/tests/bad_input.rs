//! Bad input gives a clear error that names the culprit, never a panic.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use common::fixtures;
use fourd_model::config::PreprocessorConfig;
use fourd_model::inputs::PromptInput;
use fourd_model::processor::{list_frames, load_image, ImageProcessor};
use fourd_model::weights::parse_dtype;
use fourd_model::ModelBundle;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A copy of the fixture checkpoint whose config.json was edited by `edit`.
fn with_config(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let d = tmp(name);
    copy_dir(&fixtures().join("model-v5"), &d);
    let cfg_path = d.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    d
}

fn load_err(dir: &Path) -> String {
    match ModelBundle::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn missing_model_folder() {
    let e = load_err(Path::new("/nonexistent/model"));
    assert!(
        e.contains("/nonexistent/model") && e.contains("not found"),
        "{e}"
    );
}

#[test]
fn missing_weights_file() {
    let d = tmp("missing-weights");
    copy_dir(&fixtures().join("model-v5"), &d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(e.contains("no model.safetensors"), "{e}");
}

#[test]
fn missing_shard_named() {
    let d = tmp("missing-shard");
    copy_dir(&fixtures().join("model-v4"), &d);
    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
}

#[test]
fn truncated_safetensors() {
    let d = tmp("truncated");
    copy_dir(&fixtures().join("model-v5"), &d);
    let f = d.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}

#[test]
fn wrong_tensor_shape_named() {
    // Claim a larger MLP than the weights have.
    let d = with_config("wrong-shape", |c| {
        c["text_config"]["intermediate_size"] = serde_json::json!(96)
    });
    let e = load_err(&d);
    assert!(
        e.contains("mlp.gate_proj.weight") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn missing_tensor_named() {
    let d = with_config("missing-tensor", |c| {
        c["text_config"]["num_hidden_layers"] = serde_json::json!(3)
    });
    let e = load_err(&d);
    assert!(e.contains("layers.2") && e.contains("not found"), "{e}");
}

#[test]
fn bad_config_field_named() {
    let d = with_config("bad-config", |c| {
        c["text_config"]["hidden_size"] = serde_json::json!("wide")
    });
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );
}

#[test]
fn unknown_dtype() {
    let e = parse_dtype("f8").unwrap_err().to_string();
    assert!(e.contains("f8") && e.contains("bf16"), "{e}");
}

#[test]
fn empty_frames_folder() {
    let d = tmp("empty-frames");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("notes.txt"), "not a frame").unwrap();
    let e = list_frames(&d).unwrap_err().to_string();
    assert!(
        e.contains("no image files") && e.contains(&d.display().to_string()),
        "{e}"
    );
}

#[test]
fn image_over_pixel_cap() {
    let p = fixtures().join("media/img_a.png");
    let e = load_image(&p, 1000).unwrap_err().to_string();
    assert!(e.contains("img_a.png") && e.contains("over the cap"), "{e}");
}

#[test]
fn not_an_image() {
    let d = tmp("not-image");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("frame.png");
    std::fs::write(&p, b"definitely not a png").unwrap();
    let e = load_image(&p, u64::MAX).unwrap_err().to_string();
    assert!(e.contains("frame.png"), "{e}");
}

#[test]
fn more_images_than_placeholders() {
    let pipe = ModelBundle::load(&fixtures().join("model-v5"), DType::F32, &Device::Cpu).unwrap();
    let img = load_image(&fixtures().join("media/img_c.png"), u64::MAX).unwrap();
    let prompt = PromptInput {
        text: "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n".into(),
        images: vec![img.clone(), img],
        videos: vec![],
    };
    let e = pipe
        .processor
        .prepare(&pipe.tokenizer, &[prompt])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 image placeholder") && e.contains("2 image"),
        "{e}"
    );
}

#[test]
fn odd_sized_image_without_resize() {
    let img = load_image(&fixtures().join("media/img_odd.png"), u64::MAX).unwrap();
    let p = ImageProcessor::new(PreprocessorConfig {
        do_resize: false,
        ..PreprocessorConfig::default()
    });
    let e = p.preprocess_image(&img).unwrap_err().to_string();
    assert!(e.contains("multiples of 28"), "{e}");
}
