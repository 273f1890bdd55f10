//! Fuzz harness of the safetensors checkpoint readers (`genlab_core::io::load_safetensors`
//! and `load_tensors_with_metadata`). Generated inputs:
//!
//! - `written_checkpoints_read_back`: files written by `save_tensors_with_metadata`;
//! - `structured_headers`: a JSON header assembled from random parts (dtypes including
//!   unknown ones, shapes with huge dims whose products overflow, data offsets that lie,
//!   overlap or run past the end, metadata of the wrong type), with a header length that
//!   may lie too, then a random number of data bytes;
//! - `mutated_files`: byte-level mutations of a valid checkpoint;
//! - `random_bytes`: anything.
//!
//! Every case must return without panicking, allocate no block larger than
//! [`ALLOC_PER_INPUT_BYTE`] times the file plus [`ALLOC_BASE`], and either give tensors
//! whose element counts match their shapes or an error. `PROPTEST_CASES=N` runs longer.

#[path = "support/fuzz.rs"]
mod fuzz;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use genlab_core::io::{load_safetensors, load_tensors_with_metadata, save_tensors_with_metadata};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// The file is read whole, parsed, then each tensor copied (and f16/bf16 converted):
/// a few times the input at most.
const ALLOC_PER_INPUT_BYTE: usize = 4;
/// ... plus this (JSON parsing, error messages).
const ALLOC_BASE: usize = 1 << 16;

fn check(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = dir.join("ckpt.safetensors");
    std::fs::write(&p, bytes).unwrap();
    fuzz::reset();
    let a = load_tensors_with_metadata(&p, &Device::Cpu);
    let b = load_safetensors(&p, &Device::Cpu);
    let largest = fuzz::largest();
    prop_assert!(
        largest <= ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_BASE,
        "allocated {largest} bytes at once for {} input bytes",
        bytes.len()
    );
    for r in [a.map(|(t, _)| t), b] {
        match r {
            Ok(ts) => {
                for (name, t) in ts {
                    let n = t.dims().iter().try_fold(1usize, |x, &d| x.checked_mul(d));
                    prop_assert_eq!(n, Some(t.elem_count()), "{}", name);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    msg.starts_with("checkpoint: ") && msg.len() < 2000,
                    "{}",
                    msg
                );
            }
        }
    }
    Ok(())
}

fn valid_file(dir: &Path, shapes: &[Vec<usize>]) -> Vec<u8> {
    let mut map = HashMap::new();
    for (i, s) in shapes.iter().enumerate() {
        let n: usize = s.iter().product();
        let v: Vec<f32> = (0..n).map(|k| k as f32).collect();
        map.insert(
            format!("t{i}"),
            Tensor::from_vec(v, s.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    let meta: HashMap<String, String> = [("genlab".to_string(), "{}".to_string())].into();
    let p = dir.join("valid.safetensors");
    save_tensors_with_metadata(&p, &map, meta).unwrap();
    std::fs::read(p).unwrap()
}

fn big() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..40).prop_map(|d| d.to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just((1u64 << 62).to_string()),
        1 => Just((1u64 << 32).to_string()),
        1 => Just("-1".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("\"3\"".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let dtype = prop_oneof![
        Just("F32"),
        Just("F16"),
        Just("BF16"),
        Just("F64"),
        Just("I64"),
        Just("U8"),
        Just("BOOL"),
        Just("F8_E4M3"),
        Just("F4"),
        Just("C64"),
        Just("X"),
    ];
    (
        "[a-z.]{1,6}",
        dtype,
        proptest::collection::vec(big(), 0..4),
        big(),
        big(),
    )
        .prop_map(|(name, dtype, shape, start, end)| {
            format!(
                "\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": [{}], \"data_offsets\": [{start}, {end}]}}",
                shape.join(", ")
            )
        })
}

fn header() -> impl Strategy<Value = String> {
    let meta = prop_oneof![
        Just(String::new()),
        Just("\"__metadata__\": {\"genlab\": \"{}\"}".to_string()),
        Just("\"__metadata__\": {\"genlab\": 3}".to_string()),
        Just("\"__metadata__\": []".to_string()),
    ];
    (meta, proptest::collection::vec(entry(), 0..4)).prop_map(|(m, es)| {
        let mut parts: Vec<String> = es;
        if !m.is_empty() {
            parts.insert(0, m);
        }
        format!("{{{}}}", parts.join(", "))
    })
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn written_checkpoints_read_back(shapes in proptest::collection::vec(proptest::collection::vec(0usize..4, 0..3), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = valid_file(dir.path(), &shapes);
        let p = dir.path().join("v.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let (ts, meta) = load_tensors_with_metadata(&p, &Device::Cpu).unwrap();
        prop_assert_eq!(ts.len(), shapes.len());
        prop_assert_eq!(meta["genlab"].as_str(), "{}");
        for (i, s) in shapes.iter().enumerate() {
            prop_assert_eq!(ts[&format!("t{i}")].dims(), s.as_slice());
        }
        check(dir.path(), &bytes)?;
    }

    #[test]
    fn structured_headers(h in header(), lie in prop_oneof![4 => Just(0i64), 1 => -4i64..4, 1 => Just(1i64 << 40)], data_len in 0usize..300) {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Vec::new();
        b.extend(((h.len() as i64 + lie).max(0) as u64).to_le_bytes());
        b.extend(h.bytes());
        b.extend((0..data_len).map(|i| i as u8));
        check(dir.path(), &b)?;
    }

    #[test]
    fn mutated_files(edits in fuzz::edits(4)) {
        let dir = tempfile::tempdir().unwrap();
        let seed = valid_file(dir.path(), &[vec![2, 3], vec![4], vec![]]);
        check(dir.path(), &fuzz::mutate(&seed, &edits))?;
    }

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path(), &bytes)?;
    }
}
