//! What makes a fourd job safe to repeat.
//!
//! A job that writes into an output folder (`fourd eval`, `fourd train dift|grpo`, `fourd data`,
//! `fourd synth`) does four things before its first expensive step:
//!
//! 1. takes the folder's [`lock`]: a second job on the same folder stops at once, naming the
//!    holder's process id; the lock goes away with the process, even after `kill -9`;
//! 2. describes what it was started with in a [`manifest`]: the [`identity`] of each input (a
//!    model folder, a data file) and every setting that changes results;
//! 3. compares that with the manifest an earlier run left: the same inputs resume, other inputs
//!    stop with an error that names what differs and the flag that starts afresh;
//! 4. writes its files with the modes Hugging Face tools use ([`files`]: 0644, folders 0755), so
//!    other users of a shared cluster can read them.

pub mod error;
pub mod files;
pub mod identity;
pub mod lock;
pub mod manifest;

pub use error::{JobError, Result};
pub use lock::OutputLock;
pub use manifest::{JobManifest, Start};
