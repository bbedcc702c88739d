//! Diagnostic for the demo's option check: how much of it a trained model gets right when the
//! reply is teacher-forced (the training pass, `dift_loss`), split into the option labels copied
//! from the prompt (`A. <label>: ...`), the `yes`/`no` verdicts, and the answer letter after
//! `<answer>`. Records without an option check are skipped.
//!
//!     cargo run --release -p fourd-train --example check_probe -- MODEL_DIR DIFT_JSONL [N]
//!
//! Measured on five demo models (README, "The demo"): labels 41-67%, verdicts 77-91%.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use fourd_train::dift::load_trainable_with;
use fourd_train::dift_data::{read_dift_jsonl, ExampleBuilder};
use fourd_train::loss::{dift_loss, LossWeights};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: check_probe MODEL_DIR DIFT_JSONL [N]");
    }
    let dir = PathBuf::from(&args[1]);
    let n: usize = args
        .get(3)
        .map(|s| s.parse())
        .transpose()
        .context("N must be a number")?
        .unwrap_or(40);
    let (pipeline, _weights) = load_trainable_with(&dir, None, 0, DType::F32, &Device::Cpu, false)?;
    let latent = pipeline
        .latent_tokens(None)?
        .ok_or_else(|| anyhow!("the tokenizer of {} has no latent tokens", dir.display()))?;
    let params = pipeline.rope_params();
    let compress = pipeline
        .model
        .config
        .latent
        .compress_strategy
        .clone()
        .unwrap_or_else(|| "average".into());
    let pipeline = Arc::new(pipeline);
    let builder = ExampleBuilder {
        pipeline: pipeline.clone(),
        latent,
        max_length: 8192,
        max_pixels: fourd_video::DEFAULT_MAX_PIXELS,
        fps: 1.0,
    };
    let records = read_dift_jsonl(std::path::Path::new(&args[2]))?;
    let (mut label, mut verdict, mut letter) = ((0, 0), (0, 0), (0, 0));
    let is_letter =
        |p: &String| p.trim().len() == 1 && p.trim().chars().all(|c| c.is_ascii_uppercase());
    for rec in records.iter().take(n) {
        // A record training would skip is skipped here too, with its reason.
        let ex = match builder.build(rec) {
            Ok(ex) => ex,
            Err(skip) => {
                eprintln!("skipped record {}: {}", skip.id, skip.reason);
                continue;
            }
        };
        let loss = dift_loss(
            &pipeline.model,
            &params,
            &latent,
            &compress,
            LossWeights::default(),
            &ex,
        )?;
        let pieces: Vec<String> = loss
            .targets
            .iter()
            .map(|t| pipeline.tokenizer.decode(&[*t], false))
            .collect::<std::result::Result<_, _>>()?;
        let Some(start) = pieces.iter().position(|p| p.contains("Checking")) else {
            continue;
        };
        let Some(end) = pieces[start..]
            .iter()
            .position(|p| p.contains("</"))
            .map(|e| e + start)
        else {
            continue;
        };
        // Within the check: tokens between a line's "." and its ":" are the copied label.
        let mut in_label = false;
        let mut line_start = false;
        for (i, piece) in pieces.iter().enumerate().take(end).skip(start) {
            let p = piece.trim();
            let hit = usize::from(loss.predicted[i] == loss.targets[i]);
            if p == ":" {
                in_label = false;
            }
            if in_label {
                label.0 += hit;
                label.1 += 1;
            }
            if p == "." && line_start {
                in_label = true;
            }
            line_start = is_letter(piece);
            if p == "yes" || p == "no" {
                verdict.0 += hit;
                verdict.1 += 1;
            }
        }
        // The answer letter: the first one-capital-letter target after `<answer>`.
        if let Some(open) = pieces[end..]
            .iter()
            .position(|p| p.contains("answer"))
            .map(|a| a + end)
        {
            if let Some(a) = pieces[open..].iter().position(is_letter).map(|a| a + open) {
                letter.0 += usize::from(loss.predicted[a] == loss.targets[a]);
                letter.1 += 1;
            }
        }
    }
    let pct = |(h, n): (usize, usize)| 100.0 * h as f64 / n.max(1) as f64;
    println!(
        "{}: option labels {}/{} ({:.1}%), verdicts {}/{} ({:.1}%), answer letter {}/{} ({:.1}%)",
        dir.display(),
        label.0,
        label.1,
        pct(label),
        verdict.0,
        verdict.1,
        pct(verdict),
        letter.0,
        letter.1,
        pct(letter)
    );
    Ok(())
}
