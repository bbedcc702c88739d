//! File helpers: atomic writes (temp file + rename, so a killed run never leaves a half-written
//! output that looks finished), JSON and PNG I/O, and per-clip seeded randomness.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{DataError, Result};

/// A temporary sibling of `path`: same folder (so the rename stays on one file system), a name
/// that no finished output ever has.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a reader (or a rerun after a kill) sees either the old
/// file, no file, or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// Pretty JSON with a trailing newline, written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| DataError::malformed(path, format!("cannot serialise: {e}")))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file; the error names the file and serde's line/column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| DataError::malformed(path, format!("invalid JSON: {e}")))
}

/// Encodes `img` as PNG into memory (PNG: lossless and deterministic, unlike the reference's
/// default-quality JPEGs).
pub fn png_bytes(img: &image::RgbImage, path_for_errors: &Path) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| DataError::Image {
            path: path_for_errors.to_path_buf(),
            msg: e.to_string(),
        })?;
    Ok(out.into_inner())
}

/// Replaces folder `dir` with the files `files` (name, bytes) atomically: they are written into a
/// temporary sibling folder which is then renamed over `dir`.
pub fn write_dir_atomic(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let tmp = temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    for (name, bytes) in files {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| DataError::io(dir, e))
}

/// Removes temporary files and folders a killed run left in `dir` (names from [`temp_sibling`]).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// FNV-1a 64 of a string: stable across runs, platforms and Rust versions (unlike `DefaultHasher`).
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The random generator of one clip and purpose: seeded from the run seed, the clip id and a
/// purpose tag, so results do not depend on `--jobs`, `--shard` or processing order.
pub fn clip_rng(seed: u64, clip_key: &str, purpose: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ fnv1a(clip_key).rotate_left(17) ^ fnv1a(purpose))
}
