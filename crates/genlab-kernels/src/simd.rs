//! Vectorised inner loops without intrinsics: plain slice loops written so that LLVM
//! vectorises them, compiled three times (AVX-512F, AVX2+FMA, the baseline target) and
//! picked at run time by [`multiversion!`].
//!
//! No paper: the function-multiversioning technique of GCC's `target_clones`, done by hand.
//! The workspace targets plain x86-64 (SSE2), so without this the loops would use 4 of the
//! 16 f32 lanes an AVX-512 core has.
//!
//! Also here: [`exp_f32`], the Cephes `expf` (Moshier 1992, "Methods and Programs for
//! Mathematical Functions"): `x = n·ln2 + r`, `|r| <= ln2/2`, `e^r` by a degree-6
//! polynomial, `2^n` written into the exponent bits, all branch-free so that it vectorises.
//! Relative error below 2e-7 over the whole finite range (tested).

/// Defines `fn NAME(ARGS) -> RET { BODY }` that runs BODY compiled for AVX-512F when the CPU
/// has it, else for AVX2+FMA, else for the baseline target. BODY must be safe code.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($a: $t),*) $(-> $r)? { body($($a),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($a: $t),*) $(-> $r)? { body($($a),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above); BODY is safe.
                    return unsafe { v4($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { v3($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}
pub(crate) use multiversion;

/// `e^x` for f32, branch-free (see the module docs). Inputs are clamped to
/// `[-87.3, 88.3]`, so finite inputs never give NaN or infinity (`e^-87.3` ~ 1.2e-38).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and a correction (Cody-Waite).
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    // t = n + 1.5·2^23 exactly; its low mantissa bits hold n (two's complement), read out
    // by reinterpreting the bits: no float-to-int conversion, so the loop vectorises.
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * C1 - n * C2;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let e_r = p * r * r + r + 1.0;
    // 2^n: n in [-126, 127] after the clamp (88.3·log2 e = 127.4 rounds to 127; 88.7 would
    // round to 128, whose exponent bits are infinity).
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits());
    let bits = n_int.wrapping_add(127) << 23;
    e_r * f32::from_bits(bits)
}

/// `σ(y) = 1 / (1 + e^-y)`.
#[inline(always)]
pub(crate) fn sigmoid_f32(y: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-y))
}

/// Lanes of the f64 accumulators in [`sum_f64`] and [`sum_sq_dev_f64`] (one AVX-512
/// register of f64).
const LANES: usize = 8;

/// `Σ x` accumulated in f64 over independent lanes (vectorisable).
#[inline(always)]
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| v as f64).sum::<f64>()
}

/// `Σ (x - mean)²` accumulated in f64 over independent lanes.
#[inline(always)]
pub(crate) fn sum_sq_dev_f64(x: &[f32], mean: f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            let d = c[i] as f64 - mean;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of the polynomial `exp` against f64's.
    const EXP_REL_TOL: f64 = 2e-7;

    #[test]
    fn exp_matches_f64_over_the_whole_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.3 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.01;
        }
        assert!(worst < EXP_REL_TOL, "worst relative error {worst}");
        // Clamped ends: finite, no NaN.
        assert!(exp_f32(-1e30).is_finite() && exp_f32(-1e30) >= 0.0);
        assert!(exp_f32(1e30).is_finite());
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    multiversion! {
        fn dispatched_sum(x: &[f32]) -> f64 { sum_f64(x) }
    }

    #[test]
    fn sums_match_plain_loops() {
        let x: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() + 0.5).collect();
        let plain: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((dispatched_sum(&x) - plain).abs() < 1e-9);
        let mean = plain / x.len() as f64;
        let dev: f64 = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        assert!((sum_sq_dev_f64(&x, mean) - dev).abs() < 1e-9);
    }
}
