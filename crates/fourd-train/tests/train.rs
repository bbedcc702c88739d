//! The training loop on the tiny fixture model: exact resume, skipped records, checkpoints that
//! load for inference, TensorBoard logs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use fourd_train::{train_dift, DiftConfig};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` copies of the fixture record (distinct ids, media paths made absolute) plus `extra` lines.
fn dataset(dir: &Path, n: usize, extra: &[serde_json::Value]) -> PathBuf {
    let root = fixtures().join("dift");
    let line = std::fs::read_to_string(root.join("record.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let abs = |v: &serde_json::Value| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                serde_json::Value::String(root.join(p.as_str().unwrap()).display().to_string())
            })
            .collect()
    };
    let mut out = String::new();
    for i in 0..n {
        let mut r = rec.clone();
        r["id"] = format!("rec-{i}").into();
        r["image_input"] = abs(&rec["image_input"]);
        r["image_output"] = abs(&rec["image_output"]);
        if i % 2 == 1 {
            r["text_output"] = rec["text_output"]
                .as_str()
                .unwrap()
                .replace("Pan Right", "Pan Left")
                .into();
        }
        out += &serde_json::to_string(&r).unwrap();
        out.push('\n');
    }
    for e in extra {
        let mut r = e.clone();
        for k in ["image_input", "image_output"] {
            if r.get(k).is_none() {
                r[k] = abs(&rec[k]);
            }
        }
        if r.get("text_input").is_none() {
            r["text_input"] = rec["text_input"].clone();
        }
        if r.get("text_output").is_none() {
            r["text_output"] = rec["text_output"].clone();
        }
        out += &serde_json::to_string(&r).unwrap();
        out.push('\n');
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

fn config(data: PathBuf, out: PathBuf) -> DiftConfig {
    let mut c = DiftConfig::new(fixtures().join("latent/model"), data, out);
    c.optim.lr = 1e-3;
    c.warmup_steps = Some(1);
    c.epochs = 2;
    c.logging_steps = 1;
    c.progress = false;
    c.workers = 2;
    c
}

fn weights(dir: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn max_diff(
    a: &std::collections::HashMap<String, Tensor>,
    b: &std::collections::HashMap<String, Tensor>,
) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(k, t)| {
            (t - &b[k])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn resumed_run_equals_the_uninterrupted_run() {
    let dir = tmp("resume");
    let data = dataset(&dir, 3, &[]);
    // 3 records, accumulation 2 -> 2 steps per epoch (the second of one record), 2 epochs.
    let mut straight = config(data.clone(), dir.join("straight"));
    straight.grad_accum = 2;
    let s = train_dift(&straight).unwrap();
    assert_eq!(s.steps, 4);

    let mut first = config(data.clone(), dir.join("resumed"));
    first.grad_accum = 2;
    first.halt_after = Some(1); // stop inside the first epoch, mid-way through the data
    let h = train_dift(&first).unwrap();
    assert_eq!(h.steps, 1);
    assert!(dir
        .join("resumed/checkpoint-1/optimizer.safetensors")
        .exists());
    assert!(
        !dir.join("resumed/model.safetensors").exists(),
        "an interrupted run writes no final model"
    );
    let mut second = first.clone();
    second.halt_after = None;
    second.resume = Some(dir.join("resumed"));
    let r = train_dift(&second).unwrap();
    assert_eq!(r.steps, 4);

    let d = max_diff(
        &weights(&dir.join("straight")),
        &weights(&dir.join("resumed")),
    );
    assert!(d <= 1e-6, "resumed weights differ by {d}");
    // Training moved the weights at all (so the comparison is not trivially true).
    let init = weights(&fixtures().join("latent/model"));
    let moved = weights(&dir.join("straight"))["model.layers.0.mlp.up_proj.weight"].clone();
    let init_t = init
        .get("model.layers.0.mlp.up_proj.weight")
        .or_else(|| init.get("model.language_model.layers.0.mlp.up_proj.weight"))
        .unwrap();
    let delta = (moved - init_t)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(delta > 1e-5, "weights did not change ({delta})");
    // Both runs logged every step.
    let log = std::fs::read_to_string(dir.join("straight/train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
}

#[test]
fn bad_records_are_skipped_and_reported_and_training_goes_on() {
    let dir = tmp("skip");
    let data = dataset(
        &dir,
        2,
        &[
            serde_json::json!({"id": "missing-image", "image_input": ["/nonexistent/frame.png"]}),
            serde_json::json!({"id": "no-answer", "text_output": "<think>only <output_image> thinking <output_image></think>"}),
            serde_json::json!({"id": "tag-mismatch", "text_output": "<think><output_image></think><answer>A. x</answer>"}),
            serde_json::json!({"id": "too-long", "text_input": "word ".repeat(2000)}),
        ],
    );
    let mut c = config(data, dir.join("out"));
    c.epochs = 1;
    c.max_length = 1024;
    let s = train_dift(&c).unwrap();
    assert_eq!(s.steps, 2, "the two good records trained");
    let mut ids: Vec<&str> = s.skipped.iter().map(|k| k.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["missing-image", "no-answer", "tag-mismatch", "too-long"]
    );
    let reasons: String = s
        .skipped
        .iter()
        .map(|k| format!("{}: {}\n", k.id, k.reason))
        .collect();
    assert!(reasons.contains("no <answer>"), "{reasons}");
    assert!(
        reasons.contains("1 <output_image> tag(s) but image_output lists 2"),
        "{reasons}"
    );
    assert!(reasons.contains("--max-length 1024"), "{reasons}");
    assert!(reasons.contains("/nonexistent/frame.png"), "{reasons}");
    let file = std::fs::read_to_string(dir.join("out/skipped.jsonl")).unwrap();
    assert_eq!(file.lines().count(), 4);
}

#[test]
fn checkpoint_loads_for_inference_and_logs_reach_tensorboard() {
    let dir = tmp("ckpt");
    let data = dataset(&dir, 2, &[]);
    let mut c = config(data, dir.join("out"));
    c.epochs = 1;
    c.save_steps = Some(1);
    c.save_total_limit = Some(1);
    let s = train_dift(&c).unwrap();
    assert_eq!(s.steps, 2);
    // Rotation kept only the newest checkpoint.
    let ckpts: Vec<_> = fourd_train::checkpoint::list_checkpoints(&dir.join("out"))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(ckpts, vec![2]);
    // The final folder is a complete checkpoint: config with latent fields, tokenizer, template.
    let out = dir.join("out");
    let p = fourd_model::ModelBundle::load(&out, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(p.model.config.latent.latent_size, Some(4));
    assert!(p.latent_tokens(None).unwrap().is_some());
    // Its weights are the trained ones, not the source's.
    let trained = weights(&out);
    let ck = weights(&dir.join("out/checkpoint-2"));
    assert_eq!(max_diff(&trained, &ck), 0.0);
    // TensorBoard: every scalar of every step.
    let runs = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let scalars = fourd_train::tensorboard::read_scalars(&runs).unwrap();
    for tag in [
        "train/loss",
        "train/ce_loss",
        "train/sim_loss",
        "train/cos",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
    ] {
        let steps: Vec<u64> = scalars
            .iter()
            .filter(|(_, t, _)| t == tag)
            .map(|(s, _, _)| *s)
            .collect();
        assert_eq!(steps, vec![1, 2], "{tag}");
    }
    let lr1 = scalars
        .iter()
        .find(|(s, t, _)| *s == 1 && t == "train/lr")
        .unwrap()
        .2;
    assert_eq!(lr1, 0.0, "warmup starts at 0 as in Hugging Face's schedule");
}

#[test]
fn a_fresh_tiny_checkpoint_loads_round_trips_text_and_trains() {
    let dir = tmp("tiny");
    let corpus: Vec<String> = (0..50)
        .map(|i| format!("<think>The camera pans left in frame {i} <output_image>.</think><answer>B. Pan Left</answer> Which way does the camera move?"))
        .collect();
    let ckpt = dir.join("tiny");
    let spec = fourd_train::tiny::TinySpec {
        bpe_vocab: 200,
        ..Default::default()
    };
    fourd_train::tiny::init_tiny_checkpoint(&ckpt, &corpus, &spec).unwrap();
    let p = fourd_model::ModelBundle::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let text = "<|im_start|>assistant\n<think>The camera pans left.</think><answer>B. Pan Left</answer><|im_end|>";
    let ids = p.tokenizer.encode(text).unwrap();
    assert!(
        ids.len() < text.len() / 2,
        "BPE merges: {} tokens for {} bytes",
        ids.len(),
        text.len()
    );
    assert_eq!(p.tokenizer.decode(&ids, false).unwrap(), text);
    let lt = p.latent_tokens(None).unwrap().expect("latent tokens");
    assert_eq!(lt.size, 4);
    drop(p);
    // Train two steps from it on the fixture record.
    let data = dataset(&dir, 2, &[]);
    let mut c = config(data, dir.join("out"));
    c.model = ckpt;
    c.epochs = 1;
    let s = train_dift(&c).unwrap();
    assert_eq!(s.steps, 2);
    assert!(s.last.unwrap().loss.is_finite());
}

/// Runs `cfg` as `world` ranks, one thread each, joined by a TCP group on a free local port.
fn run_ranks(cfg: &DiftConfig, world: usize) -> Vec<fourd_train::DiftSummary> {
    use fourd_train::dist::{Rendezvous, TcpGroup};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let mut c = cfg.clone();
            std::thread::spawn(move || {
                let rv = Rendezvous {
                    rank,
                    world_size: world,
                    local_rank: rank,
                    master: format!("127.0.0.1:{port}"),
                    timeout: std::time::Duration::from_secs(60),
                };
                c.group = fourd_train::ProcessGroup::new(std::sync::Arc::new(
                    TcpGroup::connect(&rv).unwrap(),
                ));
                train_dift(&c).unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn two_ranks_train_as_one_process_with_twice_the_accumulation() {
    let dir = tmp("ddp");
    // 5 records: steps of 2 records per step, the last step has one (rank 1's slice is empty).
    let data = dataset(&dir, 5, &[]);
    let mut single = config(data.clone(), dir.join("single"));
    single.grad_accum = 2;
    single.epochs = 1;
    let s = train_dift(&single).unwrap();
    assert_eq!(s.steps, 3);

    let mut ddp = config(data, dir.join("ddp"));
    ddp.grad_accum = 1;
    ddp.epochs = 1;
    let ranks = run_ranks(&ddp, 2);
    assert!(
        ranks.iter().all(|r| r.steps == 3),
        "every rank took the same steps"
    );
    let d = max_diff(&weights(&dir.join("single")), &weights(&dir.join("ddp")));
    println!("max abs weight difference, 2 ranks vs 1 process: {d:e}");
    assert!(
        d <= 1e-5,
        "2 ranks x accumulation 1 differ from 1 rank x accumulation 2 by {d}"
    );
    let moved = max_diff(
        &weights(&dir.join("single")),
        &weights(&fixtures().join("latent/model")),
    );
    assert!(moved > 1e-4, "training moved the weights ({moved})");
    // Pooled logs: the same loss on both ranks and as the single process (rank 0 writes them).
    let (a, b) = (
        ranks[0].last.as_ref().unwrap(),
        ranks[1].last.as_ref().unwrap(),
    );
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert!((a.loss - s.last.as_ref().unwrap().loss).abs() < 1e-5);
    assert_eq!(
        std::fs::read_to_string(dir.join("ddp/train_log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn ranks_with_different_data_stop_with_an_error() {
    let dir = tmp("ddp-mismatch");
    let a = dataset(&dir, 3, &[]);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let b = dataset(&other, 4, &[]);
    use fourd_train::dist::{Rendezvous, TcpGroup};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let handles: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(rank, data)| {
            let mut c = config(data, dir.join("out"));
            std::thread::spawn(move || {
                let rv = Rendezvous {
                    rank,
                    world_size: 2,
                    local_rank: rank,
                    master: format!("127.0.0.1:{port}"),
                    timeout: std::time::Duration::from_secs(60),
                };
                c.group = fourd_train::ProcessGroup::new(std::sync::Arc::new(
                    TcpGroup::connect(&rv).unwrap(),
                ));
                train_dift(&c).map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        let err = h
            .join()
            .unwrap()
            .expect_err("mismatched ranks must not train");
        assert!(
            err.contains("number of records differs between ranks"),
            "{err}"
        );
    }
}

#[test]
fn sampling_never_picks_placeholders_or_latent_control_tokens_as_text() {
    use fourd_model::generation::{generate, GenerationConfig, Sampling, TokenKind};
    use fourd_model::inputs::PromptInput;
    let dir = tmp("tiny-sampling");
    let corpus: Vec<String> = (0..50)
        .map(|i| format!("<think>Frame {i} <output_image>.</think><answer>B. Pan Left</answer>"))
        .collect();
    let ckpt = dir.join("tiny");
    let spec = fourd_train::tiny::TinySpec {
        bpe_vocab: 200,
        ..Default::default()
    };
    fourd_train::tiny::init_tiny_checkpoint(&ckpt, &corpus, &spec).unwrap();
    let p = fourd_model::ModelBundle::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let lt = p.latent_tokens(None).unwrap().expect("latent tokens");
    let banned = [
        p.model.config.image_token_id.unwrap(),
        p.model.config.video_token_id.unwrap(),
        lt.pad,
        lt.end,
    ];
    let vocab = p.model.config.text.vocab_size;
    // Temperature 50 over a random model is close to uniform: 8 x 250 draws over this vocabulary
    // would hit each banned id several times if they were allowed.
    assert!(vocab < 400, "vocabulary {vocab}");
    let prompt = PromptInput {
        text: "<|im_start|>user\nWhich way?<|im_end|>\n<|im_start|>assistant\n".into(),
        images: vec![],
        videos: vec![],
    };
    let inputs = p.processor.prepare(&p.tokenizer, &vec![prompt; 8]).unwrap();
    let sampling = Sampling {
        greedy: false,
        temperature: 50.0,
        seed: 7,
        ..Default::default()
    };
    let gen = GenerationConfig {
        max_new_tokens: 250,
        sampling,
        stop_ids: vec![],
        latent: Some(lt),
    };
    let outs = generate(&p.model, &inputs, &p.rope_params(), &gen, |_, _, _| {}).unwrap();
    let mut text_tokens = 0;
    let mut segments = 0;
    for o in &outs {
        segments += o.latent_segments.len();
        for (&id, &kind) in o.token_ids.iter().zip(&o.kinds) {
            if kind == TokenKind::Text || kind == TokenKind::LatentStart {
                text_tokens += 1;
                assert!(!banned.contains(&id), "sampled {id} as text");
            }
        }
    }
    // Near-uniform sampling did open imagery segments (their pad and end ids are the engine's).
    assert!(
        segments > 0 && text_tokens > 1000,
        "{segments} segments, {text_tokens} text tokens"
    );
}
