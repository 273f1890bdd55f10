//! Image augmentations on one host example `[C, H, W]` (values in [0, 1]), each drawing its
//! randomness from `genlab_core::Rng`, adapted to centred digits (no flips: a flipped digit
//! is another symbol or none).
//!
//! - [`weak`]: FixMatch's weak augmentation (Sohn et al. 2020, arXiv:2001.07685, section
//!   2.3: flip and translate by up to 12.5%), without the flip;
//! - [`strong`]: FixMatch's strong augmentation, a RandAugment-like (Cubuk et al. 2019,
//!   arXiv:1909.13719) draw of two of {contrast, brightness, noise, translate} at random
//!   magnitudes, then Cutout (DeVries & Taylor 2017, arXiv:1708.04552) of half the side;
//! - [`simclr`]: SimCLR's view (Chen et al. 2020, arXiv:2002.05709, appendix A): random
//!   resized crop (area 30-100% for digits instead of 8-100%, aspect 3/4-4/3), bilinear
//!   resampling, then a brightness/contrast jitter (colour jitter without hue on grey).

use genlab_core::Rng;

/// Translates by `(dx, dy)` pixels (positive: right, down), filling with 0.
pub fn shift(x: &mut [f32], shape: [usize; 3], dx: i64, dy: i64) {
    let [c, h, w] = shape;
    let src = x.to_vec();
    for ch in 0..c {
        for i in 0..h as i64 {
            for j in 0..w as i64 {
                let (si, sj) = (i - dy, j - dx);
                let v = if si >= 0 && sj >= 0 && si < h as i64 && sj < w as i64 {
                    src[ch * h * w + si as usize * w + sj as usize]
                } else {
                    0.0
                };
                x[ch * h * w + i as usize * w + j as usize] = v;
            }
        }
    }
}

/// A random translation by up to `frac` of the side in each direction.
pub fn random_shift(x: &mut [f32], shape: [usize; 3], frac: f64, rng: &mut Rng) {
    let m = (frac * shape[1].min(shape[2]) as f64).round() as i64;
    if m == 0 {
        return;
    }
    let dx = rng.below(2 * m as u64 + 1) as i64 - m;
    let dy = rng.below(2 * m as u64 + 1) as i64 - m;
    shift(x, shape, dx, dy);
}

/// Zeroes a `size`x`size` square centred at a uniform pixel (clipped at the borders).
pub fn cutout(x: &mut [f32], shape: [usize; 3], size: usize, rng: &mut Rng) {
    let [c, h, w] = shape;
    let ci = rng.below(h as u64) as i64;
    let cj = rng.below(w as u64) as i64;
    let half = size as i64 / 2;
    for ch in 0..c {
        for i in (ci - half).max(0)..(ci - half + size as i64).min(h as i64) {
            for j in (cj - half).max(0)..(cj - half + size as i64).min(w as i64) {
                x[ch * h * w + i as usize * w + j as usize] = 0.0;
            }
        }
    }
}

/// `clamp(a * (x - 0.5) + 0.5 + b, 0, 1)`: contrast `a`, brightness `b`.
pub fn jitter(x: &mut [f32], contrast: f64, brightness: f64) {
    for v in x.iter_mut() {
        *v = ((contrast * (*v as f64 - 0.5) + 0.5 + brightness).clamp(0.0, 1.0)) as f32;
    }
}

/// Crops the box `top, left, height, width` (real pixel coordinates) and resamples it
/// bilinearly to the full size (pixel centres aligned, as `align_corners=False`).
pub fn crop_resize(x: &mut [f32], shape: [usize; 3], top: f64, left: f64, ch_: f64, cw: f64) {
    let [c, h, w] = shape;
    let src = x.to_vec();
    let at = |ch: usize, i: i64, j: i64| -> f64 {
        let i = i.clamp(0, h as i64 - 1) as usize;
        let j = j.clamp(0, w as i64 - 1) as usize;
        src[ch * h * w + i * w + j] as f64
    };
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let y = top + (i as f64 + 0.5) * ch_ / h as f64 - 0.5;
                let xx = left + (j as f64 + 0.5) * cw / w as f64 - 0.5;
                let (y0, x0) = (y.floor(), xx.floor());
                let (fy, fx) = (y - y0, xx - x0);
                let (y0, x0) = (y0 as i64, x0 as i64);
                let v = (1.0 - fy) * ((1.0 - fx) * at(ch, y0, x0) + fx * at(ch, y0, x0 + 1))
                    + fy * ((1.0 - fx) * at(ch, y0 + 1, x0) + fx * at(ch, y0 + 1, x0 + 1));
                x[ch * h * w + i * w + j] = v as f32;
            }
        }
    }
}

