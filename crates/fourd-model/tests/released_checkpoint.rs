//! A checkpoint folder as the 4DThinker releases have it (`model/dift/checkpoints/`, `model/4drl/`):
//! written by the fork's transformers 4.50 (tests/fixtures/released/checkpoint, made by
//! tools/reference/make_released_checkpoint_fixture.py from tests/fixtures/latent/model). Flat
//! config.json with the fork's fields, 4.50 tensor names, bf16 weights in two shards with an index,
//! the vocabulary resized to the tokenizer, chat_template.json, and Trainer leftovers beside it.
//!
//! It holds the latent fixture's numbers rounded to bf16, so the latent fixture with its weights
//! rounded the same way must give the same logits and the same latent-imagery generations.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use common::{latent_fixtures, max_abs_diff, Case};
use fourd_model::generation::{generate, GenerationConfig, LatentTokens, Sampling, SequenceOutput};
use fourd_model::inputs::PromptInput;
use fourd_model::text::LogitRows;
use fourd_model::tokenizer::{Content, Message};
use fourd_model::weights::{CheckpointWeights, KeyLayout};
use fourd_model::{ModelBundle, Qwen25VL};

fn released() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/released/checkpoint")
}

/// The latent fixture's weights as the fork saves them: rounded to bf16 (then widened to the
/// compute dtype) and, for the embedding and lm_head, cut to the rows the model asks for
/// (`resize_token_embeddings(len(tokenizer))`).
struct RoundedToBf16(CheckpointWeights);

