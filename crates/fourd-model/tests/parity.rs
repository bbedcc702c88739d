//! Stage-by-stage parity with Hugging Face transformers on tiny random Qwen2.5-VL models
//! (fixtures from tools/reference/make_qwen25vl_fixtures.py): prompt rendering, token ids, pixel
//! values, grids, M-RoPE positions, vision features, logits, final hidden states, greedy tokens.

mod common;

use candle_core::{DType, Device, IndexOp};
use common::{max_abs_diff, Case};
use fourd_model::generation::{generate, GenerationConfig, Sampling};
use fourd_model::inputs::ModelInputs;
use fourd_model::text::LogitRows;
use fourd_model::{ModelBundle, RopeIndexStyle};

const TOL: f32 = 1e-4;

fn check_case(name: &str) {
    check_case_with(name, None)
}

/// Runs a case, optionally on another checkpoint folder holding the same weights.
fn check_case_with(name: &str, model: Option<&str>) {
    let case = Case::load(name);
    let dtype = match case.meta["load_dtype"].as_str().unwrap_or("float32") {
        "bfloat16" => DType::BF16,
        _ => DType::F32,
    };
    let dir = model.map_or_else(|| case.model_dir(), |m| common::fixtures().join(m));
    let mut pipe = ModelBundle::load(&dir, dtype, &Device::Cpu).unwrap();
    pipe.model.config.rope_index = case.meta["rope_index"]
        .as_str()
        .unwrap()
        .parse::<RopeIndexStyle>()
        .unwrap();
    let prompts = case.prompts(&pipe.tokenizer);

    // Chat template.
    let expected_prompts: Vec<&str> = case.meta["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for (p, e) in prompts.iter().zip(&expected_prompts) {
        assert_eq!(p.text, *e, "{name}: rendered prompt");
    }

    // Processor: ids, mask, pixels, grids.
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts).unwrap();
    let ids: Vec<Vec<i64>> = inputs
        .input_ids
        .iter()
        .map(|r| r.iter().map(|&t| t as i64).collect())
        .collect();
    assert_eq!(ids, case.ids2("input_ids"), "{name}: input ids");
    let mask: Vec<Vec<i64>> = inputs
        .attention_mask
        .iter()
        .map(|r| r.iter().map(|&t| t as i64).collect())
        .collect();
    assert_eq!(mask, case.ids2("attention_mask"), "{name}: attention mask");
    for (kind, grids, items, px_key) in [
        (
            "image",
            inputs.image_grids(),
            &inputs.images,
            "pixel_values",
        ),
        (
            "video",
            inputs.video_grids(),
            &inputs.videos,
            "pixel_values_videos",
        ),
    ] {
        let grid_key = format!("{kind}_grid_thw");
        if !case.has(&grid_key) {
            assert!(grids.is_empty(), "{name}: unexpected {kind}s");
            continue;
        }
        let g: Vec<Vec<i64>> = grids
            .iter()
            .map(|g| g.iter().map(|&x| x as i64).collect())
            .collect();
        assert_eq!(g, case.ids2(&grid_key), "{name}: {grid_key}");
        let px = ModelInputs::pixel_tensor(items, &Device::Cpu)
            .unwrap()
            .unwrap();
        let err = max_abs_diff(&px, &case.pixels(px_key));
        eprintln!("{name}: {px_key} max abs error {err:.3e}");
        assert!(err < 1e-5, "{name}: {px_key} error {err}");
    }
    if case.has("second_per_grid_ts") {
        let s: Vec<f32> = case
            .t("second_per_grid_ts")
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        let ours: Vec<f32> = inputs.second_per_grid.iter().map(|&x| x as f32).collect();
        assert_eq!(ours, s, "{name}: second_per_grid_ts");
    }

    // M-RoPE positions.
    let params = pipe.rope_params();
    let pos = fourd_model::mrope::batch_rope_index(
        &inputs.input_ids,
        &inputs.attention_mask,
        &params,
        &inputs.vision_items(),
    )
    .unwrap();
    let expected = case
        .t("position_ids")
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec3::<i64>()
        .unwrap();
    assert_eq!(pos.position_ids, expected, "{name}: position ids");
    let deltas: Vec<i64> = case.ids2("rope_deltas").into_iter().map(|r| r[0]).collect();
    assert_eq!(pos.rope_deltas, deltas, "{name}: rope deltas");

    // Vision tower.
    let model = &pipe.model;
    for (key, items, grids) in [
        ("image_embeds", &inputs.images, inputs.image_grids()),
        ("video_embeds", &inputs.videos, inputs.video_grids()),
    ] {
        if !case.has(key) {
            continue;
        }
        let px = ModelInputs::pixel_tensor(items, &Device::Cpu)
            .unwrap()
            .unwrap();
        let feats = model.encode_vision(&px, &grids).unwrap();
        let err = max_abs_diff(&feats, case.t(key));
        eprintln!("{name}: {key} max abs error {err:.3e}");
        assert!(err < TOL, "{name}: {key} error {err}");
    }

    // LLM prefill: logits and final-norm hidden states at real (unpadded) positions.
    let mut cache = model.new_cache();
    let pre = model
        .prefill(&inputs, &params, &mut cache, &LogitRows::All)
        .unwrap();
    let (mut err_l, mut err_h) = (0f32, 0f32);
    for (row, m) in inputs.attention_mask.iter().enumerate() {
        let first = m.iter().position(|&x| x == 1).unwrap();
        let len = m.len() - first;
        let ours_l = pre
            .output
            .logits
            .i(row)
            .unwrap()
            .narrow(0, first, len)
            .unwrap();
        let ref_l = case
            .t("logits")
            .i(row)
            .unwrap()
            .narrow(0, first, len)
            .unwrap();
        err_l = err_l.max(max_abs_diff(&ours_l, &ref_l));
        let ours_h = pre
            .output
            .hidden
            .i(row)
            .unwrap()
            .narrow(0, first, len)
            .unwrap();
        let ref_h = case
            .t("hidden")
            .i(row)
            .unwrap()
            .narrow(0, first, len)
            .unwrap();
        err_h = err_h.max(max_abs_diff(&ours_h, &ref_h));
    }
    eprintln!("{name}: logits max abs error {err_l:.3e}, hidden max abs error {err_h:.3e}");
    let tol = if dtype == DType::F32 { TOL } else { 5e-2 };
    assert!(
        err_l < tol && err_h < tol,
        "{name}: logits {err_l} hidden {err_h}"
    );

    // 20 greedy tokens, EOS disabled as in the fixture.
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent: None,
    };
    let outs = generate(model, &inputs, &params, &cfg, |_, _, _| {}).unwrap();
    let ours: Vec<Vec<i64>> = outs
        .iter()
        .map(|o| o.token_ids.iter().map(|&t| t as i64).collect())
        .collect();
    assert_eq!(ours, case.ids2("greedy"), "{name}: greedy tokens");
}

