//! Structural similarity (SSIM) between paired images.
//!
//! Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility
//! to structural similarity", IEEE TIP 13(4), Eq. 13 with the settings of Sec. III-C: a
//! circular-symmetric Gaussian window of standard deviation 1.5 (11x11, weights normalised
//! to 1), `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2` with `L` the dynamic range (the peak), local
//! statistics with the window's weights (no sample-size correction), and the mean SSIM
//! over every window position that fits inside the image (no padding). For several
//! channels the map is averaged over channels too. This is scikit-image's
//! `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//! data_range=L)`. Per image, then averaged over images; computed in f64.

use genlab_core::{Error, Result};

/// Standard deviation of the Gaussian window (Wang et al. 2004, Sec. III-C).
pub const SIGMA: f64 = 1.5;
/// Window radius: 11x11 (scikit-image: `int(3.5 * sigma + 0.5)`).
pub const RADIUS: usize = 5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// The normalised 1-D Gaussian weights of the (separable) window.
fn window() -> Vec<f64> {
    let w: Vec<f64> = (0..=2 * RADIUS)
        .map(|i| {
            let d = i as f64 - RADIUS as f64;
            (-d * d / (2.0 * SIGMA * SIGMA)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// Gaussian-weighted local means of `img` (`h x w`) at every valid window position:
/// `(h - 2R) x (w - 2R)` values, separably (rows, then columns).
fn local_mean(img: &[f64], h: usize, w: usize, g: &[f64]) -> Vec<f64> {
    let k = g.len();
    let (oh, ow) = (h + 1 - k, w + 1 - k);
    let mut rows = vec![0.0; h * ow];
    for y in 0..h {
        for x in 0..ow {
            rows[y * ow + x] = (0..k).map(|i| g[i] * img[y * w + x + i]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..k).map(|i| g[i] * rows[(y + i) * ow + x]).sum();
        }
    }
    out
}

/// Mean SSIM of one channel pair `a`, `b` (`h x w`).
fn ssim_channel(a: &[f64], b: &[f64], h: usize, w: usize, peak: f64) -> f64 {
    let g = window();
    let prod = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(x, y)| x * y).collect() };
    let (ma, mb) = (local_mean(a, h, w, &g), local_mean(b, h, w, &g));
    let (maa, mbb, mab) = (
        local_mean(&prod(a, a), h, w, &g),
        local_mean(&prod(b, b), h, w, &g),
        local_mean(&prod(a, b), h, w, &g),
    );
    let (c1, c2) = ((K1 * peak).powi(2), (K2 * peak).powi(2));
    let n = ma.len() as f64;
    (0..ma.len())
        .map(|i| {
            let (ua, ub) = (ma[i], mb[i]);
            let (va, vb, cov) = (maa[i] - ua * ua, mbb[i] - ub * ub, mab[i] - ua * ub);
            ((2.0 * ua * ub + c1) * (2.0 * cov + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
        })
        .sum::<f64>()
        / n
}

/// Per-image SSIM of `n` pairs of `[C, H, W]` images (`a`, `b` hold `n * c * h * w` values
/// in [0, `peak`]). Images must be at least 11 pixels a side.
pub fn ssim_per_image(
    a: &[f32],
    b: &[f32],
    n: usize,
    chw: [usize; 3],
    peak: f64,
) -> Result<Vec<f64>> {
    let [c, h, w] = chw;
    let d = c * h * w;
    if a.len() != b.len() || n == 0 || a.len() != n * d {
        return Err(Error::InvalidInput(format!(
            "SSIM needs two sets of {n} images of {c}x{h}x{w} values, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    let k = 2 * RADIUS + 1;
    if h < k || w < k {
        return Err(Error::InvalidInput(format!(
            "SSIM's {k}x{k} Gaussian window needs images at least {k} pixels a side, got {h}x{w}"
        )));
    }
    let to64 = |s: &[f32]| -> Vec<f64> { s.iter().map(|&v| v as f64).collect() };
    Ok((0..n)
        .map(|i| {
            (0..c)
                .map(|ch| {
                    let off = i * d + ch * h * w;
                    ssim_channel(
                        &to64(&a[off..off + h * w]),
                        &to64(&b[off..off + h * w]),
                        h,
                        w,
                        peak,
                    )
                })
                .sum::<f64>()
                / c as f64
        })
        .collect())
}

/// The mean of [`ssim_per_image`].
pub fn ssim(a: &[f32], b: &[f32], n: usize, chw: [usize; 3], peak: f64) -> Result<f64> {
    let v = ssim_per_image(a, b, n, chw, peak)?;
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SSIM straight from Eq. 13 with a 2-D window, every statistic summed directly.
    fn brute(a: &[f64], b: &[f64], h: usize, w: usize, peak: f64) -> f64 {
        let k = 2 * RADIUS + 1;
        let mut win = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                let (di, dj) = (i as f64 - RADIUS as f64, j as f64 - RADIUS as f64);
                win[i * k + j] = (-(di * di + dj * dj) / (2.0 * SIGMA * SIGMA)).exp();
            }
        }
        let s: f64 = win.iter().sum();
        win.iter_mut().for_each(|v| *v /= s);
        let (c1, c2) = ((0.01 * peak).powi(2), (0.03 * peak).powi(2));
        let mut total = 0.0;
        let mut count = 0.0;
        for y in 0..=h - k {
            for x in 0..=w - k {
                let (mut ua, mut ub) = (0.0, 0.0);
                for i in 0..k {
                    for j in 0..k {
                        ua += win[i * k + j] * a[(y + i) * w + x + j];
                        ub += win[i * k + j] * b[(y + i) * w + x + j];
                    }
                }
                let (mut va, mut vb, mut cov) = (0.0, 0.0, 0.0);
                for i in 0..k {
                    for j in 0..k {
                        let (p, q) = (a[(y + i) * w + x + j] - ua, b[(y + i) * w + x + j] - ub);
                        va += win[i * k + j] * p * p;
                        vb += win[i * k + j] * q * q;
                        cov += win[i * k + j] * p * q;
                    }
                }
                total += ((2.0 * ua * ub + c1) * (2.0 * cov + c2))
                    / ((ua * ua + ub * ub + c1) * (va + vb + c2));
                count += 1.0;
            }
        }
        total / count
    }

    /// A fixed pseudo-random image in [0, 1] (no RNG dependence).
    fn image(h: usize, w: usize, salt: u64) -> Vec<f32> {
        (0..h * w)
            .map(|i| {
                let v = (i as u64 + 1)
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(salt);
                ((v >> 33) % 1000) as f32 / 999.0
            })
            .collect()
    }

    /// Tolerance against the brute-force f64 computation: only summation order differs.
    const TOL: f64 = 1e-10;

    #[test]
    fn separable_windows_match_the_direct_sums() {
        let (h, w) = (16, 13);
        let a = image(h, w, 1);
        let b: Vec<f32> = a
            .iter()
            .zip(image(h, w, 2))
            .map(|(x, y)| 0.7 * x + 0.3 * y)
            .collect();
        let got = ssim(&a, &b, 1, [1, h, w], 1.0).unwrap();
        let to64 = |s: &[f32]| -> Vec<f64> { s.iter().map(|&v| v as f64).collect() };
        let want = brute(&to64(&a), &to64(&b), h, w, 1.0);
        assert!((got - want).abs() < TOL, "{got} vs {want}");
        assert!(got > 0.0 && got < 1.0);
    }

    #[test]
    fn identical_images_score_one_and_bad_sizes_fail() {
        let a = image(12, 12, 3);
        assert!((ssim(&a, &a, 1, [1, 12, 12], 1.0).unwrap() - 1.0).abs() < 1e-12);
        assert!(ssim(&a[..100], &a[..100], 1, [1, 10, 10], 1.0).is_err());
        assert!(ssim(&a, &a, 2, [1, 12, 12], 1.0).is_err());
    }
}
