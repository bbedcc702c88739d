//! Shared helpers: synthetic SpatialVID-layout inputs written with `fourd_world`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fourd_world::{random_clip, write_clip, ClipRow, GenConfig};

/// A fresh temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fourd-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `clips` random clips (the seeds `fourd synth` would use) under `root` with a
/// metadata CSV, like `fourd synth --out root --clips N --frames F --size S --seed K`.
pub fn synth(root: &Path, clips: usize, frames: usize, size: u32, seed: u64) {
    let cfg = GenConfig {
        frames,
        width: size,
        height: size,
        hfov_deg: 60.0,
        max_objects: 3,
    };
    let rows: Vec<ClipRow> = (0..clips)
        .map(|i| {
            let s = fourd_world::clip_seed(seed, i);
            let (clip, truth) = random_clip(s, &cfg).unwrap();
            write_clip(
                root,
                "group_0000",
                &format!("clip_{i:06}"),
                &clip,
                &truth,
                8,
            )
            .unwrap()
        })
        .collect();
    let mut csv = String::from(ClipRow::HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&r.to_csv());
        csv.push('\n');
    }
    std::fs::write(root.join("metadata.csv"), csv).unwrap();
}

/// `clips/group_0000/clip_<i>/<file>` of a run's output, parsed.
pub fn clip_json(out: &Path, i: usize, file: &str) -> serde_json::Value {
    let p = out.join(format!("clips/group_0000/clip_{i:06}/{file}"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}
