//! Image resizing as matrices: area averaging and bicubic convolution.
//!
//! Bicubic: Keys 1981, "Cubic convolution interpolation for digital image processing", IEEE
//! Trans. ASSP 29(6), Eq. (15) with free parameter `a` (the kernel W below). PyTorch's
//! `interpolate(mode="bicubic", align_corners=False)` and OpenCV use a = -0.75; Keys' own
//! choice (third-order accurate, PIL and MATLAB) is a = -0.5. The sampling convention is
//! theirs: output pixel i's centre sits at input coordinate (i + 0.5) * in / out - 0.5, and
//! taps outside the image repeat the border pixel.
//!
//! Area: each output pixel is the mean of the `in / out` x `in / out` block it covers (an
//! integer factor; PyTorch's `adaptive_avg_pool2d` / "area" for such sizes).
//!
//! A resize along one axis is a linear map, so it is a matrix `[out, in]` (built in f64,
//! rule 4) and an image resize is `R x C^T` per channel: two matrix products.

use candle_core::{DType, Tensor};

/// PyTorch's and OpenCV's bicubic parameter.
pub const BICUBIC_A_TORCH: f64 = -0.75;

/// Keys' cubic convolution kernel W(s) with parameter `a` (Keys 1981, Eq. 15).
pub fn cubic_kernel(s: f64, a: f64) -> f64 {
    let s = s.abs();
    if s <= 1.0 {
        (a + 2.0) * s.powi(3) - (a + 3.0) * s * s + 1.0
    } else if s < 2.0 {
        a * s.powi(3) - 5.0 * a * s * s + 8.0 * a * s - 4.0 * a
    } else {
        0.0
    }
}

/// The `[n_out, n_in]` matrix of bicubic resampling along one axis (row-major).
pub fn bicubic_matrix(n_in: usize, n_out: usize, a: f64) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for i in 0..n_out {
        let x = (i as f64 + 0.5) * scale - 0.5;
        let x0 = x.floor();
        let t = x - x0;
        for k in -1i64..=2 {
            let w = cubic_kernel(t - k as f64, a);
            // Taps beyond the border repeat the edge pixel.
            let j = (x0 as i64 + k).clamp(0, n_in as i64 - 1) as usize;
            m[i * n_in + j] += w;
        }
    }
    m
}

/// The `[n_out, n_in]` matrix of area averaging along one axis; `n_in` must be a multiple of
/// `n_out`.
pub fn area_matrix(n_in: usize, n_out: usize) -> candle_core::Result<Vec<f64>> {
    if n_out == 0 || n_in % n_out != 0 {
        candle_core::bail!("area resizing needs an integer factor: {n_in} -> {n_out}")
    }
    let f = n_in / n_out;
    let mut m = vec![0.0; n_out * n_in];
    for i in 0..n_out {
        for j in i * f..(i + 1) * f {
            m[i * n_in + j] = 1.0 / f as f64;
        }
    }
    Ok(m)
}

/// Applies the row matrix `rows` (`[oh, h]`) and the column matrix `cols` (`[ow, w]`) to the
/// images `x` (`[B, C, h, w]`): `[B, C, oh, ow]`, on `x`'s device and dtype.
pub fn resize_with(
    x: &Tensor,
    rows: &[f64],
    cols: &[f64],
    (oh, ow): (usize, usize),
) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if rows.len() != oh * h || cols.len() != ow * w {
        candle_core::bail!("resize matrices do not match {h}x{w} -> {oh}x{ow}")
    }
    let mat = |v: &[f64], r: usize, k: usize| -> candle_core::Result<Tensor> {
        let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        Tensor::from_vec(v, (r, k), x.device())?.to_dtype(x.dtype())
    };
    let r = mat(rows, oh, h)?;
    let ct = mat(cols, ow, w)?.t()?;
    // [B*C*h, w] x [w, ow] -> [B*C, h, ow]
    let xc = x
        .reshape((b * c * h, w))?
        .matmul(&ct)?
        .reshape((b * c, h, ow))?;
    // [oh, h] x [B*C, h, ow] -> [B*C, oh, ow]
    let y = r.unsqueeze(0)?.broadcast_as((b * c, oh, h))?.matmul(&xc)?;
    y.reshape((b, c, oh, ow))
}

/// Bicubic resize of `[B, C, H, W]` images to `oh x ow` with Keys' parameter `a`.
pub fn bicubic(x: &Tensor, (oh, ow): (usize, usize), a: f64) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let x = x.to_dtype(DType::F32)?;
    resize_with(
        &x,
        &bicubic_matrix(h, oh, a),
        &bicubic_matrix(w, ow, a),
        (oh, ow),
    )
}

