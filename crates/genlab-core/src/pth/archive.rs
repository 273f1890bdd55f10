//! The zip layout of `torch.save` (torch >= 1.6; torch/csrc/jit/serialization and
//! torch/serialization.py `_save`): a zip archive whose entries all sit in one folder
//! `<name>/` (the file's stem when it was saved, or `archive`):
//!
//! - `<name>/data.pkl`: the pickled object; tensors name their storages by persistent id
//!   `('storage', torch.HalfStorage, key, location, numel)`;
//! - `<name>/data/<key>`: each storage's raw elements, little-endian, `numel` of them;
//! - `<name>/byteorder` (torch >= 1.11): `little` or `big`; absent means little;
//! - `<name>/version`, `.format_version`, `.storage_alignment`, ...: not needed here.
//!
//! torch stores the entries uncompressed; deflated ones are read too. Sizes are checked
//! against the zip entry (and a deflated entry against the most that its compressed bytes
//! can inflate to) before anything is allocated, and the read stops at the size expected.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use super::pickle::{brief, elem_size, ferr, FResult, FormatError, Machine};
use super::{assemble, format_error, in_file, read_existing, PthTensor};
use crate::Result;

/// What the layout is called in errors.
const LAYOUT: &str = "PyTorch zip";
/// The most that deflate can expand its input (RFC 1951: 258 bytes from about 2 bits),
/// rounded up: a deflated entry that claims more than this many times its compressed size
/// is lying.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Largest `data.pkl` read (a state dict of thousands of tensors pickles to a few MB).
pub const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Longest `byteorder` entry read (`little` or `big`).
const MAX_BYTEORDER_BYTES: u64 = 16;

/// Reads every tensor of a zip-format torch file (in the order of the pickled dict).
pub fn read_zip_pth(path: &Path) -> Result<Vec<PthTensor>> {
    let bytes = read_existing(path)?;
    parse_zip_pth(&bytes).map_err(|e| in_file(e, path))
}

/// [`read_zip_pth`] on bytes already in memory.
pub fn parse_zip_pth(bytes: &[u8]) -> Result<Vec<PthTensor>> {
    parse(std::io::Cursor::new(bytes)).map_err(|e| format_error(LAYOUT, e))
}

fn parse<R: Read + Seek>(reader: R) -> FResult<Vec<PthTensor>> {
    let mut zip = ZipArchive::new(reader)
        .map_err(|e| FormatError(format!("not a readable zip archive: {e}")))?;
    // The one `<name>/data.pkl` at the top of the archive's single folder.
    let mut pickles = Vec::new();
    for i in 0..zip.len() {
        let name = zip
            .name_for_index(i)
            .ok_or_else(|| FormatError(format!("zip entry {i} has no name")))?
            .map_err(|e| FormatError(format!("zip entry {i}: {e}")))?;
        if name.ends_with("/data.pkl") && name.matches('/').count() == 1 {
            pickles.push(name.to_string());
        }
    }
    let pkl_name = match pickles.as_slice() {
        [one] => one.clone(),
        [] => return ferr("the archive has no <name>/data.pkl entry (not a torch.save file)"),
        many => {
            return ferr(format!(
                "the archive has {} data.pkl entries ({}), expected one",
                many.len(),
                brief(&many)
            ))
        }
    };
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];

    if zip.index_for_name(&format!("{prefix}byteorder")).is_some() {
        let order = read_entry(
            &mut zip,
            &format!("{prefix}byteorder"),
            None,
            MAX_BYTEORDER_BYTES,
        )?;
        match order.as_slice() {
            b"little" => {}
            b"big" => return ferr("big-endian files are not supported"),
            other => {
                return ferr(format!(
                    "byteorder entry is {}, expected \"little\" or \"big\"",
                    brief(&String::from_utf8_lossy(other))
                ))
            }
        }
    }

    let pkl = read_entry(&mut zip, &pkl_name, None, MAX_PICKLE_BYTES)?;
    let mut m = Machine::new(&pkl);
    let root = m.load()?;
    if m.pos != pkl.len() {
        return ferr(format!(
            "{} unexpected bytes after the pickle's STOP in {}",
            pkl.len() - m.pos,
            brief(&pkl_name)
        ));
    }

    // Every storage the pickle named, read whole.
    let mut keys: Vec<&String> = m.storages.keys().collect();
    keys.sort();
    let mut data = HashMap::new();
    for key in keys {
        let info = &m.storages[key];
        let Some(expected) = (info.numel as u64).checked_mul(elem_size(info.dtype) as u64) else {
            return ferr(format!(
                "storage {}: {} elements of {:?} do not fit in memory",
                brief(key),
                info.numel,
                info.dtype
            ));
        };
        let entry = format!("{prefix}data/{key}");
        if zip.index_for_name(&entry).is_none() {
            return ferr(format!(
                "storage {} has no entry {} in the archive",
                brief(key),
                brief(&entry)
            ));
        }
        let bytes = read_entry(&mut zip, &entry, Some(expected), expected)?;
        data.insert(key.clone(), bytes);
    }
    assemble(root, &m.storages, &data)
}

/// Reads the entry `name`: exactly `exact` bytes when given, else at most `max` bytes.
/// Checks the entry's declared size (and, when it is deflated, the most its compressed
/// bytes can inflate to) before reading, and reads no further than the expected size, so
/// the memory used follows the bytes really there.
fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    exact: Option<u64>,
    max: u64,
) -> FResult<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| FormatError(format!("entry {}: {e}", brief(&name)));
    let file = zip.by_name(name).map_err(|e| bad(&e))?;
    let declared = file.size();
    let most = match file.compression() {
        CompressionMethod::Stored => file.compressed_size(),
        CompressionMethod::Deflated => file.compressed_size().saturating_mul(MAX_DEFLATE_RATIO),
        other => {
            return Err(bad(&format!(
                "compression method {other:?} is not supported (expected stored or deflated)"
            )))
        }
    };
    match exact {
        Some(n) if declared != n => {
            return Err(bad(&format!(
                "holds {declared} bytes, expected {n} (the size of the storage the pickle \
                 describes)"
            )))
        }
        _ if declared > max => {
            return Err(bad(&format!(
                "declares {declared} bytes, more than the {max} accepted"
            )))
        }
        _ if declared > most => {
            return Err(bad(&format!(
                "declares {declared} bytes but its {} compressed bytes cannot hold that many",
                file.compressed_size()
            )))
        }
        _ => {}
    }
    let mut out = Vec::new();
    file.take(declared.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(&e))?;
    if out.len() as u64 != declared {
        return Err(bad(&format!(
            "holds {} bytes, but its header declares {declared}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_zip_is_an_error() {
        let e = parse(std::io::Cursor::new(b"PK\x03\x04 nothing else")).unwrap_err();
        assert!(e.0.contains("not a readable zip archive"), "{}", e.0);
    }
}
