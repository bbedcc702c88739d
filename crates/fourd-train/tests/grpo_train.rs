//! The GRPO loop on the tiny fixture model: rollouts with imagery, rewards, advantages, several
//! passes per rollout batch, skipped prompts, flat groups, logs and checkpoints.

use std::path::PathBuf;
use std::sync::Arc;

use fourd_train::rewards::{AnswerKey, Reward};
use fourd_train::{train_grpo, GrpoConfig};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-grpo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Rewards completions by the parity of their byte length: varies within the groups of a random
/// model, so updates happen.
#[derive(Debug)]
struct OddLength;
impl Reward for OddLength {
    fn name(&self) -> &str {
        "odd_length"
    }
    fn weight(&self) -> f64 {
        1.0
    }
    fn score(&self, completion: &str, _: AnswerKey<'_>) -> f64 {
        (completion.len() % 2) as f64
    }
}

/// Always 1: every group is flat.
#[derive(Debug)]
struct Constant;
impl Reward for Constant {
    fn name(&self) -> &str {
        "constant"
    }
    fn weight(&self) -> f64 {
        1.0
    }
    fn score(&self, _: &str, _: AnswerKey<'_>) -> f64 {
        1.0
    }
}

fn data(dir: &std::path::Path) -> PathBuf {
    let frames: Vec<String> = (0..4)
        .map(|i| {
            fixtures()
                .join(format!("dift/media/frame_{i}.png"))
                .display()
                .to_string()
        })
        .collect();
    let rec = |id: &str, frames: &serde_json::Value| {
        serde_json::json!({"id": id, "Question": "Which way does the camera move?", "A": "Pan Left", "B": "Pan Right",
            "C": "Tilt Up", "D": "Stay", "Correct": "B", "frame_paths": frames, "Type": "rel_dir"})
    };
    let lines = [
        rec("good-1", &serde_json::json!(frames)),
        rec(
            "unreadable",
            &serde_json::json!(["/nonexistent/frame_0.png"]),
        ),
        rec("good-2", &serde_json::json!(frames)),
    ];
    let path = dir.join("rl.jsonl");
    std::fs::write(
        &path,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    path
}

fn config(dir: &std::path::Path) -> GrpoConfig {
    let mut c = GrpoConfig::new(fixtures().join("latent/model"), data(dir), dir.join("out"));
    c.num_generations = 4;
    c.num_iterations = 2;
    c.max_new_tokens = 24;
    c.optim.lr = 1e-3;
    c.beta = 0.05;
    c.progress = false;
    c.seed = 3;
    c
}

#[test]
fn grpo_steps_with_reinjected_imagery_and_real_ratios() {
    let dir = tmp("steps");
    let mut c = config(&dir);
    c.rewards = vec![Arc::new(OddLength)];
    c.save_steps = Some(2);
    let s = train_grpo(&c).unwrap();
    // 3 prompts, one per step, 2 iterations each; the unreadable one is skipped and counted.
    assert_eq!(s.skipped_prompts.len(), 1);
    assert_eq!(s.skipped_prompts[0].0, "unreadable");
    assert_eq!(s.rollouts, 8);
    assert!(s.steps >= 1, "some group had signal");
    let stepped: Vec<_> = s.logs.iter().filter(|l| l.grad_norm > 0.0).collect();
    assert!(!stepped.is_empty());
    // First pass over a rollout batch: the policy is the sampling policy, ratio 1 (re-injection).
    let first = stepped[0];
    assert!(
        (first.ratio_mean - 1.0).abs() < 1e-4,
        "ratio on the first pass {}",
        first.ratio_mean
    );
    assert!(
        first.kl.abs() < 1e-5,
        "policy equals the reference before any update: kl {}",
        first.kl
    );
    // Second pass: the update changed the policy, so the ratio moved.
    let second = stepped[1];
    assert!(
        (second.ratio_mean - 1.0).abs() > 1e-6,
        "ratio after an update {}",
        second.ratio_mean
    );
    assert!(second.kl > 0.0);
    assert!(s
        .logs
        .iter()
        .all(|l| l.imagery_segments >= 0.0 && l.completion_length > 0.0));
    // Final checkpoint and TensorBoard scalars.
    assert!(dir.join("out/model.safetensors").exists());
    let runs = std::fs::read_dir(dir.join("out/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let scalars = fourd_train::tensorboard::read_scalars(&runs).unwrap();
    for tag in [
        "rl/reward",
        "rl/accuracy",
        "rl/format_rate",
        "rl/kl",
        "rl/clip_fraction",
        "rl/completion_length",
        "rl/imagery_segments",
        "rewards/odd_length_mean",
        "rewards/odd_length_std",
    ] {
        assert!(scalars.iter().any(|(_, t, _)| t == tag), "{tag} missing");
    }
}

#[test]
fn flat_groups_give_no_gradient_and_are_counted() {
    let dir = tmp("flat");
    let mut c = config(&dir);
    c.rewards = vec![Arc::new(Constant)];
    let s = train_grpo(&c).unwrap();
    assert_eq!(s.steps, 0, "no group had a signal, so no optimiser step");
    assert_eq!(s.zero_variance_groups, 2);
    assert!(s
        .logs
        .iter()
        .all(|l| l.loss == 0.0 && l.reward == 1.0 && l.reward.is_finite()));
    // The weights written are the starting ones.
    let a = candle_core::safetensors::load(
        dir.join("out/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(!a.is_empty());
}

#[test]
fn interrupted_grpo_resumes_to_the_same_weights() {
    check_resume("resume", None, "model.safetensors");
}

/// The same with a LoRA adapter: the adapter and its optimiser state resume.
#[test]
fn interrupted_grpo_resumes_to_the_same_adapter() {
    let lora = fourd_model::lora::LoraSettings::new(4, 8.0);
    check_resume("resume-lora", Some(lora), "adapter_model.safetensors");
}

fn check_resume(name: &str, lora: Option<fourd_model::lora::LoraSettings>, file: &str) {
    let dir = tmp(name);
    let mut straight = config(&dir);
    straight.rewards = vec![Arc::new(OddLength)];
    straight.lora = lora;
    straight.out = dir.join("straight");
    let a = train_grpo(&straight).unwrap();
    let mut first = straight.clone();
    first.out = dir.join("resumed");
    first.halt_after = Some(2);
    train_grpo(&first).unwrap();
    let mut second = first.clone();
    second.halt_after = None;
    second.resume = Some(dir.join("resumed"));
    let b = train_grpo(&second).unwrap();
    assert_eq!(a.steps, b.steps);
    let load = |p: PathBuf| {
        candle_core::safetensors::load(p.join(file), &candle_core::Device::Cpu).unwrap()
    };
    let (wa, wb) = (load(dir.join("straight")), load(dir.join("resumed")));
    let d = wa
        .iter()
        .map(|(k, t)| {
            (t - &wb[k])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0f32, f32::max);
    assert!(d <= 1e-6, "resumed GRPO weights differ by {d}");
}

#[test]
fn two_ranks_shard_the_prompts_and_agree_on_every_update() {
    use fourd_train::dist::{Rendezvous, TcpGroup};
    let dir = tmp("ddp");
    let mut c = config(&dir);
    c.rewards = vec![Arc::new(OddLength)];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let handles: Vec<_> = (0..2)
        .map(|rank| {
            let mut c = c.clone();
            std::thread::spawn(move || {
                let rv = Rendezvous {
                    rank,
                    world_size: 2,
                    local_rank: rank,
                    master: format!("127.0.0.1:{port}"),
                    timeout: std::time::Duration::from_secs(60),
                };
                c.group = fourd_train::ProcessGroup::new(Arc::new(TcpGroup::connect(&rv).unwrap()));
                train_grpo(&c).unwrap()
            })
        })
        .collect();
    let s: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // 3 prompts over 2 ranks: shards of 2 (wrapping round), one prompt per step, so 4 prompt
    // draws in all; each draw of the unreadable prompt is skipped on its rank.
    assert_eq!(
        s[0].steps, s[1].steps,
        "ranks took the same optimiser steps"
    );
    assert!(s[0].steps >= 1);
    let skipped = s[0].skipped_prompts.len() + s[1].skipped_prompts.len();
    assert!(
        skipped >= 1
            && s.iter()
                .flat_map(|r| &r.skipped_prompts)
                .all(|p| p.0 == "unreadable")
    );
    assert_eq!(s[0].rollouts, s[1].rollouts, "rollout counts are pooled");
    assert_eq!(
        s[0].rollouts as usize,
        (4 - skipped) * 4,
        "readable draws x 4 completions"
    );
    for (a, b) in s[0].logs.iter().zip(&s[1].logs) {
        assert_eq!(
            a.grad_norm.to_bits(),
            b.grad_norm.to_bits(),
            "the same summed gradient on both ranks"
        );
        assert_eq!(a.reward.to_bits(), b.reward.to_bits());
    }
    assert!(
        dir.join("out/model.safetensors").exists(),
        "rank 0 wrote the model"
    );
}

/// GRPO training a LoRA adapter: the reference is the base without the adapter (no second copy),
/// so the KL term is zero before the first update and grows after it, while the base weights
/// never change.
#[test]
fn grpo_with_a_lora_adapter_steps_against_the_frozen_base() {
    let dir = tmp("lora");
    let mut c = config(&dir);
    c.rewards = vec![Arc::new(OddLength)];
    c.optim.lr = 1e-2;
    c.lora = Some(fourd_model::lora::LoraSettings::new(4, 8.0));
    let s = train_grpo(&c).unwrap();
    let stepped: Vec<_> = s.logs.iter().filter(|l| l.grad_norm > 0.0).collect();
    assert!(stepped.len() >= 2, "some group had signal");
    assert!(
        (stepped[0].ratio_mean - 1.0).abs() < 1e-4,
        "ratio on the first pass {}",
        stepped[0].ratio_mean
    );
    assert!(
        stepped[0].kl.abs() < 1e-5,
        "policy equals the reference before any update: kl {}",
        stepped[0].kl
    );
    assert!(
        stepped[1].kl > 0.0,
        "the reference did not move with the policy"
    );
    assert!(!dir.join("out/model.safetensors").exists());
    let adapter = candle_core::safetensors::load(
        dir.join("out/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let moved = adapter
        .iter()
        .filter(|(k, _)| k.contains("lora_B"))
        .map(|(_, t)| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0f32, f32::max);
    assert!(moved > 0.0, "the adapter trained");
}
