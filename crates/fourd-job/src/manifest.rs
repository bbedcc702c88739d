//! What a job was started with, kept in its output folder, so that a re-run resumes only what the
//! same inputs started.
//!
//! A manifest lists the identity of each input ([`crate::identity`]) and every setting that
//! changes results. A new run compares its own manifest with the one on disk: none there starts
//! afresh and writes it; an equal one resumes; a different one is an error that lists each
//! difference and says how to start afresh or write elsewhere. Settings that only change how fast
//! a job runs (threads, batch sizes that give the same results, progress bars) stay out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{JobError, Result};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobManifest {
    /// The command (`fourd eval`, `fourd train dift`, ...).
    pub job: String,
    /// Input name -> identity.
    pub inputs: BTreeMap<String, String>,
    /// Setting name -> value.
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// Whether a job starts afresh or continues an earlier run with the same inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
}

impl JobManifest {
    pub fn new(job: &str) -> Self {
        JobManifest {
            job: job.to_string(),
            ..Default::default()
        }
    }

    pub fn input(mut self, name: &str, identity: impl Into<String>) -> Self {
        self.inputs.insert(name.to_string(), identity.into());
        self
    }

    pub fn setting(mut self, name: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.settings.insert(name.to_string(), value);
        self
    }

    /// What differs from `earlier`, one line each.
    pub fn differences(&self, earlier: &JobManifest) -> Vec<String> {
        let mut out = Vec::new();
        if self.job != earlier.job {
            out.push(format!("  job: {} (this run: {})", earlier.job, self.job));
        }
        let show = |v: Option<&String>| v.map_or("(none)".to_string(), |s| short(s));
        for k in union(&self.inputs, &earlier.inputs) {
            let (now, then) = (self.inputs.get(&k), earlier.inputs.get(&k));
            if now != then {
                out.push(format!("  {k}: {} (this run: {})", show(then), show(now)));
            }
        }
        let show =
            |v: Option<&serde_json::Value>| v.map_or("(none)".to_string(), |v| v.to_string());
        for k in union(&self.settings, &earlier.settings) {
            let (now, then) = (self.settings.get(&k), earlier.settings.get(&k));
            if now != then {
                out.push(format!("  {k}: {} (this run: {})", show(then), show(now)));
            }
        }
        out
    }

    /// Compares with the manifest at `path`. None there: writes this one, [`Start::Fresh`].
    /// Equal: [`Start::Resume`]. Different: with `overwrite`, writes this one and returns
    /// [`Start::Fresh`] (the caller clears the old results); otherwise an error listing the
    /// differences, with `hint` saying how to start afresh or write elsewhere.
    pub fn begin(&self, path: &Path, overwrite: bool, hint: &str) -> Result<Start> {
        match read(path)? {
            None => {
                self.write(path)?;
                Ok(Start::Fresh)
            }
            Some(earlier) if earlier == *self => Ok(Start::Resume),
            Some(_) if overwrite => {
                self.write(path)?;
                Ok(Start::Fresh)
            }
            Some(earlier) => Err(JobError::Mismatch {
                path: path.parent().unwrap_or(path).to_path_buf(),
                differences: self.differences(&earlier),
                hint: hint.to_string(),
            }),
        }
    }

    /// Writes the manifest (atomically, readable by everyone).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        crate::files::write_atomic(path, text.as_bytes())
    }
}

/// The keys of both maps, sorted, each once.
fn union<V>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let mut k: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    k.sort();
    k.dedup();
    k
}

/// The manifest at `path`, if there is one.
pub fn read(path: &Path) -> Result<Option<JobManifest>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| JobError::BadManifest {
                path: path.to_path_buf(),
                msg: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JobError::io(path, e)),
    }
}

/// Identities are long hashes: messages show their start.
fn short(s: &str) -> String {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}…", &s[..12])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_resume_and_other_inputs_name_the_difference() {
        let dir = std::env::temp_dir().join(format!("fourd-job-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("job.json");
        let m = JobManifest::new("fourd eval")
            .input("model", "a".repeat(64))
            .setting("fps", 1.0);
        assert_eq!(
            m.begin(&path, false, "use --overwrite").unwrap(),
            Start::Fresh
        );
        assert_eq!(
            m.begin(&path, false, "use --overwrite").unwrap(),
            Start::Resume
        );
        let other = JobManifest::new("fourd eval")
            .input("model", "b".repeat(64))
            .setting("fps", 2.0);
        let e = other
            .begin(&path, false, "use --overwrite")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model: aaaaaaaaaaaa… (this run: bbbbbbbbbbbb…)"),
            "{e}"
        );
        assert!(e.contains("fps: 1.0 (this run: 2.0)"), "{e}");
        assert!(e.contains("use --overwrite"), "{e}");
        // --overwrite: the new manifest replaces the old one.
        assert_eq!(other.begin(&path, true, "").unwrap(), Start::Fresh);
        assert_eq!(read(&path).unwrap(), Some(other));
        std::fs::write(&path, "not json").unwrap();
        assert!(m.begin(&path, false, "").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
