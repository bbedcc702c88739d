//! Files as Hugging Face tools leave them: readable by everyone (0644, folders 0755), written
//! whole or not at all.

use std::io::Write;
use std::path::Path;

use crate::error::{JobError, Result};

/// Mode of written files.
pub const FILE_MODE: u32 = 0o644;
/// Mode of created folders.
pub const DIR_MODE: u32 = 0o755;

/// Gives `path` the mode of written files (folders: of created folders). Writers that go
/// through a temporary file (safetensors, some crates) get 0600 otherwise, which other users of
/// a shared cluster cannot read.
pub fn make_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| JobError::io(path, e))?;
        let mode = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| JobError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// [`make_readable`] on a folder and everything in it.
pub fn make_tree_readable(dir: &Path) -> Result<()> {
    make_readable(dir)?;
    for entry in std::fs::read_dir(dir).map_err(|e| JobError::io(dir, e))? {
        let path = entry.map_err(|e| JobError::io(dir, e))?.path();
        if path.is_dir() {
            make_tree_readable(&path)?;
        } else {
            make_readable(&path)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place: a reader
/// never sees half a file, and a failed write leaves the old file as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(JobError::io(path, e));
    }
    make_readable(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_are_readable_by_everyone() {
        let dir = std::env::temp_dir().join(format!("fourd-job-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            make_tree_readable(&dir).unwrap();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, FILE_MODE);
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, DIR_MODE);
        }
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