#[test]
fn one_image() {
    check_case("one_image");
}

#[test]
fn multi_image() {
    check_case("multi_image");
}

#[test]
fn video_odd_frame_count() {
    check_case("video_odd");
}

#[test]
fn video_transformers5_rope_rule() {
    check_case("video_odd_v5");
}

#[test]
fn image_and_video() {
    check_case("image_video");
}

#[test]
fn batch_of_two_left_padded() {
    check_case("batch_two");
}

#[test]
fn text_only() {
    check_case("text_only");
}

#[test]
fn tied_bf16_checkpoint() {
    check_case("text_only_tied_bf16");
}

/// transformers <= 4.51 layout: flat config.json, `visual.*` / `model.layers.*` keys, two shards
/// with an index, chat template in chat_template.json.
#[test]
fn legacy_layout_sharded_checkpoint() {
    check_case_with("one_image", Some("model-v4"));
    check_case_with("batch_two", Some("model-v4"));
}

/// The two rope rules really differ on a video whose time extent exceeds its spatial extent, so
/// the v4.50 / v5 cases above test different things.
#[test]
fn rope_rules_differ_on_long_videos() {
    let a = Case::load("video_odd")
        .t("position_ids")
        .to_vec3::<i64>()
        .unwrap();
    let b = Case::load("video_odd_v5")
        .t("position_ids")
        .to_vec3::<i64>()
        .unwrap();
    assert_ne!(a, b);
}

/// Reduced-precision compute (`--dtype bf16|f16`) on an f32 checkpoint stays close to transformers'
/// f32 logits. The bound is loose on purpose: it catches a broken path (wrong casts, overflow), not
/// rounding.
#[test]
fn half_precision_compute_is_close() {
    let case = Case::load("one_image");
    for dtype in [DType::BF16, DType::F16] {
        let pipe = ModelBundle::load(&case.model_dir(), dtype, &Device::Cpu).unwrap();
        let inputs = pipe
            .processor
            .prepare(&pipe.tokenizer, &case.prompts(&pipe.tokenizer))
            .unwrap();
        let mut cache = pipe.model.new_cache();
        let pre = pipe
            .model
            .prefill(&inputs, &pipe.rope_params(), &mut cache, &LogitRows::All)
            .unwrap();
        let err = max_abs_diff(&pre.output.logits, case.t("logits"));
        let scale = case
            .t("logits")
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("one_image {dtype:?}: logits max abs error {err:.3e} (max |logit| {scale:.2})");
        assert!(err < 0.05 * scale.max(1.0), "{dtype:?}: {err}");
    }
}
