//! The pickle interpreter shared by both `.pth` layouts.
//!
//! It implements only what `torch.save` writes (protocol <= 5 opcodes for tuples, lists,
//! dicts, ints, strings, globals, memo and persistent ids) and never imports or calls
//! anything: `GLOBAL`s are names, `REDUCE` rebuilds the handful of torch functions it knows
//! (`_rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`, `OrderedDict`) and leaves
//! anything else as an opaque value, which is an error if it ends up where a tensor was
//! expected.
//!
//! Hostile input is bounded three ways, each a clear error rather than a crash:
//! - every length read from the stream is checked against the bytes that remain before
//!   anything is allocated;
//! - containers nest at most [`MAX_NESTING`] deep (deeper values would overflow the stack
//!   when they are dropped or printed);
//! - the memo hands out copies (the memo stores a snapshot of the value when it is put), so
//!   a pickle that references a memoised value many times could grow exponentially ("billion
//!   laughs"): every copy is charged against a budget proportional to the pickle's length.

use std::collections::HashMap;
use std::fmt::Write as _;

use safetensors::Dtype;

/// Deepest nesting of tuples, lists and dicts accepted (a state dict needs about 5).
pub(super) const MAX_NESTING: usize = 64;
/// Copies the memo may make, in value units (one per value, plus one per string byte),
/// per byte of pickle...
const COPY_UNITS_PER_BYTE: usize = 8;
/// ...plus this allowance, so that tiny pickles are not starved.
const COPY_UNITS_BASE: usize = 1 << 16;
/// Longest description of a value quoted in an error message, in characters.
const MAX_QUOTE: usize = 200;

/// A format error before the file name is known.
#[derive(Debug)]
pub(super) struct FormatError(pub(super) String);

pub(super) type FResult<T> = std::result::Result<T, FormatError>;

pub(super) fn ferr<T>(msg: impl Into<String>) -> FResult<T> {
    Err(FormatError(msg.into()))
}

/// A storage named by a persistent id.
#[derive(Debug, Clone)]
pub(super) struct StorageInfo {
    pub dtype: Dtype,
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TensorRef {
    pub storage: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The pickle values this interpreter builds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
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
    pub(super) fn kind(&self) -> String {
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
            Value::Global(m, n) => quote(&format!("the global {m}.{n}")),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
            Value::Opaque(s) => quote(&format!("an object {s}")),
        }
    }

    /// Nesting depth: 0 for scalars, 1 + the deepest child for containers. Values never
    /// nest deeper than [`MAX_NESTING`] (checked as they are built), so this recursion is
    /// bounded.
    fn depth(&self) -> usize {
        let deepest = |it: &mut dyn Iterator<Item = &Value>| it.map(Value::depth).max();
        match self {
            Value::Tuple(v) | Value::List(v) => 1 + deepest(&mut v.iter()).unwrap_or(0),
            Value::Dict(d) => 1 + deepest(&mut d.iter().flat_map(|(k, v)| [k, v])).unwrap_or(0),
            _ => 0,
        }
    }

    /// What a copy costs: one unit per value plus one per byte of text or data.
    fn units(&self) -> usize {
        match self {
            Value::Long(b) | Value::Bytes(b) => 1 + b.len(),
            Value::Str(s) | Value::Storage(s) | Value::Opaque(s) => 1 + s.len(),
            Value::Global(m, n) => 1 + m.len() + n.len(),
            Value::Tensor(t) => 1 + t.storage.len() + t.shape.len() + t.stride.len(),
            Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(Value::units).sum::<usize>(),
            Value::Dict(d) => 1 + d.iter().map(|(k, v)| k.units() + v.units()).sum::<usize>(),
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 1,
        }
    }
}

/// A `fmt::Write` that keeps the first [`MAX_QUOTE`] characters and then stops the
/// formatting (so that quoting a huge value costs no more than quoting a small one).
struct Truncating(String);

impl std::fmt::Write for Truncating {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            if self.0.chars().count() >= MAX_QUOTE {
                return Err(std::fmt::Error);
            }
            self.0.push(c);
        }
        Ok(())
    }
}

