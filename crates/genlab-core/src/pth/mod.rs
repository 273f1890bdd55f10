//! Reads PyTorch `torch.save` files (`.pth`, `.pt`) of state dicts, without Python or torch
//! and without trusting the file: every failure is an error saying what was wrong, and no
//! allocation is sized by a header's claim before that claim is checked against the bytes
//! the file really has.
//!
//! Two layouts exist (torch/serialization.py):
//! - the zip format that `torch.save` writes since torch 1.6: a zip archive whose
//!   `<name>/data.pkl` holds the pickled object and whose `<name>/data/<key>` entries hold
//!   the raw little-endian storages that the pickle names by persistent id
//!   `('storage', torch.HalfStorage, key, location, numel)` ([`read_zip_pth`]);
//! - the legacy format written before (and with `_use_new_zipfile_serialization=False`):
//!   five things back to back, see [`read_legacy_pth`].
//!
//! Both pickle the same object: a dict (or `OrderedDict`, possibly nested) whose tensors are
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`. One interpreter
//! reads both (it never imports or calls anything). Tensors are returned contiguous
//! (row-major) in their own dtype (f32, f16, bf16, f64, i64, i32, i16, i8, u8, bool); views
//! (an offset, transposed strides, several tensors sharing a storage) are copied out. A view
//! whose elements overlap (a broadcast, stride 0) is refused: copying it out could make a
//! small file expand without bound.

mod archive;
mod legacy;
mod pickle;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
pub use safetensors::Dtype;

use crate::{Error, Result};
pub use archive::{parse_zip_pth, read_zip_pth};
pub use legacy::{parse_legacy_pth, read_legacy_pth};
use pickle::{brief, elem_size, ferr, FResult, FormatError, StorageInfo, TensorRef, Value};

/// The tensors copied out of the storages may add up to at most this many times the bytes
/// of the storages themselves (two tensors that share a storage count twice; tied weights
/// give 2x).
pub const MAX_VIEW_EXPANSION: usize = 16;

/// One tensor read from a `.pth` file, contiguous (row-major), little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    /// Key in the state_dict; nested dicts are joined with `.` (`"nested.w"`).
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements of `dtype`.
    pub data: Vec<u8>,
}

impl PthTensor {
    /// The tensor on `device` in the nearest dtype candle has: the same one, except i8
    /// (widened to i16) and bool (read as u8 0/1).
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let widened: Vec<u8>;
        let (dtype, data): (DType, &[u8]) = match self.dtype {
            Dtype::F32 => (DType::F32, &self.data),
            Dtype::F16 => (DType::F16, &self.data),
            Dtype::BF16 => (DType::BF16, &self.data),
            Dtype::F64 => (DType::F64, &self.data),
            Dtype::I64 => (DType::I64, &self.data),
            Dtype::I32 => (DType::I32, &self.data),
            Dtype::I16 => (DType::I16, &self.data),
            Dtype::U8 | Dtype::BOOL => (DType::U8, &self.data),
            Dtype::I8 => {
                widened = self
                    .data
                    .iter()
                    .flat_map(|&b| (b as i8 as i16).to_le_bytes())
                    .collect();
                (DType::I16, &widened)
            }
            other => {
                return Err(Error::Data(format!(
                    "tensor {}: dtype {other:?} has no candle equivalent (expected a float, \
                     int or bool dtype)",
                    self.name
                )))
            }
        };
        Ok(Tensor::from_raw_buffer(data, dtype, &self.shape, device)?)
    }

    /// The values converted to f32 (exactly for f16, bf16 and small integers; f64 and
    /// large integers are rounded).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(self
            .to_tensor(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

/// Which layout a `.pth` file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PthFormat {
    /// torch >= 1.6 `torch.save`: a zip archive.
    Zip,
    /// Older `torch.save`: pickles back to back.
    Legacy,
}

/// The first bytes of a zip archive (a local file header).
const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";

/// The layout of a file that starts with `head` (zip if it starts like a zip archive).
pub fn detect_format(head: &[u8]) -> PthFormat {
    if head.starts_with(ZIP_MAGIC) {
        PthFormat::Zip
    } else {
        PthFormat::Legacy
    }
}

/// Reads every tensor of a `.pth` file of either layout (in the order of the pickled dict).
pub fn read_pth(path: &Path) -> Result<Vec<PthTensor>> {
    let bytes = read_existing(path)?;
    match detect_format(&bytes) {
        PthFormat::Zip => parse_zip_pth(&bytes),
        PthFormat::Legacy => parse_legacy_pth(&bytes),
    }
    .map_err(|e| in_file(e, path))
}

/// [`read_pth`] on bytes already in memory.
pub fn parse_pth(bytes: &[u8]) -> Result<Vec<PthTensor>> {
    match detect_format(bytes) {
        PthFormat::Zip => parse_zip_pth(bytes),
        PthFormat::Legacy => parse_legacy_pth(bytes),
    }
}

/// The tensors of a `.pth` file of either layout as candle tensors on `device`, by name,
/// in their own dtype (see [`PthTensor::to_tensor`]).
pub fn load_pth(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    read_pth(path)?
        .into_iter()
        .map(|t| Ok((t.name.clone(), t.to_tensor(device)?)))
        .collect()
}

fn read_existing(path: &Path) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(Error::Data(format!("{} does not exist", path.display())));
    }
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// Prefixes a parse error with the file's name.
fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// The error of a file of `layout` ("legacy torch", "PyTorch zip") that failed with `e`.
fn format_error(layout: &str, e: FormatError) -> Error {
    Error::Data(format!("not a readable {layout} file: {}", e.0))
}

/// Copies the tensors of `root` (a possibly nested dict) out of `data`, the raw bytes of
/// each storage (`storages` gives their dtypes and element counts).
fn assemble<D: AsRef<[u8]>>(
    root: Value,
    storages: &HashMap<String, StorageInfo>,
    data: &HashMap<String, D>,
) -> FResult<Vec<PthTensor>> {
    let mut entries = Vec::new();
    flatten("", root, &mut entries)?;
    let storage_bytes: usize = data.values().map(|d| d.as_ref().len()).sum();
    let limit = storage_bytes.saturating_mul(MAX_VIEW_EXPANSION);
    let mut total = 0usize;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        if !seen.insert(name.clone()) {
            return ferr(format!("key {} appears twice", brief(&name)));
        }
        let (Some(raw), Some(info)) = (data.get(&t.storage), storages.get(&t.storage)) else {
            return ferr(format!(
                "{}: storage {} has no data",
                brief(&name),
                brief(&t.storage)
            ));
        };
        let bytes = gather(&name, raw.as_ref(), elem_size(info.dtype), &t)?;
        total = total.saturating_add(bytes.len());
        if total > limit {
            return ferr(format!(
                "the tensors' views add up to more than {MAX_VIEW_EXPANSION} times the {storage_bytes} \
                 bytes of their storages (at {}); expected a state dict",
                brief(&name)
            ));
        }
        out.push(PthTensor {
            data: bytes,
            name,
            dtype: info.dtype,
            shape: t.shape,
        });
    }
    Ok(out)
}

/// Collects the tensors of a (nested) dict as `(dotted name, tensor)`.
fn flatten(prefix: &str, v: Value, out: &mut Vec<(String, TensorRef)>) -> FResult<()> {
    let Value::Dict(items) = v else {
        return ferr(format!(
            "the saved object is {}, expected a dict of tensors (a state_dict)",
            v.kind()
        ));
    };
    for (k, v) in items {
        let key = match k {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            other => {
                return ferr(format!(
                    "dict key is {}, expected a string or an int",
                    other.kind()
                ))
            }
        };
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Tensor(t) => out.push((name, t)),
            d @ Value::Dict(_) => flatten(&name, d, out)?,
            other => {
                return ferr(format!(
                    "entry {} is {}, expected a tensor or a dict of tensors",
                    brief(&name),
                    other.kind()
                ))
            }
        }
    }
    Ok(())
}

/// Copies the elements of a strided view out of its storage, row-major.
fn gather(name: &str, raw: &[u8], esize: usize, t: &TensorRef) -> FResult<Vec<u8>> {
    let Some(numel) = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
        return ferr(format!(
            "{}: shape {:?} has more elements than fit in memory",
            brief(&name),
            t.shape
        ));
    };
    if numel == 0 {
        return Ok(Vec::new());
    }
    let storage_numel = raw.len() / esize;
    // Largest storage index the view touches.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
        });
    match last {
        Some(l) if l < storage_numel => {}
        _ => {
            return ferr(format!(
                "{}: view (offset {}, shape {:?}, stride {:?}) reaches past its storage of \
                 {storage_numel} elements",
                brief(&name),
                t.offset,
                t.shape,
                t.stride
            ))
        }
    }
    if numel > storage_numel {
        return ferr(format!(
            "{}: view (shape {:?}, stride {:?}) has {numel} elements but its storage only \
             {storage_numel}: overlapping (broadcast) views are not supported; save the \
             tensor after .contiguous()",
            brief(&name),
            t.shape,
            t.stride
        ));
    }
    // Row-major strides: a plain slice.
    let mut contiguous = true;
    let mut expect = 1;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        if d != 1 && s != expect {
            contiguous = false;
        }
        expect *= d;
    }
    if contiguous {
        return Ok(raw[t.offset * esize..(t.offset + numel) * esize].to_vec());
    }
    let mut out = Vec::with_capacity(numel * esize);
    let rank = t.shape.len();
    let mut idx = vec![0usize; rank];
    for _ in 0..numel {
        let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&raw[at * esize..(at + 1) * esize]);
        // Advance the multi-index, last axis fastest.
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < t.shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(offset: usize, shape: &[usize], stride: &[usize]) -> TensorRef {
        TensorRef {
            storage: "s".into(),
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    #[test]
    fn strided_gather() {
        // 2 x 3 storage [0..6) as u8, read transposed (3 x 2, strides (1, 3)).
        let raw: Vec<u8> = (0..6).collect();
        let t = view(0, &[3, 2], &[1, 3]);
        assert_eq!(gather("t", &raw, 1, &t).unwrap(), vec![0, 3, 1, 4, 2, 5]);
        let past = view(1, &[3, 2], &[1, 3]);
        assert!(gather("t", &raw, 1, &past)
            .unwrap_err()
            .0
            .contains("reaches past"));
        // Offset into a wider element type.
        let raw16: Vec<u8> = (0..12).collect();
        assert_eq!(
            gather("t", &raw16, 2, &view(4, &[2], &[1])).unwrap(),
            vec![8, 9, 10, 11]
        );
    }

    /// A shape whose element count overflows usize was taken as empty (the product wrapped
    /// to 0) and returned with no data.
    #[test]
    fn overflowing_shape_product_is_an_error() {
        let raw = vec![0u8; 8];
        let t = view(0, &[1 << 33, 1 << 31, 4], &[0, 0, 1]);
        let e = gather("w", &raw, 1, &t).unwrap_err().0;
        assert!(e.contains("more elements than fit"), "{e}");
    }

    /// A broadcast view (stride 0) of a 1-element storage asked for 2^40 copies of it.
    #[test]
    fn broadcast_view_cannot_expand_a_tiny_storage() {
        let raw = vec![0u8; 4];
        let t = view(0, &[1 << 40], &[0]);
        let e = gather("w", &raw, 4, &t).unwrap_err().0;
        assert!(e.contains("overlapping (broadcast)"), "{e}");
    }

    #[test]
    fn dtype_conversions() {
        let t = |dtype, data: Vec<u8>| PthTensor {
            name: "t".into(),
            dtype,
            shape: vec![2],
            data,
        };
        let half = t(
            Dtype::F16,
            [0x3800u16, 0xBC00]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        assert_eq!(half.to_f32().unwrap(), [0.5, -1.0]);
        let bf = t(
            Dtype::BF16,
            [0x3FC0u16, 0xC040]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        assert_eq!(bf.to_f32().unwrap(), [1.5, -3.0]);
        let i8s = t(Dtype::I8, vec![0xff, 7]);
        assert_eq!(i8s.to_f32().unwrap(), [-1.0, 7.0]);
        let flags = t(Dtype::BOOL, vec![1, 0]);
        assert_eq!(flags.to_tensor(&Device::Cpu).unwrap().dtype(), DType::U8);
        let short = t(Dtype::F32, vec![0; 4]);
        assert!(
            short.to_tensor(&Device::Cpu).is_err(),
            "2 x f32 needs 8 bytes"
        );
    }
}
