//! LoRA adapters in PEFT's format against peft + transformers
//! (tools/reference/make_lora_fixtures.py): logits with adapters peft wrote, our writer read back,
//! merging, and the errors of adapters this reader does not take.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use fourd_model::lora::{Adapter, LoraSettings};
use fourd_model::peft::{merge_checkpoint, read_adapter, write_adapter};
use fourd_model::Qwen25VL;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn cases() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("lora/cases.safetensors"), &Device::Cpu)
        .expect("cases")
}

fn ids(cases: &std::collections::HashMap<String, Tensor>, key: &str) -> Vec<u32> {
    cases[key]
        .to_vec1::<i64>()
        .expect("ids")
        .into_iter()
        .map(|t| t as u32)
        .collect()
}

/// Logits `[seq, vocab]` of a text-only sequence (positions 0..n on every M-RoPE axis).
fn logits(model: &Qwen25VL, ids: &[u32]) -> Tensor {
    let embeds = model
        .embed_with_features(&[ids.to_vec()], &[])
        .expect("embeds");
    let pos: Vec<i64> = (0..ids.len() as i64).collect();
    let positions = vec![vec![pos]; 3];
    let mut cache = model.new_cache();
    model
        .forward_embeds(
            &embeds,
            &positions,
            &[vec![1; ids.len()]],
            &mut cache,
            &fourd_model::text::LogitRows::All,
        )
        .expect("forward")
        .logits
        .squeeze(0)
        .expect("squeeze")
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .expect("diff")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

fn load(model: &str) -> Qwen25VL {
    Qwen25VL::load(&fixtures().join(model), DType::F32, &Device::Cpu).expect("model")
}

fn with_adapter(model: &str, adapter: &Path) -> Qwen25VL {
    let mut m = load(model);
    let a = read_adapter(adapter, DType::F32, &Device::Cpu).expect("adapter");
    m.set_adapter(&a, None).expect("attach");
    m
}

const TOL: f32 = 2e-4;

#[test]
fn logits_with_an_adapter_peft_wrote_match_peft() {
    let c = cases();
    let input = ids(&c, "input_ids");
    let base = load("latent/model");
    let d = max_abs(&logits(&base, &input), &c["logits_base"]);
    assert!(d < TOL, "base logits differ by {d}");
    let m = with_adapter("latent/model", &fixtures().join("lora/adapter"));
    let got = logits(&m, &input);
    let d = max_abs(&got, &c["logits_adapter"]);
    eprintln!("adapter logits: max |fourd - peft| = {d:e}");
    assert!(d < TOL, "adapter logits differ by {d}");
    // The adapter matters (a test of B = 0 would pass without it).
    assert!(max_abs(&got, &c["logits_base"]) > 0.1);
    // The reference model is the same weights without the adapter.
    let d = max_abs(&logits(&m.without_adapter(), &input), &c["logits_base"]);
    assert!(d < TOL, "without_adapter differs from the base by {d}");
}

#[test]
fn legacy_key_layout_reads_the_same() {
    let c = cases();
    let m = with_adapter("latent/model", &fixtures().join("lora/adapter-legacy"));
    let d = max_abs(&logits(&m, &ids(&c, "input_ids")), &c["logits_adapter"]);
    assert!(d < TOL, "legacy-layout adapter differs by {d}");
}

#[test]
fn vision_tower_adapters_and_rslora_match_peft() {
    let c = cases();
    let m = with_adapter("latent/model", &fixtures().join("lora/adapter-vision"));
    let grid: Vec<usize> = c["vision_grid_thw"]
        .to_vec1::<i64>()
        .expect("grid")
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let feats = m
        .encode_vision(&c["vision_pixels"], &[[grid[0], grid[1], grid[2]]])
        .expect("vision");
    let d = max_abs(&feats, &c["vision_adapter"]);
    assert!(d < TOL, "vision features differ by {d}");
    let d = max_abs(
        &logits(&m, &ids(&c, "input_ids")),
        &c["logits_vision_adapter"],
    );
    assert!(d < TOL, "logits differ by {d}");
}

#[test]
fn token_rows_follow_a_tied_lm_head() {
    let c = cases();
    let input = ids(&c, "input_ids_tied");
    let m = with_adapter(
        "qwen25vl/model-tied-bf16",
        &fixtures().join("lora/adapter-tied"),
    );
    let d = max_abs(&logits(&m, &input), &c["logits_tied_adapter"]);
    assert!(d < TOL, "tied adapter logits differ by {d}");
}

#[test]
fn our_writer_round_trips_what_peft_wrote() {
    let c = cases();
    let src = fixtures().join("lora/adapter");
    let a = read_adapter(&src, DType::F32, &Device::Cpu).expect("adapter");
    let dir = tempdir("roundtrip");
    write_adapter(&dir, &a, Path::new("tests/fixtures/latent/model")).expect("write");
    // Every tensor under the same key, bit for bit.
    let theirs =
        candle_core::safetensors::load(src.join("adapter_model.safetensors"), &Device::Cpu)
            .expect("theirs");
    let ours = candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu)
        .expect("ours");
    let mut keys: Vec<_> = theirs.keys().collect();
    keys.sort();
    let mut ours_keys: Vec<_> = ours.keys().collect();
    ours_keys.sort();
    assert_eq!(keys, ours_keys);
    for k in keys {
        assert_eq!(max_abs(&theirs[k], &ours[k]), 0.0, "{k}");
    }
    // The alpha pattern is not kept in the file we write, so the per-module scale must survive
    // another way: read back, the logits are the same.
    let mut m = load("latent/model");
    let back = read_adapter(&dir, DType::F32, &Device::Cpu).expect("read back");
    m.set_adapter(&back, None).expect("attach");
    let d = max_abs(&logits(&m, &ids(&c, "input_ids")), &c["logits_adapter"]);
    assert!(d < TOL, "round-tripped adapter differs by {d}");
}

