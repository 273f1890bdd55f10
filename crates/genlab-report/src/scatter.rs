//! Scatter pictures of 2-D point clouds (samples against a reference distribution).
//!
//! A square picture on a white background: light-grey grid lines at integer coordinates
//! (thinned to a coarser 1-2-5 step when there would be too many), darker axes through
//! 0, the reference cloud (if any) as light-grey dots behind, and the points as small
//! semi-transparent blue dots so that overlapping points show density.
//!
//! Coordinates map to pixels as `px = floor((x - xmin) / (xmax - xmin) * size)` and
//! `py = floor((ymax - y) / (ymax - ymin) * size)` (y grows upwards; a coordinate exactly
//! on the upper edge goes to the last pixel). Each dot is centred on its pixel's centre.
//! Points outside the bounds and non-finite points are not drawn.

use image::{Rgb, RgbImage};

use crate::bounds::robust_bounds;
use crate::canvas::{dot, hline, vline};
use crate::error::{ReportError, Result};
use crate::grid::check_picture_size;

/// Background colour.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// Colour of the grid lines at integer coordinates.
pub const GRID_LINE: Rgb<u8> = Rgb([228, 228, 228]);
/// Colour of the axes through 0.
pub const AXIS_LINE: Rgb<u8> = Rgb([150, 150, 150]);
/// Colour and opacity of the reference points.
pub const REFERENCE_DOT: (Rgb<u8>, f32) = (Rgb([150, 150, 150]), 0.45);
/// Colour and opacity of the plotted points.
pub const POINT_DOT: (Rgb<u8>, f32) = (Rgb([31, 119, 180]), 0.4);
/// At most this many grid lines per axis.
const MAX_GRID_LINES: f64 = 40.0;

/// Checks explicit bounds and returns them as f64.
pub(crate) fn check_bounds(b: [f32; 4]) -> Result<[f64; 4]> {
    let [xmin, xmax, ymin, ymax] = b.map(f64::from);
    let ok = [xmin, xmax, ymin, ymax].iter().all(|v| v.is_finite());
    if !ok || xmin >= xmax || ymin >= ymax {
        return Err(ReportError::invalid(format!(
            "bounds must be finite [xmin, xmax, ymin, ymax] with xmin < xmax and \
             ymin < ymax, got {b:?}"
        )));
    }
    Ok([xmin, xmax, ymin, ymax])
}

/// Checks a square picture size.
pub(crate) fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(ReportError::invalid("picture size must be positive, got 0"));
    }
    check_picture_size(size, size)
}

/// Maps data coordinates to pixels inside a square picture of a given size.
struct Mapping {
    b: [f64; 4],
    size: f64,
}

impl Mapping {
    /// Continuous position along one axis in [0, size], or `None` outside.
    fn along(&self, t: f64, from: f64, to: f64) -> Option<i64> {
        let u = (t - from) / (to - from) * self.size;
        if !(0.0..=self.size).contains(&u) {
            return None;
        }
        Some((u.floor() as i64).min(self.size as i64 - 1))
    }

    fn column(&self, x: f64) -> Option<i64> {
        self.along(x, self.b[0], self.b[1])
    }

    fn row(&self, y: f64) -> Option<i64> {
        // Rows count downwards from ymax.
        let u = (self.b[3] - y) / (self.b[3] - self.b[2]) * self.size;
        if !(0.0..=self.size).contains(&u) {
            return None;
        }
        Some((u.floor() as i64).min(self.size as i64 - 1))
    }

    fn pixel(&self, p: &[f32; 2]) -> Option<(i64, i64)> {
        Some((self.column(p[0] as f64)?, self.row(p[1] as f64)?))
    }
}

/// Grid step: 1 unless that gives too many lines, then the next 1-2-5 value that fits.
fn grid_step(span: f64, size: usize) -> f64 {
    let max_lines = MAX_GRID_LINES.min(size as f64 / 6.0).max(1.0);
    let mut step = 1.0f64;
    let mut k = 0usize;
    while span / step > max_lines && step.is_finite() {
        step *= if k % 3 == 1 { 2.5 } else { 2.0 };
        k += 1;
    }
    step
}

