//! The TAEF2 autoencoder's weights (`genlab data fetch taef2`): two PyTorch checkpoints of
//! the `taesd` project by Ollin Boer Bohan (MIT), downloaded from their GitHub repository at
//! a fixed commit and verified by sha256, into `$GENLAB_DATA/weights/taef2/`.
//!
//! When GitHub cannot be reached the same files are copied from a local copy (the
//! repository's shared folder, `../shared/weights/taef2` from the working directory, or
//! `$GENLAB_TAEF2_DIR`), verified by the same checksums (shared/DATA.md). The network is
//! `genlab_models::autoencoder::taef2`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use genlab_core::{Error, Result};

use crate::fetch::{fetch_url_verified, write_verified};
use crate::progress::Progress;

/// The two checkpoints and their sha256.
pub const TAEF2_FILES: [(&str, &str); 2] = [
    (
        "taef2_encoder.pth",
        "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    ),
    (
        "taef2_decoder.pth",
        "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
    ),
];

/// The usual source: `{base}{file}` (madebyollin/taesd at commit 5cccb12).
pub const TAEF2_URL_BASE: &str = "https://github.com/madebyollin/taesd/raw/5cccb12/";
/// Environment variable naming a folder that holds both files.
pub const TAEF2_DIR_ENV: &str = "GENLAB_TAEF2_DIR";
/// The shared copy, relative to the working directory (a checkout's root, or its parent).
const SHARED_DIRS: [&str; 2] = ["../shared/weights/taef2", "shared/weights/taef2"];
/// Give up connecting to GitHub after this long (offline machines fall back fast).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `genlab data fetch taef2` puts the files under the data root `root`.
pub fn taef2_cache_dir(root: &Path) -> PathBuf {
    crate::weights::weights_dir(root).join("taef2")
}

/// Whether `dir` holds both checkpoint files (not verified).
pub fn has_taef2_files(dir: &Path) -> bool {
    TAEF2_FILES.iter().all(|(f, _)| dir.join(f).is_file())
}

/// Local copies to fall back on: `$GENLAB_TAEF2_DIR`, then the shared folder.
pub fn taef2_local_copies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os(TAEF2_DIR_ENV)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    v.extend(SHARED_DIRS.iter().map(PathBuf::from));
    v
}

/// The folder to load TAEF2 from: `explicit` if given (it must hold both files), else the
/// cache of the data root, else a local copy ([`taef2_local_copies`]).
pub fn find_taef2(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if let Some((f, _)) = TAEF2_FILES.iter().find(|(f, _)| !dir.join(f).is_file()) {
            return Err(Error::Data(format!(
                "{} is not there; the TAEF2 weights folder must hold {} and {}",
                dir.join(f).display(),
                TAEF2_FILES[0].0,
                TAEF2_FILES[1].0
            )));
        }
        return Ok(dir.to_path_buf());
    }
    let cache = taef2_cache_dir(&crate::data_dir());
    std::iter::once(cache.clone())
        .chain(taef2_local_copies())
        .find(|d| has_taef2_files(d))
        .ok_or_else(|| {
            Error::Data(format!(
                "no TAEF2 weights in {} ({} and {}): run `genlab data fetch taef2`, or name a \
                 folder holding them",
                cache.display(),
                TAEF2_FILES[0].0,
                TAEF2_FILES[1].0
            ))
        })
}

/// Downloads (or copies from a local copy) both files into the cache of `root`, verified.
pub fn fetch_taef2(root: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    let dir = taef2_cache_dir(root);
    fetch_files_with(
        &agent,
        TAEF2_URL_BASE,
        &TAEF2_FILES,
        &taef2_local_copies(),
        &dir,
        progress,
    )?;
    Ok(dir)
}

/// Makes sure `dir/file` exists and matches its checksum for every `(file, sha256)` of
/// `files`: from `{url_base}{file}`, else from the first of `local` that has a matching
/// copy. A final name never holds an unverified file.
fn fetch_files_with(
    agent: &ureq::Agent,
    url_base: &str,
    files: &[(&str, &str)],
    local: &[PathBuf],
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    for &(file, sum) in files {
        let target = dir.join(file);
        if target.is_file() {
            if crate::checksum::sha256_file(&target)?.eq_ignore_ascii_case(sum) {
                progress.note(&format!(
                    "{} already present and verified",
                    target.display()
                ));
                continue;
            }
            progress.note(&format!(
                "{} does not match its checksum; fetching it again",
                target.display()
            ));
        }
        let url = format!("{url_base}{file}");
        let download = fetch_url_verified(agent, &url, dir, file, sum, progress);
        let Err(download_err) = download else {
            continue;
        };
        progress.note(&format!(
            "{url}: {download_err}; trying a local copy instead"
        ));
        let mut tried = Vec::new();
        let mut done = false;
        for src_dir in local {
            let src = src_dir.join(file);
            if !src.is_file() {
                continue;
            }
            let copied = std::fs::File::open(&src)
                .map_err(|e| Error::io("open", &src, e))
                .and_then(|mut f| write_verified(&mut f, dir, file, sum));
            match copied {
                Ok(()) => {
                    progress.note(&format!("copied {} (sha256 verified)", src.display()));
                    done = true;
                    break;
                }
                Err(e) => tried.push(format!("{}: {e}", src.display())),
            }
        }
        if !done {
            let locals = if tried.is_empty() {
                format!(
                    "no local copy in {}",
                    local
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                tried.join("; ")
            };
            return Err(Error::Data(format!(
                "could not fetch {file}: {download_err}; {locals}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::sha256_bytes;

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn an_unreachable_url_falls_back_to_a_verified_local_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let (good, bad) = (tmp.path().join("good"), tmp.path().join("bad"));
        std::fs::create_dir_all(&good).unwrap();
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(good.join("a.pth"), b"weights a").unwrap();
        std::fs::write(bad.join("a.pth"), b"tampered").unwrap();
        let files = [("a.pth", leak(sha256_bytes(b"weights a")))];
        // Port 9 on localhost: nothing listens, the connection is refused at once.
        let agent = ureq::agent();
        let base = "http://127.0.0.1:9/";
        let out = tmp.path().join("cache");
        let mut np = crate::NoProgress;
        // The tampered copy first: refused, the good one is used.
        fetch_files_with(&agent, base, &files, &[bad.clone(), good], &out, &mut np).unwrap();
        assert_eq!(std::fs::read(out.join("a.pth")).unwrap(), b"weights a");
        // Present and verified: nothing fetched (no source at all is needed).
        fetch_files_with(&agent, base, &files, &[], &out, &mut np).unwrap();
        // Only a tampered copy: one error naming the download failure and the mismatch.
        let out2 = tmp.path().join("cache2");
        let e = fetch_files_with(&agent, base, &files, &[bad], &out2, &mut np)
            .unwrap_err()
            .to_string();
        assert!(e.contains("could not fetch a.pth"), "{e}");
        assert!(e.contains("checksum") || e.contains("sha256"), "{e}");
        assert!(!out2.join("a.pth").exists());
    }

    #[test]
    fn an_explicit_folder_must_hold_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(TAEF2_FILES[0].0), b"x").unwrap();
        let e = find_taef2(Some(tmp.path())).unwrap_err().to_string();
        assert!(e.contains("taef2_decoder.pth is not there"), "{e}");
        std::fs::write(tmp.path().join(TAEF2_FILES[1].0), b"x").unwrap();
        assert_eq!(find_taef2(Some(tmp.path())).unwrap(), tmp.path());
    }
}
