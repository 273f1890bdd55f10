//! Heat-map pictures of a density (or any scalar field) sampled on a regular grid.
//!
//! `values` holds `ny` rows of `nx` cells, row-major, with row 0 at the *lowest* y (so the
//! picture has y growing upwards, like [`scatter_png`](crate::scatter_png) over the same
//! bounds). Finite values are scaled linearly from their minimum (dark purple) to their
//! maximum (yellow) on the [`viridis`](crate::viridis) map; non-finite cells are magenta;
//! a constant field is drawn at the low end. Cells are resampled (nearest) to a square
//! `size` x `size` picture.

use image::RgbImage;

use crate::colormap::viridis;
use crate::error::{ReportError, Result};
use crate::scatter::check_size;

/// Draws `values` (`ny` rows of `nx`, row 0 at the bottom) as a `size` x `size` heat map.
///
/// Errors when `nx` or `ny` is zero, `values.len() != nx * ny`, or `size` is zero or too
/// large.
pub fn density_png(values: &[f64], nx: usize, ny: usize, size: usize) -> Result<RgbImage> {
    if nx == 0 || ny == 0 {
        return Err(ReportError::invalid(format!(
            "density grid needs positive nx and ny, got {nx}x{ny}"
        )));
    }
    if nx.checked_mul(ny) != Some(values.len()) {
        return Err(ReportError::invalid(format!(
            "density grid expected {nx}x{ny} values, got {}",
            values.len()
        )));
    }
    check_size(size)?;
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    let scale = |v: f64| -> f64 {
        if !v.is_finite() {
            f64::NAN
        } else if span > 0.0 && span.is_finite() {
            (v - lo) / span
        } else if span.is_finite() {
            0.0
        } else {
            // Finite extremes whose difference overflows: scale in two halves.
            (v / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0)
        }
    };
    let mut img = RgbImage::new(size as u32, size as u32);
    for py in 0..size {
        let row_from_top = py * ny / size;
        let iy = ny - 1 - row_from_top;
        for px in 0..size {
            let ix = px * nx / size;
            img.put_pixel(px as u32, py as u32, viridis(scale(values[iy * nx + ix])));
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colormap::VIRIDIS_ANCHORS;
    use crate::grid::NAN_COLOUR;
    use image::Rgb;

    #[test]
    fn colormap_endpoints_and_orientation() {
        // Two columns, two rows; row 0 (bottom) = [min, mid], row 1 (top) = [max, NaN].
        let values = [-2.0, 0.0, 2.0, f64::NAN];
        let img = density_png(&values, 2, 2, 10).unwrap();
        assert_eq!(*img.get_pixel(0, 9), Rgb(VIRIDIS_ANCHORS[0])); // bottom-left: min
        assert_eq!(*img.get_pixel(0, 0), Rgb(VIRIDIS_ANCHORS[4])); // top-left: max
        assert_eq!(*img.get_pixel(9, 9), Rgb(VIRIDIS_ANCHORS[2])); // bottom-right: mid
        assert_eq!(*img.get_pixel(9, 0), NAN_COLOUR); // top-right: NaN
    }

    #[test]
    fn constant_and_extreme_fields_do_not_fail() {
        let img = density_png(&[3.0; 4], 2, 2, 4).unwrap();
        assert!(img.pixels().all(|p| *p == Rgb(VIRIDIS_ANCHORS[0])));
        let img = density_png(&[-f64::MAX, f64::MAX], 2, 1, 4).unwrap();
        assert_eq!(*img.get_pixel(3, 0), Rgb(VIRIDIS_ANCHORS[4]));
        let img = density_png(&[f64::NAN], 1, 1, 2).unwrap();
        assert_eq!(*img.get_pixel(0, 0), NAN_COLOUR);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let bad = |r: Result<RgbImage>| assert!(matches!(r, Err(ReportError::InvalidInput(_))));
        bad(density_png(&[1.0; 4], 2, 3, 10));
        bad(density_png(&[], 0, 0, 10));
        bad(density_png(&[1.0], 1, 1, 0));
        bad(density_png(&[1.0], 1, usize::MAX, 10));
    }
}
