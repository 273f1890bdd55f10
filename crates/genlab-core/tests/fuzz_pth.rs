//! Fuzz harness of the `.pth` readers (`genlab_core::pth`, zip and legacy layouts), which
//! read untrusted files from users. Generated inputs:
//!
//! - `honest_files_read_back_exactly`: random state dicts (every dtype, nested dicts,
//!   random shapes and bytes) written in both layouts, which must read back exactly;
//! - `lying_files_are_clear_errors`: the same files with one lie each (element counts,
//!   dims up to 2^62 whose products overflow, strides, offsets, storage types, missing or
//!   truncated storages, byte order, truncated or bit-flipped pickles, duplicate keys);
//! - `random_pickle_programs`: random sequences of the pickle opcodes the reader knows
//!   (nested containers, memo puts and gets, globals, persistent ids, reduces), as the
//!   object of a zip and of a legacy file;
//! - `mutated_torch_files`: byte-level mutations of the files torch itself wrote
//!   (tests/fixtures/pth);
//! - `random_bytes`: anything, with or without a zip magic.
//!
//! Every case must return without panicking, allocate no single block larger than
//! [`ALLOC_PER_INPUT_BYTE`] times the input plus [`ALLOC_BASE`], and either give tensors
//! whose bytes match their shapes or an error that says what was wrong. Cases per property:
//! `fuzz::DEFAULT_CASES`, or `PROPTEST_CASES=N` for a longer run.

#[path = "support/fuzz.rs"]
mod fuzz;

use std::io::Write;

use genlab_core::pth::{parse_legacy_pth, parse_pth, parse_zip_pth, Dtype, PthTensor};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// Largest single allocation allowed per byte of input: a deflated zip entry may inflate
/// up to 1032 times (read into a growing buffer, so up to twice that).
const ALLOC_PER_INPUT_BYTE: usize = 2 * 1032;
/// ... plus this (zip and pickle bookkeeping, error messages).
const ALLOC_BASE: usize = 1 << 20;
/// Longest error message accepted (values are quoted at most 200 characters).
const MAX_ERROR_CHARS: usize = 2000;

// --- a pickle writer --------------------------------------------------------------------

#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn proto(&mut self) -> &mut Self {
        self.0.extend([0x80, 2]);
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
        self
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.bytes());
        self
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.0.extend([b'K', v as u8]);
        } else if i32::try_from(v).is_ok() {
            self.0.push(b'J');
            self.0.extend((v as i32).to_le_bytes());
        } else {
            self.0.extend([0x8a, 8]);
            self.0.extend(v.to_le_bytes());
        }
        self
    }
    fn ints(&mut self, v: &[i64]) -> &mut Self {
        self.op(b'(');
        for &x in v {
            self.int(x);
        }
        self.op(b't')
    }
}

// --- file descriptions ------------------------------------------------------------------

/// The dtypes a storage can have: torch's storage class name and element size.
const DTYPES: [(&str, Dtype, usize); 10] = [
    ("FloatStorage", Dtype::F32, 4),
    ("HalfStorage", Dtype::F16, 2),
    ("BFloat16Storage", Dtype::BF16, 2),
    ("DoubleStorage", Dtype::F64, 8),
    ("LongStorage", Dtype::I64, 8),
    ("IntStorage", Dtype::I32, 4),
    ("ShortStorage", Dtype::I16, 2),
    ("CharStorage", Dtype::I8, 1),
    ("ByteStorage", Dtype::U8, 1),
    ("BoolStorage", Dtype::BOOL, 1),
];

/// One pickled tensor entry (all fields are what the file claims).
#[derive(Debug, Clone)]
struct Entry {
    /// Dotted name; a dot nests the entry in a sub-dict.
    name: String,
    storage_type: String,
    key: String,
    numel: i64,
    offset: i64,
    shape: Vec<i64>,
    stride: Vec<i64>,
}

/// A whole file: entries, storages (key, bytes) and, for the zip layout, the byte order.
#[derive(Debug, Clone)]
struct Desc {
    entries: Vec<Entry>,
    storages: Vec<(String, Vec<u8>)>,
    byteorder: Option<Vec<u8>>,
    /// Rewrites the pickle before it is stored (a lie about the pickle itself).
    pickle_edit: Option<(u16, Option<u8>)>,
}

fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The main pickle: an OrderedDict of entries (nested for dotted names), with the persistent
/// ids of the zip layout (5 items) or of the legacy one (6 items, the last None).
fn main_pickle(d: &Desc, legacy: bool) -> Vec<u8> {
    let mut p = Pickle::default();
    p.proto();
    // Group by the first name segment to nest one level.
    p.global("collections", "OrderedDict").op(b')').op(b'R');
    p.op(b'(');
    let mut i = 0;
    while i < d.entries.len() {
        let e = &d.entries[i];
        if let Some((outer, _)) = e.name.split_once('.') {
            let group: Vec<&Entry> = d.entries[i..]
                .iter()
                .take_while(|x| x.name.split_once('.').map(|s| s.0) == Some(outer))
                .collect();
            p.text(outer).op(b'}').op(b'(');
            for g in &group {
                tensor(&mut p, g, &g.name[outer.len() + 1..], legacy);
            }
            p.op(b'u');
            i += group.len();
        } else {
            tensor(&mut p, e, &e.name, legacy);
            i += 1;
        }
    }
    p.op(b'u').op(b'.');
    let mut bytes = p.0;
    if let Some((at, byte)) = d.pickle_edit {
        let i = (at as usize * bytes.len()) / (u16::MAX as usize + 1);
        match byte {
            Some(b) => bytes[i] = b,
            None => bytes.truncate(i),
        }
    }
    bytes
}

