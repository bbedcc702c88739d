//! Flags of the commands that run a checkpoint for answers (`fourd infer`, `fourd serve`).

use clap::Args;

/// Where and how a checkpoint runs.
#[derive(Args, Debug)]
pub struct RunModelArgs {
    /// Compute dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = fourd_model::weights::parse_dtype)]
    pub dtype: candle_core::DType,
    /// cpu, or cuda / cuda:N (needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    pub device: fourd_model::DeviceSpec,
    /// M-RoPE index rule: v4.50 (what the checkpoints were trained with) or v5 (transformers 5.x).
    #[arg(long, default_value = "v4.50")]
    pub rope_index: fourd_model::RopeIndexStyle,
    /// Latent steps per imagery segment (default: the checkpoint's `latent_size`).
    #[arg(long)]
    pub latent_size: Option<usize>,
    /// A LoRA adapter folder in PEFT's format (`adapter_config.json` +
    /// `adapter_model.safetensors`, as `fourd train --lora-rank` and PEFT write it), run on
    /// --model.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
}
