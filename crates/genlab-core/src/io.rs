//! File I/O that never leaves a half-written file under its final name.
//!
//! Every write goes to a temporary sibling (`NAME.tmp-PID`) which is flushed and then
//! renamed over the target: a crash or a failed run keeps the previous good file. Also
//! here: safetensors maps and `.npy` arrays (NumPy format 1.0, little-endian f32/f64).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{Error, Result};

fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })
}

/// Runs `write` on a temporary path, then renames it to `path`. On failure the temporary
/// file is removed and `path` is left untouched.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    ensure_parent(path)?;
    let tmp = tmp_sibling(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("rename into place", path, e)
    })
}

/// Serialises `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| Error::InvalidInput(format!("cannot serialise {}: {e}", path.display())))?;
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_str(&s)
        .map_err(|e| Error::Checkpoint(format!("{} is not valid: {e}", path.display())))
}

/// The tensors of `map` that live on an accelerator, copied to the CPU (the others are
/// borrowed as they are). candle's safetensors writer would copy them itself, but panics if
/// the copy fails; copying first turns that into an error.
fn on_host(map: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    map.iter()
        .map(|(k, t)| {
            let t = if t.device().is_cpu() {
                t.clone()
            } else {
                t.to_device(&Device::Cpu)?
            };
            Ok((k.clone(), t))
        })
        .collect()
}

/// Saves named tensors as a safetensors file, atomically (tensors may be on any device).
pub fn save_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    ensure_parent(path)?;
    let tmp = tmp_sibling(path);
    let tensors = on_host(tensors)?;
    if let Err(e) = candle_core::safetensors::save(&tensors, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Checkpoint(format!(
            "writing {}: {e}",
            path.display()
        )));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))
}

/// Loads every tensor of a safetensors file onto `device`.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::Checkpoint(format!(
            "{} does not exist",
            path.display()
        )));
    }
    candle_core::safetensors::load(path, device).map_err(|e| {
        Error::Checkpoint(format!(
            "{} is not a valid safetensors file: {e}",
            path.display()
        ))
    })
}

/// An array read from a `.npy` file, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes a C-order little-endian f32 array in NumPy's `.npy` format 1.0, atomically.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::InvalidInput(format!(
            "npy shape {shape:?} holds {n} values but {} were given",
            data.len()
        )));
    }
    let shape_str = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * n);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Reads a `.npy` file of little-endian f4 or f8 values in C order.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let a = read_npy_f64(path)?;
    Ok(NpyArray {
        shape: a.shape,
        data: a.data.into_iter().map(|v| v as f32).collect(),
    })
}

/// An array read from a `.npy` file at f64 precision (metrics and reference fixtures).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArrayF64 {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Reads a `.npy` file of little-endian f4 or f8 values in C order, keeping f64 precision.
pub fn read_npy_f64(path: &Path) -> Result<NpyArrayF64> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    parse_npy(&bytes).map_err(|msg| Error::Data(format!("{}: {msg}", path.display())))
}