fn tensor(p: &mut Pickle, e: &Entry, name: &str, legacy: bool) {
    p.text(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op(b'(');
    p.op(b'(')
        .text("storage")
        .global("torch", &e.storage_type)
        .text(&e.key)
        .text("cpu")
        .int(e.numel);
    if legacy {
        p.op(b'N');
    }
    p.op(b't').op(b'Q');
    p.int(e.offset).ints(&e.shape).ints(&e.stride);
    p.op(0x89); // requires_grad False
    p.global("collections", "OrderedDict").op(b')').op(b'R');
    p.op(b't').op(b'R');
}

fn zip_file(d: &Desc, deflate: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opt = zip::write::SimpleFileOptions::default().compression_method(method);
    z.start_file("archive/data.pkl", opt).unwrap();
    z.write_all(&main_pickle(d, false)).unwrap();
    if let Some(order) = &d.byteorder {
        z.start_file("archive/byteorder", opt).unwrap();
        z.write_all(order).unwrap();
    }
    for (key, bytes) in &d.storages {
        z.start_file(format!("archive/data/{key}"), opt).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn legacy_file(d: &Desc) -> Vec<u8> {
    let mut out = Vec::new();
    // Magic number, protocol version, sys_info.
    out.extend([
        0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ]);
    let mut p = Pickle::default();
    p.proto().int(1001).op(b'.');
    p.proto()
        .op(b'}')
        .op(b'(')
        .text("little_endian")
        .op(0x88)
        .op(b'u')
        .op(b'.');
    out.extend(p.0);
    out.extend(main_pickle(d, true));
    let mut keys = Pickle::default();
    keys.proto().op(b']').op(b'(');
    for (k, _) in &d.storages {
        keys.text(k);
    }
    keys.op(b'e').op(b'.');
    out.extend(keys.0);
    for (key, bytes) in &d.storages {
        let esize = d
            .entries
            .iter()
            .find(|e| &e.key == key)
            .and_then(|e| DTYPES.iter().find(|t| t.0 == e.storage_type))
            .map_or(1, |t| t.2);
        out.extend(((bytes.len() / esize) as u64).to_le_bytes());
        out.extend(bytes);
    }
    out
}

/// An honest file: each tensor contiguous in its own storage, names unique, some nested.
fn honest() -> impl Strategy<Value = (Desc, Vec<PthTensor>)> {
    let tensor = (
        0..DTYPES.len(),
        proptest::collection::vec(0i64..5, 0..4),
        any::<bool>(),
        any::<u64>(),
    );
    proptest::collection::vec(tensor, 1..6).prop_map(|ts| {
        let mut entries = Vec::new();
        let mut storages = Vec::new();
        let mut expected = Vec::new();
        for (i, (dt, shape, nested, seed)) in ts.into_iter().enumerate() {
            let (ty, dtype, esize) = DTYPES[dt];
            let numel: i64 = shape.iter().product();
            let mut x = seed;
            let bytes: Vec<u8> = (0..numel as usize * esize)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let b = (x >> 56) as u8;
                    if dtype == Dtype::BOOL {
                        b & 1
                    } else {
                        b
                    }
                })
                .collect();
            let name = if nested {
                format!("group.t{i}")
            } else {
                format!("t{i}")
            };
            entries.push(Entry {
                name: name.clone(),
                storage_type: ty.to_string(),
                key: i.to_string(),
                numel,
                offset: 0,
                stride: contiguous_strides(&shape),
                shape: shape.clone(),
            });
            storages.push((i.to_string(), bytes.clone()));
            expected.push(PthTensor {
                name,
                dtype,
                shape: shape.iter().map(|&d| d as usize).collect(),
                data: bytes,
            });
        }
        // Nested entries are written grouped, so expect them in that order.
        let order = grouped_order(&entries);
        let entries = order.iter().map(|&i| entries[i].clone()).collect();
        let expected = order.iter().map(|&i| expected[i].clone()).collect();
        (
            Desc {
                entries,
                storages,
                byteorder: Some(b"little".to_vec()),
                pickle_edit: None,
            },
            expected,
        )
    })
}

/// Order of entries once those of the same sub-dict are written together (at the first).
fn grouped_order(entries: &[Entry]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut done = vec![false; entries.len()];
    for i in 0..entries.len() {
        if done[i] {
            continue;
        }
        let group = entries[i].name.split_once('.').map(|s| s.0.to_string());
        for j in i..entries.len() {
            let g = entries[j].name.split_once('.').map(|s| s.0.to_string());
            if !done[j] && (j == i || (group.is_some() && g == group)) {
                order.push(j);
                done[j] = true;
            }
        }
    }
    order
}

/// One lie told about an honest file.
#[derive(Debug, Clone)]
enum Lie {
    Numel(i64),
    Dim(usize, i64),
    Stride(usize, i64),
    Offset(i64),
    StorageType(String),
    Key(String),
    DataLen(i64),
    DropStorage,
    Byteorder(Vec<u8>),
    Pickle(u16, Option<u8>),
    DuplicateName,
    ManyViews(usize),
}

fn huge() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(-1i64),
        Just(0),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 40),
        Just(1 << 62),
        Just(i64::MAX),
        Just(i64::MIN),
        -3i64..70,
    ]
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        huge().prop_map(Lie::Numel),
        (0usize..4, huge()).prop_map(|(i, v)| Lie::Dim(i, v)),
        (0usize..4, huge()).prop_map(|(i, v)| Lie::Stride(i, v)),
        huge().prop_map(Lie::Offset),
        prop_oneof![
            Just("FloatStorage"),
            Just("HalfStorage"),
            Just("LongStorage"),
            Just("ComplexFloatStorage"),
            Just("QInt8Storage"),
            Just(""),
        ]
        .prop_map(|s| Lie::StorageType(s.to_string())),
        prop_oneof![Just("0"), Just("99"), Just("../0"), Just("")]
            .prop_map(|s| Lie::Key(s.to_string())),
        (-40i64..40).prop_map(Lie::DataLen),
        Just(Lie::DropStorage),
        prop_oneof![Just(&b"big"[..]), Just(&b""[..]), Just(&b"littlebig"[..])]
            .prop_map(|b| Lie::Byteorder(b.to_vec())),
        (any::<u16>(), proptest::option::of(any::<u8>())).prop_map(|(p, b)| Lie::Pickle(p, b)),
        Just(Lie::DuplicateName),
        (2usize..64).prop_map(Lie::ManyViews),
    ]
}

