//! The legacy (pre-1.6, non-zip) `torch.save` layout (torch/serialization.py,
//! `_legacy_save`), five things back to back:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of `sys_info` (`little_endian`, type sizes);
//! 4. the main pickle (protocol 2): the object, here an `OrderedDict` of tensors whose
//!    storages are persistent ids `('storage', torch.FloatStorage, key, location, numel,
//!    None)`;
//! 5. a pickle of the list of storage keys, then for each key in that order an 8-byte
//!    little-endian element count followed by the raw little-endian elements.

use std::collections::HashMap;
use std::path::Path;

use super::pickle::{brief, elem_size, ferr, FResult, FormatError, Machine, Value};
use super::{assemble, format_error, in_file, read_existing, PthTensor, ZIP_MAGIC};
use crate::Result;

/// The magic number of legacy torch files, as the little-endian two's complement bytes
/// that pickle's `LONG1` stores (0x1950a86a20f9469cfc6c).
const MAGIC_LONG1: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy protocol version torch ever wrote.
const PROTOCOL_VERSION: i64 = 1001;
/// What the layout is called in errors.
const LAYOUT: &str = "legacy torch";

/// Reads every tensor of a legacy torch file (in the order of the pickled dict).
pub fn read_legacy_pth(path: &Path) -> Result<Vec<PthTensor>> {
    let bytes = read_existing(path)?;
    parse_legacy_pth(&bytes).map_err(|e| in_file(e, path))
}

/// [`read_legacy_pth`] on bytes already in memory.
pub fn parse_legacy_pth(bytes: &[u8]) -> Result<Vec<PthTensor>> {
    parse(bytes).map_err(|e| format_error(LAYOUT, e))
}

fn parse(bytes: &[u8]) -> FResult<Vec<PthTensor>> {
    if bytes.starts_with(ZIP_MAGIC) {
        return ferr("it is a zip-format (torch >= 1.6) file; read it with read_zip_pth instead");
    }
    let mut m = Machine::new(bytes);
    match m.load()? {
        Value::Long(b) if b == MAGIC_LONG1 => {}
        other => {
            return ferr(format!(
                "first pickle is {}, not the legacy magic number",
                other.kind()
            ))
        }
    }
    match m.load()? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => {
            return ferr(format!(
                "protocol version is {}, expected {PROTOCOL_VERSION}",
                brief(&other)
            ))
        }
    }
    if let Value::Dict(info) = m.load()? {
        for (k, v) in info {
            if matches!(&k, Value::Str(s) if s == "little_endian")
                && matches!(v, Value::Bool(false))
            {
                return ferr("big-endian files are not supported");
            }
        }
    } else {
        return ferr("sys_info pickle is not a dict");
    }
    let root = m.load()?;
    let keys = match m.load()? {
        Value::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                other => ferr(format!("storage key is {}, not a string", other.kind())),
            })
            .collect::<FResult<Vec<String>>>()?,
        other => return ferr(format!("storage key list is {}", other.kind())),
    };

    // Storage data: for each key, u64 element count then the raw elements.
    let mut data: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = m.pos;
    for key in &keys {
        let info = m.storages.get(key).ok_or_else(|| {
            FormatError(format!("storage {} is listed but never used", brief(key)))
        })?;
        let count = bytes
            .get(pos..)
            .and_then(|rest| rest.get(..8))
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| FormatError(format!("truncated before storage {}", brief(key))))?;
        if count != info.numel as u64 {
            return ferr(format!(
                "storage {}: header says {count} elements, the pickle says {}",
                brief(key),
                info.numel
            ));
        }
        let left = bytes.len() - pos - 8;
        let len = info
            .numel
            .checked_mul(elem_size(info.dtype))
            .filter(|&len| len <= left)
            .ok_or_else(|| {
                FormatError(format!(
                    "truncated inside storage {}: {} elements of {:?} announced, {left} bytes \
                     left",
                    brief(key),
                    info.numel,
                    info.dtype
                ))
            })?;
        if data
            .insert(key.clone(), &bytes[pos + 8..pos + 8 + len])
            .is_some()
        {
            return ferr(format!("storage {} is listed twice", brief(key)));
        }
        pos += 8 + len;
    }
    if pos != bytes.len() {
        return ferr(format!(
            "{} unexpected bytes after the last storage",
            bytes.len() - pos
        ));
    }
    assemble(root, &m.storages, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zip_and_garbage() {
        let e = parse(b"PK\x03\x04rest").unwrap_err();
        assert!(e.0.contains("zip-format"), "{}", e.0);
        let e = parse(b"\x80\x02K\x05.").unwrap_err();
        assert!(e.0.contains("magic"), "{}", e.0);
        let e = parse(b"\x80\x02").unwrap_err();
        assert!(e.0.contains("truncated"), "{}", e.0);
    }
}
