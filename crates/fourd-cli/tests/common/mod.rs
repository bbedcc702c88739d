//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Runs the built `fourd` binary and captures its output.
pub fn fourd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fourd"))
        .args(args)
        .output()
        .unwrap()
}

/// A fresh, empty temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
