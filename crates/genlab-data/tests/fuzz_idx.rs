//! Fuzz harness of the IDX reader (`genlab_data::idx::parse_idx`, `read_idx_header`, raw
//! and gzipped) and of the MNIST checks on what it returns (`Mnist::from_idx`). Generated
//! inputs:
//!
//! - `encoded_arrays_read_back`: arrays written by `encode_idx`, raw and gzipped;
//! - `structured_headers`: headers with random type bytes, dimension counts and dims (up to
//!   u32::MAX each, so their product overflows 32-bit and strains 64-bit), followed by a
//!   random number of data bytes, raw and gzipped;
//! - `mutated_files`: byte-level mutations of valid raw and gzipped files;
//! - `random_bytes`: anything, with or without the IDX or gzip magic.
//!
//! Every case must return without panicking, allocate no block larger than
//! [`ALLOC_PER_INPUT_BYTE`] times the input plus [`ALLOC_BASE`], and either give data whose
//! length matches the dims or an error. `PROPTEST_CASES=N` runs longer.

#[path = "../../genlab-core/tests/support/fuzz.rs"]
mod fuzz;

use std::io::Write;

use genlab_data::idx::{encode_idx, parse_idx, read_idx_header, IdxArray};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// A gzip stream inflates at most 1032x, into a growing buffer (up to twice that).
const ALLOC_PER_INPUT_BYTE: usize = 2 * 1032;
/// ... plus this (the inflater's window and tables, error messages).
const ALLOC_BASE: usize = 1 << 18;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn check(bytes: &[u8]) -> Result<Option<IdxArray>, TestCaseError> {
    fuzz::reset();
    let r = parse_idx(bytes);
    let h = read_idx_header(bytes);
    let largest = fuzz::largest();
    prop_assert!(
        largest <= ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_BASE,
        "allocated {largest} bytes at once for {} input bytes",
        bytes.len()
    );
    match r {
        Ok(a) => {
            let n = a.dims.iter().try_fold(1usize, |x, &d| x.checked_mul(d));
            prop_assert_eq!(n, Some(a.data.len()), "dims {:?}", &a.dims);
            prop_assert_eq!(h.ok(), Some(a.dims.clone()));
            Ok(Some(a))
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("data: ") && msg.len() < 1000, "{}", msg);
            Ok(None)
        }
    }
}

fn dim() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0u32..6,
        1 => Just(28),
        1 => Just(u32::MAX),
        1 => Just(1 << 31),
        1 => Just(1 << 16),
    ]
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn encoded_arrays_read_back(dims in proptest::collection::vec(0usize..5, 1..5), seed in any::<u8>()) {
        let n: usize = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let raw = encode_idx(&dims, &data).unwrap();
        for bytes in [raw.clone(), gz(&raw)] {
            let a = check(&bytes)?.expect("an encoded array reads back");
            prop_assert_eq!(&a.dims, &dims);
            prop_assert_eq!(&a.data, &data);
        }
    }

    #[test]
    fn structured_headers(
        ty in prop_oneof![4 => Just(8u8), 1 => any::<u8>()],
        dims in proptest::collection::vec(dim(), 0..7),
        data_len in 0usize..300,
        zipped in any::<bool>(),
    ) {
        let mut raw = vec![0, 0, ty, dims.len() as u8];
        for d in &dims {
            raw.extend(d.to_be_bytes());
        }
        raw.extend((0..data_len).map(|i| i as u8));
        check(&if zipped { gz(&raw) } else { raw })?;
    }

    #[test]
    fn mutated_files(edits in fuzz::edits(4), zipped in any::<bool>()) {
        let raw = encode_idx(&[3, 4, 5], &[7; 60]).unwrap();
        let seed = if zipped { gz(&raw) } else { raw };
        check(&fuzz::mutate(&seed, &edits))?;
    }

    #[test]
    fn random_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), magic in 0u8..3) {
        let prefix: &[u8] = match magic {
            1 => &[0, 0, 8, 1],
            2 => &[0x1f, 0x8b],
            _ => &[],
        };
        bytes.splice(0..0, prefix.iter().copied());
        check(&bytes)?;
    }
}

/// A gzipped IDX file whose header describes 10 bytes, followed by 64 MiB of zeros (a 64 KB
/// file): the whole stream used to be inflated before the size was compared; now inflation
/// stops one byte past what the header describes.
#[test]
fn gzip_idx_inflates_only_what_its_header_describes() {
    let mut raw = encode_idx(&[10], &[1; 10]).unwrap();
    raw.resize(raw.len() + (64 << 20), 0);
    let z = gz(&raw);
    assert!(z.len() < 1 << 20);
    fuzz::reset();
    let e = parse_idx(&z).unwrap_err().to_string();
    let largest = fuzz::largest();
    assert!(e.contains("trailing bytes"), "{e}");
    assert!(largest < 1 << 20, "allocated {largest} bytes at once");
}
