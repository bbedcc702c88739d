//! The chat response cache: one JSON file per request key, written atomically.
//!
//! File `<cache_dir>/<sha256 hex>.json`:
//! `{"version": 1, "url": ..., "model": ..., "content": "<assistant reply>"}`.
//! A file that cannot be read or parsed is treated as a miss (with a warning) and overwritten.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::ApiError;

const VERSION: u64 = 1;

#[derive(Debug, Clone)]
pub(crate) struct ResponseCache {
    dir: PathBuf,
}

/// The cache key of a chat request: SHA-256 over the URL, the model and the JSON of the messages
/// (images included, as their base64 data URLs). Hex, 64 characters.
pub(crate) fn chat_key(url: &str, model: &str, messages_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fourd-api chat v1\0");
    for part in [url, model, messages_json] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ResponseCache {
    pub(crate) fn open(dir: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(dir).map_err(|cause| ApiError::Cache {
            path: dir.to_path_buf(),
            cause,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached reply for `key`, if there is a usable one.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let path = self.path_for(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cache entry; ignoring it");
                return None;
            }
        };
        let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(|v| v.get("version").and_then(|v| v.as_u64()) == Some(VERSION))
            .and_then(|v| {
                v.get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        if parsed.is_none() {
            tracing::warn!(path = %path.display(), "cache entry is not a valid v1 entry; ignoring it");
        }
        parsed
    }

    /// Stores `content` under `key`: written to a temporary file in the same folder, then renamed
    /// over the final name, so readers never see a partial entry.
    pub(crate) fn put(
        &self,
        key: &str,
        url: &str,
        model: &str,
        content: &str,
    ) -> Result<(), ApiError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let entry = serde_json::json!({
            "version": VERSION,
            "url": url,
            "model": model,
            "content": content,
        });
        let final_path = self.path_for(key);
        let tmp = self.dir.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = serde_json::to_vec_pretty(&entry).unwrap_or_default();
        let result = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &final_path));
        if let Err(cause) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(ApiError::Cache {
                path: final_path,
                cause,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_each_part() {
        let k = chat_key("u", "m", "[]");
        assert_eq!(k.len(), 64);
        assert_eq!(k, chat_key("u", "m", "[]"));
        assert_ne!(k, chat_key("u2", "m", "[]"));
        assert_ne!(k, chat_key("u", "m2", "[]"));
        assert_ne!(k, chat_key("u", "m", "[1]"));
        // Length prefixes keep part boundaries apart.
        assert_ne!(chat_key("ab", "c", ""), chat_key("a", "bc", ""));
    }

    #[test]
    fn put_get_and_corrupt_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::open(&dir.path().join("sub")).unwrap();
        assert_eq!(cache.get("k"), None);
        cache.put("k", "u", "m", "hello").unwrap();
        assert_eq!(cache.get("k").as_deref(), Some("hello"));
        std::fs::write(cache.path_for("k"), b"{not json").unwrap();
        assert_eq!(cache.get("k"), None);
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["k.json".to_string()]);
    }
}