/// [`read_npy_f64`] on bytes already in memory.
pub fn parse_npy_f64(bytes: &[u8]) -> Result<NpyArrayF64> {
    parse_npy(bytes).map_err(Error::Data)
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArrayF64, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "non-UTF-8 .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(
            header[i + key.len() + 2..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start(),
        )
    };
    let descr = field("descr").ok_or("no 'descr' in header")?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!(
            "dtype {} is not supported (expected little-endian float32 '<f4' or float64 '<f8')",
            descr.split(',').next().unwrap_or(descr)
        ));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order arrays are not supported (save with C order)".into());
    }
    let shape_s = field("shape").ok_or("no 'shape' in header")?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed shape")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let body = &bytes[hstart + hlen..];
    let need = shape
        .iter()
        .try_fold(width as usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))?;
    if body.len() != need {
        return Err(format!(
            "shape {shape:?} needs {need} bytes of data but the file has {}",
            body.len()
        ));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    Ok(NpyArrayF64 { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_and_header_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write_npy(&p, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // NumPy requires the data to start at a multiple of 64 bytes.
        assert_eq!((bytes.len() - 24 * 4) % 64, 0);
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        write_npy(&p, &[5], &data[..5]).unwrap();
        assert_eq!(read_npy(&p).unwrap().shape, vec![5]);
    }

    #[test]
    fn npy_reads_numpy_written_f8() {
        // Bytes of `np.save(f, np.array([[1.0, 2.0]]))` (numpy 1.x, format 1.0).
        let mut bytes = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        header.push_str(&" ".repeat(118 - header.len() - 1));
        header.push('\n');
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&1f64.to_le_bytes());
        bytes.extend_from_slice(&2f64.to_le_bytes());
        let a = parse_npy(&bytes).unwrap();
        assert_eq!(a.shape, vec![1, 2]);
        assert_eq!(a.data, vec![1.0, 2.0]);
    }

    #[test]
    fn npy_rejects_bad_files() {
        assert!(parse_npy(b"hello world").unwrap_err().contains("magic"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let err = parse_npy(&bytes[..bytes.len() - 4]).unwrap_err();
        assert!(err.contains("needs 16 bytes"), "{err}");
        assert!(write_npy(&p, &[3], &[1.0]).is_err());
    }

    #[test]
    fn npy_shape_product_overflow_is_an_error() {
        // (2^62, 4) f4 values: the byte count wrapped to 0 in release builds and an empty
        // file body was accepted as holding them.
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n";
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let err = parse_npy(&bytes).unwrap_err();
        assert!(err.contains("more elements than fit"), "{err}");
    }

    #[test]
    fn failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.bin");
        write_atomic(&p, b"good").unwrap();
        let r = write_atomic_with(&p, |_| Err(std::io::Error::other("disk full")));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn safetensors_roundtrip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let map: HashMap<String, Tensor> = [("w".to_string(), t)].into();
        save_safetensors(&p, &map).unwrap();
        let back = load_safetensors(&p, &Device::Cpu).unwrap();
        assert_eq!(
            back["w"].to_vec2::<f32>().unwrap(),
            vec![vec![1., 2.], vec![3., 4.]]
        );
        let err = load_safetensors(&dir.path().join("nope"), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load_safetensors(&p, &Device::Cpu).is_err());
    }
}

/// Tensors plus string metadata in one safetensors file: a checkpoint that is written with a
/// single atomic rename, so weights, optimizer state and run state can never disagree.
/// Tensors may be on any device: accelerator tensors are copied to the CPU to be written.
pub fn save_tensors_with_metadata(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let tensors = on_host(tensors)?;
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(sorted, Some(metadata))
        .map_err(|e| Error::Checkpoint(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads a file written by [`save_tensors_with_metadata`].
pub fn load_tensors_with_metadata(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    if !path.exists() {
        return Err(Error::Checkpoint(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let bad = |e: String| {
        Error::Checkpoint(format!(
            "{} is not a valid genlab checkpoint: {e}",
            path.display()
        ))
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(e.to_string()))?;
    Ok((tensors, metadata))
}

#[cfg(test)]
mod meta_tests {
    use super::*;

    #[test]
    fn tensors_and_metadata_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.safetensors");
        let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let map: HashMap<String, Tensor> = [("a.b".to_string(), t)].into();
        let meta: HashMap<String, String> = [("genlab.step".to_string(), "42".to_string())].into();
        save_tensors_with_metadata(&p, &map, meta.clone()).unwrap();
        let (t2, m2) = load_tensors_with_metadata(&p, &Device::Cpu).unwrap();
        assert_eq!(t2["a.b"].to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);
        assert_eq!(m2, meta);
        std::fs::write(&p, b"not a checkpoint").unwrap();
        let err = load_tensors_with_metadata(&p, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid genlab checkpoint"), "{err}");
    }
}
