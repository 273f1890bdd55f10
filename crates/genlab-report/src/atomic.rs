//! Atomic file writes: a crash never leaves a half-written picture or page.
//!
//! The bytes go to a temporary sibling `NAME.tmp-PID`, which is flushed to disk and then
//! renamed over the destination (rename is atomic within one file system). Missing
//! parent directories are created first. On failure the temporary file is removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ReportError, Result};

/// The temporary sibling a write to `path` goes through.
fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temporary sibling, flush, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(ReportError::invalid(format!(
            "expected a file path, got {}",
            path.display()
        )));
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ReportError::io("creating directory", parent, e))?;
        }
    }
    let tmp = tmp_sibling(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::io("writing", &tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::io("renaming into", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.txt");
        write_atomic(&path, b"hello").unwrap();
        write_atomic(&path, b"world").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"world");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "stray files: {names:?}");
    }

    #[test]
    fn unwritable_destination_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be replaced by a file.
        let path = dir.path().join("d");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        assert!(matches!(
            write_atomic(&path, b"x"),
            Err(ReportError::Io { .. })
        ));
        assert!(matches!(
            write_atomic(Path::new("/"), b"x"),
            Err(ReportError::InvalidInput(_))
        ));
    }
}
