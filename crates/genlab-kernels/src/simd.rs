//! Vectorised inner loops without intrinsics, and the branch-free `exp` they use.
//!
//! [`simd_dispatch!`]: plain slice loops written so that LLVM vectorises them, compiled
//! three times (AVX-512F, AVX2+FMA, the baseline target) and picked at run time: the
//! function-multiversioning technique of GCC's `target_clones`, done by hand. The workspace
//! targets plain x86-64 (SSE2), so without it the loops would use 4 of the 16 f32 lanes an
//! AVX-512 core has.
//!
//! [`exp_approx`]: the Cephes `expf` (Moshier 1992, "Methods and Programs for Mathematical
//! Functions"): `x = n·ln2 + r`, `|r| <= ln2/2`, `e^r` by a degree-6 polynomial, `2^n`
//! written into the exponent bits; used by SiLU, GroupNorm+SiLU and the attention softmax.

/// Defines `$name(args)` that calls the `#[inline(always)]` kernel `$body(args)` compiled
/// for AVX-512 or AVX2+FMA when the CPU has them (runtime check), else the baseline build.
/// The kernels are written with fixed-width lane arrays and use only correctly rounded
/// operations (`mul_add` included), so every build sums in the same order and gives
/// bit-identical results.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? => $body:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, the only feature `v4` assumes.
                    return unsafe { v4($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA, the features `v3` assumes.
                    return unsafe { v3($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Lane count of the vectorisable reductions (fixed, so results do not depend on the ISA).
pub(crate) const LANES: usize = 16;

/// `e^x` for f32, Cephes `expf`: `x = n ln2 + r`, `|r| <= ln2/2`, degree-6 polynomial in
/// `r`, times `2^n` built in the exponent bits. Relative error < 3e-7 (tested) for
/// `x in [-87.3, 88.3]`; `x` below is clamped to -87.3 (gives ~1e-38 instead of a
/// denormal or 0), above to 88.3. NaN propagates. Branch-free, so loops over it vectorise.
/// `mul_add` is one rounding everywhere (hardware FMA in the AVX2 / AVX-512 builds of
/// [`simd_dispatch`], libm `fmaf` in the baseline one), so all builds agree bit for bit.
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LO: f32 = -87.336_54;
    const HI: f32 = 88.376_26;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Comparisons are false for NaN, so NaN passes through the clamps.
    let x = if x < LO { LO } else { x };
    let x = if x > HI { HI } else { x };
    // t = 1.5 * 2^23 + n exactly, so n also sits in the low mantissa bits of t.
    let t = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2^n from the integer n in t's bits (no float -> int cast, which would not
    // vectorise); n in [-126, 127] gives a normal power of two. For NaN, y is NaN anyway.
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    y * pow2
}

/// Max of the lanes, reduced as a tree (fixed order).
#[inline(always)]
pub(crate) fn hmax(mut m: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        let (lo, hi) = m.split_at_mut(w);
        for (a, &b) in lo.iter_mut().zip(hi.iter()) {
            *a = if b > *a { b } else { *a };
        }
        w /= 2;
    }
    m[0]
}

/// Sum of the lanes, reduced as a tree (fixed order).
#[inline(always)]
pub(crate) fn hsum(mut s: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        let (lo, hi) = s.split_at_mut(w);
        for (a, &b) in lo.iter_mut().zip(hi.iter()) {
            *a += b;
        }
        w /= 2;
    }
    s[0]
}

/// The last `< LANES` elements of a slice, padded with `fill` to a full lane array
/// (element by element: a `memcpy` call here costs more than the row's arithmetic).
#[inline(always)]
pub(crate) fn padded(rem: &[f32], fill: f32) -> [f32; LANES] {
    std::array::from_fn(|i| if i < rem.len() { rem[i] } else { fill })
}

/// `sum_j a[j] * b[j]` with lane-wise partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let lanes_fma = |s: &mut [f32; LANES], x: &[f32], y: &[f32]| {
        for ((si, &xi), &yi) in s.iter_mut().zip(x).zip(y) {
            *si += xi * yi;
        }
    };
    for (x, y) in ca.zip(cb) {
        lanes_fma(&mut s, x, y);
    }
    if !ra.is_empty() {
        lanes_fma(&mut s, &padded(ra, 0.0), &padded(rb, 0.0));
    }
    hsum(s)
}

/// `σ(y) = 1 / (1 + e^-y)`.
#[inline(always)]
pub(crate) fn sigmoid_f32(y: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-y))
}

/// Lanes of the f64 accumulators in [`sum_f64`] and [`sum_sq_dev_f64`] (one AVX-512
/// register of f64).
const F64_LANES: usize = 8;

/// `Σ x` accumulated in f64 over independent lanes (vectorisable).
#[inline(always)]
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; F64_LANES];
    let chunks = x.chunks_exact(F64_LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..F64_LANES {
            acc[i] += c[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| v as f64).sum::<f64>()
}

/// `Σ (x - mean)²` accumulated in f64 over independent lanes.
#[inline(always)]
pub(crate) fn sum_sq_dev_f64(x: &[f32], mean: f64) -> f64 {
    let mut acc = [0f64; F64_LANES];
    let chunks = x.chunks_exact(F64_LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..F64_LANES {
            let d = c[i] as f64 - mean;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "exp_approx worst relative error {worst}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert!(exp_approx(f32::NAN).is_nan());
        assert!(exp_approx(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn exp_is_finite_at_the_clamped_ends() {
        assert!(exp_approx(-1e30).is_finite() && exp_approx(-1e30) >= 0.0);
        assert!(exp_approx(1e30).is_finite());
    }

    #[inline(always)]
    fn sum_body(x: &[f32]) -> f64 {
        sum_f64(x)
    }

    simd_dispatch!(fn dispatched_sum(x: &[f32]) -> f64 => sum_body);

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
