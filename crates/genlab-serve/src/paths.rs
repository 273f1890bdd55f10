//! The runs directory, and the only way a request turns a name into a file path.
//!
//! Requests name runs and files by their path relative to the runs directory, with `/`
//! between components (`mnist/vae/samples.png`). [`RunsRoot::resolve`] refuses anything that
//! could reach outside it: absolute paths, `..` and `.` components, empty components,
//! backslashes, NUL bytes and percent signs (what is left of an encoded `%2e%2e` or `%2f`
//! after the one decoding the HTTP layer does). What passes is joined to the canonical runs
//! directory and canonicalised again, so a symbolic link inside that points outside is
//! refused too. Directories are never listed: the runs page shows what the scan finds.

use std::path::{Component, Path, PathBuf};

use crate::error::{Result, ServeError};

/// Longest relative path a request may name (bytes).
const MAX_PATH_LEN: usize = 1024;

/// The directory `genlab serve` shows, canonicalised once at start.
#[derive(Clone, Debug)]
pub struct RunsRoot {
    root: PathBuf,
}

impl RunsRoot {
    /// Opens `dir`, which must be an existing directory.
    pub fn open(dir: &Path) -> genlab_core::Result<Self> {
        let meta = std::fs::metadata(dir).map_err(|e| {
            genlab_core::Error::setting(
                "runs",
                format!(
                    "{} cannot be opened ({e}); expected a directory that holds training run \
                     directories (it may be empty)",
                    dir.display()
                ),
            )
        })?;
        if !meta.is_dir() {
            return Err(genlab_core::Error::setting(
                "runs",
                format!(
                    "{} is a file; expected a directory that holds training run directories",
                    dir.display()
                ),
            ));
        }
        let root = dir
            .canonicalize()
            .map_err(|e| genlab_core::Error::io("resolve", dir, e))?;
        Ok(Self { root })
    }

    /// The canonical runs directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The existing file or directory `rel` names inside the runs directory (canonical).
    pub fn resolve(&self, rel: &str) -> Result<PathBuf> {
        check_relative(rel)?;
        let joined = self.root.join(rel);
        let canonical = joined.canonicalize().map_err(|_| {
            ServeError::NotFound(format!("`{rel}` does not exist in the runs directory"))
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(ServeError::Path(format!(
                "`{rel}` leads outside the runs directory (a symbolic link); refused"
            )));
        }
        Ok(canonical)
    }

    /// Where a new entry named `rel` would go (it need not exist): its syntax is checked
    /// as in [`RunsRoot::resolve`], and its deepest existing ancestor must lie inside the
    /// runs directory (no symbolic link out).
    pub fn child(&self, rel: &str) -> Result<PathBuf> {
        check_relative(rel)?;
        let joined = self.root.join(rel);
        let mut existing = joined.as_path();
        while !existing.exists() {
            existing = existing.parent().unwrap_or(&self.root);
        }
        let canonical = existing
            .canonicalize()
            .map_err(|e| ServeError::io("resolve", existing, e))?;
        if !canonical.starts_with(&self.root) {
            return Err(ServeError::Path(format!(
                "`{rel}` leads outside the runs directory (a symbolic link); refused"
            )));
        }
        Ok(joined)
    }

    /// `path` (inside the runs directory) as requests name it; `None` outside it.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<_>>()?;
        Some(parts.join("/"))
    }
}

/// Refuses a relative path that could name something outside the runs directory.
pub fn check_relative(rel: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(ServeError::Path(format!(
            "path refused: {why}; requests may name only what is inside the runs directory"
        )))
    };
    if rel.is_empty() {
        return refuse("it is empty");
    }
    if rel.len() > MAX_PATH_LEN {
        return refuse("it is longer than 1024 bytes");
    }
    if rel.starts_with('/') || Path::new(rel).is_absolute() {
        return refuse("it is absolute");
    }
    if rel.contains('\\') || rel.contains('\0') {
        return refuse("it holds a backslash or a NUL byte");
    }
    if rel.contains('%') {
        return refuse("it holds a percent sign (an encoded character after decoding)");
    }
    for part in rel.split('/') {
        match part {
            "" => return refuse("it has an empty component"),
            "." | ".." => return refuse("it has a `.` or `..` component"),
            _ => {}
        }
        // A drive or stream prefix (`C:`) on Windows.
        if part.contains(':') && cfg!(windows) {
            return refuse("it holds a drive prefix");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_absolute_and_encoded_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runs/a")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        let root = RunsRoot::open(&dir.path().join("runs")).unwrap();
        for bad in [
            "",
            "..",
            "../secret.txt",
            "a/../../secret.txt",
            "a/./x",
            "/etc/passwd",
            "a//b",
            "a\\..\\..\\secret.txt",
            "%2e%2e/secret.txt",
            "..%2fsecret.txt",
            "a\0",
        ] {
            let e = root.resolve(bad).unwrap_err();
            assert!(matches!(e, ServeError::Path(_)), "{bad:?}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        assert_eq!(root.resolve("a").unwrap(), root.path().join("a"));
        assert!(matches!(
            root.resolve("b").unwrap_err(),
            ServeError::NotFound(_)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_out_of_the_runs_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runs/a")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/x.png"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("runs/out"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("runs/a"), dir.path().join("runs/in")).unwrap();
        let root = RunsRoot::open(&dir.path().join("runs")).unwrap();
        assert!(matches!(
            root.resolve("out/x.png").unwrap_err(),
            ServeError::Path(_)
        ));
        assert!(matches!(
            root.child("out/new-run").unwrap_err(),
            ServeError::Path(_)
        ));
        // A link that stays inside is followed.
        assert_eq!(root.resolve("in").unwrap(), root.path().join("a"));
        assert_eq!(root.child("a/new").unwrap(), root.path().join("a/new"));
        assert_eq!(
            root.relative(&root.path().join("a/b")).as_deref(),
            Some("a/b")
        );
    }

    #[test]
    fn a_missing_runs_directory_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let e = RunsRoot::open(&dir.path().join("nope")).unwrap_err();
        assert!(
            matches!(&e, genlab_core::Error::Setting { setting, .. } if setting == "runs"),
            "{e}"
        );
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