/// Area-average downsampling of `[B, C, H, W]` images to `oh x ow` (integer factors).
pub fn area(x: &Tensor, (oh, ow): (usize, usize)) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let x = x.to_dtype(DType::F32)?;
    resize_with(&x, &area_matrix(h, oh)?, &area_matrix(w, ow)?, (oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 matrix products of values near 1.
    const TOL: f32 = 1e-5;

    fn img(h: usize, w: usize, f: impl Fn(usize, usize) -> f32) -> Tensor {
        let v: Vec<f32> = (0..h * w).map(|k| f(k / w, k % w)).collect();
        Tensor::from_vec(v, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn the_kernel_interpolates_and_sums_to_one() {
        for a in [-0.5, -0.75] {
            assert_eq!(cubic_kernel(0.0, a), 1.0);
            for s in [1.0, 2.0, 2.5] {
                assert!(cubic_kernel(s, a).abs() < 1e-12);
            }
            // Partition of unity: the four taps of any offset sum to one.
            for t in [0.0, 0.1, 0.37, 0.5, 0.9] {
                let sum: f64 = (-1..=2).map(|k| cubic_kernel(t - k as f64, a)).sum();
                assert!((sum - 1.0).abs() < 1e-12, "a={a} t={t}: {sum}");
            }
        }
        // Keys' Eq. 15 at s = 0.5, a = -0.5 by hand: 1.5/8 - 2.5/4 + 1 = 0.5625.
        assert!((cubic_kernel(0.5, -0.5) - 0.5625).abs() < 1e-12);
        // And at s = 1.5: -0.5*3.375 + 2.5*2.25 - 4*1.5 + 2 = -0.0625.
        assert!((cubic_kernel(1.5, -0.5) + 0.0625).abs() < 1e-12);
    }

    #[test]
    fn bicubic_reproduces_ramps_away_from_the_border_and_constants_everywhere() {
        // A linear ramp in input coordinates stays linear in the mapped output coordinates
        // wherever all four taps are inside the image: with a = -0.5 the kernel reproduces
        // polynomials up to degree 2 (Keys 1981, Sec. III; other values of a only constants).
        let (h, oh) = (7usize, 28usize);
        let x = img(h, h, |i, j| 0.1 * i as f32 + 0.05 * j as f32 + 0.2);
        {
            let a = -0.5;
            let y = values(&bicubic(&x, (oh, oh), a).unwrap());
            let scale = h as f64 / oh as f64;
            let coord = |i: usize| (i as f64 + 0.5) * scale - 0.5;
            for i in 0..oh {
                for j in 0..oh {
                    let (ci, cj) = (coord(i), coord(j));
                    let inside = |c: f64| c >= 1.0 && c <= h as f64 - 2.0;
                    if inside(ci) && inside(cj) {
                        let want = (0.1 * ci + 0.05 * cj + 0.2) as f32;
                        let got = y[i * oh + j];
                        assert!((got - want).abs() < TOL, "({i},{j}): {got} vs {want}");
                    }
                }
            }
        }
        for a in [-0.5, BICUBIC_A_TORCH] {
            let c = values(&bicubic(&img(5, 3, |_, _| 0.7), (9, 11), a).unwrap());
            assert!(c.iter().all(|v| (v - 0.7).abs() < TOL));
        }
    }

    #[test]
    fn bicubic_matches_a_hand_computed_tap_sum() {
        // 2 -> 4 with a = -0.75: output 1 sits at (1.5) * 0.5 - 0.5 = 0.25, taps at -1, 0, 1,
        // 2 (clamped to 0, 0, 1, 1) with weights W(1.25), W(0.25), W(0.75), W(1.75).
        let a = BICUBIC_A_TORCH;
        let w = |s| cubic_kernel(s, a);
        let (p, q) = (1.0, 3.0);
        let want = (w(1.25) + w(0.25)) * p + (w(0.75) + w(1.75)) * q;
        let x = Tensor::from_vec(vec![p as f32, q as f32], (1, 1, 1, 2), &Device::Cpu).unwrap();
        let y = values(&bicubic(&x, (1, 4), a).unwrap());
        assert!((y[1] as f64 - want).abs() < 1e-6, "{} vs {want}", y[1]);
    }

    #[test]
    fn area_averages_blocks_and_needs_integer_factors() {
        let x = img(4, 4, |i, j| (i * 4 + j) as f32);
        let y = values(&area(&x, (2, 2)).unwrap());
        // Block means of 0..16 laid out 4x4: (0+1+4+5)/4, (2+3+6+7)/4, ...
        assert_eq!(y, vec![2.5, 4.5, 10.5, 12.5]);
        assert!(area(&x, (3, 3)).is_err());
    }
}
