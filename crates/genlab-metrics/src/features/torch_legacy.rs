//! Converts legacy (pre-1.6, non-zip) PyTorch `torch.save` files to safetensors, with the
//! source file's SHA-256 checked and recorded.
//!
//! The reader itself is [`genlab_core::pth`] (both `.pth` layouts, hardened against hostile
//! files); this module re-exports the names it had when the reader lived here.

use std::collections::HashMap;
use std::path::Path;

pub use genlab_core::pth::{read_legacy_pth, PthTensor};
use genlab_core::{Error, Result};
use sha2::{Digest, Sha256};

/// What [`import_legacy_pth`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Number of tensors written.
    pub tensors: usize,
    /// Total tensor bytes.
    pub bytes: usize,
    /// SHA-256 (lowercase hex) of the `.pth` file that was read.
    pub source_sha256: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase hex SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(sha256_hex(&bytes))
}

/// Fails with an error naming the file, the expected and the actual SHA-256 unless they
/// match (comparison ignores ASCII case).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let got = sha256_file(path)?;
    check_sha256(path, expected, &got)
}

fn check_sha256(path: &Path, expected: &str, got: &str) -> Result<()> {
    if got.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "{}: sha256 mismatch: expected {expected}, got {got} (wrong or corrupt file)",
            path.display()
        )))
    }
}

/// Converts the legacy torch file `pth` (a dict of tensors, possibly nested) into the
/// safetensors file `out`, written atomically. Keys and dtypes are kept; every tensor is
/// made contiguous. The safetensors metadata records the source file name and SHA-256.
pub fn import_legacy_pth(pth: &Path, out: &Path) -> Result<ImportSummary> {
    import_legacy_pth_verified(pth, out, None)
}

/// [`import_legacy_pth`], first checking the SHA-256 of `pth` against `expected_sha256`
/// (of the very bytes that are then converted).
pub fn import_legacy_pth_verified(
    pth: &Path,
    out: &Path,
    expected_sha256: Option<&str>,
) -> Result<ImportSummary> {
    if !pth.exists() {
        return Err(Error::Data(format!("{} does not exist", pth.display())));
    }
    let bytes = std::fs::read(pth).map_err(|e| Error::io("read", pth, e))?;
    let sha = sha256_hex(&bytes);
    if let Some(expected) = expected_sha256 {
        check_sha256(pth, expected, &sha)?;
    }
    let tensors = genlab_core::pth::parse_legacy_pth(&bytes).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", pth.display())),
        other => other,
    })?;
    let views = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Data(format!("tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let source = pth
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata: HashMap<String, String> = [
        ("format".to_string(), "pt".to_string()),
        ("source_file".to_string(), source),
        ("source_sha256".to_string(), sha.clone()),
        (
            "converted_by".to_string(),
            "genlab-metrics torch_legacy".to_string(),
        ),
    ]
    .into();
    let serialized = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| Error::Data(format!("serialising {}: {e}", out.display())))?;
    genlab_core::io::write_atomic(out, &serialized)?;
    Ok(ImportSummary {
        tensors: tensors.len(),
        bytes: tensors.iter().map(|t| t.data.len()).sum(),
        source_sha256: sha,
    })
}