fn tell(mut d: Desc, lie: &Lie, which: usize) -> Desc {
    let i = which % d.entries.len();
    let e = &mut d.entries[i];
    match lie {
        Lie::Numel(v) => e.numel = *v,
        Lie::Dim(k, v) => {
            if e.shape.is_empty() {
                e.shape.push(*v);
                e.stride.push(1);
            } else {
                let k = k % e.shape.len();
                e.shape[k] = *v;
            }
        }
        Lie::Stride(k, v) => {
            if !e.stride.is_empty() {
                let k = k % e.stride.len();
                e.stride[k] = *v;
            }
        }
        Lie::Offset(v) => e.offset = *v,
        Lie::StorageType(s) => e.storage_type = s.clone(),
        Lie::Key(s) => e.key = s.clone(),
        Lie::DataLen(delta) => {
            let key = e.key.clone();
            if let Some((_, b)) = d.storages.iter_mut().find(|(k, _)| *k == key) {
                let n = (b.len() as i64 + delta).max(0) as usize;
                b.resize(n, 7);
            }
        }
        Lie::DropStorage => {
            let key = e.key.clone();
            d.storages.retain(|(k, _)| *k != key);
        }
        Lie::Byteorder(b) => d.byteorder = Some(b.clone()),
        Lie::Pickle(at, b) => d.pickle_edit = Some((*at, *b)),
        Lie::DuplicateName => {
            let dup = e.clone();
            d.entries.push(dup);
        }
        Lie::ManyViews(n) => {
            // n more names viewing the same storage: fine up to the expansion limit.
            let base = e.clone();
            for j in 0..*n {
                let mut v = base.clone();
                v.name = format!("view{j}");
                d.entries.push(v);
            }
        }
    }
    d
}

/// Runs `parse` on `bytes` and checks the harness's invariants (see the module docs).
fn check(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> genlab_core::Result<Vec<PthTensor>>,
) -> Result<Option<Vec<PthTensor>>, TestCaseError> {
    fuzz::reset();
    let r = parse(bytes);
    let largest = fuzz::largest();
    let bound = ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_BASE;
    prop_assert!(
        largest <= bound,
        "allocated {largest} bytes at once for {} input bytes",
        bytes.len()
    );
    match r {
        Ok(ts) => {
            let total: usize = ts.iter().map(|t| t.data.len()).sum();
            for t in &ts {
                let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                prop_assert!(
                    numel.is_some(),
                    "{}: shape {:?} overflows",
                    &t.name,
                    &t.shape
                );
                let bytes = numel.unwrap_or(0) * t.dtype.bitsize() / 8;
                prop_assert_eq!(t.data.len(), bytes, "{}", &t.name);
            }
            prop_assert!(total <= 16 * bytes.len() + 64, "{total} tensor bytes");
            Ok(Some(ts))
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with("data: not a readable "),
                "unexpected error kind: {msg}"
            );
            prop_assert!(
                msg.chars().count() <= MAX_ERROR_CHARS,
                "{} chars",
                msg.len()
            );
            Ok(None)
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pth")
            .join(name),
    )
    .unwrap()
}

// --- random pickle programs -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Byte(u8),
    Int(i64),
    Text(String),
    Global(&'static str, &'static str),
    Put(u8),
    Get(u8),
    StoragePid(u8, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let structural = prop_oneof![
        Just(b'('),
        Just(b't'),
        Just(b'l'),
        Just(b'd'),
        Just(b'}'),
        Just(b']'),
        Just(b')'),
        Just(b'a'),
        Just(b'e'),
        Just(b's'),
        Just(b'u'),
        Just(b'R'),
        Just(b'b'),
        Just(b'Q'),
        Just(b'N'),
        Just(b'0'),
        Just(b'1'),
        Just(b'2'),
        Just(0x85u8),
        Just(0x86),
        Just(0x87),
        Just(0x88),
        Just(0x89),
        Just(0x94),
        Just(0x93),
        Just(b'.'),
    ];
    prop_oneof![
        6 => structural.prop_map(Op::Byte),
        2 => huge().prop_map(Op::Int),
        1 => "[a-z0-9.]{0,8}".prop_map(Op::Text),
        1 => prop_oneof![
            Just(("torch._utils", "_rebuild_tensor_v2")),
            Just(("torch._utils", "_rebuild_parameter")),
            Just(("collections", "OrderedDict")),
            Just(("torch", "FloatStorage")),
            Just(("builtins", "dict")),
            Just(("os", "system")),
        ]
        .prop_map(|(m, n)| Op::Global(m, n)),
        2 => (0u8..4).prop_map(Op::Put),
        2 => (0u8..4).prop_map(Op::Get),
        1 => (0u8..3, huge()).prop_map(|(k, n)| Op::StoragePid(k, n)),
        1 => any::<u8>().prop_map(Op::Byte),
    ]
}

