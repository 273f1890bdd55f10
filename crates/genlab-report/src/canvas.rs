//! Small raster drawing primitives shared by the plots: alpha blending, full-width and
//! full-height lines, and anti-aliased round dots.

use image::{Rgb, RgbImage};

/// Blends `colour` over the pixel at (`x`, `y`) with opacity `alpha` in [0, 1];
/// coordinates outside the image are ignored.
pub(crate) fn blend(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>, alpha: f32) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let a = alpha.clamp(0.0, 1.0);
    let p = img.get_pixel_mut(x as u32, y as u32);
    for k in 0..3 {
        let mixed = p.0[k] as f32 * (1.0 - a) + colour.0[k] as f32 * a;
        p.0[k] = mixed.round().clamp(0.0, 255.0) as u8;
    }
}

/// Paints the whole column `x` in `colour` (ignored when outside the image).
pub(crate) fn vline(img: &mut RgbImage, x: i64, colour: Rgb<u8>) {
    if x < 0 || x >= img.width() as i64 {
        return;
    }
    for y in 0..img.height() {
        img.put_pixel(x as u32, y, colour);
    }
}

/// Paints the whole row `y` in `colour` (ignored when outside the image).
pub(crate) fn hline(img: &mut RgbImage, y: i64, colour: Rgb<u8>) {
    if y < 0 || y >= img.height() as i64 {
        return;
    }
    for x in 0..img.width() {
        img.put_pixel(x, y as u32, colour);
    }
}

/// Blends a round dot of `radius` pixels centred on the centre of pixel (`px`, `py`),
/// with opacity `alpha` and a one-pixel anti-aliased rim.
pub(crate) fn dot(img: &mut RgbImage, px: i64, py: i64, radius: f32, colour: Rgb<u8>, alpha: f32) {
    let reach = (radius + 0.5).ceil() as i64;
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let d = ((dx * dx + dy * dy) as f32).sqrt();
            let coverage = (radius + 0.5 - d).clamp(0.0, 1.0);
            if coverage > 0.0 {
                blend(img, px + dx, py + dy, colour, alpha * coverage);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_mixes_and_ignores_outside() {
        let mut img = RgbImage::from_pixel(2, 2, Rgb([255, 255, 255]));
        blend(&mut img, 0, 0, Rgb([0, 0, 0]), 0.5);
        blend(&mut img, -1, 0, Rgb([0, 0, 0]), 1.0);
        blend(&mut img, 0, 5, Rgb([0, 0, 0]), 1.0);
        assert_eq!(*img.get_pixel(0, 0), Rgb([128, 128, 128]));
        assert_eq!(*img.get_pixel(1, 1), Rgb([255, 255, 255]));
    }

    #[test]
    fn dot_is_centred() {
        let mut img = RgbImage::from_pixel(9, 9, Rgb([255, 255, 255]));
        dot(&mut img, 4, 4, 1.0, Rgb([0, 0, 0]), 1.0);
        assert_eq!(*img.get_pixel(4, 4), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(0, 0), Rgb([255, 255, 255]));
        assert_eq!(img.get_pixel(3, 4), img.get_pixel(5, 4));
    }
}
