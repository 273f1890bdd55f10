//! Robust default plot bounds for 2-D point clouds.
//!
//! The bounds of a cloud are its 0.5 % and 99.5 % quantiles on each axis, padded by 10 %
//! of the span on each side, so that a handful of far outliers (a diverged sample) do not
//! squash the picture. A reference cloud, when given, is treated the same way and the two
//! boxes are united. Finally the shorter side is widened about its centre so that the box
//! is square: scatter pictures are square, and equal aspect keeps circles round.

/// Lower quantile used for default bounds.
pub const LOW_QUANTILE: f64 = 0.005;
/// Upper quantile used for default bounds.
pub const HIGH_QUANTILE: f64 = 0.995;
/// Padding added on each side, as a fraction of the quantile span.
pub const PAD_FRACTION: f64 = 0.10;

/// Quantile `q` of sorted finite `values` with linear interpolation.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + (sorted[j] - sorted[i]) * (pos - i as f64)
}

/// Robust `[lo, hi]` of the finite values of one axis, or `None` when there are none.
fn axis_range(values: impl Iterator<Item = f32>) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).map(f64::from).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((quantile(&v, LOW_QUANTILE), quantile(&v, HIGH_QUANTILE)))
}

/// Robust box `(xlo, xhi, ylo, yhi)` of one cloud, before padding.
fn cloud_box(points: &[[f32; 2]]) -> Option<(f64, f64, f64, f64)> {
    // A point counts only when both coordinates are finite.
    let finite = || {
        points
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
    };
    let (xlo, xhi) = axis_range(finite().map(|p| p[0]))?;
    let (ylo, yhi) = axis_range(finite().map(|p| p[1]))?;
    Some((xlo, xhi, ylo, yhi))
}

/// Pads `[lo, hi]` by [`PAD_FRACTION`] of its span (or by a unit-ish amount when empty).
fn pad(lo: f64, hi: f64) -> (f64, f64) {
    let span = hi - lo;
    let p = if span > 0.0 {
        span * PAD_FRACTION
    } else {
        (lo.abs() * PAD_FRACTION).max(1.0)
    };
    (lo - p, hi + p)
}

/// Default bounds `[xmin, xmax, ymin, ymax]` for `points` (and `reference`, if any).
///
/// Non-finite points are ignored; with no finite point at all the box is `[-1, 1, -1, 1]`.
/// The result is always finite, square, and has `xmin < xmax`, `ymin < ymax`.
pub fn robust_bounds(points: &[[f32; 2]], reference: Option<&[[f32; 2]]>) -> [f32; 4] {
    let boxes = [Some(points), reference]
        .into_iter()
        .flatten()
        .filter_map(cloud_box);
    let united = boxes.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1), a.2.min(b.2), a.3.max(b.3)));
    let Some((xlo, xhi, ylo, yhi)) = united else {
        return [-1.0, 1.0, -1.0, 1.0];
    };
    let (xlo, xhi) = pad(xlo, xhi);
    let (ylo, yhi) = pad(ylo, yhi);
    let half = ((xhi - xlo).max(yhi - ylo) / 2.0).min(f32::MAX as f64 / 4.0);
    let (cx, cy) = ((xlo + xhi) / 2.0, (ylo + yhi) / 2.0);
    let out = [cx - half, cx + half, cy - half, cy + half].map(|v| v as f32);
    if out.iter().all(|v| v.is_finite()) && out[0] < out[1] && out[2] < out[3] {
        out
    } else {
        [-1.0, 1.0, -1.0, 1.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_far_outlier_is_ignored() {
        let mut pts: Vec<[f32; 2]> = (0..1000)
            .map(|i| [(i % 100) as f32 / 99.0, (i / 10) as f32 / 99.0])
            .collect();
        pts.push([1.0e6, -1.0e6]);
        let b = robust_bounds(&pts, None);
        assert!(b[0] > -0.3 && b[1] < 1.3, "{b:?}");
        assert!(b[2] > -0.3 && b[3] < 1.3, "{b:?}");
        // Padded around the bulk of the data.
        assert!(
            b[0] < 0.0 && b[1] > 1.0 && b[2] < 0.0 && b[3] > 1.0,
            "{b:?}"
        );
    }

    #[test]
    fn square_union_with_reference_and_degenerate_cases() {
        let pts = [[0.0f32, 0.0], [4.0, 1.0]];
        let reference = [[0.0f32, 0.0], [1.0, 10.0]];
        let b = robust_bounds(&pts, Some(&reference));
        assert!(
            b[0] < 0.0 && b[1] > 4.0 && b[2] < 0.0 && b[3] > 10.0,
            "{b:?}"
        );
        assert!(
            ((b[1] - b[0]) - (b[3] - b[2])).abs() < 1e-4,
            "not square: {b:?}"
        );

        assert_eq!(robust_bounds(&[], None), [-1.0, 1.0, -1.0, 1.0]);
        assert_eq!(
            robust_bounds(&[[f32::NAN, 1.0]], None),
            [-1.0, 1.0, -1.0, 1.0]
        );
        let b = robust_bounds(&[[2.0, 2.0]], None);
        assert!(
            b[0] < 2.0 && b[1] > 2.0 && b[2] < 2.0 && b[3] > 2.0,
            "{b:?}"
        );
        let b = robust_bounds(&[[f32::MAX, f32::MAX], [-f32::MAX, -f32::MAX]], None);
        assert!(b.iter().all(|v| v.is_finite()) && b[0] < b[1], "{b:?}");
    }
}