fn program(ops: &[Op]) -> Vec<u8> {
    let mut p = Pickle::default();
    p.proto();
    for o in ops {
        match o {
            Op::Byte(b) => {
                p.op(*b);
            }
            Op::Int(v) => {
                p.int(*v);
            }
            Op::Text(s) => {
                p.text(s);
            }
            Op::Global(m, n) => {
                p.global(m, n);
            }
            Op::Put(i) => {
                p.op(b'q').op(*i);
            }
            Op::Get(i) => {
                p.op(b'h').op(*i);
            }
            Op::StoragePid(k, n) => {
                p.op(b'(')
                    .text("storage")
                    .global("torch", "FloatStorage")
                    .text(&k.to_string())
                    .text("cpu")
                    .int(*n)
                    .op(b't')
                    .op(b'Q');
            }
        }
    }
    p.op(b'.');
    p.0
}

fn zip_with_pickle(pickle: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opt).unwrap();
    z.write_all(pickle).unwrap();
    for k in 0..3 {
        z.start_file(format!("archive/data/{k}"), opt).unwrap();
        z.write_all(&[0u8; 16]).unwrap();
    }
    z.finish().unwrap().into_inner()
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn honest_files_read_back_exactly((desc, expected) in honest(), deflate in any::<bool>()) {
        let z = zip_file(&desc, deflate);
        let got = check(&z, parse_zip_pth)?;
        prop_assert_eq!(got.as_ref(), Some(&expected));
        let l = legacy_file(&desc);
        let got = check(&l, parse_legacy_pth)?;
        prop_assert_eq!(got.as_ref(), Some(&expected));
    }

    #[test]
    fn lying_files_are_clear_errors(
        (desc, _) in honest(),
        lie in lie(),
        which in any::<usize>(),
        deflate in any::<bool>(),
    ) {
        let d = tell(desc, &lie, which);
        check(&zip_file(&d, deflate), parse_zip_pth)?;
        check(&legacy_file(&d), parse_legacy_pth)?;
    }

    #[test]
    fn random_pickle_programs(ops in proptest::collection::vec(op(), 0..64)) {
        let pickle = program(&ops);
        check(&zip_with_pickle(&pickle), parse_zip_pth)?;
        let mut legacy = Vec::new();
        legacy.extend([0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.']);
        legacy.extend([0x80, 2, b'M', 0xe9, 0x03, b'.', 0x80, 2, b'}', b'.']);
        legacy.extend(&pickle);
        legacy.extend([0x80, 2, b']', b'.']);
        check(&legacy, parse_legacy_pth)?;
    }

    #[test]
    fn mutated_torch_files(edits in fuzz::edits(4), legacy in any::<bool>()) {
        let seed = fixture(if legacy { "tiny_legacy.pth" } else { "tiny_zip.pth" });
        check(&fuzz::mutate(&seed, &edits), parse_pth)?;
    }

    #[test]
    fn random_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), zip in any::<bool>()) {
        if zip {
            bytes.splice(0..0, *b"PK\x03\x04");
        }
        check(&bytes, parse_pth)?;
    }
}

// --- regression tests: one per bug the harness (or its review) found --------------------

