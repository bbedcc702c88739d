//! `add_latent_tokens`: a base checkpoint prepared for DIFT keeps every weight, gains the three
//! latent tokens, and grows its vocabulary matrices with the mean row.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixtures, max_abs_diff};
use fourd_model::latent::add_latent_tokens;
use fourd_model::weights::CheckpointWeights;
use fourd_model::ModelBundle;

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-latent-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn untied_checkpoint_grows_embeddings_and_head_with_the_mean() {
    let base = fixtures().join("model-v5");
    let out = out_dir("untied");
    let r = add_latent_tokens(&base, &out, 4).unwrap();
    let before = ModelBundle::load(&base, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(r.pad as usize, before.tokenizer.vocab_len());
    assert_eq!((r.start, r.end), (r.pad + 1, r.pad + 2));
    assert_eq!(r.vocab_after, r.vocab_before.max(r.tokenizer_len));

    let after = ModelBundle::load(&out, DType::F32, &Device::Cpu).unwrap();
    let s = &after.tokenizer.special;
    assert_eq!(
        (s.latent_pad, s.latent_start, s.latent_end),
        (Some(r.pad), Some(r.start), Some(r.end))
    );
    let l = &after.model.config.latent;
    assert_eq!(
        (
            l.latent_size,
            l.latent_token_id,
            l.latent_start_id,
            l.latent_end_id
        ),
        (Some(4), Some(r.pad), Some(r.start), Some(r.end))
    );
    assert_eq!(after.model.config.text.vocab_size, r.vocab_after);

    let w0 = CheckpointWeights::open(&base).unwrap();
    let w1 = CheckpointWeights::open(&out).unwrap();
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let a = w0.load(name, None, DType::F32, &Device::Cpu).unwrap();
        let b = w1.load(name, None, DType::F32, &Device::Cpu).unwrap();
        let n = a.dim(0).unwrap();
        assert_eq!(b.dim(0).unwrap(), r.vocab_after, "{name}");
        assert_eq!(
            max_abs_diff(&a, &b.narrow(0, 0, n).unwrap()),
            0.0,
            "{name}: old rows kept"
        );
        let mean = a.mean_keepdim(0).unwrap();
        for row in n..r.vocab_after {
            assert!(
                max_abs_diff(&mean, &b.i(row..row + 1).unwrap()) < 1e-6,
                "{name} row {row}"
            );
        }
    }
    // Every other tensor is unchanged.
    for name in w0
        .tensor_names()
        .filter(|n| !n.contains("embed_tokens") && !n.starts_with("lm_head"))
    {
        let a = w0.load_stored(name).unwrap();
        let b = w1.load_stored(name).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{name}");
    }
    // Same text before the new tokens: the prepared model computes what the base did.
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    let e0 = before.model.text.embed(&ids).unwrap();
    let e1 = after.model.text.embed(&ids).unwrap();
    assert_eq!(max_abs_diff(&e0, &e1), 0.0);
}

#[test]
fn tied_bf16_checkpoint_stays_tied_and_bf16() {
    let base = fixtures().join("model-tied-bf16");
    let out = out_dir("tied");
    add_latent_tokens(&base, &out, 8).unwrap();
    let w1 = CheckpointWeights::open(&out).unwrap();
    assert!(!w1.contains("lm_head.weight"));
    assert_eq!(
        w1.stored_dtype("model.embed_tokens.weight"),
        Some(DType::BF16)
    );
    let p = ModelBundle::load(&out, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(p.model.config.latent.latent_size, Some(8));
}

#[test]
fn refuses_a_checkpoint_that_already_has_them_and_a_non_empty_output() {
    let base = fixtures().join("model-v5");
    let out = out_dir("twice");
    add_latent_tokens(&base, &out, 4).unwrap();
    let e = add_latent_tokens(&out, &out_dir("twice-b"), 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already has <|latent_pad|>"), "{e}");
    let e = add_latent_tokens(&base, &out, 4).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
}