/// Draws grid lines every `step` units and the axes at 0.
fn draw_grid(img: &mut RgbImage, m: &Mapping, size: usize) {
    let [xmin, xmax, ymin, ymax] = m.b;
    let step = grid_step((xmax - xmin).max(ymax - ymin), size);
    if !step.is_finite() {
        return;
    }
    let lines = |lo: f64, hi: f64| {
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        (first..=last).map(move |k| k as f64 * step)
    };
    for x in lines(xmin, xmax) {
        if let Some(px) = m.column(x) {
            vline(img, px, if x == 0.0 { AXIS_LINE } else { GRID_LINE });
        }
    }
    for y in lines(ymin, ymax) {
        if let Some(py) = m.row(y) {
            hline(img, py, if y == 0.0 { AXIS_LINE } else { GRID_LINE });
        }
    }
    // Axes are drawn last so that horizontal grid lines do not cut the vertical axis.
    if let Some(px) = m.column(0.0) {
        vline(img, px, AXIS_LINE);
    }
}

/// Draws `points` (and `reference` behind them) in a `size` x `size` scatter picture.
///
/// `bounds` is `[xmin, xmax, ymin, ymax]`; when `None` it comes from
/// [`robust_bounds`](crate::robust_bounds) over the points and the reference. Errors when
/// `size` is zero or too large, or explicit bounds are not finite and increasing.
pub fn scatter_png(
    points: &[[f32; 2]],
    reference: Option<&[[f32; 2]]>,
    size: usize,
    bounds: Option<[f32; 4]>,
) -> Result<RgbImage> {
    check_size(size)?;
    let b = check_bounds(bounds.unwrap_or_else(|| robust_bounds(points, reference)))?;
    let m = Mapping {
        b,
        size: size as f64,
    };
    let mut img = RgbImage::from_pixel(size as u32, size as u32, BACKGROUND);
    draw_grid(&mut img, &m, size);
    let radius = (size as f32 / 300.0).max(1.0);
    let layers = [
        (reference.unwrap_or(&[]), REFERENCE_DOT),
        (points, POINT_DOT),
    ];
    for (cloud, (colour, alpha)) in layers {
        for (px, py) in cloud.iter().filter_map(|p| m.pixel(p)) {
            dot(&mut img, px, py, radius, colour, alpha);
        }
    }
    Ok(img)
}

/// Like [`scatter_png`], with each point coloured by its label (the 10-colour
/// [`PALETTE`](crate::PALETTE), cycled), e.g. a latent space coloured by class.
pub fn scatter_labeled_png(points: &[[f32; 2]], labels: &[u32], size: usize) -> Result<RgbImage> {
    if labels.len() != points.len() {
        return Err(ReportError::invalid(format!(
            "{} labels for {} points",
            labels.len(),
            points.len()
        )));
    }
    check_size(size)?;
    let b = check_bounds(robust_bounds(points, None))?;
    let m = Mapping {
        b,
        size: size as f64,
    };
    let mut img = RgbImage::from_pixel(size as u32, size as u32, BACKGROUND);
    draw_grid(&mut img, &m, size);
    let radius = (size as f32 / 250.0).max(1.0);
    for (p, &l) in points.iter().zip(labels) {
        if let Some((px, py)) = m.pixel(p) {
            dot(&mut img, px, py, radius, palette_rgb(l as usize), 0.6);
        }
    }
    Ok(img)
}

