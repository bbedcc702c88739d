//! `fourd model ...`: checkpoint preparation.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fourd_model::latent::add_latent_tokens;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Add <|latent_pad|>, <|latent_start|>, <|latent_end|> to a base checkpoint for DIFT.
    AddLatentTokens(AddLatentArgs),
    /// Merge a LoRA adapter (PEFT's format) into its base: a plain checkpoint that loads
    /// anywhere the base does, without PEFT.
    MergeLora(MergeLoraArgs),
}

#[derive(Args, Debug)]
pub struct MergeLoraArgs {
    /// The base checkpoint the adapter was trained on.
    #[arg(long)]
    pub model: PathBuf,
    /// The adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// New checkpoint folder (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct AddLatentArgs {
    /// Base Qwen2.5-VL checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// New checkpoint folder (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Latent steps per imagery segment, written to config.json.
    #[arg(long, default_value_t = 4)]
    pub latent_size: usize,
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::AddLatentTokens(a) => {
            let r = add_latent_tokens(&a.model, &a.out, a.latent_size).with_context(|| {
                format!("preparing {} from {}", a.out.display(), a.model.display())
            })?;
            println!(
                "wrote {}: <|latent_pad|>={} <|latent_start|>={} <|latent_end|>={}, vocab {} -> {} (tokenizer {}), latent_size {}",
                a.out.display(), r.pad, r.start, r.end, r.vocab_before, r.vocab_after, r.tokenizer_len, a.latent_size
            );
            Ok(())
        }
        ModelCommand::MergeLora(a) => {
            let r = fourd_model::peft::merge_checkpoint(&a.model, &a.adapter, &a.out)
                .with_context(|| {
                    format!(
                        "merging {} into {} as {}",
                        a.adapter.display(),
                        a.model.display(),
                        a.out.display()
                    )
                })?;
            println!(
                "wrote {}: {} layers merged, {} token rows replaced, {} tensors",
                a.out.display(),
                r.merged_layers,
                r.replaced_rows,
                r.tensors
            );
            Ok(())
        }
    }
}
