//! The 4DRL objective against PyTorch (tools/reference/make_grpo_fixtures.py), and re-injection:
//! the training pass reproduces sampling-time log-probs only when imagery is re-injected.

use candle_core::{DType, Device, Tensor};
use fourd_model::generation::{generate, GenerationConfig, Sampling, TokenKind};
use fourd_model::inputs::ModelInputs;
use fourd_records::{McQuestion, Media};
use fourd_train::dift::load_trainable;
use fourd_train::grpo_core::{completion_logprobs, grpo_term, Objective, Rollout};
use fourd_train::optim::collect_grads;
use fourd_train::rl_data::rl_prompt;

fn kind(k: i64) -> TokenKind {
    match k {
        1 => TokenKind::LatentStart,
        2 => TokenKind::LatentPad,
        3 => TokenKind::LatentEnd,
        _ => TokenKind::Text,
    }
}

fn record(manifest: &serde_json::Value) -> McQuestion {
    McQuestion {
        index: 0,
        id: "fixture".into(),
        question: manifest["question"].as_str().unwrap().into(),
        options: manifest["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect(),
        answer: "B".into(),
        kind: fourd_records::AnswerKind::Choice,
        window: None,
        media: Media::Frames(
            manifest["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| fixtures().join("..").join("..").join(p.as_str().unwrap()))
                .collect(),
        ),
        task_type: "rel_dir".into(),
    }
}

fn frames(r: &McQuestion) -> Vec<image::RgbImage> {
    fourd_train::rl_data::load_rl_frames(r, 16, 448).unwrap()
}

#[test]
fn objective_and_every_gradient_match_pytorch() {
    check_against_pytorch("grpo", false);
}

/// With a LoRA adapter peft wrote (non-zero B, moved token rows): the loss, and the gradient of
/// every adapter tensor, against peft + PyTorch (tools/reference/make_lora_fixtures.py).
#[test]
fn lora_objective_and_every_gradient_match_pytorch() {
    check_against_pytorch("lora/grpo", true);
}

mod common;

use common::fixtures;
use common::trainable_model;

fn check_against_pytorch(fixture: &str, lora: bool) {
    let root = fixtures();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(fixture).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let ex = candle_core::safetensors::load(
        root.join(fixture).join("expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let (pipe, vars) = trainable_model(lora);
    let latent = pipe.latent_tokens(None).unwrap().unwrap();
    let rec = record(&manifest);
    let prompt = rl_prompt(&pipe.tokenizer, &rec, frames(&rec)).unwrap();
    let inputs = pipe.processor.prepare(&pipe.tokenizer, &[prompt]).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        ex[k]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    assert_eq!(
        inputs.input_ids[0],
        ids("prompt_ids"),
        "prompt built like the Python side"
    );
    let params = pipe.rope_params();
    let px = ModelInputs::pixel_tensor(&inputs.videos, &Device::Cpu)
        .unwrap()
        .unwrap();
    let feats = pipe
        .model
        .encode_vision(&px, &[inputs.videos[0].grid_thw])
        .unwrap();
    let obj = Objective {
        epsilon: manifest["epsilon"].as_f64().unwrap(),
        beta: manifest["beta"].as_f64().unwrap(),
    };
    let adv: Vec<f64> = manifest["advantages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    let n_tokens = manifest["masked_tokens"].as_f64().unwrap();
    let mut total: Option<Tensor> = None;
    let mut clipped = 0;
    let mut seq_loss = 0.0;
    for i in 0..2 {
        let kinds: Vec<TokenKind> = ex[&format!("kinds_{i}")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(kind)
            .collect();
        let r = Rollout {
            prompt_ids: inputs.input_ids[0].clone(),
            video: inputs.videos[0].clone(),
            second_per_grid: inputs.second_per_grid[0],
            completion: ids(&format!("completion_{i}")),
            latent_hidden: ex.get(&format!("latent_hidden_{i}")).cloned(),
            sample_logprobs: vec![],
            kinds,
        };
        let logp =
            completion_logprobs(&pipe.model, &params, &latent, &r, &feats, true, 1.0).unwrap();
        let want: Vec<f32> = ex[&format!("logp_{i}")].to_vec1().unwrap();
        let got: Vec<f32> = logp.to_vec1().unwrap();
        let d = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "log-probs of completion {i} differ by {d}");
        let old: Vec<f32> = ex[&format!("old_{i}")].to_vec1().unwrap();
        let rf: Vec<f32> = ex[&format!("ref_{i}")].to_vec1().unwrap();
        let mask = r.text_mask();
        let (term, stats) =
            grpo_term(&logp, &old, Some(&rf), &mask, adv[i], obj, n_tokens).unwrap();
        let (seq_term, _) = grpo_term(
            &logp,
            &old,
            Some(&rf),
            &mask,
            adv[i],
            obj,
            stats.tokens as f64 * 2.0,
        )
        .unwrap();
        seq_loss += seq_term.to_scalar::<f32>().unwrap() as f64;
        clipped += stats.clipped;
        total = Some(match total {
            None => term,
            Some(t) => (t + term).unwrap(),
        });
    }
    let total = total.unwrap();
    let loss = total.to_scalar::<f32>().unwrap() as f64;
    let want = manifest["loss_token_level"].as_f64().unwrap();
    assert!(
        (loss - want).abs() <= 1e-4 * want.abs().max(1e-3),
        "loss {loss} vs PyTorch {want}"
    );
    let want_seq = manifest["loss_per_sequence"].as_f64().unwrap();
    assert!(
        (seq_loss - want_seq).abs() <= 1e-4 * want_seq.abs().max(1e-3),
        "per-sequence loss {seq_loss} vs {want_seq}"
    );
    assert_eq!(clipped as u64, manifest["clipped_tokens"].as_u64().unwrap());
    assert!(clipped > 0, "the fixture exercises clipping");

    let grads = collect_grads(&total.backward().unwrap(), &vars);
    let mut worst = 0f64;
    for ((name, _), g) in vars.iter().zip(&grads) {
        let want = &ex[&format!("grad.{name}")];
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
        let rel = diff / scale.max(1e-12);
        worst = worst.max(rel);
        assert!(rel <= 1e-4, "gradient of {name}: relative error {rel:e}");
    }
    assert_eq!(
        vars.len() as u64,
        manifest["grad_tensors"].as_u64().unwrap()
    );
    eprintln!("loss {loss} (PyTorch {want}); worst relative gradient error {worst:e}");
}

#[test]
fn training_pass_reproduces_sampling_logprobs_only_with_reinjected_imagery() {
    let root = fixtures();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grpo/manifest.json")).unwrap())
            .unwrap();
    let (pipe, _) = load_trainable(
        &root.join("latent/model"),
        None,
        0,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let latent = pipe.latent_tokens(None).unwrap().unwrap();
    let rec = record(&manifest);
    let prompt = rl_prompt(&pipe.tokenizer, &rec, frames(&rec)).unwrap();
    let inputs = pipe
        .processor
        .prepare(&pipe.tokenizer, &[prompt.clone(), prompt])
        .unwrap();
    let params = pipe.rope_params();
    // Sampling at temperature 1 until a rollout with imagery followed by text appears.
    let mut found = false;
    for seed in 0..40u64 {
        let cfg = GenerationConfig {
            max_new_tokens: 40,
            sampling: Sampling {
                greedy: false,
                temperature: 1.0,
                seed,
                ..Default::default()
            },
            stop_ids: pipe.stop_ids(),
            latent: Some(latent),
        };
        let outs = generate(&pipe.model, &inputs, &params, &cfg, |_, _, _| {}).unwrap();
        for o in outs {
            let Some(end) = o.kinds.iter().position(|k| *k == TokenKind::LatentEnd) else {
                continue;
            };
            if !o.kinds[end + 1..].contains(&TokenKind::Text) {
                continue;
            }
            let hidden = Tensor::cat(
                &o.latent_segments
                    .iter()
                    .map(|s| s.hidden.clone())
                    .collect::<Vec<_>>(),
                0,
            )
            .unwrap();
            let row = 0;
            let prompt_ids: Vec<u32> = inputs.input_ids[row]
                .iter()
                .zip(&inputs.attention_mask[row])
                .filter(|(_, &m)| m != 0)
                .map(|(&t, _)| t)
                .collect();
            let r = Rollout {
                prompt_ids,
                video: inputs.videos[row].clone(),
                second_per_grid: inputs.second_per_grid[row],
                completion: o.token_ids.clone(),
                kinds: o.kinds.clone(),
                latent_hidden: Some(hidden),
                sample_logprobs: o.logprobs.clone(),
            };
            let px = ModelInputs::pixel_tensor(std::slice::from_ref(&r.video), &Device::Cpu)
                .unwrap()
                .unwrap();
            let feats = pipe.model.encode_vision(&px, &[r.video.grid_thw]).unwrap();
            let with: Vec<f32> =
                completion_logprobs(&pipe.model, &params, &latent, &r, &feats, true, 1.0)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
            let without: Vec<f32> =
                completion_logprobs(&pipe.model, &params, &latent, &r, &feats, false, 1.0)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
            let mask = r.text_mask();
            let mut worst_with = 0f64;
            let mut worst_without = 0f64;
            for (i, lp) in r.sample_logprobs.iter().enumerate() {
                let (Some(lp), true) = (lp, mask[i]) else {
                    continue;
                };
                worst_with = worst_with.max(((with[i] - lp) as f64).abs());
                if i > end {
                    worst_without = worst_without.max(((without[i] - lp) as f64).abs());
                }
            }
            // ratio = exp(difference): within 1e-4 of 1 with re-injection.
            assert!(
                worst_with < 1e-4,
                "re-injected log-probs differ from sampling-time ones by {worst_with}"
            );
            assert!(
                worst_without > 1e-3,
                "without re-injection the text after imagery should change ({worst_without})"
            );
            eprintln!(
                "max |log ratio| with re-injection {worst_with:e}, without {worst_without:e}"
            );
            found = true;
            break;
        }
        if found {
            break;
        }
    }
    assert!(found, "no sampled rollout had imagery followed by text");
}
