//! The project-owned seeded random generator.
//!
//! xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
//! 2018, arXiv:1805.01407), seeded through SplitMix64 as the authors recommend. candle's
//! CPU random generator cannot be seeded, so every random number genlab uses (weight
//! initialisation, data order, diffusion noise, sampling) comes from here: the same seed
//! gives the same bytes on the same machine. The state is four `u64`s, saved in
//! checkpoints so that a resumed run continues the exact stream.

use candle_core::{Device, Tensor};

/// Seeded xoshiro256** generator. Cheap to clone; `state`/`from_state` round-trip exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

/// One SplitMix64 step (Steele, Lea & Flood 2014): used to expand a seed into a state.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s }
    }

    /// An independent stream for a named purpose (e.g. data order vs. diffusion noise), so
    /// that adding draws to one purpose does not shift the other.
    pub fn derive(seed: u64, stream: &str) -> Self {
        // FNV-1a of the stream name, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        Self::new(seed ^ h.rotate_left(17))
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Rebuilds a generator from [`Rng::state`]. An all-zero state is the one invalid state
    /// of xoshiro; it is replaced by the state of seed 0.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            return Self::new(0);
        }
        Self { s }
    }

    /// Next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe for logarithms.
    pub fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Standard normal by the Box-Muller transform (one value per call, no cached second
    /// value, so the state alone determines the stream).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform_open0();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift with rejection; unbiased).
    /// `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }

    /// `n` standard normal f32 values.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }

    /// A tensor of standard normal f32 values with the given shape.
    pub fn normal_tensor(
        &mut self,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.iter().product();
        Tensor::from_vec(self.normal_vec(n), shape, device)
    }

    /// A tensor of uniform [lo, up) f32 values with the given shape.
    pub fn uniform_tensor(
        &mut self,
        lo: f64,
        up: f64,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (lo + (up - lo) * self.uniform()) as f32)
            .collect();
        Tensor::from_vec(v, shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistical tolerance for moments of 200k draws (about 4 standard errors).
    const MOMENT_TOL: f64 = 0.01;

    #[test]
    fn splitmix64_matches_reference_vector() {
        // Reference outputs of SplitMix64 from state 0 (Vigna's splitmix64.c).
        let mut x = 0u64;
        assert_eq!(splitmix64(&mut x), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut x), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut x), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_reference_vector() {
        // Outputs of the reference xoshiro256starstar.c from state {1, 2, 3, 4}.
        let mut r = Rng::from_state([1, 2, 3, 4]);
        assert_eq!(r.next_u64(), 11520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1509978240);
        assert_eq!(r.next_u64(), 1215971899390074240);
    }

    #[test]
    fn same_seed_same_stream_and_state_roundtrip() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..10 {
            a.next_u64();
        }
        for _ in 0..10 {
            b.next_u64();
        }
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        assert_ne!(
            Rng::derive(1, "data").next_u64(),
            Rng::derive(1, "noise").next_u64()
        );
    }

    #[test]
    fn normal_and_uniform_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < MOMENT_TOL, "mean {mean}");
        assert!((var - 1.0).abs() < 2.0 * MOMENT_TOL, "var {var}");
        let us: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        let umean = us.iter().sum::<f64>() / n as f64;
        assert!((umean - 0.5).abs() < MOMENT_TOL);
        assert!(us.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = Rng::new(3);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(5);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
