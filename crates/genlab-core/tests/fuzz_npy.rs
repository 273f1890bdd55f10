//! Fuzz harness of the `.npy` reader (`genlab_core::io::parse_npy_f64`, behind `read_npy`).
//! Generated inputs:
//!
//! - `written_arrays_read_back`: arrays written by `write_npy` (random shapes and values);
//! - `structured_headers`: headers assembled from random parts (version 1/2/3, header
//!   lengths that lie, dtypes, Fortran order, shapes with huge, negative or malformed dims
//!   whose products overflow) followed by a random number of data bytes;
//! - `mutated_files`: byte-level mutations of a valid file;
//! - `random_bytes`: anything, with or without the magic.
//!
//! Every case must return without panicking, allocate no block larger than
//! [`ALLOC_PER_INPUT_BYTE`] times the input plus [`ALLOC_BASE`], and either give data whose
//! length matches the shape or an error. `PROPTEST_CASES=N` runs longer.

#[path = "support/fuzz.rs"]
mod fuzz;

use genlab_core::io::{parse_npy_f64, write_npy, NpyArrayF64};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// An f4 file converts to f64 values: twice its bytes, plus the growth of a vector.
const ALLOC_PER_INPUT_BYTE: usize = 4;
/// ... plus this (formatting, the header string).
const ALLOC_BASE: usize = 1 << 16;

fn check(bytes: &[u8]) -> Result<Option<NpyArrayF64>, TestCaseError> {
    fuzz::reset();
    let r = parse_npy_f64(bytes);
    let largest = fuzz::largest();
    prop_assert!(
        largest <= ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_BASE,
        "allocated {largest} bytes at once for {} input bytes",
        bytes.len()
    );
    match r {
        Ok(a) => {
            let n = a.shape.iter().try_fold(1usize, |x, &d| x.checked_mul(d));
            prop_assert_eq!(n, Some(a.data.len()), "shape {:?}", &a.shape);
            Ok(Some(a))
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("data: ") && msg.len() < 1000, "{}", msg);
            Ok(None)
        }
    }
}

fn valid_file(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, shape, data).unwrap();
    std::fs::read(p).unwrap()
}

fn dim() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..6).prop_map(|d| d.to_string()),
        1 => Just("18446744073709551615".to_string()),
        1 => Just("4611686018427387904".to_string()),
        1 => Just("4294967296".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("".to_string()),
        1 => "[ 0-9a-z()',]{0,6}",
    ]
}

fn header() -> impl Strategy<Value = (u8, String, i64)> {
    let descr = prop_oneof![
        Just("'<f4'"),
        Just("'<f8'"),
        Just("'>f4'"),
        Just("'<i8'"),
        Just("'|u1'"),
        Just("'<f4"),
        Just(""),
    ];
    let order = prop_oneof![Just("False"), Just("True"), Just("")];
    (
        prop_oneof![Just(1u8), Just(2), Just(3), Just(0), Just(9)],
        descr,
        order,
        proptest::collection::vec(dim(), 0..5),
        any::<bool>(),
        prop_oneof![4 => Just(0i64), 1 => -8i64..8, 1 => Just(1 << 20)],
    )
        .prop_map(|(version, descr, order, dims, drop_key, lie)| {
            let shape = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            let mut h =
                format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}\n");
            if drop_key {
                h = h.replacen("'shape'", "'shap'", 1);
            }
            (version, h, lie)
        })
}

fn assemble(version: u8, header: &str, lie: i64, data_len: usize) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend([version, 0]);
    let hlen = (header.len() as i64 + lie).max(0) as u64;
    if version == 1 {
        b.extend((hlen as u16).to_le_bytes());
    } else {
        b.extend((hlen as u32).to_le_bytes());
    }
    b.extend(header.bytes());
    b.extend((0..data_len).map(|i| i as u8));
    b
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn written_arrays_read_back(shape in proptest::collection::vec(0usize..5, 1..4), seed in any::<u32>()) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| (i as u32 ^ seed) as f32 * 0.25).collect();
        let got = check(&valid_file(&shape, &data))?;
        let got = got.expect("a file write_npy wrote reads back");
        prop_assert_eq!(&got.shape, &shape);
        prop_assert_eq!(got.data, data.iter().map(|&v| v as f64).collect::<Vec<_>>());
    }

    #[test]
    fn structured_headers((version, h, lie) in header(), data_len in 0usize..200) {
        check(&assemble(version, &h, lie, data_len))?;
    }

    #[test]
    fn mutated_files(edits in fuzz::edits(4)) {
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let seed = valid_file(&[2, 3, 4], &data);
        check(&fuzz::mutate(&seed, &edits))?;
    }

    #[test]
    fn random_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
        if magic {
            bytes.splice(0..0, *b"\x93NUMPY\x01\x00");
        }
        check(&bytes)?;
    }
}
