//! Peak signal-to-noise ratio between paired images: how close a reconstruction
//! (super-resolution, inpainting) is to its original, pixel by pixel.
//!
//! PSNR = 10 log10(peak^2 / MSE) in dB (e.g. Wang et al. 2004, "Image quality assessment:
//! from error visibility to structural similarity", IEEE TIP 13(4), Sec. I), computed per
//! image and averaged over images, as super-resolution papers report it (SR3, Saharia et
//! al. 2021, Table 1). A pair that is identical has infinite PSNR; its MSE is floored at
//! `MSE_FLOOR` (peak 1: 100 dB) so the mean stays finite. Computed in f64.

use genlab_core::{Error, Result};

/// The smallest MSE counted (100 dB at peak 1): identical images would otherwise make the
/// mean infinite.
pub const MSE_FLOOR: f64 = 1e-10;

/// Per-image PSNR (dB) of `n` pairs of images, each `a` and `b` holding `n` images of
/// `a.len() / n` values in [0, `peak`].
pub fn psnr_per_image(a: &[f32], b: &[f32], n: usize, peak: f64) -> Result<Vec<f64>> {
    if a.len() != b.len() || n == 0 || !a.len().is_multiple_of(n) || a.is_empty() {
        return Err(Error::InvalidInput(format!(
            "PSNR needs two sets of {n} images of the same size, got {} and {} values",
            a.len(),
            b.len()
        )));
    }
    let d = a.len() / n;
    Ok(a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let mse = x
                .iter()
                .zip(y)
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum::<f64>()
                / d as f64;
            10.0 * (peak * peak / mse.max(MSE_FLOOR)).log10()
        })
        .collect())
}

/// The mean over images of [`psnr_per_image`].
pub fn psnr(a: &[f32], b: &[f32], n: usize, peak: f64) -> Result<f64> {
    let v = psnr_per_image(a, b, n, peak)?;
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 arithmetic on a handful of values.
    const TOL: f64 = 1e-9;

    #[test]
    fn psnr_is_ten_log10_of_peak_squared_over_the_mse() {
        // Image 1 differs by 0.1 everywhere (MSE 0.01: 20 dB); image 2 by 0.5 in one of its
        // four pixels (MSE 0.0625: 12.0412 dB).
        let a = [0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let b = [0.1f32, 0.1, 0.1, 0.1, 0.5, 1.0, 1.0, 1.0];
        let v = psnr_per_image(&a, &b, 2, 1.0).unwrap();
        assert!((v[0] - 20.0).abs() < 1e-5, "{}", v[0]); // 0.1 in f32
        assert!((v[1] - 10.0 * (1.0f64 / 0.0625).log10()).abs() < TOL);
        let m = psnr(&a, &b, 2, 1.0).unwrap();
        assert!((m - (v[0] + v[1]) / 2.0).abs() < TOL);
        // Peak 255 adds 20 log10(255) dB; identical images hit the floor.
        let v255 = psnr_per_image(&a, &b, 2, 255.0).unwrap();
        assert!((v255[1] - v[1] - 20.0 * 255f64.log10()).abs() < TOL);
        assert!((psnr(&a, &a, 2, 1.0).unwrap() - 100.0).abs() < TOL);
        assert!(psnr(&a, &b[..4], 2, 1.0).is_err());
        assert!(psnr(&a, &b, 3, 1.0).is_err());
    }
}
