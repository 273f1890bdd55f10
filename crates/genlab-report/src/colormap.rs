//! A viridis-like colormap defined by a few anchor colours, linearly interpolated.
//!
//! Dark purple at 0, through blue and teal, to yellow at 1: perceptually ordered and
//! readable by colour-blind viewers. NaN maps to magenta, values outside [0, 1] clamp.

use image::Rgb;

use crate::grid::NAN_COLOUR;

/// Anchor colours at evenly spaced positions 0, 1/4, 1/2, 3/4, 1.
pub const VIRIDIS_ANCHORS: [[u8; 3]; 5] = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
];

/// Colour of `t` in [0, 1] (clamped) on the viridis-like map; NaN is magenta.
pub fn viridis(t: f64) -> Rgb<u8> {
    if t.is_nan() {
        return NAN_COLOUR;
    }
    let segments = (VIRIDIS_ANCHORS.len() - 1) as f64;
    let pos = t.clamp(0.0, 1.0) * segments;
    let i = (pos.floor() as usize).min(VIRIDIS_ANCHORS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS_ANCHORS[i], VIRIDIS_ANCHORS[i + 1]);
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * f).round() as u8;
    Rgb([mix(0), mix(1), mix(2)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_midpoint() {
        assert_eq!(viridis(0.0), Rgb([68, 1, 84]));
        assert_eq!(viridis(1.0), Rgb([253, 231, 37]));
        assert_eq!(viridis(0.5), Rgb([33, 145, 140]));
        assert_eq!(viridis(-4.0), viridis(0.0));
        assert_eq!(viridis(9.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), NAN_COLOUR);
        // Halfway between the first two anchors.
        assert_eq!(viridis(0.125), Rgb([64, 42, 112]));
    }
}