impl SimpleBackend for RoundedToBf16 {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        let t = if t.dims() != s.dims() && t.rank() == 2 && t.dim(1)? == s.dims()[1] {
            t.narrow(0, 0, s.dims()[0])?
        } else {
            t
        };
        if t.dims() != s.dims() {
            candle_core::bail!("{name}: shape {:?}, expected {:?}", t.dims(), s.dims());
        }
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0
            .load(name, None, DType::F32, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_dtype(DType::BF16)?
            .to_dtype(dtype)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// The latent fixture, its weights rounded to bf16 and its vocabulary cut to `vocab` rows.
fn latent_rounded(vocab: usize) -> ModelBundle {
    let dir = latent_fixtures().join("model");
    let weights = CheckpointWeights::open(&dir).unwrap();
    let vb = VarBuilder::from_backend(Box::new(RoundedToBf16(weights)), DType::F32, Device::Cpu);
    ModelBundle::load_with(&dir, |mut config| {
        config.text.vocab_size = vocab;
        Qwen25VL::new(config, vb)
    })
    .unwrap()
}

fn load_released(dtype: DType) -> ModelBundle {
    ModelBundle::load(&released(), dtype, &Device::Cpu).unwrap()
}

#[test]
fn the_released_layout_is_read_with_every_field_from_its_files() {
    let dir = released();
    let pipe = load_released(DType::F32);
    let latent =
        ModelBundle::load(&latent_fixtures().join("model"), DType::F32, &Device::Cpu).unwrap();
    let (c, l) = (&pipe.model.config, &latent.model.config);
    // The flat 4.50 layout gives the same sizes as the nested 5.x one.
    assert_eq!(c.text.hidden_size, l.text.hidden_size);
    assert_eq!(c.text.intermediate_size, l.text.intermediate_size);
    assert_eq!(c.text.num_hidden_layers, l.text.num_hidden_layers);
    assert_eq!(c.text.num_attention_heads, l.text.num_attention_heads);
    assert_eq!(c.text.num_key_value_heads, l.text.num_key_value_heads);
    assert_eq!(c.text.mrope_section, l.text.mrope_section);
    assert_eq!(c.text.rope_theta, l.text.rope_theta);
    assert_eq!(c.text.rms_norm_eps, l.text.rms_norm_eps);
    assert_eq!(c.vision.depth, l.vision.depth);
    assert_eq!(c.vision.hidden_size, l.vision.hidden_size);
    assert_eq!(c.vision.out_hidden_size, l.vision.out_hidden_size);
    assert_eq!(
        c.vision.fullatt_block_indexes,
        l.vision.fullatt_block_indexes
    );
    assert_eq!(c.vision.tokens_per_second, l.vision.tokens_per_second);
    assert_eq!(c.vision.window_size, l.vision.window_size);
    assert_eq!(c.image_token_id, l.image_token_id);
    assert_eq!(c.video_token_id, l.video_token_id);
    // resize_token_embeddings(len(tokenizer)): 369 rows, the tokenizer's length exactly.
    assert_eq!(c.text.vocab_size, 369);
    assert_eq!(pipe.tokenizer.vocab_len(), 369);
    // The fork's fields.
    assert_eq!(c.latent.latent_size, Some(4));
    assert_eq!(c.latent.latent_token_id, Some(366));
    assert_eq!(c.latent.latent_start_id, Some(367));
    assert_eq!(c.latent.latent_end_id, Some(368));
    assert_eq!(c.latent.compress_strategy.as_deref(), Some("average"));
    assert_eq!(c.latent.stage.as_deref(), Some("stage1"));
    assert_eq!(c.latent.ce_loss_weight, Some(0.1));
    assert_eq!(c.latent.sim_loss_weight, Some(1.0));
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    let s = &pipe.tokenizer.special;
    assert_eq!(
        (s.latent_pad, s.latent_start, s.latent_end),
        (Some(366), Some(367), Some(368))
    );
    let lt = pipe.latent_tokens(None).unwrap().unwrap();
    assert_eq!(lt.size, 4);
    // Weights: two shards, 4.50 names, bf16.
    let w = CheckpointWeights::open(&dir).unwrap();
    assert_eq!(w.layout, KeyLayout::Legacy);
    assert_eq!(
        w.stored_dtype("model.embed_tokens.weight"),
        Some(DType::BF16)
    );
    assert_eq!(
        w.stored_dtype("visual.patch_embed.proj.weight"),
        Some(DType::BF16)
    );
    assert!(w.contains("lm_head.weight"));
    // chat_template.json gives the latent fixture's chat_template.jinja prompt.
    let msgs = [Message::new(
        "user",
        vec![Content::Image, Content::Text("Is the square red?".into())],
    )];
    assert_eq!(
        pipe.tokenizer.apply_chat_template(&msgs, true).unwrap(),
        latent.tokenizer.apply_chat_template(&msgs, true).unwrap()
    );
    // generation_config.json and preprocessor_config.json as 4.50 wrote them.
    assert_eq!(pipe.generation.eos_token_id, vec![354, 352]);
    assert_eq!(pipe.generation.pad_token_id, Some(352));
    assert_eq!(pipe.stop_ids(), latent.stop_ids());
}

/// Prompt logits of both folders for each case's prompts.
#[test]
fn the_released_layout_gives_the_latent_fixture_logits() {
    let released = load_released(DType::F32);
    let vocab = released.model.config.text.vocab_size;
    let reference = latent_rounded(vocab);
    // The latent fixture as it is (f32 weights, 384 rows), for the size of the bf16 rounding.
    let unrounded =
        ModelBundle::load(&latent_fixtures().join("model"), DType::F32, &Device::Cpu).unwrap();
    let mut worst = 0f32;
    for name in ["image_l4", "batch_two_l4", "text_l8"] {
        let case = Case::load_from(&latent_fixtures(), name);
        let prompts: Vec<PromptInput> = case.prompts(&released.tokenizer);
        let mut logits = Vec::new();
        for pipe in [&released, &reference, &unrounded] {
            let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts).unwrap();
            let mut cache = pipe.model.new_cache();
            let out = pipe
                .model
                .prefill(&inputs, &pipe.rope_params(), &mut cache, &LogitRows::All)
                .unwrap();
            logits.push(out.output.logits);
        }
        // The released checkpoint scores its 369 tokens; the unrounded fixture 384 rows.
        assert_eq!(logits[0].dims()[2], 369);
        let logits: Vec<Tensor> = logits
            .iter()
            .map(|l| l.narrow(2, 0, vocab).unwrap())
            .collect();
        let d = max_abs_diff(&logits[0], &logits[1]);
        let rounding = max_abs_diff(&logits[0], &logits[2]);
        eprintln!(
            "{name}: prompt logits {:?}, max |difference| {d:e} (the f32 weights: {rounding:e})",
            logits[0].dims()
        );
        worst = worst.max(d);
    }
    assert_eq!(worst, 0.0, "the two layouts hold the same numbers");
}

fn run_case(pipe: &ModelBundle, case: &Case) -> Vec<SequenceOutput> {
    let prompts = case.prompts(&pipe.tokenizer);
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &prompts).unwrap();
    let s = &pipe.tokenizer.special;
    let cfg = GenerationConfig {
        max_new_tokens: case.meta["max_new_tokens"].as_u64().unwrap() as usize,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent: Some(LatentTokens {
            pad: s.latent_pad.unwrap(),
            start: s.latent_start.unwrap(),
            end: s.latent_end.unwrap(),
            size: case.meta["latent_size"].as_u64().unwrap() as usize,
        }),
    };
    generate(
        &pipe.model,
        &inputs,
        &pipe.rope_params(),
        &cfg,
        |_, _, _| {},
    )
    .unwrap()
}

