#![recursion_limit = "256"]
//! DIFT, stage one of 4DThinker: teach Qwen2.5-VL to emit latent imagery.
//!
//! Read top-down: [`params`] (which weights train), [`dift_data`] (records -> sequences with
//! latent slots), [`loss`] (CE + cosine), [`optim`] (AdamW, schedule, clipping; the update and
//! the norm run as one-pass kernels), [`checkpoint`] (Hugging Face folders, resumable state),
//! [`tensorboard`] (event files), [`dift`] (the loop).

pub mod checkpoint;
pub mod dift;
pub mod dift_data;
pub mod dist;
pub mod error;
mod flags;
pub mod grpo;
pub mod grpo_core;
pub mod loss;
pub mod memory;
pub mod optim;
mod optim_kernels;
pub mod params;
pub mod rewards;
pub mod rl_data;
pub mod run_folder;
pub mod tensorboard;
pub mod tiny;
pub mod trainable;
pub mod zero;

pub use dift::{train_dift, DiftConfig, DiftSummary};
pub use dist::ProcessGroup;
pub use error::{Result, TrainError};
pub use grpo::{train_grpo, GrpoConfig, GrpoSummary};
