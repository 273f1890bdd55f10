//! The `LogLikelihood` interface: log p(x) per example, in nats, for the families that
//! have one, each saying what it is: exact (flows), a lower bound (VAE ELBO / IWAE,
//! dequantised images), or the probability-flow ODE's estimate of a diffusion model's
//! density smoothed at sigma_min (points data).

use candle_core::Tensor;

use genlab_core::{Result, Rng};

/// What the reported value is: log p(x) itself, a lower bound on it, or an ODE estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LikelihoodKind {
    /// log p(x) of the model, exact up to floating-point rounding (flows: change of variables).
    Exact,
    /// A lower bound on log p(x) (VAE ELBO / IWAE; dequantised discrete images).
    LowerBound,
    /// A diffusion model's log-density through its probability-flow ODE: the density of the
    /// data smoothed by N(0, sigma_min^2 I) (where the ODE starts; the model never sees a
    /// smaller noise level), integrated by an adaptive solver to rtol / atol, so neither the
    /// unsmoothed density nor exact.
    OdeEstimate {
        sigma_min: f64,
        rtol: f64,
        atol: f64,
    },
}

impl std::fmt::Display for LikelihoodKind {
    /// In words, about log p(x) (e.g. "a lower bound on log p(x)").
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LikelihoodKind::Exact => write!(f, "exact log p(x)"),
            LikelihoodKind::LowerBound => write!(f, "a lower bound on log p(x)"),
            LikelihoodKind::OdeEstimate {
                sigma_min,
                rtol,
                atol,
            } => write!(
                f,
                "a probability-flow ODE estimate of log p(x) for the density smoothed at \
                 sigma_min = {sigma_min:.4}, to rtol {rtol:e} atol {atol:e} (not exact)"
            ),
        }
    }
}

/// Settings of a likelihood evaluation.
#[derive(Clone, Debug)]
pub struct LikelihoodOptions {
    /// Importance samples per example (IWAE's k); ignored by exact models.
    pub samples: usize,
    /// At most this many rows go through the network at once (memory bound).
    pub batch_size: usize,
}

impl Default for LikelihoodOptions {
    fn default() -> Self {
        Self {
            samples: 5000,    // Burda et al. 2016 report test NLL with k = 5000
            batch_size: 2500, // ~8 MB of 784-wide f32 activations per layer
        }
    }
}

/// log p(x) per example.
#[derive(Clone, Debug)]
pub struct LogLikelihoodResult {
    /// Nats per example (the same order as the input).
    pub nats: Vec<f64>,
    pub kind: LikelihoodKind,
    /// A short description of the estimator (e.g. "IWAE bound, k = 5000").
    pub method: String,
}

pub trait LogLikelihood {
    /// log p(x) (or its bound) for every example of `x` (data space, `[N, ...]`);
    /// `labels` for class-conditional models; `progress(done, total)` counts examples.
    fn log_likelihood(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        opts: &LikelihoodOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<LogLikelihoodResult>;
}

/// `log(mean(exp(v)))`, in f64, stable for any magnitudes.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
    m + (s / v.len() as f64).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ode_estimate_says_what_it_is_in_words() {
        let k = LikelihoodKind::OdeEstimate {
            sigma_min: 0.01,
            rtol: 1e-5,
            atol: 1e-5,
        };
        let s = k.to_string();
        for w in [
            "probability-flow ODE",
            "sigma_min = 0.0100",
            "rtol 1e-5",
            "not exact",
        ] {
            assert!(s.contains(w), "{w:?} missing from {s:?}");
        }
        assert!(!LikelihoodKind::LowerBound.to_string().contains("exact"));
    }

    #[test]
    fn log_mean_exp_matches_direct_formula_and_survives_large_values() {
        let v = [-1.0, 0.5, 2.0];
        let direct = (v.iter().map(|x: &f64| x.exp()).sum::<f64>() / 3.0).ln();
        assert!((log_mean_exp(&v) - direct).abs() < 1e-12);
        let big = [-1000.0, -1000.0];
        assert!((log_mean_exp(&big) + 1000.0).abs() < 1e-12);
    }
}