/// Latent-imagery generation (greedy, the fixture cases): the same ids, segments and latent
/// hidden states from both folders. Against the f32 Python reference the bf16 rounding may
/// change a token; how many agree is printed, not asserted.
#[test]
fn the_released_layout_generates_what_the_latent_fixture_generates() {
    let released = load_released(DType::F32);
    let reference = latent_rounded(released.model.config.text.vocab_size);
    for name in [
        "image_l4",
        "text_l1",
        "text_l8",
        "batch_two_l4",
        "first_step",
    ] {
        let case = Case::load_from(&latent_fixtures(), name);
        let a = run_case(&released, &case);
        let b = run_case(&reference, &case);
        let expected = case.ids2("generated");
        for (row, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.token_ids, y.token_ids, "{name} row {row}");
            assert_eq!(x.kinds, y.kinds, "{name} row {row}");
            assert_eq!(x.latent_segments.len(), y.latent_segments.len());
            for (p, q) in x.latent_segments.iter().zip(&y.latent_segments) {
                assert_eq!(p.start, q.start);
                assert_eq!(max_abs_diff(&p.hidden, &q.hidden), 0.0, "{name} row {row}");
            }
            let same = x
                .token_ids
                .iter()
                .zip(&expected[row])
                .take_while(|(t, e)| **t as i64 == **e)
                .count();
            eprintln!(
                "{name} row {row}: {} ids, {} segments; the first {same} agree with the f32 reference",
                x.token_ids.len(),
                x.latent_segments.len()
            );
        }
    }
}

/// The stored bf16 weights also run in bf16 (what `fourd eval` does by default).
#[test]
fn the_released_layout_runs_in_bf16() {
    let pipe = load_released(DType::BF16);
    assert_eq!(pipe.model.dtype(), DType::BF16);
    let f32 = load_released(DType::F32);
    let case = Case::load_from(&latent_fixtures(), "image_l4");
    let prompts = case.prompts(&pipe.tokenizer);
    let mut last = Vec::new();
    for p in [&pipe, &f32] {
        let inputs = p.processor.prepare(&p.tokenizer, &prompts).unwrap();
        let mut cache = p.model.new_cache();
        let out = p
            .model
            .prefill(&inputs, &p.rope_params(), &mut cache, &LogitRows::Last)
            .unwrap();
        last.push(out.output.logits.i((0, 0)).unwrap());
    }
    let d = max_abs_diff(&last[0], &last[1]);
    eprintln!("image_l4 last-position logits, bf16 vs f32 compute: max |difference| {d:e}");
    assert!(d.is_finite() && d < 0.5, "{d}");
}

/// A copy of the released folder (its files) with config.json edited by `edit`.
fn edited_copy(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-released-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(released()).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    let path = d.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    d
}

fn load_err(dir: &Path) -> String {
    match ModelBundle::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_broken_released_folder_names_the_file_and_the_field() {
    let d = edited_copy("ce", |c| c["ce_loss_weight"] = "high".into());
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("`ce_loss_weight`"),
        "{e}"
    );
    let d = edited_copy("hidden", |c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("`hidden_size`"),
        "{e}"
    );
    let d = edited_copy("mrope", |c| {
        c["rope_scaling"]["mrope_section"] = vec![2, 3].into()
    });
    let e = load_err(&d);
    assert!(e.contains("rope_scaling.mrope_section"), "{e}");
    // The config says more rows than the bf16 shards hold.
    let d = edited_copy("vocab", |c| c["vocab_size"] = 384.into());
    let e = load_err(&d);
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("model-0000"),
        "{e}"
    );
    // A shard the index lists is missing.
    let d = edited_copy("shard", |_| {});
    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
}
