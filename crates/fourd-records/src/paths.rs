//! The one path rule for image and video paths stored in a JSONL file.
//!
//! - **Writers** store paths relative to the JSONL file's own folder ([`PathRule::relative`]), so
//!   a data folder can be moved or copied to another machine and still reads.
//! - **Readers** resolve a relative path against the JSONL file's folder, or against the data root
//!   the user names (`--data-root DIR`) for files written relative to something else: the
//!   released 4DThinker JSONL stores `./data/processed_data/...` relative to its repository root.
//!   Absolute paths are used as they are.
//!
//! The reference resolves relative paths against the current directory, so its files only read
//! from the folder they were made in; `fourd data check` and training share this rule, so a file
//! that checks clean is a file training can read.

use std::path::{Component, Path, PathBuf};

/// Where the relative paths of one JSONL file resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    base: PathBuf,
}

impl PathRule {
    /// The rule for `jsonl`: its folder, or `data_root` when one is given.
    pub fn for_file(jsonl: &Path, data_root: Option<&Path>) -> Self {
        let base = match data_root {
            Some(root) => root.to_path_buf(),
            None => jsonl.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        PathRule { base }
    }

    /// The folder relative paths resolve against.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The path `stored` names.
    pub fn resolve(&self, stored: &str) -> PathBuf {
        let path = Path::new(stored);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// How a writer stores `path` (relative to the current directory or absolute) in a JSONL file
    /// that lives in this rule's folder: relative to that folder when `path` lies under it,
    /// otherwise absolute, so the stored text names the same file from anywhere.
    pub fn relative(&self, path: &Path) -> String {
        let (base, target) = (absolute(&self.base), absolute(path));
        match target.strip_prefix(&base) {
            Ok(rel) => slash_separated(rel),
            Err(_) => target.to_string_lossy().into_owned(),
        }
    }
}

/// `path` made absolute against the current directory, with `.` and `..` removed lexically (the
/// file need not exist yet).
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A relative path with `/` separators on every platform (the files travel between machines).
fn slash_separated(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_files_folder() {
        let rule = PathRule::for_file(Path::new("data/run/dift.jsonl"), None);
        assert_eq!(
            rule.resolve("clips/a.png"),
            PathBuf::from("data/run/clips/a.png")
        );
        assert_eq!(rule.resolve("/abs/a.png"), PathBuf::from("/abs/a.png"));
        // A file in the current directory: its paths resolve against the current directory.
        let here = PathRule::for_file(Path::new("dift.jsonl"), None);
        assert_eq!(here.resolve("clips/a.png"), PathBuf::from("clips/a.png"));
    }

    #[test]
    fn a_data_root_replaces_the_files_folder() {
        let rule = PathRule::for_file(Path::new("x/train.jsonl"), Some(Path::new("/repo")));
        assert_eq!(
            rule.resolve("./data/processed_data/f.png"),
            PathBuf::from("/repo/./data/processed_data/f.png")
        );
    }

    #[test]
    fn writers_store_what_readers_resolve_back() {
        let rule = PathRule::for_file(Path::new("out/data/dift.jsonl"), None);
        let stored = rule.relative(Path::new("out/data/clips/../clips/c/f.png"));
        assert_eq!(stored, "clips/c/f.png");
        assert_eq!(
            rule.resolve(&stored),
            PathBuf::from("out/data/clips/c/f.png")
        );
        // Outside the folder: absolute, so it names the same file from anywhere.
        let outside = rule.relative(Path::new("elsewhere/f.png"));
        assert!(Path::new(&outside).is_absolute(), "{outside}");
        assert!(outside.ends_with("elsewhere/f.png"), "{outside}");
    }
}
