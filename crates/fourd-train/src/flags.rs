//! Checks of training settings, shared by DIFT and GRPO, made before anything is read or
//! loaded; each error names the command-line flag the value came from.

use std::path::Path;

use crate::error::{Result, TrainError};

/// `v` must be finite and at least `min`.
pub fn finite_at_least(flag: &str, v: f64, min: f64) -> Result<()> {
    if v.is_finite() && v >= min {
        Ok(())
    } else {
        Err(TrainError::Config(format!(
            "--{flag} must be a finite number >= {min} (got {v})"
        )))
    }
}

/// Each count must be at least 1.
pub fn at_least_one(counts: &[(&str, usize)]) -> Result<()> {
    match counts.iter().find(|(_, v)| *v == 0) {
        Some((flag, _)) => Err(TrainError::Config(format!("--{flag} must be at least 1"))),
        None => Ok(()),
    }
}

/// The data file must exist.
pub fn data_file(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(TrainError::Config(format!(
            "--data {}: no such file",
            path.display()
        )))
    }
}