fn palette_rgb(i: usize) -> Rgb<u8> {
    let hex = crate::PALETTE[i % crate::PALETTE.len()];
    let v = u32::from_str_radix(&hex[1..], 16).expect("palette entries are #rrggbb");
    Rgb([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_point_lands_on_expected_pixel() {
        let img = scatter_png(&[[2.5, 7.5]], None, 100, Some([0.0, 10.0, 0.0, 10.0])).unwrap();
        assert_eq!((img.width(), img.height()), (100, 100));
        let p = img.get_pixel(25, 25).0;
        assert!(p[2] as i32 > p[0] as i32 + 40, "not blue at (25,25): {p:?}");
        // Nothing blue far from it; background stays white away from grid lines.
        assert_eq!(*img.get_pixel(75, 75), BACKGROUND);
        assert_eq!(*img.get_pixel(25, 75), BACKGROUND);
        // Grid line at x = 5 is column 50; the axis x = 0 is column 0.
        assert_eq!(*img.get_pixel(50, 77), GRID_LINE);
        assert_eq!(*img.get_pixel(0, 77), AXIS_LINE);
        // y = 0 lies on the bottom edge: last row.
        assert_eq!(*img.get_pixel(77, 99), AXIS_LINE);
    }

    #[test]
    fn overlapping_points_darken() {
        let b = Some([0.0, 10.0, 0.0, 10.0]);
        let one = scatter_png(&[[2.5, 7.5]], None, 100, b).unwrap();
        let many = scatter_png(&[[2.5, 7.5]; 5], None, 100, b).unwrap();
        assert!(many.get_pixel(25, 25).0[0] < one.get_pixel(25, 25).0[0]);
    }

    #[test]
    fn reference_is_grey_and_outside_points_are_skipped() {
        let b = Some([0.0, 10.0, 0.0, 10.0]);
        let reference = [[7.5f32, 2.5]];
        let img = scatter_png(&[[50.0, 50.0], [f32::NAN, 1.0]], Some(&reference), 100, b).unwrap();
        let p = img.get_pixel(75, 75).0;
        assert!(p[0] == p[1] && p[1] == p[2] && p[0] < 240, "{p:?}");
        let blue = img
            .pixels()
            .filter(|p| p.0[2] as i32 > p.0[0] as i32 + 10)
            .count();
        assert_eq!(blue, 0);
    }

    #[test]
    fn default_bounds_contain_the_data() {
        let pts: Vec<[f32; 2]> = (0..200).map(|i| [i as f32 / 20.0, 3.0]).collect();
        let img = scatter_png(&pts, None, 128, None).unwrap();
        let blue = img
            .pixels()
            .filter(|p| p.0[2] as i32 > p.0[0] as i32 + 20)
            .count();
        assert!(blue > 50, "{blue}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let bad = |r: Result<RgbImage>| assert!(matches!(r, Err(ReportError::InvalidInput(_))));
        bad(scatter_png(&[], None, 0, None));
        bad(scatter_png(&[], None, 1_000_000, None));
        bad(scatter_png(&[], None, 10, Some([1.0, 0.0, 0.0, 1.0])));
        bad(scatter_png(&[], None, 10, Some([0.0, 1.0, 1.0, 1.0])));
        bad(scatter_png(&[], None, 10, Some([0.0, f32::NAN, 0.0, 1.0])));
        bad(scatter_png(
            &[],
            None,
            10,
            Some([0.0, f32::INFINITY, 0.0, 1.0]),
        ));
    }

    #[test]
    fn huge_span_grid_is_thinned() {
        assert_eq!(grid_step(4.0, 512), 1.0);
        let s = grid_step(1.0e6, 512);
        assert!(1.0e6 / s <= 40.0, "{s}");
        assert!(grid_step(1.0e300, 512).is_finite());
    }

    #[test]
    fn labeled_points_take_their_palette_colour() {
        let pts = [[0.0f32, 0.0], [1.0, 1.0], [0.5, 0.5]];
        let img = scatter_labeled_png(&pts, &[0, 1, 3], 200).unwrap();
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        // Three label colours blended over white, plus background and grid.
        assert!(colours.len() > 4);
        assert!(scatter_labeled_png(&pts, &[0], 200).is_err());
        assert_eq!(palette_rgb(3), Rgb([0xd6, 0x27, 0x28]));
    }
}
