//! The eight-Gaussians mixture: its modes, exact log density and a mode-coverage measure.
//!
//! Eight isotropic Gaussians of standard deviation [`EIGHT_GAUSSIANS_STD`] with equal weights,
//! centred on a circle of radius [`EIGHT_GAUSSIANS_RADIUS`] at angles `k * pi / 4`. The
//! benchmark for mode collapse used since the unrolled-GAN paper (Metz et al., 2016,
//! arXiv:1611.02163); a sample counts as "high quality" when it lies within 3 standard
//! deviations of its nearest mode.

use std::f64::consts::PI;

/// Radius of the circle the eight modes sit on.
pub const EIGHT_GAUSSIANS_RADIUS: f64 = 2.0;
/// Standard deviation of each (isotropic) component.
pub const EIGHT_GAUSSIANS_STD: f64 = 0.2;
/// A point within this many standard deviations (Euclidean) of its nearest mode is covered.
pub const COVERAGE_RADIUS_IN_STD: f64 = 3.0;

/// The eight component means, `radius * (cos(k pi/4), sin(k pi/4))` for `k = 0..7`.
pub fn eight_gaussians_modes() -> [[f64; 2]; 8] {
    let mut m = [[0.0; 2]; 8];
    for (k, mode) in m.iter_mut().enumerate() {
        let a = k as f64 * PI / 4.0;
        *mode = [
            EIGHT_GAUSSIANS_RADIUS * a.cos(),
            EIGHT_GAUSSIANS_RADIUS * a.sin(),
        ];
    }
    m
}

/// Exact log density of the mixture at `x`:
/// `log( (1/8) sum_k N(x; mu_k, std^2 I) )`, computed with a log-sum-exp.
pub fn eight_gaussians_log_density(x: [f64; 2]) -> f64 {
    let var = EIGHT_GAUSSIANS_STD * EIGHT_GAUSSIANS_STD;
    // log N(x; mu, var I) in 2-D = -|x-mu|^2/(2 var) - log(2 pi var)
    let log_norm = -(2.0 * PI * var).ln();
    let terms: Vec<f64> = eight_gaussians_modes()
        .iter()
        .map(|m| {
            let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
            -d2 / (2.0 * var) + log_norm
        })
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    max + sum.ln() - 8f64.ln()
}

/// How well a set of points covers the eight modes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModeCoverage {
    /// Fraction of points within 3 std (Euclidean) of their nearest mode. For exact samples
    /// its expectation is `1 - exp(-9/2) = 0.9889` (a 2-D Gaussian's radius is Rayleigh).
    pub fraction_within_3std: f64,
    /// For each mode, the fraction of ALL points that lie within 3 std of it (so the entries
    /// sum to `fraction_within_3std`; exact samples give about 1/8 each). A collapsed mode
    /// shows up as an entry near 0.
    pub per_mode_fraction: [f64; 8],
}

impl ModeCoverage {
    /// The smallest share of all points any one mode holds (the mode-collapse number).
    pub fn smallest_mode(&self) -> f64 {
        self.per_mode_fraction
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min)
    }

    /// Number of modes holding at least `min_fraction` of the points.
    pub fn modes_covered(&self, min_fraction: f64) -> usize {
        self.per_mode_fraction
            .iter()
            .filter(|&&f| f >= min_fraction)
            .count()
    }
}

/// Mode coverage of `points` for the eight-Gaussians mixture. Empty input gives all zeros;
/// non-finite points count as not covered.
pub fn mode_coverage(points: &[[f32; 2]]) -> ModeCoverage {
    let modes = eight_gaussians_modes();
    let r = COVERAGE_RADIUS_IN_STD * EIGHT_GAUSSIANS_STD;
    let mut counts = [0usize; 8];
    for p in points {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let mut best = (f64::INFINITY, 0usize);
        for (k, m) in modes.iter().enumerate() {
            let d2 = (x - m[0]).powi(2) + (y - m[1]).powi(2);
            if d2 < best.0 {
                best = (d2, k);
            }
        }
        // NaN distances never pass the `<=` test.
        if best.0 <= r * r {
            counts[best.1] += 1;
        }
    }
    let n = points.len().max(1) as f64;
    let per_mode_fraction = counts.map(|c| c as f64 / n);
    ModeCoverage {
        fraction_within_3std: counts.iter().sum::<usize>() as f64 / n,
        per_mode_fraction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grid step of the density integral; the density is smooth at the scale of 0.2.
    const GRID_STEP: f64 = 0.01;
    /// Allowed error of the grid integral of the density.
    const INTEGRAL_TOL: f64 = 1e-3;

    #[test]
    fn modes_are_on_the_circle() {
        let m = eight_gaussians_modes();
        assert!((m[0][0] - 2.0).abs() < 1e-12 && m[0][1].abs() < 1e-12);
        assert!(m[2][0].abs() < 1e-12 && (m[2][1] - 2.0).abs() < 1e-12);
        for p in m {
            assert!(((p[0] * p[0] + p[1] * p[1]).sqrt() - 2.0).abs() < 1e-12);
        }
    }

    #[test]
    fn log_density_integrates_to_one() {
        let n = (8.0 / GRID_STEP) as i64;
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..n {
                let x = -4.0 + (i as f64 + 0.5) * GRID_STEP;
                let y = -4.0 + (j as f64 + 0.5) * GRID_STEP;
                total += eight_gaussians_log_density([x, y]).exp();
            }
        }
        total *= GRID_STEP * GRID_STEP;
        assert!((total - 1.0).abs() < INTEGRAL_TOL, "integral {total}");
    }

    #[test]
    fn log_density_at_a_mode_matches_closed_form() {
        // At a mode the other seven components are >= 1.53 away (39 std): negligible.
        let var = EIGHT_GAUSSIANS_STD * EIGHT_GAUSSIANS_STD;
        let expected = -(2.0 * PI * var).ln() - 8f64.ln();
        let got = eight_gaussians_log_density([2.0, 0.0]);
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
        assert!(eight_gaussians_log_density([0.0, 0.0]) < -40.0);
    }

    #[test]
    fn coverage_of_collapsed_and_empty_sets() {
        let all_at_one = vec![[2.0f32, 0.0]; 100];
        let c = mode_coverage(&all_at_one);
        assert_eq!(c.fraction_within_3std, 1.0);
        assert_eq!(c.per_mode_fraction[0], 1.0);
        assert_eq!(c.modes_covered(0.05), 1);
        assert_eq!(c.smallest_mode(), 0.0);
        // Two points on each of modes 0..7 except mode 3, which gets one: 1/15 is smallest.
        let modes = eight_gaussians_modes();
        let pts: Vec<[f32; 2]> = (0..8)
            .flat_map(|k| {
                vec![[modes[k][0] as f32, modes[k][1] as f32]; if k == 3 { 1 } else { 2 }]
            })
            .collect();
        assert!((mode_coverage(&pts).smallest_mode() - 1.0 / 15.0).abs() < 1e-12);
        let far = mode_coverage(&[[0.0, 0.0], [f32::NAN, 1.0]]);
        assert_eq!(far.fraction_within_3std, 0.0);
        assert_eq!(mode_coverage(&[]).fraction_within_3std, 0.0);
    }
}
