//! Image grids: a batch of N x C x H x W pictures tiled into one RGB image.
//!
//! Values are expected in [0, 1] and are clamped; a NaN in any channel of a pixel draws
//! that pixel magenta so that numeric failures are visible rather than silently black.
//! Each cell is upscaled by an integer factor (nearest neighbour) and cells are separated
//! by dark-grey borders. [`save_png`] writes any RGB image atomically as PNG.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::atomic::write_atomic;
use crate::error::{ReportError, Result};

/// Colour of the borders between (and around) cells.
pub const GRID_BORDER: Rgb<u8> = Rgb([48, 48, 48]);
/// Colour of a pixel with a NaN channel.
pub const NAN_COLOUR: Rgb<u8> = Rgb([255, 0, 255]);
/// Largest width or height, in pixels, of a picture this crate will allocate.
pub const MAX_SIDE: usize = 32_768;
/// Largest number of pixels of a picture this crate will allocate (~200 MB RGB).
pub const MAX_PIXELS: usize = 1 << 26;

/// Checks that a `width` x `height` picture is within [`MAX_SIDE`] and [`MAX_PIXELS`].
pub(crate) fn check_picture_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ReportError::invalid(format!(
            "picture size must be positive, got {width}x{height}"
        )));
    }
    if width > MAX_SIDE || height > MAX_SIDE || width.saturating_mul(height) > MAX_PIXELS {
        return Err(ReportError::invalid(format!(
            "picture of {width}x{height} pixels is too large (at most {MAX_SIDE} per side \
             and {MAX_PIXELS} pixels)"
        )));
    }
    Ok(())
}

/// Converts one value in [0, 1] (clamped) to an 8-bit channel.
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Tiles `n` pictures of `c` x `h` x `w` values (row-major, channel-first) into a grid.
///
/// * `c` is 1 (grey) or 3 (RGB); values are clamped to [0, 1], NaN pixels are magenta;
/// * `ncol` cells per row (fewer when `n < ncol`), rows as needed;
/// * each cell is upscaled `scale` times (nearest neighbour);
/// * `pad` pixels of [`GRID_BORDER`] between cells and around the whole grid.
///
/// The result is `cols*w*scale + (cols+1)*pad` wide and `rows*h*scale + (rows+1)*pad`
/// high. Errors when `data.len() != n*c*h*w`, `c` is not 1 or 3, any of `n`, `h`, `w`,
/// `ncol`, `scale` is zero, or the picture would be unreasonably large.
#[allow(clippy::too_many_arguments)]
pub fn image_grid(
    data: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ncol: usize,
    scale: usize,
    pad: usize,
) -> Result<RgbImage> {
    if n == 0 {
        return Err(ReportError::invalid(
            "image grid needs at least one image (n == 0)",
        ));
    }
    if c != 1 && c != 3 {
        return Err(ReportError::invalid(format!(
            "image grid needs 1 (grey) or 3 (RGB) channels, got {c}"
        )));
    }
    if h == 0 || w == 0 || ncol == 0 || scale == 0 {
        return Err(ReportError::invalid(format!(
            "image grid needs positive h, w, ncol and scale, got h={h} w={w} ncol={ncol} \
             scale={scale}"
        )));
    }
    let expected = [n, c, h, w]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ReportError::invalid("image grid dimensions overflow"))?;
    if data.len() != expected {
        return Err(ReportError::invalid(format!(
            "image grid expected {n}x{c}x{h}x{w} = {expected} values, got {}",
            data.len()
        )));
    }
    let cols = ncol.min(n);
    let rows = n.div_ceil(cols);
    let cell_w = w.checked_mul(scale);
    let cell_h = h.checked_mul(scale);
    let side = |cells: usize, cell: Option<usize>| -> Option<usize> {
        cells
            .checked_mul(cell?)?
            .checked_add(cells.checked_add(1)?.checked_mul(pad)?)
    };
    let (width, height) = match (side(cols, cell_w), side(rows, cell_h)) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(ReportError::invalid("image grid dimensions overflow")),
    };
    check_picture_size(width, height)?;
    let (cell_w, cell_h) = (w * scale, h * scale);

    let mut img = RgbImage::from_pixel(width as u32, height as u32, GRID_BORDER);
    let plane = h * w;
    for (i, picture) in data.chunks_exact(c * plane).enumerate() {
        let x0 = pad + (i % cols) * (cell_w + pad);
        let y0 = pad + (i / cols) * (cell_h + pad);
        for y in 0..h {
            for x in 0..w {
                let at = y * w + x;
                let colour = if c == 1 {
                    let v = picture[at];
                    if v.is_nan() {
                        NAN_COLOUR
                    } else {
                        let g = to_u8(v);
                        Rgb([g, g, g])
                    }
                } else {
                    let (r, g, b) = (picture[at], picture[plane + at], picture[2 * plane + at]);
                    if r.is_nan() || g.is_nan() || b.is_nan() {
                        NAN_COLOUR
                    } else {
                        Rgb([to_u8(r), to_u8(g), to_u8(b)])
                    }
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = (x0 + x * scale + dx) as u32;
                        let py = (y0 + y * scale + dy) as u32;
                        img.put_pixel(px, py, colour);
                    }
                }
            }
        }
    }
    Ok(img)
}

