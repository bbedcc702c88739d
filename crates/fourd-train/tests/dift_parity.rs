//! DIFT loss and gradients against PyTorch (tools/reference/make_dift_fixtures.py).

use std::sync::Arc;

use candle_core::{DType, Device};
use fourd_train::dift::load_trainable;
use fourd_train::dift_data::{read_dift_jsonl, ExampleBuilder, DIFT_MAX_PIXELS};
use fourd_train::loss::{dift_loss, LossWeights};
use fourd_train::optim::collect_grads;

/// The fixture model (untouched weights) and its DIFT record built into an example.
fn fixture_example() -> (
    Arc<fourd_model::ModelBundle>,
    fourd_model::generation::LatentTokens,
    fourd_train::dift_data::DiftExample,
) {
    let root = fixtures();
    let (pipeline, _) = load_trainable(
        &root.join("latent/model"),
        None,
        0,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let latent = pipeline
        .latent_tokens(None)
        .unwrap()
        .expect("latent tokens");
    let pipeline = Arc::new(pipeline);
    let builder = ExampleBuilder {
        pipeline: pipeline.clone(),
        latent,
        max_length: 4096,
        max_pixels: DIFT_MAX_PIXELS,
        fps: 1.0,
    };
    let ex = builder
        .build(&read_dift_jsonl(&root.join("dift/record.jsonl")).unwrap()[0])
        .unwrap();
    (pipeline, latent, ex)
}

#[test]
fn loss_and_every_gradient_match_pytorch() {
    check_against_pytorch("dift", false);
}

/// With a LoRA adapter peft wrote (non-zero B, moved token rows): the loss, and the gradient of
/// every adapter tensor, against peft + PyTorch (tools/reference/make_lora_fixtures.py).
#[test]
fn lora_loss_and_every_gradient_match_pytorch() {
    check_against_pytorch("lora/dift", true);
}

mod common;

use common::fixtures;
use common::{trainable_model, trainable_model_with};

fn check_against_pytorch(fixture: &str, lora: bool) {
    let root = fixtures();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(fixture).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let expected = candle_core::safetensors::load(
        root.join(fixture).join("expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let (pipeline, vars) = trainable_model(lora);
    let latent = pipeline
        .latent_tokens(None)
        .unwrap()
        .expect("latent tokens");
    let pipeline = Arc::new(pipeline);
    let builder = ExampleBuilder {
        pipeline: pipeline.clone(),
        latent,
        max_length: 4096,
        max_pixels: DIFT_MAX_PIXELS,
        fps: 1.0,
    };
    let records = read_dift_jsonl(&root.join("dift/record.jsonl")).unwrap();
    let ex = builder.build(&records[0]).expect("record builds");

    // The sequence and labels equal the ones built in Python from the same rules.
    let ids: Vec<i64> = expected["input_ids"].to_vec1().unwrap();
    assert_eq!(
        ex.input_ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
        ids
    );
    let labels: Vec<i64> = expected["labels"].to_vec1().unwrap();
    assert_eq!(
        ex.labels
            .iter()
            .map(|l| l.map_or(-100, |t| t as i64))
            .collect::<Vec<_>>(),
        labels
    );
    assert_eq!(
        ex.prompt_len as u64,
        manifest["prompt_len"].as_u64().unwrap()
    );

    let params = pipeline.rope_params();
    let loss = dift_loss(
        &pipeline.model,
        &params,
        &latent,
        "average",
        LossWeights::default(),
        &ex,
    )
    .unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-3);
    let total = loss.total.to_scalar::<f32>().unwrap() as f64;
    for (name, got, want) in [
        ("ce", loss.ce as f64, manifest["ce"].as_f64().unwrap()),
        ("sim", loss.sim as f64, manifest["sim"].as_f64().unwrap()),
        ("total", total, manifest["total"].as_f64().unwrap()),
    ] {
        assert!(close(got, want), "{name}: {got} vs PyTorch {want}");
    }
    assert_eq!(loss.latent_tokens, 8);

    let grads = collect_grads(&loss.total.backward().unwrap(), &vars);
    let mut checked = 0;
    let mut worst = 0f64;
    for ((name, _), g) in vars.iter().zip(&grads) {
        let want = expected
            .get(&format!("grad.{name}"))
            .unwrap_or_else(|| panic!("fixture lacks grad.{name}"));
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("no gradient reached {name}"));
        let diff = (g - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let rel = diff / scale.max(1e-12);
        worst = worst.max(rel);
        assert!(
            rel <= 1e-4,
            "gradient of {name}: max abs diff {diff:e}, relative {rel:e}"
        );
        checked += 1;
    }
    assert_eq!(
        checked as u64,
        manifest["grad_tensors"].as_u64().unwrap(),
        "every trainable tensor is compared"
    );
    eprintln!("ce {} sim {} total {total}; worst relative gradient error {worst:e} over {checked} tensors", loss.ce, loss.sim);
}

#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    check_checkpointing("dift", false);
}

#[test]
fn gradient_checkpointing_gives_the_same_adapter_gradients() {
    check_checkpointing("lora/dift", true);
}

fn check_checkpointing(fixture: &str, lora: bool) {
    let root = fixtures();
    let expected = candle_core::safetensors::load(
        root.join(fixture).join("expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let (pipeline, vars, ck) = trainable_model_with(lora, true);
    let ck = ck.expect("checkpointing on");
    let latent = pipeline
        .latent_tokens(None)
        .unwrap()
        .expect("latent tokens");
    let pipeline = Arc::new(pipeline);
    let builder = ExampleBuilder {
        pipeline: pipeline.clone(),
        latent,
        max_length: 4096,
        max_pixels: DIFT_MAX_PIXELS,
        fps: 1.0,
    };
    let records = read_dift_jsonl(&root.join("dift/record.jsonl")).unwrap();
    let ex = builder.build(&records[0]).unwrap();
    let loss = dift_loss(
        &pipeline.model,
        &pipeline.rope_params(),
        &latent,
        "average",
        LossWeights::default(),
        &ex,
    )
    .unwrap();
    let store = loss.total.backward().unwrap();
    // Layer parameters get no gradient from the outer pass: they come from the recomputation.
    let plain = collect_grads(&store, &vars);
    let layer_params = vars
        .iter()
        .filter(|(n, _)| n.starts_with("model.layers."))
        .count();
    assert!(layer_params > 0);
    assert!(vars
        .iter()
        .zip(&plain)
        .filter(|((n, _), _)| n.starts_with("model.layers."))
        .all(|(_, g)| g.is_none()));
    let grads = fourd_train::optim::backward_grads(&store, Some(&ck), &vars).unwrap();
    for ((name, _), g) in vars.iter().zip(&grads) {
        let want = &expected[&format!("grad.{name}")];
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let diff = (g - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!(
            diff / scale.max(1e-12) <= 1e-4,
            "{name}: relative error {:e}",
            diff / scale
        );
    }
}

#[test]
fn answer_weight_is_a_weighted_mean_over_the_answer_span() {
    let (pipeline, latent, ex) = fixture_example();
    // The span starts right after the reply's last `<answer>`.
    let tok = &pipeline.tokenizer;
    let before = tok
        .decode(&ex.input_ids[ex.prompt_len..ex.answer_start], false)
        .unwrap();
    let after = tok.decode(&ex.input_ids[ex.answer_start..], false).unwrap();
    assert!(before.ends_with("<answer>"), "{before:?}");
    assert!(
        !after.contains("<answer>") && after.contains("</answer>"),
        "{after:?}"
    );

    // Weighted CE = (n_rest * CE_rest + w * n_answer * CE_answer) / (n_rest + w * n_answer), each
    // part computed by the plain (PyTorch-checked) CE on a copy whose other labels are masked.
    let params = pipeline.rope_params();
    let ce_of = |ex: &fourd_train::dift_data::DiftExample, answer: f64| {
        let l = dift_loss(
            &pipeline.model,
            &params,
            &latent,
            "average",
            LossWeights {
                ce: 1.0,
                sim: 0.0,
                answer,
            },
            ex,
        )
        .unwrap();
        (
            l.total.to_scalar::<f32>().unwrap() as f64,
            l.text_tokens as f64,
        )
    };
    let masked = |keep_answer: bool| {
        let mut e = ex.clone();
        for (i, l) in e.labels.iter_mut().enumerate() {
            if (i >= ex.answer_start) != keep_answer {
                *l = None;
            }
        }
        e
    };
    let (ce_answer, n_answer) = ce_of(&masked(true), 1.0);
    let (ce_rest, n_rest) = ce_of(&masked(false), 1.0);
    assert!(n_answer >= 3.0 && n_rest > 10.0);
    let w = 20.0;
    let (weighted, _) = ce_of(&ex, w);
    let want = (n_rest * ce_rest + w * n_answer * ce_answer) / (n_rest + w * n_answer);
    assert!(
        (weighted - want).abs() <= 1e-5 * want,
        "weighted CE {weighted} vs {want}"
    );
    let (plain, _) = ce_of(&ex, 1.0);
    assert!(
        (plain - (n_rest * ce_rest + n_answer * ce_answer) / (n_rest + n_answer)).abs()
            <= 1e-5 * plain
    );
}

#[test]
fn teacher_forced_accuracies_count_argmax_hits() {
    let (pipeline, latent, ex) = fixture_example();
    let params = pipeline.rope_params();
    let run = |ex: &fourd_train::dift_data::DiftExample| {
        dift_loss(
            &pipeline.model,
            &params,
            &latent,
            "average",
            LossWeights::default(),
            ex,
        )
        .unwrap()
    };
    let first = run(&ex);
    let labelled: Vec<usize> = ex
        .labels
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| l.is_some())
        .map(|(i, _)| i)
        .collect();
    let n_answer = labelled.iter().filter(|&&i| i >= ex.answer_start).count();
    assert_eq!(first.token_hits.1, labelled.len());
    assert_eq!(first.answer_hits.1, n_answer);
    assert!(n_answer >= 3);
    // Labels set to the model's own argmax over the answer span (the inputs, and so the logits,
    // are unchanged): every answer token becomes a hit, the rest stay as they were.
    let mut forced = ex.clone();
    for (&i, &p) in labelled.iter().zip(&first.predicted) {
        if i >= ex.answer_start {
            forced.labels[i] = Some(p);
        }
    }
    let second = run(&forced);
    assert_eq!(second.answer_hits, (n_answer, n_answer));
    assert_eq!(
        second.token_hits.0,
        first.token_hits.0 - first.answer_hits.0 + n_answer
    );
    // A wrong label everywhere: no hits at all.
    let mut wrong = ex.clone();
    for (&i, &p) in labelled.iter().zip(&first.predicted) {
        wrong.labels[i] = Some(if p == 0 { 1 } else { p - 1 });
    }
    let third = run(&wrong);
    assert_eq!((third.token_hits.0, third.answer_hits.0), (0, 0));
}

#[test]
fn generation_is_unchanged_by_gradient_checkpointing() {
    // GRPO samples its rollouts from the model it trains. With checkpointing on, the layers once
    // ran without writing the KV cache, so every decoding step saw no context ("<>" and stop).
    use fourd_model::generation::{generate, GenerationConfig, Sampling};
    use fourd_model::inputs::PromptInput;
    use fourd_model::tokenizer::{Content, Message};
    let root = fixtures();
    let (mut pipeline, _) = load_trainable(
        &root.join("latent/model"),
        None,
        0,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let text = pipeline
        .tokenizer
        .apply_chat_template(
            &[Message::new(
                "user",
                vec![Content::Text("where does the red ball roll".into())],
            )],
            true,
        )
        .unwrap();
    let inputs = pipeline
        .processor
        .prepare(
            &pipeline.tokenizer,
            &[PromptInput {
                text,
                images: vec![],
                videos: vec![],
            }],
        )
        .unwrap();
    let latent = pipeline.latent_tokens(None).unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: 24,
        sampling: Sampling::default(),
        stop_ids: vec![],
        latent,
    };
    let run = |p: &fourd_model::ModelBundle| {
        generate(&p.model, &inputs, &p.rope_params(), &cfg, |_, _, _| {}).unwrap()[0]
            .token_ids
            .clone()
    };
    let plain = run(&pipeline);
    pipeline.model.text.grad_checkpoint = Some(fourd_model::text::CheckpointGrads::default());
    let checkpointed = run(&pipeline);
    assert_eq!(plain.len(), 24);
    assert_eq!(
        checkpointed, plain,
        "greedy tokens differ with gradient checkpointing on"
    );
}
