//! Discrete-time noise schedules, computed in f64.
//!
//! - Linear betas: Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models",
//!   arXiv:2006.11239, Sec. 4 (beta_1 = 1e-4 to beta_T = 0.02, T = 1000).
//! - Cosine schedule: Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic
//!   Models", arXiv:2102.09672, Eq. 17: alpha_bar(t) = f(t) / f(0),
//!   f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2, beta_t = 1 - alpha_bar(t)/alpha_bar(t-1)
//!   clipped to at most 0.999. Computed in floating point throughout (candle's own version
//!   divides integers and gets it wrong).
//!
//! Index convention: timestep index i in 0..T corresponds to the paper's t = i + 1, so
//! `alphas_cumprod[i]` = prod_{j<=i} (1 - beta_j) and x_i = sqrt(a_i) x_0 + sqrt(1-a_i) eps.

use genlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the betas are laid out over the T steps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// Linearly spaced betas (Ho et al. 2020 use 1e-4 .. 0.02 for T = 1000).
    Linear { beta_start: f64, beta_end: f64 },
    /// Nichol & Dhariwal's cosine alpha_bar with offset `s` (0.008 in the paper).
    Cosine { s: f64 },
}

impl Default for BetaSchedule {
    fn default() -> Self {
        // Ho et al.'s schedule: the reference setting for DDPM.
        BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

/// Largest beta the cosine schedule allows (Nichol & Dhariwal clip at 0.999 to avoid a
/// singularity at t = T).
pub const COSINE_MAX_BETA: f64 = 0.999;

/// Betas and cumulative products for T discrete steps, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule; `timesteps` must be at least 1 and the betas in (0, 1).
    pub fn new(kind: &BetaSchedule, timesteps: usize) -> Result<Self> {
        if timesteps == 0 {
            return Err(Error::InvalidInput(
                "a noise schedule needs at least 1 timestep, got 0".into(),
            ));
        }
        let betas: Vec<f64> = match *kind {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => {
                if !(beta_start > 0.0 && beta_end < 1.0 && beta_start <= beta_end) {
                    return Err(Error::InvalidInput(format!(
                        "linear schedule needs 0 < beta_start <= beta_end < 1, got {beta_start} .. {beta_end}"
                    )));
                }
                if timesteps == 1 {
                    vec![beta_start]
                } else {
                    (0..timesteps)
                        .map(|i| {
                            beta_start + (beta_end - beta_start) * i as f64 / (timesteps - 1) as f64
                        })
                        .collect()
                }
            }
            BetaSchedule::Cosine { s } => {
                if !(s >= 0.0 && s.is_finite()) {
                    return Err(Error::InvalidInput(format!(
                        "cosine schedule offset s must be >= 0, got {s}"
                    )));
                }
                let t_f = timesteps as f64;
                (0..timesteps)
                    .map(|i| {
                        let a1 = cosine_alpha_bar(i as f64 / t_f, s);
                        let a2 = cosine_alpha_bar((i + 1) as f64 / t_f, s);
                        (1.0 - a2 / a1).min(COSINE_MAX_BETA)
                    })
                    .collect()
            }
        };
        let mut alphas_cumprod = Vec::with_capacity(timesteps);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        Ok(Self {
            betas,
            alphas_cumprod,
        })
    }

    /// Number of discrete steps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// alpha_bar at timestep index `i`; index -1 (before any noise) is 1.
    pub fn alpha_bar(&self, i: isize) -> f64 {
        if i < 0 {
            1.0
        } else {
            self.alphas_cumprod[i as usize]
        }
    }

    /// `k` timestep indices spread evenly over 0..T, in decreasing order, always ending at 0
    /// and starting at T-1 ("trailing"-free, both ends included). Errors if k is 0 or > T.
    pub fn spaced_timesteps(&self, k: usize) -> Result<Vec<usize>> {
        let t = self.len();
        if k == 0 || k > t {
            return Err(Error::InvalidInput(format!(
                "number of sampling steps must be between 1 and the model's {t} timesteps, got {k}"
            )));
        }
        if k == 1 {
            return Ok(vec![t - 1]);
        }
        let mut v: Vec<usize> = (0..k)
            .map(|j| ((j as f64) * (t - 1) as f64 / (k - 1) as f64).round() as usize)
            .collect();
        v.dedup();
        v.reverse();
        Ok(v)
    }
}

/// f(t)/f(0) of Nichol & Dhariwal Eq. 17, with t in [0, 1].
pub fn cosine_alpha_bar(t: f64, s: f64) -> f64 {
    let f = |t: f64| {
        ((t + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    f(t) / f(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 products of up to 1000 factors agree with closed forms to this relative error.
    const F64_REL_TOL: f64 = 1e-12;

    #[test]
    fn linear_matches_ho_et_al() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        assert_eq!(s.betas[0], 1e-4);
        assert!((s.betas[999] - 0.02).abs() < 1e-15);
        assert!((s.betas[500] - (1e-4 + 0.0199 * 500.0 / 999.0)).abs() < 1e-15);
        // Brute-force product.
        let prod: f64 = s.betas.iter().map(|b| 1.0 - b).product();
        assert!((s.alphas_cumprod[999] - prod).abs() <= F64_REL_TOL * prod);
        // Known value of this schedule: alpha_bar_T ~ 4.04e-5.
        assert!(
            (s.alphas_cumprod[999] - 4.035e-5).abs() < 1e-7,
            "{}",
            s.alphas_cumprod[999]
        );
    }

    #[test]
    fn cosine_matches_closed_form() {
        let t = 1000;
        let st = 0.008;
        let s = NoiseSchedule::new(&BetaSchedule::Cosine { s: st }, t).unwrap();
        // Wherever no beta was clipped, alpha_bar_i equals the closed form at (i+1)/T.
        for i in [0, 1, 10, 100, 500, 900, 990] {
            let exact = cosine_alpha_bar((i + 1) as f64 / t as f64, st);
            let rel = (s.alphas_cumprod[i] - exact).abs() / exact;
            assert!(rel < 1e-9, "i={i}: {} vs {exact}", s.alphas_cumprod[i]);
        }
        // The first beta is tiny (about 4e-5), not the large value that integer division gives.
        assert!(s.betas[0] > 1e-5 && s.betas[0] < 1e-4, "{}", s.betas[0]);
        assert!(s.betas.iter().all(|b| *b > 0.0 && *b <= COSINE_MAX_BETA));
        assert_eq!(s.betas[t - 1], COSINE_MAX_BETA);
    }

    #[test]
    fn regression_cosine_integer_division_bug() {
        // candle's schedule computed (i / T) with integers, giving t = 0 for every step but
        // the last. With correct float division beta grows monotonically.
        let s = NoiseSchedule::new(&BetaSchedule::Cosine { s: 0.008 }, 100).unwrap();
        assert!(s.betas.windows(2).all(|w| w[1] >= w[0]));
        assert!(s.alphas_cumprod[49] < 0.6 && s.alphas_cumprod[49] > 0.4);
    }

    #[test]
    fn spacing_and_bad_input() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let ts = s.spaced_timesteps(50).unwrap();
        assert_eq!(ts.len(), 50);
        assert_eq!((ts[0], ts[49]), (999, 0));
        assert!(ts.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(s.spaced_timesteps(1000).unwrap().len(), 1000);
        assert!(s.spaced_timesteps(0).is_err());
        assert!(s.spaced_timesteps(1001).is_err());
        assert!(NoiseSchedule::new(&BetaSchedule::default(), 0).is_err());
        assert!(NoiseSchedule::new(
            &BetaSchedule::Linear {
                beta_start: 0.5,
                beta_end: 0.1
            },
            10
        )
        .is_err());
    }
}