/// A pickle that doubles a list through the memo 40 times would have cloned 2^40 values
/// (the memo hands out copies): now an error once the copies outgrow the pickle.
#[test]
fn memo_billion_laughs_is_an_error() {
    let mut p = Pickle::default();
    p.proto().op(b']').op(b'q').op(0);
    for _ in 0..40 {
        p.op(b'(')
            .op(b'h')
            .op(0)
            .op(b'h')
            .op(0)
            .op(b'l')
            .op(b'q')
            .op(0)
            .op(b'0');
        p.op(b'h').op(0);
    }
    p.op(b'.');
    let e = parse_zip_pth(&zip_with_pickle(&p.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("memo references expand"), "{e}");
}

/// 100,000 nested tuples: dropping or printing such a value overflowed the stack (an abort,
/// not even a panic); now refused past 64 levels.
#[test]
fn deeply_nested_pickle_is_an_error_not_a_stack_overflow() {
    let mut p = Pickle::default();
    p.proto();
    for _ in 0..100_000 {
        p.op(b'(');
    }
    for _ in 0..100_000 {
        p.op(b't');
    }
    p.op(b'.');
    let e = parse_zip_pth(&zip_with_pickle(&p.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nest more than 64 deep"), "{e}");
}

/// A storage of 2^61 f64 elements: `numel * 8` wrapped around to 0 in release builds and
/// the legacy reader took the storage as empty; now the size is checked.
#[test]
fn legacy_storage_size_overflow_is_an_error() {
    let d = Desc {
        entries: vec![Entry {
            name: "w".into(),
            storage_type: "DoubleStorage".into(),
            key: "0".into(),
            numel: 1 << 61,
            offset: 0,
            shape: vec![1 << 61],
            stride: vec![1],
        }],
        storages: vec![("0".into(), Vec::new())],
        byteorder: None,
        pickle_edit: None,
    };
    let mut bytes = legacy_file(&d);
    // The element count before the (empty) data says 2^61 too.
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(&(1u64 << 61).to_le_bytes());
    let e = parse_legacy_pth(&bytes).unwrap_err().to_string();
    assert!(e.contains("truncated inside storage"), "{e}");
    let e = parse_zip_pth(&zip_file(&d, false)).unwrap_err().to_string();
    assert!(e.contains("do not fit in memory"), "{e}");
}

/// Error messages quoted whole values (`{args:?}`): a persistent id holding a 1 MB string
/// gave a 1 MB message. Now quotes are cut to 200 characters.
#[test]
fn error_messages_quote_at_most_200_chars() {
    let mut p = Pickle::default();
    p.proto()
        .op(b'(')
        .text(&"x".repeat(1 << 20))
        .op(b't')
        .op(b'Q')
        .op(b'.');
    let e = parse_zip_pth(&zip_with_pickle(&p.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected persistent id"), "{}", &e[..100]);
    assert!(e.len() < MAX_ERROR_CHARS, "{} chars", e.len());
}

/// A zip storage entry that declares more bytes than the pickle's storage: read to the
/// end before, now refused from the entry's header.
#[test]
fn zip_storage_of_the_wrong_size_is_named() {
    let d = Desc {
        entries: vec![Entry {
            name: "w".into(),
            storage_type: "FloatStorage".into(),
            key: "0".into(),
            numel: 2,
            offset: 0,
            shape: vec![2],
            stride: vec![1],
        }],
        storages: vec![("0".into(), vec![0; 12])],
        byteorder: None,
        pickle_edit: None,
    };
    let e = parse_zip_pth(&zip_file(&d, false)).unwrap_err().to_string();
    assert!(e.contains("holds 12 bytes, expected 8"), "{e}");
}

/// Sharing one storage between many names multiplies the bytes copied out; past 16x the
/// storages it is refused (a 1 KB storage viewed 10,000 times would give 10 MB).
#[test]
fn views_cannot_multiply_a_storage_without_bound() {
    let mut entries = Vec::new();
    for j in 0..32 {
        entries.push(Entry {
            name: format!("v{j}"),
            storage_type: "ByteStorage".into(),
            key: "0".into(),
            numel: 1024,
            offset: 0,
            shape: vec![1024],
            stride: vec![1],
        });
    }
    let d = Desc {
        entries,
        storages: vec![("0".into(), vec![1; 1024])],
        byteorder: None,
        pickle_edit: None,
    };
    let e = parse_zip_pth(&zip_file(&d, false)).unwrap_err().to_string();
    assert!(e.contains("more than 16 times"), "{e}");
}

/// What candle's zip reader (used before genlab's own) did with a string whose declared
/// length is 4 GiB: allocate 4 GiB, then fail to fill it. Now the length is checked
/// against the bytes left first.
#[test]
fn pickle_string_longer_than_the_file_is_refused_before_allocating() {
    let mut p = Pickle::default();
    p.proto().op(b'X');
    p.0.extend(u32::MAX.to_le_bytes());
    p.0.extend(b"short");
    let z = zip_with_pickle(&p.0);
    fuzz::reset();
    let e = parse_zip_pth(&z).unwrap_err().to_string();
    assert!(fuzz::largest() < 1 << 20, "allocated {}", fuzz::largest());
    assert!(e.contains("4294967295 bytes announced, 5 left"), "{e}");
}
