//! What the parity tests share.

use std::path::PathBuf;

use candle_core::{DType, Device};
use fourd_train::dift::load_trainable;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The model with its trained tensors: every language-model weight, or the fixture's adapter
/// (loaded the way `--resume` loads an adapter checkpoint).
#[allow(dead_code)]
pub fn trainable_model(lora: bool) -> (fourd_model::ModelBundle, Vec<(String, candle_core::Var)>) {
    let (pipe, vars, _) = trainable_model_with(lora, false);
    (pipe, vars)
}

pub type Checkpointing = Option<fourd_model::text::CheckpointGrads>;

#[allow(dead_code)]
pub fn trainable_model_with(
    lora: bool,
    checkpointing: bool,
) -> (
    fourd_model::ModelBundle,
    Vec<(String, candle_core::Var)>,
    Checkpointing,
) {
    let root = fixtures();
    if !lora {
        let (mut pipe, weights) = load_trainable(
            &root.join("latent/model"),
            None,
            0,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let ck = checkpointing.then(fourd_model::text::CheckpointGrads::default);
        pipe.model.text.grad_checkpoint = ck.clone();
        return (pipe, weights.vars(), ck);
    }
    let settings = fourd_model::lora::LoraSettings::new(4, 8.0);
    let m = fourd_train::trainable::load(&fourd_train::trainable::LoadSpec {
        model: &root.join("latent/model"),
        resume: Some(&root.join("lora/adapter")),
        from_scratch: None,
        seed: 0,
        dtype: DType::F32,
        device: &Device::Cpu,
        train_vision: false,
        lora: Some(&settings),
        gradient_checkpointing: checkpointing,
    })
    .unwrap();
    let (vars, ck) = (m.vars.clone(), m.checkpoint_grads.clone());
    let pipe = std::sync::Arc::try_unwrap(m.bundle)
        .ok()
        .expect("one owner");
    (pipe, vars, ck)
}