#[test]
fn merged_equals_unmerged_and_peft_merge() {
    let c = cases();
    let out = tempdir("merged").join("model");
    let done = merge_checkpoint(
        &fixtures().join("latent/model"),
        &fixtures().join("lora/adapter"),
        &out,
    )
    .expect("merge");
    assert_eq!(done.merged_layers, 14);
    assert_eq!(done.replaced_rows, 6);
    let merged = Qwen25VL::load(&out, DType::F32, &Device::Cpu).expect("merged loads");
    let d = max_abs(&logits(&merged, &ids(&c, "input_ids")), &c["logits_merged"]);
    assert!(
        d < TOL,
        "merged logits differ from peft's merged model by {d}"
    );
    let d = max_abs(
        &logits(&merged, &ids(&c, "input_ids")),
        &c["logits_adapter"],
    );
    assert!(d < TOL, "merged differs from unmerged by {d}");
    // Tensor by tensor against merge_and_unload's checkpoint.
    let peft_merged =
        fourd_model::weights::CheckpointWeights::open(&fixtures().join("lora/merged"))
            .expect("peft");
    let ours = fourd_model::weights::CheckpointWeights::open(&out).expect("ours");
    let mut worst = 0f32;
    for name in ours.tensor_names() {
        let canonical = fourd_model::weights::KeyLayout::canonical_name(name);
        let a = ours
            .load(&canonical, None, DType::F32, &Device::Cpu)
            .expect("a");
        let b = peft_merged
            .load(&canonical, None, DType::F32, &Device::Cpu)
            .expect("b");
        worst = worst.max(max_abs(&a, &b));
    }
    eprintln!("merge-lora vs peft merge_and_unload: max |diff| = {worst:e}");
    assert!(worst < 1e-6, "merged weights differ by {worst}");
    // The output folder is never written twice.
    let again = merge_checkpoint(
        &fixtures().join("latent/model"),
        &fixtures().join("lora/adapter"),
        &out,
    )
    .expect_err("a second merge into the same folder");
    assert!(again.to_string().contains("not empty"), "{again}");
}

#[test]
fn a_fresh_adapter_starts_at_the_base_model() {
    let c = cases();
    let mut m = load("latent/model");
    let settings = LoraSettings::new(8, 16.0);
    let a = Adapter::init(&m, &settings, &[366, 367, 368], 0).expect("init");
    assert_eq!(a.modules.len(), 14);
    assert!(a.modules.keys().all(|k| !k.starts_with("visual.")));
    m.set_adapter(&a, None).expect("attach");
    let d = max_abs(&logits(&m, &ids(&c, "input_ids")), &c["logits_base"]);
    assert!(d < TOL, "B = 0 and the base rows: the base model, got {d}");
}

