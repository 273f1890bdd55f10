//! Shared by the extractor parity tests: the counter-based "formula weights" generator that
//! `scripts/reference/{inception,efficientnet}_fixture.py` reproduce exactly in Python, so
//! random-weight fixtures need no weight file in the repository.

/// 64-bit FNV-1a hash of a state_dict key.
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xCBF29CE484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001B3);
    }
    h
}

/// u in [0, 1) for flat indices 0..n of `key` (SplitMix64 finaliser, 24-bit mantissa).
pub fn uniform(key: &str, n: usize) -> Vec<f64> {
    let seed = fnv1a64(key);
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}