/// `v`'s debug form, cut to [`MAX_QUOTE`] characters.
pub(super) fn brief(v: &impl std::fmt::Debug) -> String {
    let mut w = Truncating(String::new());
    if write!(w, "{v:?}").is_err() {
        w.0.push_str("...");
    }
    w.0
}

/// `s`, cut to [`MAX_QUOTE`] characters.
fn quote(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTE {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_QUOTE).collect();
        t.push_str("...");
        t
    }
}

/// Stack machine for the pickle opcodes torch files use.
pub(super) struct Machine<'a> {
    bytes: &'a [u8],
    pub pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Every storage a persistent id named, by key.
    pub storages: HashMap<String, StorageInfo>,
    /// Copy units left (see the module documentation).
    copy_budget: usize,
}

impl<'a> Machine<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storages: HashMap::new(),
            copy_budget: bytes
                .len()
                .saturating_mul(COPY_UNITS_PER_BYTE)
                .saturating_add(COPY_UNITS_BASE),
        }
    }

    fn take(&mut self, n: usize) -> FResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return ferr(format!(
                "truncated pickle at byte {}: {n} bytes announced, {} left",
                self.pos,
                self.bytes.len() - self.pos
            ));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> FResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> FResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> FResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> FResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> FResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len_u64(&mut self) -> FResult<usize> {
        let n = self.u64()?;
        usize::try_from(n).or_else(|_| ferr(format!("length {n} does not fit in memory")))
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

    /// Fails unless a container holding `items` stays within [`MAX_NESTING`].
    fn check_nesting<'v>(&self, items: impl IntoIterator<Item = &'v Value>) -> FResult<()> {
        let deepest = items.into_iter().map(Value::depth).max().unwrap_or(0);
        if deepest + 1 > MAX_NESTING {
            return ferr(format!(
                "containers nest more than {MAX_NESTING} deep at byte {}; a state dict nests a \
                 few levels",
                self.pos
            ));
        }
        Ok(())
    }

    /// Charges a copy of `units` against the copy budget.
    fn charge(&mut self, units: usize) -> FResult<()> {
        if units > self.copy_budget {
            return ferr(format!(
                "the pickle's memo references expand to more than {} times its {} bytes \
                 (a recursive or exponentially nested structure) at byte {}",
                COPY_UNITS_PER_BYTE,
                self.bytes.len(),
                self.pos
            ));
        }
        self.copy_budget -= units;
        Ok(())
    }

    fn memo_get(&mut self, i: u32) -> FResult<Value> {
        let Some(units) = self.memo.get(&i).map(Value::units) else {
            return ferr(format!("memo entry {i} read before it was written"));
        };
        self.charge(units)?;
        Ok(self.memo[&i].clone())
    }

    /// Copies the top of the stack (charged).
    fn copy_top(&mut self) -> FResult<Value> {
        let units = self.top()?.units();
        self.charge(units)?;
        Ok(self.top()?.clone())
    }

    fn memo_put(&mut self, i: u32) -> FResult<()> {
        let v = self.copy_top()?;
        self.memo.insert(i, v);
        Ok(())
    }

    /// Runs one pickle (up to its STOP) and returns its value. The memo is per pickle.
    pub fn load(&mut self) -> FResult<Value> {
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
                        return ferr(format!(
                            "pickle protocol {proto} is not supported (expected 2 to 5)"
                        ));
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
                    let v = self.copy_top()?;
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
                    let v = f64::from_be_bytes(self.array()?);
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
                    self.check_nesting(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return ferr(format!("pickle stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.check_nesting(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.check_nesting(&items)?;
                    self.stack.push(Value::List(items));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    self.check_nesting(&items)?;
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
                    self.check_nesting(&items)?;
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

    /// `('storage', torch.XStorage, key, location, numel)` (zip format), or the same with a
    /// sixth item, the view metadata, which must be None (legacy format).
    fn persistent_load(&mut self, pid: Value) -> FResult<Value> {
        let Value::Tuple(items) = pid else {
            return ferr(format!("persistent id is {}, not a tuple", pid.kind()));
        };
        let (tag, module, ty, key, numel) = match items.as_slice() {
            [Value::Str(tag), Value::Global(module, ty), Value::Str(key), Value::Str(_location), Value::Int(numel)] => {
                (tag, module, ty, key, *numel)
            }
            [Value::Str(tag), Value::Global(module, ty), Value::Str(key), Value::Str(_location), Value::Int(numel), view] =>
            {
                if *view != Value::None {
                    return ferr(format!(
                        "storage {} is a view of another storage (pre-1.0 files); not supported",
                        quote(key)
                    ));
                }
                (tag, module, ty, key, *numel)
            }
            _ => {
                return ferr(format!(
                    "unexpected persistent id {}, expected ('storage', torch.XStorage, key, \
                     location, numel)",
                    brief(&items)
                ))
            }
        };
        if tag != "storage" {
            return ferr(format!(
                "persistent id of kind {}, expected 'storage'",
                quote(tag)
            ));
        }
        let dtype = storage_dtype(module, ty)?;
        let numel = usize::try_from(numel).or_else(|_| {
            ferr(format!(
                "storage {} has {numel} elements, expected a count >= 0",
                quote(key)
            ))
        })?;
        if let Some(prev) = self.storages.get(key) {
            if prev.dtype != dtype || prev.numel != numel {
                return ferr(format!(
                    "storage {} is declared twice with different types or sizes",
                    quote(key)
                ));
            }
        } else {
            self.storages
                .insert(key.clone(), StorageInfo { dtype, numel });
        }
        Ok(Value::Storage(key.clone()))
    }

    fn reduce(&mut self, func: Value, args: Value, at: usize) -> FResult<Value> {
        let Value::Global(module, name) = func else {
            return Ok(Value::Opaque(format!("{}(...)", func.kind())));
        };
        let args = match args {
            Value::Tuple(a) => a,
            other => {
                return ferr(format!(
                    "REDUCE arguments are {} at byte {at}, expected a tuple",
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
            _ => Value::Opaque(quote(&format!("{module}.{name}(...)"))),
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
                    other => ferr(format!(
                        "tensor {what} holds {} at byte {at}, expected integers >= 0",
                        brief(other)
                    )),
                })
                .collect(),
            other => ferr(format!(
                "tensor {what} is {} at byte {at}, expected a tuple",
                other.kind()
            )),
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
            "unexpected _rebuild_tensor arguments at byte {at}: {}, expected (storage, offset \
             >= 0, size, stride, ...)",
            brief(&args)
        )),
    }
}

/// LONG1/LONG4 payload: i64 when it fits, else the raw bytes.
pub(super) fn long_value(b: &[u8]) -> Value {
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

/// Bytes per element (every storage type torch has is a whole number of bytes).
pub(super) fn elem_size(d: Dtype) -> usize {
    d.bitsize() / 8
}

fn storage_dtype(module: &str, ty: &str) -> FResult<Dtype> {
    if module != "torch" {
        return ferr(format!(
            "unknown storage type {}, expected torch.FloatStorage or another torch storage",
            quote(&format!("{module}.{ty}"))
        ));
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
        _ => {
            return ferr(format!(
                "unsupported storage type torch.{} (expected a float, int or bool storage)",
                quote(ty)
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_decoding() {
        const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(long_value(&[]), Value::Int(0));
        assert_eq!(long_value(&[0xff]), Value::Int(-1));
        assert_eq!(long_value(&[0x00, 0x01]), Value::Int(256));
        assert_eq!(long_value(&MAGIC), Value::Long(MAGIC.to_vec()));
    }

    #[test]
    fn brief_cuts_long_values() {
        let long = Value::Str("x".repeat(10_000));
        let s = brief(&long);
        assert!(
            s.ends_with("...") && s.len() <= MAX_QUOTE + 3,
            "{}",
            s.len()
        );
        assert_eq!(brief(&Value::Int(3)), "Int(3)");
    }
}
