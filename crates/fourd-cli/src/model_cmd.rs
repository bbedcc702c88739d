//! `fourd model ...`: checkpoint preparation.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fourd_model::latent::add_latent_tokens;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Add <|latent_pad|>, <|latent_start|>, <|latent_end|> to a base checkpoint for DIFT.
    AddLatentTokens(AddLatentArgs),
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
    }
}
