//! MNIST-style framing of a digit (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based
//! Learning Applied to Document Recognition", Proc. IEEE 86(11); the MNIST page: "the images
//! were size normalized to fit in a 20x20 pixel box while preserving their aspect ratio ...
//! centered in a 28x28 image by computing the center of mass of the pixels, and translating
//! the image so as to position this point at the center of the 28x28 field").
//!
//! A Moving MNIST frame holds a smaller digit somewhere in a larger canvas; the MNIST
//! classifier was trained on the framing above, so each frame is put into it first:
//! 1. crop the ink's bounding box (pixels at least [`super::INK_THRESHOLD`]);
//! 2. resize the crop so that its longer side is [`BOX`] pixels, keeping the aspect ratio,
//!    with an anti-aliasing filter ([`resample`]: the bilinear interpolant averaged over
//!    each output pixel's footprint, which is area averaging when shrinking and bilinear
//!    when enlarging);
//! 3. paste it into a [`FIELD`] x [`FIELD`] canvas by the integer translation that puts its
//!    centre of mass nearest to the field's centre (13.5, 13.5) in pixel-centre coordinates.

use super::ink;

/// Side of the box the digit is scaled to fit.
pub const BOX: usize = 20;
/// Side of the field it is centred in.
pub const FIELD: usize = 28;

/// Sample points per output pixel and axis for every input pixel its footprint spans: 4
/// keeps the sampled average within about 1% of the exact footprint integral of the
/// bilinear interpolant (its error falls as 1/n^2 for a piecewise-linear function).
const SUPERSAMPLE: usize = 4;

/// Resizes a row-major `h x w` image to `oh x ow`: each output pixel is the mean of the
/// bilinear interpolant of the input (pixel centres at integer + 0.5, edges clamped) over the
/// output pixel's footprint, sampled on a regular grid.
pub fn resample(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let ny = SUPERSAMPLE * h.div_ceil(oh).max(1);
    let nx = SUPERSAMPLE * w.div_ceil(ow).max(1);
    let sy = h as f64 / oh as f64;
    let sx = w as f64 / ow as f64;
    // Bilinear weights of every sample coordinate along one axis: (i0, i1, frac).
    let taps = |n: usize, out: usize, scale: f64, len: usize| -> Vec<(usize, usize, f64)> {
        let mut v = Vec::with_capacity(out * n);
        for o in 0..out {
            for a in 0..n {
                let x = (o as f64 + (a as f64 + 0.5) / n as f64) * scale - 0.5;
                let x = x.clamp(0.0, (len - 1) as f64);
                let i0 = x.floor() as usize;
                let i1 = (i0 + 1).min(len - 1);
                v.push((i0, i1, x - i0 as f64));
            }
        }
        v
    };
    let ty = taps(ny, oh, sy, h);
    let tx = taps(nx, ow, sx, w);
    let at = |r: usize, c: usize| src[r * w + c] as f64;
    let mut out = vec![0f32; oh * ow];
    for i in 0..oh {
        for j in 0..ow {
            let mut s = 0.0;
            for &(r0, r1, fy) in &ty[i * ny..(i + 1) * ny] {
                for &(c0, c1, fx) in &tx[j * nx..(j + 1) * nx] {
                    let top = at(r0, c0) * (1.0 - fx) + at(r0, c1) * fx;
                    let bot = at(r1, c0) * (1.0 - fx) + at(r1, c1) * fx;
                    s += top * (1.0 - fy) + bot * fy;
                }
            }
            out[i * ow + j] = (s / (ny * nx) as f64) as f32;
        }
    }
    out
}