/// Encodes `img` as PNG and writes it to `path` atomically (parent directories created).
pub fn save_png(img: &RgbImage, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_dimensions_follow_layout() {
        // 5 grey 2x3 images, 2 per row -> 3 rows; scale 4, pad 1.
        let img = image_grid(&[0.5; 5 * 2 * 3], 5, 1, 2, 3, 2, 4, 1).unwrap();
        assert_eq!(img.width(), 2 * 3 * 4 + 3);
        assert_eq!(img.height(), 3 * 2 * 4 + 4);
        // ncol larger than n: one row of n cells.
        let img = image_grid(&[0.5; 3 * 4], 3, 1, 2, 2, 10, 1, 0).unwrap();
        assert_eq!((img.width(), img.height()), (6, 2));
    }

    #[test]
    fn known_pixels_have_expected_colours() {
        // Two RGB 1x2 images: image 1 pixel (0,1) is pure red, image 0 has a NaN.
        let mut data = vec![0.0f32; 2 * 3 * 2];
        data[6 + 1] = 1.0; // image 1, R plane, x = 1
        data[2] = f32::NAN; // image 0, G plane, x = 0
        data[0] = 7.0; // image 0, R plane, x = 0: clamped (overridden by NaN)
        data[1] = -3.0; // image 0, R plane, x = 1: clamped to 0
        let img = image_grid(&data, 2, 3, 1, 2, 2, 2, 1).unwrap();
        // Cell 1 starts at x = pad + cell_w + pad = 1 + 4 + 1 = 6; its pixel x=1 at 6+2.
        assert_eq!(*img.get_pixel(8, 1), Rgb([255, 0, 0]));
        assert_eq!(*img.get_pixel(9, 2), Rgb([255, 0, 0]));
        assert_eq!(*img.get_pixel(6, 1), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(1, 1), NAN_COLOUR);
        assert_eq!(*img.get_pixel(3, 1), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(0, 0), GRID_BORDER);
        assert_eq!(*img.get_pixel(5, 1), GRID_BORDER);
        // Grey value rounding.
        let img = image_grid(&[0.5], 1, 1, 1, 1, 1, 1, 0).unwrap();
        assert_eq!(*img.get_pixel(0, 0), Rgb([128, 128, 128]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let bad = |r: Result<RgbImage>| assert!(matches!(r, Err(ReportError::InvalidInput(_))));
        bad(image_grid(&[0.0; 4], 1, 1, 2, 3, 1, 1, 0)); // length mismatch
        bad(image_grid(&[0.0; 8], 1, 2, 2, 2, 1, 1, 0)); // two channels
        bad(image_grid(&[], 0, 1, 2, 2, 1, 1, 0)); // n == 0
        bad(image_grid(&[0.0; 4], 1, 1, 2, 2, 0, 1, 0)); // ncol == 0
        bad(image_grid(&[0.0; 4], 1, 1, 2, 2, 1, 0, 0)); // scale == 0
        bad(image_grid(&[0.0; 4], 1, 1, 2, 2, 1, 100_000, 0)); // too large
        bad(image_grid(&[0.0; 4], 1, 1, 2, 2, 1, usize::MAX, 0)); // overflow
        bad(image_grid(&[0.0; 4], 1, 1, 2, 2, 1, 1, usize::MAX)); // overflow
    }

    #[test]
    fn save_png_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let img = image_grid(&[0.0, 0.25, 0.5, 1.0], 1, 1, 2, 2, 1, 3, 2).unwrap();
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, img);
    }
}
