//! Inpainting masks: which pixels of an image a model generates. Named masks (a half, a
//! centre box, seeded random brush strokes) or a PNG (white = generate, black = keep, like
//! the inpainting masks of Stable Diffusion's tools).
//!
//! Masks here are "generate" maps: `[H, W]` values 1 where the model generates and 0 where
//! the image is kept. [`known_from_generate`] turns one into the model's "known" map.

use std::path::Path;

use genlab_core::{Error, Result, Rng};

use crate::image_folder::decode_image;

/// The named masks.
pub const MASK_NAMES: [&str; 6] = [
    "left-half",
    "right-half",
    "top-half",
    "bottom-half",
    "centre-box",
    "strokes",
];

/// Brush strokes of a `strokes` mask.
const STROKES: usize = 4;
/// Points per stroke (a polyline).
const STROKE_POINTS: usize = 4;

/// The mask `spec` for `h` x `w` images: a name of [`MASK_NAMES`] (`strokes` draws its
/// strokes from `seed`) or the path of a PNG of that size. Returns 1 where generated.
pub fn generate_mask(spec: &str, h: usize, w: usize, seed: u64) -> Result<Vec<f32>> {
    let at = |f: &dyn Fn(usize, usize) -> bool| -> Vec<f32> {
        (0..h * w)
            .map(|i| if f(i / w, i % w) { 1.0 } else { 0.0 })
            .collect()
    };
    Ok(match spec {
        "left-half" => at(&|_, x| x < w / 2),
        "right-half" => at(&|_, x| x >= w / 2),
        "top-half" => at(&|y, _| y < h / 2),
        "bottom-half" => at(&|y, _| y >= h / 2),
        // The middle half of each side.
        "centre-box" | "center-box" => {
            at(&|y, x| (h / 4..h - h / 4).contains(&y) && (w / 4..w - w / 4).contains(&x))
        }
        "strokes" => strokes(h, w, seed),
        path => {
            let p = Path::new(path);
            if !p.is_file() {
                return Err(Error::setting(
                    "mask",
                    format!(
                        "`{path}` is neither a mask name ({}) nor a PNG file",
                        MASK_NAMES.join(", ")
                    ),
                ));
            }
            png_mask(p, h, w)?
        }
    })
}

/// Seeded brush strokes: [`STROKES`] polylines of [`STROKE_POINTS`] random points, each
/// about a sixth of the image wide.
fn strokes(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::derive(seed, "mask-strokes");
    let mut m = vec![0f32; h * w];
    let radius = (h.min(w) as f64 / 12.0).max(1.0);
    for _ in 0..STROKES {
        let pts: Vec<(f64, f64)> = (0..STROKE_POINTS)
            .map(|_| (rng.uniform() * h as f64, rng.uniform() * w as f64))
            .collect();
        for seg in pts.windows(2) {
            let ((y0, x0), (y1, x1)) = (seg[0], seg[1]);
            let len = ((y1 - y0).hypot(x1 - x0)).ceil().max(1.0) as usize;
            for s in 0..=len {
                let f = s as f64 / len as f64;
                let (cy, cx) = (y0 + f * (y1 - y0), x0 + f * (x1 - x0));
                for (i, v) in m.iter_mut().enumerate() {
                    let (y, x) = ((i / w) as f64 + 0.5, (i % w) as f64 + 0.5);
                    if (y - cy).hypot(x - cx) <= radius {
                        *v = 1.0;
                    }
                }
            }
        }
    }
    m
}

/// A PNG mask: white (>= 0.5 after conversion to grey) generated, black kept; it must have
/// the images' size and only black and white pixels (anti-aliased edges within 10% of
/// either are rounded).
fn png_mask(path: &Path, h: usize, w: usize) -> Result<Vec<f32>> {
    let img = decode_image(path)?.to_luma8();
    let (iw, ih) = img.dimensions();
    if (ih as usize, iw as usize) != (h, w) {
        return Err(Error::setting(
            "mask",
            format!("{} is {iw}x{ih}; the images are {w}x{h}", path.display()),
        ));
    }
    let mut out = Vec::with_capacity(h * w);
    for p in img.pixels() {
        let v = p.0[0] as f32 / 255.0;
        if (0.1..0.9).contains(&v) {
            return Err(Error::setting(
                "mask",
                format!(
                    "{} is not binary: it has a grey value {v:.2}; expected black (keep) and \
                     white (generate)",
                    path.display()
                ),
            ));
        }
        out.push(if v >= 0.5 { 1.0 } else { 0.0 });
    }
    Ok(out)
}

/// 1 - `generate`: the "known" map a model's inpainting takes.
pub fn known_from_generate(generate: &[f32]) -> Vec<f32> {
    generate.iter().map(|g| 1.0 - g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_masks_cover_the_named_region() {
        let m = generate_mask("right-half", 2, 4, 0).unwrap();
        assert_eq!(m, vec![0., 0., 1., 1., 0., 0., 1., 1.]);
        let m = generate_mask("top-half", 2, 2, 0).unwrap();
        assert_eq!(m, vec![1., 1., 0., 0.]);
        let m = generate_mask("centre-box", 4, 4, 0).unwrap();
        assert_eq!(m.iter().sum::<f32>(), 4.0);
        assert_eq!(m[5], 1.0);
        assert_eq!(known_from_generate(&[1.0, 0.0]), vec![0.0, 1.0]);
    }

    #[test]
    fn strokes_are_seeded_and_cover_part_of_the_image() {
        let a = generate_mask("strokes", 28, 28, 1).unwrap();
        assert_eq!(a, generate_mask("strokes", 28, 28, 1).unwrap());
        assert_ne!(a, generate_mask("strokes", 28, 28, 2).unwrap());
        let covered = a.iter().sum::<f32>() / a.len() as f32;
        assert!((0.05..0.7).contains(&covered), "{covered}");
    }

    #[test]
    fn png_masks_must_fit_and_be_binary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        image::GrayImage::from_fn(4, 2, |x, _| image::Luma([if x < 2 { 0 } else { 255 }]))
            .save(&p)
            .unwrap();
        let m = generate_mask(p.to_str().unwrap(), 2, 4, 0).unwrap();
        assert_eq!(m, generate_mask("right-half", 2, 4, 0).unwrap());
        let e = generate_mask(p.to_str().unwrap(), 4, 4, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4x2") && e.contains("4x4"), "{e}");
        image::GrayImage::from_fn(4, 2, |_, _| image::Luma([128]))
            .save(&p)
            .unwrap();
        let e = generate_mask(p.to_str().unwrap(), 2, 4, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not binary"), "{e}");
        let e = generate_mask("left-ish", 2, 4, 0).unwrap_err().to_string();
        assert!(e.contains("right-half") && e.contains("left-ish"), "{e}");
    }
}
