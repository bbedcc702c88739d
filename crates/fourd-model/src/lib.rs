//! Qwen2.5-VL on candle, read top-down like the paper's model: configuration, processor, vision
//! tower, M-RoPE language model, generation.

pub mod attention_softmax;
pub mod config;
mod cpu_math;
pub mod device;
pub mod error;
pub mod generation;
pub mod grad_ops;
pub mod inputs;
pub mod latent;
pub mod layers;
pub mod lora;
pub mod model;
pub mod mrope;
pub mod peft;
pub mod processor;
pub mod swiglu;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

pub use config::{GenerationDefaults, PreprocessorConfig, Qwen25VlConfig, RopeIndexStyle};
pub use device::DeviceSpec;
pub use error::{ModelError, Result};
pub use model::{ModelBundle, Qwen25VL};