/// FixMatch's weak augmentation for digits: translate by up to 12.5%.
pub fn weak(x: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
    random_shift(x, shape, 0.125, rng);
}

/// FixMatch's strong augmentation for digits (see the module documentation).
pub fn strong(x: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
    for _ in 0..2 {
        match rng.below(4) {
            0 => jitter(x, 0.5 + rng.uniform(), 0.0),
            1 => jitter(x, 1.0, 0.6 * rng.uniform() - 0.3),
            2 => {
                let s = 0.3 * rng.uniform();
                for v in x.iter_mut() {
                    *v = (*v as f64 + s * rng.normal()).clamp(0.0, 1.0) as f32;
                }
            }
            _ => random_shift(x, shape, 0.2, rng),
        }
    }
    cutout(x, shape, shape[1].min(shape[2]) / 2, rng);
}

/// SimCLR's view for digits (see the module documentation).
pub fn simclr(x: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
    let (h, w) = (shape[1] as f64, shape[2] as f64);
    let area = (0.3 + 0.7 * rng.uniform()) * h * w;
    let ratio = ((0.75f64).ln() + rng.uniform() * ((4.0f64 / 3.0).ln() - (0.75f64).ln())).exp();
    let ch = (area / ratio).sqrt().min(h);
    let cw = (area * ratio).sqrt().min(w);
    let top = rng.uniform() * (h - ch);
    let left = rng.uniform() * (w - cw);
    crop_resize(x, shape, top, left, ch, cw);
    if rng.uniform() < 0.8 {
        jitter(x, 0.6 + 0.8 * rng.uniform(), 0.8 * rng.uniform() - 0.4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..2 * 5 * 6).map(|_| r.uniform() as f32).collect()
    }

    #[test]
    fn shift_moves_pixels_and_fills_zeros() {
        let x = image(1);
        let mut y = x.clone();
        shift(&mut y, [2, 5, 6], 2, -1);
        for c in 0..2 {
            for i in 0..5i64 {
                for j in 0..6i64 {
                    let (si, sj) = (i + 1, j - 2);
                    let want = if (0..5).contains(&si) && (0..6).contains(&sj) {
                        x[c * 30 + si as usize * 6 + sj as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(y[c * 30 + i as usize * 6 + j as usize], want);
                }
            }
        }
    }

    #[test]
    fn full_crop_is_the_identity_and_a_half_crop_upsamples() {
        let x = image(2);
        let mut y = x.clone();
        crop_resize(&mut y, [2, 5, 6], 0.0, 0.0, 5.0, 6.0);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6);
        }
        // A constant image stays constant under any crop.
        let mut z = vec![0.3f32; 60];
        crop_resize(&mut z, [2, 5, 6], 1.2, 0.7, 2.5, 3.1);
        assert!(z.iter().all(|&v| (v - 0.3).abs() < 1e-6));
    }

    #[test]
    fn cutout_zeroes_a_square_and_views_stay_in_range() {
        let mut x = vec![1.0f32; 28 * 28];
        cutout(&mut x, [1, 28, 28], 4, &mut Rng::new(3));
        let zeros = x.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros <= 16, "{zeros}");
        let mut r = Rng::new(4);
        for _ in 0..20 {
            let mut v = image(5);
            strong(&mut v, [2, 5, 6], &mut r);
            simclr(&mut v, [2, 5, 6], &mut r);
            assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
        }
    }
}
