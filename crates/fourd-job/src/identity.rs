//! What identifies an input, so that a re-run can tell whether it was given the same one.
//!
//! - A data file (JSONL, parquet): the SHA-256 of its bytes.
//! - A model folder: the SHA-256 of its `config.json`, and of each weight file's name, size and
//!   first and last MiB. Folder names and modification times do not count: two checkpoints both
//!   called `checkpoint-100` are told apart, and a copied model is the same model. The sampled
//!   bytes hold the safetensors header (every tensor's name, dtype, shape and offset) and the
//!   first and last tensors' values, which any training step changes.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{JobError, Result};

/// Bytes read from each end of a weight file.
const SAMPLE_BYTES: u64 = 1 << 20;

/// Hex SHA-256 of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| JobError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| JobError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex SHA-256 over every file under `dir` (its path relative to `dir` and its
/// [`file_digest`]), in sorted path order: the identity of a benchmark given as a folder of
/// question files. Names count, modification times do not.
pub fn tree_digest(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| JobError::io(&d, e))? {
            let path = entry.map_err(|e| JobError::io(&d, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let relative = |p: &Path| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    files.sort_by_key(|p| relative(p));
    let mut h = Sha256::new();
    for f in &files {
        h.update(format!("{}\0{}\n", relative(f), file_digest(f)?));
    }
    Ok(hex(&h.finalize()))
}

/// The identity of a model folder (see the module docs); of a PEFT adapter folder, its
/// `adapter_config.json` and weights the same way.
pub fn model_identity(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let adapter = dir.join("adapter_config.json");
    let config = if !dir.join("config.json").exists() && adapter.is_file() {
        adapter
    } else {
        dir.join("config.json")
    };
    h.update(std::fs::read(&config).map_err(|e| JobError::io(&config, e))?);
    let mut weights: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| JobError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter(|p| p.file_name().is_none_or(|n| n != "optimizer.safetensors"))
        .collect();
    weights.sort();
    for w in &weights {
        h.update(
            w.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        sample(w, &mut h)?;
    }
    Ok(hex(&h.finalize()))
}

/// Feeds the file's size and its first and last [`SAMPLE_BYTES`] to `h`.
fn sample(path: &Path, h: &mut Sha256) -> Result<()> {
    let io = |e| JobError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; SAMPLE_BYTES.min(size) as usize];
    f.read_exact(&mut buf).map_err(io)?;
    h.update(&buf);
    if size > SAMPLE_BYTES {
        let tail = SAMPLE_BYTES.min(size - SAMPLE_BYTES);
        f.seek(SeekFrom::End(-(tail as i64))).map_err(io)?;
        let mut buf = vec![0u8; tail as usize];
        f.read_exact(&mut buf).map_err(io)?;
        h.update(&buf);
    }
    Ok(())
}

/// The identity of a model run with an adapter: both identities hashed together (a model alone
/// keeps its own identity, so results made before adapters existed still match).
pub fn model_with_adapter_identity(model: &Path, adapter: Option<&Path>) -> Result<String> {
    let base = model_identity(model)?;
    let Some(adapter) = adapter else {
        return Ok(base);
    };
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    h.update(b"\0adapter\0");
    h.update(model_identity(adapter)?.as_bytes());
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first `n` characters of an identity, for folder names and messages.
pub fn short(identity: &str, n: usize) -> &str {
    &identity[..n.min(identity.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_identified_by_its_files_names_and_bytes() {
        let dir = std::env::temp_dir().join(format!("fourd-tree-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/q.json"), "[1]").unwrap();
        std::fs::write(dir.join("top.json"), "[]").unwrap();
        let first = tree_digest(&dir).unwrap();
        assert_eq!(tree_digest(&dir).unwrap(), first);
        std::fs::write(dir.join("a/b/q.json"), "[2]").unwrap();
        let changed = tree_digest(&dir).unwrap();
        assert_ne!(changed, first);
        std::fs::rename(dir.join("a/b/q.json"), dir.join("a/b/r.json")).unwrap();
        assert_ne!(tree_digest(&dir).unwrap(), changed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn model(dir: &Path, config: &str, weights: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    }

    #[test]
    fn models_differ_by_content_not_by_folder_name() {
        let root = std::env::temp_dir().join(format!("fourd-job-id-{}", std::process::id()));
        let (a, b, c) = (
            root.join("a/checkpoint-100"),
            root.join("b/checkpoint-100"),
            root.join("copy"),
        );
        let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1;
        model(&a, "{}", &big);
        model(&b, "{}", &other);
        model(&c, "{}", &big);
        let id = |d: &Path| model_identity(d).unwrap();
        assert_ne!(id(&a), id(&b), "same name, other weights");
        assert_eq!(id(&a), id(&c), "a copy is the same model");
        model(&c, "{\"x\": 1}", &big);
        assert_ne!(id(&a), id(&c), "another config");
        // An optimiser state beside the weights does not change the model.
        let before = id(&a);
        std::fs::write(a.join("optimizer.safetensors"), b"state").unwrap();
        assert_eq!(id(&a), before);
        std::fs::write(root.join("f"), b"x").unwrap();
        assert_eq!(file_digest(&root.join("f")).unwrap().len(), 64);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
