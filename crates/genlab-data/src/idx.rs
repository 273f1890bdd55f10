//! Reader for IDX files of unsigned bytes (the MNIST file format), raw or gzipped.
//!
//! Layout (LeCun et al., "The MNIST database", yann.lecun.com/exdb/mnist): two zero bytes,
//! a type byte (0x08 = unsigned byte, the only type read here), the number of dimensions,
//! then one big-endian `u32` per dimension, then the data in row-major order. Input starting
//! with the gzip magic `1f 8b` is decompressed first.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use genlab_core::{Error, Result};

/// Type byte of unsigned-byte data.
const TYPE_U8: u8 = 0x08;
/// Most dimensions accepted (MNIST uses 1 for labels and 3 for images).
const MAX_DIMS: usize = 4;
/// First two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// `product(dims)` bytes, row-major.
    pub data: Vec<u8>,
}

/// True when `bytes` starts with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

fn type_name(t: u8) -> &'static str {
    match t {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

/// Number of bytes of a header with `ndims` dimensions.
fn header_len(ndims: usize) -> usize {
    4 + 4 * ndims
}

/// Parses the header of raw (not gzipped) IDX bytes; needs only the header bytes.
fn parse_raw_header(bytes: &[u8]) -> Result<Vec<usize>> {
    if bytes.len() < 4 {
        return Err(Error::Data(format!(
            "IDX header truncated: {} bytes, expected at least 4 (magic)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::Data(format!(
            "not an IDX file: magic starts with {:02x} {:02x}, expected 00 00",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != TYPE_U8 {
        return Err(Error::Data(format!(
            "IDX data type 0x{:02x} ({}) is not supported, expected 0x08 (unsigned byte)",
            bytes[2],
            type_name(bytes[2])
        )));
    }
    let nd = bytes[3] as usize;
    if !(1..=MAX_DIMS).contains(&nd) {
        return Err(Error::Data(format!(
            "IDX file has {nd} dimensions, expected 1 to {MAX_DIMS}"
        )));
    }
    if bytes.len() < header_len(nd) {
        return Err(Error::Data(format!(
            "IDX header truncated: {} bytes, expected {} for {nd} dimensions",
            bytes.len(),
            header_len(nd)
        )));
    }
    Ok((0..nd)
        .map(|k| {
            let b = &bytes[4 + 4 * k..8 + 4 * k];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect())
}

/// Reads only the dimensions from the start of an IDX file (raw or gzipped); `bytes` may
/// stop right after the header.
pub fn read_idx_header(bytes: &[u8]) -> Result<Vec<usize>> {
    if is_gzip(bytes) {
        let mut head = Vec::new();
        // A partial gzip stream ends in an error once the header bytes are out: keep them.
        let _ = GzDecoder::new(bytes)
            .take(header_len(MAX_DIMS) as u64)
            .read_to_end(&mut head);
        return parse_raw_header(&head);
    }
    parse_raw_header(bytes)
}

/// Parses a whole IDX file of unsigned bytes (raw or gzipped). A gzip stream is inflated
/// only as far as its header says the data goes (plus one byte, to notice trailing data),
/// so a small file cannot inflate into gigabytes before it is found to be wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    if is_gzip(bytes) {
        let dims = read_idx_header(bytes)?;
        let expected = data_len(&dims)?;
        let limit = (header_len(dims.len()) as u64).saturating_add(expected as u64);
        let mut raw = Vec::new();
        GzDecoder::new(bytes)
            .take(limit.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| Error::Data(format!("IDX gzip stream is corrupt or truncated: {e}")))?;
        if raw.len() as u64 > limit {
            return Err(Error::Data(format!(
                "IDX data has trailing bytes: dimensions {dims:?} need {expected} data bytes, \
                 the gzip stream holds more"
            )));
        }
        return parse_raw(raw);
    }
    parse_raw(bytes.to_vec())
}

/// Number of data bytes `dims` describe.
fn data_len(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::Data(format!(
                "IDX dimensions {dims:?} overflow the address space"
            ))
        })
}

fn parse_raw(mut bytes: Vec<u8>) -> Result<IdxArray> {
    let dims = parse_raw_header(&bytes)?;
    let expected = data_len(&dims)?;
    let found = bytes.len() - header_len(dims.len());
    if found != expected {
        let what = if found < expected {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(Error::Data(format!(
            "IDX data {what}: dimensions {dims:?} need {expected} data bytes, found {found}"
        )));
    }
    bytes.drain(..header_len(dims.len()));
    Ok(IdxArray { dims, data: bytes })
}

/// Reads and parses an IDX file of unsigned bytes (raw or gzipped); errors name the file.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading IDX file", path, e))?;
    parse_idx(&bytes).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Serialises dims and data as a raw IDX file of unsigned bytes (for tests and tools).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if !(1..=MAX_DIMS).contains(&dims.len()) {
        return Err(Error::InvalidInput(format!(
            "IDX needs 1 to {MAX_DIMS} dimensions, got {dims:?}"
        )));
    }
    let n: usize = dims.iter().product();
    if n != data.len() || dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(Error::InvalidInput(format!(
            "IDX dimensions {dims:?} need {n} bytes (each dim < 2^32), got {}",
            data.len()
        )));
    }
    let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn roundtrip_raw_and_gzip() {
        let data: Vec<u8> = (0..24).collect();
        let raw = encode_idx(&[2, 3, 4], &data).unwrap();
        let a = parse_idx(&raw).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        assert_eq!(parse_idx(&gz(&raw)).unwrap(), a);
        assert_eq!(read_idx_header(&gz(&raw)).unwrap(), vec![2, 3, 4]);
    }

    #[test]
    fn bad_magic_type_and_dims_are_named() {
        let mut raw = encode_idx(&[3], &[1, 2, 3]).unwrap();
        raw[1] = 7;
        let e = parse_idx(&raw).unwrap_err().to_string();
        assert!(e.contains("magic") && e.contains("00 07"), "{e}");
        raw[1] = 0;
        raw[2] = 0x0D;
        let e = parse_idx(&raw).unwrap_err().to_string();
        assert!(
            e.contains("0x0d") && e.contains("f32") && e.contains("0x08"),
            "{e}"
        );
        raw[2] = 0x08;
        raw[3] = 0;
        let e = parse_idx(&raw).unwrap_err().to_string();
        assert!(e.contains("0 dimensions"), "{e}");
        assert!(parse_idx(&[0, 0]).is_err());
        assert!(parse_idx(&[]).is_err());
    }

    #[test]
    fn truncated_and_trailing_data_report_sizes() {
        let raw = encode_idx(&[2, 5], &[0; 10]).unwrap();
        let e = parse_idx(&raw[..raw.len() - 3]).unwrap_err().to_string();
        assert!(
            e.contains("truncated") && e.contains("need 10") && e.contains("found 7"),
            "{e}"
        );
        let mut long = raw.clone();
        long.push(9);
        let e = parse_idx(&long).unwrap_err().to_string();
        assert!(e.contains("trailing") && e.contains("found 11"), "{e}");
        // Header cut inside the dimensions.
        let e = parse_idx(&raw[..6]).unwrap_err().to_string();
        assert!(e.contains("header truncated"), "{e}");
        // Truncated gzip stream.
        let z = gz(&raw);
        assert!(parse_idx(&z[..z.len() / 2]).is_err());
    }
}