#[test]
fn adapters_this_reader_cannot_take_are_refused_by_name() {
    let src = fixtures().join("lora/adapter");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("adapter_config.json")).expect("cfg"),
    )
    .expect("json");
    let case = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| -> String {
        let dir = tempdir(name);
        let mut c = cfg.clone();
        edit(&mut c);
        std::fs::write(dir.join("adapter_config.json"), c.to_string()).expect("write");
        std::fs::copy(
            src.join("adapter_model.safetensors"),
            dir.join("adapter_model.safetensors"),
        )
        .expect("copy");
        read_adapter(&dir, DType::F32, &Device::Cpu)
            .expect_err(name)
            .to_string()
    };
    let e = case("dora", &|c| c["use_dora"] = true.into());
    assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");
    let e = case("ia3", &|c| c["peft_type"] = "IA3".into());
    assert!(e.contains("peft_type") && e.contains("IA3"), "{e}");
    let e = case("bias", &|c| c["bias"] = "all".into());
    assert!(e.contains("`bias`"), "{e}");
    let e = case("no-ids", &|c| {
        c["trainable_token_indices"] = serde_json::Value::Null
    });
    assert!(e.contains("trainable_token_indices"), "{e}");

    // A model folder given as an adapter, and an adapter given as a model.
    let e = read_adapter(&fixtures().join("latent/model"), DType::F32, &Device::Cpu)
        .expect_err("not an adapter")
        .to_string();
    assert!(e.contains("adapter_config.json"), "{e}");
    let e = Qwen25VL::load(&src, DType::F32, &Device::Cpu)
        .err()
        .expect("an adapter is not a model")
        .to_string();
    assert!(
        e.contains("is a LoRA adapter") && e.contains("--adapter"),
        "{e}"
    );

    // An adapter for another model: the first layer it names that this model lacks.
    let mut m = load("qwen25vl/model-tied-bf16");
    let a = read_adapter(
        &fixtures().join("lora/adapter-vision"),
        DType::F32,
        &Device::Cpu,
    )
    .expect("adapter");
    let mut bigger = a.clone();
    bigger.modules.insert(
        "model.layers.99.self_attn.q_proj".into(),
        a.modules.values().next().expect("one").clone(),
    );
    let e = m
        .set_adapter(&bigger, None)
        .expect_err("no layer 99")
        .to_string();
    assert!(e.contains("model.layers.99.self_attn.q_proj"), "{e}");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "fourd-lora-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// Logits for a span of positions (training's label rows) and for the last one (decoding) are
/// those rows of the full projection, with an adapter's token rows on `lm_head` too.
#[test]
fn logit_rows_are_rows_of_the_full_projection() {
    use fourd_model::text::LogitRows;
    let c = cases();
    let input = ids(&c, "input_ids");
    let n = input.len();
    for m in [
        load("latent/model"),
        with_adapter("latent/model", &fixtures().join("lora/adapter")),
    ] {
        let all = logits(&m, &input);
        let rows = |which: LogitRows| -> Tensor {
            let embeds = m
                .embed_with_features(std::slice::from_ref(&input), &[])
                .expect("embeds");
            let pos: Vec<i64> = (0..n as i64).collect();
            let mut cache = m.new_cache();
            m.forward_embeds(
                &embeds,
                &vec![vec![pos]; 3],
                &[vec![1; n]],
                &mut cache,
                &which,
            )
            .expect("forward")
            .logits
            .squeeze(0)
            .expect("squeeze")
        };
        let span = rows(LogitRows::Span(2..n - 1));
        assert_eq!(span.dims()[0], n - 3);
        let d = max_abs(&span, &all.narrow(0, 2, n - 3).expect("narrow"));
        assert!(d < 1e-5, "span differs by {d}");
        let last = rows(LogitRows::Last);
        let d = max_abs(&last, &all.narrow(0, n - 1, 1).expect("narrow"));
        assert!(d < 1e-5, "last row differs by {d}");
    }
}
