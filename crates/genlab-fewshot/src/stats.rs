//! Mean accuracy with its 95% confidence interval: the standard few-shot protocol (e.g.
//! Snell et al. 2017, Finn et al. 2017 report "mean accuracy over 600 test episodes with
//! 95% confidence intervals"): `mean ± 1.96 s / sqrt(n)`, `s` the sample standard deviation
//! of the per-episode values (normal approximation of the mean's distribution).

use serde::{Deserialize, Serialize};

/// The 0.975 quantile of the standard normal distribution.
pub const Z_975: f64 = 1.959963984540054;

/// A mean with the half-width of its 95% interval.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    /// Half-width: the interval is `mean ± ci95`.
    pub ci95: f64,
    pub std: f64,
    pub n: usize,
}

/// Mean, sample standard deviation and 95% half-width of `xs` (half-width 0 for n < 2).
pub fn mean_ci95(xs: &[f64]) -> MeanCi {
    let n = xs.len();
    if n == 0 {
        return MeanCi {
            mean: f64::NAN,
            ci95: f64::NAN,
            std: f64::NAN,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = if n < 2 {
        0.0
    } else {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    MeanCi {
        mean,
        ci95: Z_975 * std / (n as f64).sqrt(),
        std,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn matches_a_hand_computed_interval() {
        // xs = 1, 2, 3, 4: mean 2.5, sample variance 5/3.
        let m = mean_ci95(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m.mean - 2.5).abs() < TOL);
        assert!((m.std - (5.0f64 / 3.0).sqrt()).abs() < TOL);
        assert!((m.ci95 - Z_975 * (5.0f64 / 3.0).sqrt() / 2.0).abs() < TOL);
    }

    #[test]
    fn z_is_the_normal_quantile() {
        // Φ(z) = (1 + erf(z / √2)) / 2 = 0.975, erf by its Maclaurin series.
        let x = Z_975 / 2f64.sqrt();
        let mut term = x;
        let mut sum = x;
        for k in 1..60 {
            term *= -x * x / k as f64;
            sum += term / (2 * k + 1) as f64;
        }
        let phi = 0.5 * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum);
        assert!((phi - 0.975).abs() < 1e-12, "{phi}");
    }
}