/// The MNIST framing ([`FIELD`]^2 values, row-major) of the digit in a grey `h x w` frame,
/// or `None` when the frame has no ink.
pub fn normalise(frame: &[f32], h: usize, w: usize) -> Option<Vec<f32>> {
    let k = ink(frame, h, w)?;
    let (bh, bw) = (k.max[0] - k.min[0] + 1, k.max[1] - k.min[1] + 1);
    let mut crop = Vec::with_capacity(bh * bw);
    for r in k.min[0]..=k.max[0] {
        crop.extend_from_slice(&frame[r * w + k.min[1]..r * w + k.max[1] + 1]);
    }
    let scale = BOX as f64 / bh.max(bw) as f64;
    let oh = ((bh as f64 * scale).round() as usize).clamp(1, BOX);
    let ow = ((bw as f64 * scale).round() as usize).clamp(1, BOX);
    let patch = resample(&crop, bh, bw, oh, ow);
    // Centre of mass of the resized patch (all its pixels, as the MNIST recipe says).
    let (mut m, mut sr, mut sc) = (0.0f64, 0.0f64, 0.0f64);
    for r in 0..oh {
        for c in 0..ow {
            let v = patch[r * ow + c].max(0.0) as f64;
            m += v;
            sr += v * r as f64;
            sc += v * c as f64;
        }
    }
    let centre = (FIELD as f64 - 1.0) / 2.0;
    let (dr, dc) = if m > 0.0 {
        (
            (centre - sr / m).round() as isize,
            (centre - sc / m).round() as isize,
        )
    } else {
        (((FIELD - oh) / 2) as isize, ((FIELD - ow) / 2) as isize)
    };
    let mut out = vec![0f32; FIELD * FIELD];
    for r in 0..oh {
        let y = r as isize + dr;
        if !(0..FIELD as isize).contains(&y) {
            continue;
        }
        for c in 0..ow {
            let x = c as isize + dc;
            if (0..FIELD as isize).contains(&x) {
                out[y as usize * FIELD + x as usize] = patch[r * ow + c];
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::INK_THRESHOLD;

    /// Largest error of the supersampled footprint mean on a linear function (where it is
    /// exact up to rounding).
    const LINEAR_TOL: f64 = 1e-5;

    #[test]
    fn resample_keeps_constants_and_linear_ramps() {
        let c = resample(&[0.7; 12], 3, 4, 5, 2);
        assert!(c.iter().all(|v| (v - 0.7).abs() < 1e-6));
        // f(r, c) = 0.1 r + 0.03 c + 0.2 on pixel centres: the footprint mean of output
        // pixel (i, j) is f at its footprint centre, wherever no clamping happens.
        let (h, w, oh, ow) = (12usize, 10usize, 7usize, 9usize);
        let f = |r: f64, c: f64| 0.1 * r + 0.03 * c + 0.2;
        let src: Vec<f32> = (0..h * w)
            .map(|k| f((k / w) as f64, (k % w) as f64) as f32)
            .collect();
        for (oh, ow) in [(oh, ow), (24, 20), (3, 5)] {
            let out = resample(&src, h, w, oh, ow);
            let (sy, sx) = (h as f64 / oh as f64, w as f64 / ow as f64);
            for i in 0..oh {
                for j in 0..ow {
                    let (y0, y1) = (i as f64 * sy - 0.5, (i + 1) as f64 * sy - 0.5);
                    let (x0, x1) = (j as f64 * sx - 0.5, (j + 1) as f64 * sx - 0.5);
                    if y0 < 0.0 || x0 < 0.0 || y1 > (h - 1) as f64 || x1 > (w - 1) as f64 {
                        continue; // the footprint reaches the clamped border
                    }
                    let want = f((y0 + y1) / 2.0, (x0 + x1) / 2.0);
                    let got = out[i * ow + j] as f64;
                    assert!((got - want).abs() < LINEAR_TOL, "({i},{j}) {got} vs {want}");
                }
            }
        }
    }

    /// An "L"-shaped digit, `s` pixels per unit, at (r0, c0) in an `h x w` frame.
    fn ell(h: usize, w: usize, r0: usize, c0: usize, s: usize) -> Vec<f32> {
        let mut f = vec![0f32; h * w];
        for r in 0..5 * s {
            for c in 0..s {
                f[(r0 + r) * w + c0 + c] = 1.0;
            }
        }
        for r in 4 * s..5 * s {
            for c in 0..3 * s {
                f[(r0 + r) * w + c0 + c] = 1.0;
            }
        }
        f
    }

    #[test]
    fn the_framing_is_translation_invariant_fits_the_box_and_centres_the_mass() {
        let a = normalise(&ell(32, 32, 1, 2, 2), 32, 32).unwrap();
        let b = normalise(&ell(32, 32, 20, 25, 2), 32, 32).unwrap();
        assert_eq!(a, b);
        let k = crate::video::ink(&a, FIELD, FIELD).unwrap();
        // The long side (5 units) becomes the 20-pixel box, the short one 12 pixels.
        assert_eq!(k.max[0] - k.min[0] + 1, BOX);
        assert_eq!(k.max[1] - k.min[1] + 1, 12);
        for d in 0..2 {
            assert!((k.com[d] - 13.5).abs() <= 0.5 + 0.05, "{:?}", k.com);
        }
        // A digit drawn at twice the size frames (nearly) the same way.
        let c = normalise(&ell(32, 32, 3, 3, 4), 32, 32).unwrap();
        let diff = a
            .iter()
            .zip(&c)
            .filter(|(x, y)| (*x - *y).abs() > 0.5)
            .count();
        assert!(diff <= 2 * BOX, "{diff} pixels differ");
        assert!(normalise(&[INK_THRESHOLD / 2.0; 16], 4, 4).is_none());
    }
}
