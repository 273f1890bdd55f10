//! Shared by the loader fuzz harnesses of every crate (included with
//! `#[path = ".../genlab-core/tests/support/fuzz.rs"] mod fuzz;`):
//!
//! - [`LargestAlloc`], a global allocator that records, per thread, the largest single
//!   allocation since the last [`reset`]: the check that a reader allocates in proportion to
//!   the bytes it was given, not to what a header claims;
//! - [`config`], the proptest configuration ([`DEFAULT_CASES`], or `PROPTEST_CASES`);
//! - [`edits`] and [`mutate`]: byte-level mutations of a valid file (overwrite, flip,
//!   insert, delete, truncate), which get past the magic numbers that random bytes rarely
//!   match.

#![allow(dead_code)] // each harness uses part of this file

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, noting the largest request of the calling thread.
pub struct LargestAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown are not recorded.
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Forgets the largest allocation seen so far on this thread.
pub fn reset() {
    LARGEST.with(|c| c.set(0));
}

/// The largest single allocation on this thread since [`reset`], in bytes.
pub fn largest() -> usize {
    LARGEST.with(|c| c.get())
}

/// Cases per property when `PROPTEST_CASES` is not set: all the harnesses together then
/// take about 10 s on 2 cores (a CI run).
pub const DEFAULT_CASES: u32 = 2048;

/// The proptest configuration of every harness: [`DEFAULT_CASES`] cases per property, or
/// `PROPTEST_CASES` of them for a long run, and no regression files written into the
/// source tree (failures found become named regression tests).
pub fn config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// One byte-level edit; positions are fractions of the file's length (0..=u16::MAX).
#[derive(Debug, Clone)]
pub enum Edit {
    Set(u16, u8),
    Flip(u16, u8),
    Insert(u16, Vec<u8>),
    Delete(u16, u16),
    Truncate(u16),
    /// Overwrites 4 bytes with a "lying" number (0, 1, 2^31, u32::MAX, ...), little-endian
    /// or (when the flag is set) big-endian.
    Lie(u16, u32, bool),
}

/// One to `max` edits.
pub fn edits(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let lie = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX),
        any::<u32>()
    ];
    let edit = prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<u16>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, 1 << b)),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<u16>(), 1u16..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<u16>().prop_map(Edit::Truncate),
        (any::<u16>(), lie, any::<bool>()).prop_map(|(p, v, be)| Edit::Lie(p, v, be)),
    ];
    proptest::collection::vec(edit, 1..=max)
}

/// `seed` with `edits` applied in order.
pub fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let at = |p: u16, len: usize| (p as usize * len) / (u16::MAX as usize + 1);
    for e in edits {
        let n = b.len();
        match e {
            Edit::Set(p, v) if n > 0 => {
                let i = at(*p, n);
                b[i] = *v;
            }
            Edit::Flip(p, m) if n > 0 => {
                let i = at(*p, n);
                b[i] ^= m;
            }
            Edit::Insert(p, v) => {
                let i = at(*p, n + 1);
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(p, k) if n > 0 => {
                let i = at(*p, n);
                let j = (i + *k as usize).min(n);
                b.drain(i..j);
            }
            Edit::Truncate(p) => b.truncate(at(*p, n + 1)),
            Edit::Lie(p, v, be) if n >= 4 => {
                let i = at(*p, n - 3);
                let bytes = if *be {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[i..i + 4].copy_from_slice(&bytes);
            }
            _ => {}
        }
    }
    b
}
