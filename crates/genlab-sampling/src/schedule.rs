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
//! - Scaled-linear betas (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
//!   Diffusion Models", arXiv:2112.10752; the Stable Diffusion schedule, diffusers'
//!   `beta_schedule = "scaled_linear"`): beta_i = (sqrt(b0) + (sqrt(b1) - sqrt(b0)) i/(T-1))^2,
//!   b0 = 0.00085, b1 = 0.012 for SD 1.x/2.x. Trained betas: an explicit list of T values
//!   (diffusers' `trained_betas`).
//!
//! - The continuous-time SDEs of Song et al. 2021, "Score-Based Generative Modeling through
//!   Stochastic Differential Equations", arXiv:2011.13456, Sec. 3.4 and App. B, evaluated at
//!   t = (i+1)/T. Each has a Gaussian perturbation kernel x_t = m(t) x_0 + s(t) eps, with
//!   B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2:
//!   VP:     m = exp(-B/2), s = sqrt(1 - exp(-B))   (the continuous limit of `Linear`);
//!   sub-VP: m = exp(-B/2), s = 1 - exp(-B);
//!   VE:     m = 1, s = sigma(t) = sigma_min (sigma_max / sigma_min)^t (NCSN's geometric sigmas).
//!
//! Every schedule is stored in VP form: alpha_bar = m^2 / (m^2 + s^2) and the VP sample
//! x_vp = x_t / sqrt(m^2 + s^2) = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps. The samplers
//! work on x_vp and alpha_bar only; [`NoiseSchedule::input_scale_at`] = sqrt(m^2 + s^2) turns
//! x_vp back into the SDE's own x_t, which is what the network is trained on (1 for the VP
//! schedules). A VE chain in VP form is exactly a VP chain: x_t = x_{t-1} + sqrt(s_t^2 -
//! s_{t-1}^2) z becomes x_vp,t = sqrt(a_t / a_{t-1}) x_vp,t-1 + sqrt(1 - a_t / a_{t-1}) z,
//! so every sampler applies to every schedule (sub-VP's transitions differ, but its
//! marginals, which the deterministic samplers use, are the VP-form ones).
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
    /// The VP SDE (Song et al. 2021 use beta_min = 0.1, beta_max = 20).
    VpSde { beta_min: f64, beta_max: f64 },
    /// The sub-VP SDE (same betas as VP in Song et al. 2021).
    SubVpSde { beta_min: f64, beta_max: f64 },
    /// The VE SDE: geometric sigmas from sigma_min to sigma_max (Song et al. 2021 take
    /// sigma_min = 0.01 and sigma_max about the largest distance between data points, 50 for
    /// CIFAR-10; Song & Ermon 2020, Technique 1).
    VeSde { sigma_min: f64, sigma_max: f64 },
    /// Betas linear in sqrt(beta) (Stable Diffusion's "scaled_linear", see the module header).
    ScaledLinear { beta_start: f64, beta_end: f64 },
    /// An explicit list of T betas (diffusers' `trained_betas`); its length must be T.
    Trained { betas: Vec<f64> },
}

impl BetaSchedule {
    /// (m(t), s(t)) of the SDE schedules' perturbation kernels at t in (0, 1]; `None` for the
    /// discrete ones.
    pub fn sde_kernel(&self, t: f64) -> Option<(f64, f64)> {
        let big_b = |lo: f64, hi: f64| lo * t + 0.5 * (hi - lo) * t * t;
        match *self {
            BetaSchedule::VpSde { beta_min, beta_max } => {
                let b = big_b(beta_min, beta_max);
                Some(((-0.5 * b).exp(), (-(-b).exp_m1()).sqrt()))
            }
            BetaSchedule::SubVpSde { beta_min, beta_max } => {
                let b = big_b(beta_min, beta_max);
                Some(((-0.5 * b).exp(), -(-b).exp_m1()))
            }
            BetaSchedule::VeSde {
                sigma_min,
                sigma_max,
            } => Some((1.0, sigma_min * (sigma_max / sigma_min).powf(t))),
            _ => None,
        }
    }
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
    /// sqrt(m^2 + s^2) per timestep: the factor from the VP sample to the SDE's own x_t that
    /// the network sees (all 1 for the VP schedules).
    pub input_scales: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule; `timesteps` must be at least 1 and the betas in (0, 1).
    pub fn new(kind: &BetaSchedule, timesteps: usize) -> Result<Self> {
        if timesteps == 0 {
            return Err(Error::InvalidInput(
                "a noise schedule needs at least 1 timestep, got 0".into(),
            ));
        }
        if let Some(sched) = Self::from_sde(kind, timesteps)? {
            return Ok(sched);
        }
        let betas: Vec<f64> = match *kind {
            BetaSchedule::ScaledLinear {
                beta_start,
                beta_end,
            } => {
                if !(beta_start > 0.0 && beta_end < 1.0 && beta_start <= beta_end) {
                    return Err(Error::InvalidInput(format!(
                        "scaled-linear schedule needs 0 < beta_start <= beta_end < 1, got {beta_start} .. {beta_end}"
                    )));
                }
                let (r0, r1) = (beta_start.sqrt(), beta_end.sqrt());
                (0..timesteps)
                    .map(|i| {
                        let w = if timesteps == 1 {
                            0.0
                        } else {
                            i as f64 / (timesteps - 1) as f64
                        };
                        (r0 + (r1 - r0) * w).powi(2)
                    })
                    .collect()
            }
            BetaSchedule::Trained { ref betas } => {
                if betas.len() != timesteps {
                    return Err(Error::InvalidInput(format!(
                        "trained betas: {} values for {timesteps} timesteps",
                        betas.len()
                    )));
                }
                if let Some(b) = betas.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
                    return Err(Error::InvalidInput(format!(
                        "trained betas must lie in (0, 1), got {b}"
                    )));
                }
                betas.clone()
            }
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
            _ => unreachable!("the SDE schedules returned above"),
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
            input_scales: vec![1.0; timesteps],
        })
    }

    /// The SDE schedules at t = (i+1)/T, in VP form (see the module header); `None` for the
    /// discrete ones.
    fn from_sde(kind: &BetaSchedule, timesteps: usize) -> Result<Option<Self>> {
        match *kind {
            BetaSchedule::VpSde { beta_min, beta_max }
            | BetaSchedule::SubVpSde { beta_min, beta_max } => {
                if !(beta_min > 0.0 && beta_min <= beta_max && beta_max.is_finite()) {
                    return Err(Error::InvalidInput(format!(
                        "an SDE schedule needs 0 < beta_min <= beta_max, got {beta_min} .. {beta_max}"
                    )));
                }
            }
            BetaSchedule::VeSde {
                sigma_min,
                sigma_max,
            } => {
                if !(sigma_min > 0.0 && sigma_min < sigma_max && sigma_max.is_finite()) {
                    return Err(Error::InvalidInput(format!(
                        "the VE schedule needs 0 < sigma_min < sigma_max, got {sigma_min} .. {sigma_max}"
                    )));
                }
            }
            _ => return Ok(None),
        }
        let (mut betas, mut alphas_cumprod, mut input_scales) = (vec![], vec![], vec![]);
        let mut prev = 1.0;
        for i in 0..timesteps {
            let (m, s) = kind
                .sde_kernel((i + 1) as f64 / timesteps as f64)
                .expect("an SDE schedule");
            let a = m * m / (m * m + s * s);
            betas.push(1.0 - a / prev);
            alphas_cumprod.push(a);
            // VP: m^2 + s^2 = 1 exactly (kept exact so that `is_vp` holds).
            let vp = matches!(kind, BetaSchedule::VpSde { .. });
            input_scales.push(if vp { 1.0 } else { (m * m + s * s).sqrt() });
            prev = a;
        }
        Ok(Some(Self {
            betas,
            alphas_cumprod,
            input_scales,
        }))
    }

    /// [`NoiseSchedule::input_scales`] at a continuous timestep in [-1, T-1] (1 at -1, the
    /// clean data; linear in between integers).
    pub fn input_scale_at(&self, t: f64) -> f64 {
        let last = self.len() - 1;
        if t <= -1.0 {
            return 1.0;
        }
        let t = t.min(last as f64);
        let i = t.floor();
        let w = t - i;
        let at = |i: f64| {
            if i < 0.0 {
                1.0
            } else {
                self.input_scales[i as usize]
            }
        };
        if w == 0.0 {
            at(i)
        } else {
            at(i) * (1.0 - w) + at(i + 1.0) * w
        }
    }

    /// The first `len` timesteps of this schedule (the same alpha_bar at each of them): a
    /// run over it starts at timestep `len - 1` instead of T - 1, which is how img2img
    /// (SDEdit) denoises from part of the way. Errors unless 1 <= len <= T.
    pub fn truncated(&self, len: usize) -> Result<NoiseSchedule> {
        if len == 0 || len > self.len() {
            return Err(Error::InvalidInput(format!(
                "a truncated schedule keeps 1 to {} timesteps, got {len}",
                self.len()
            )));
        }
        Ok(NoiseSchedule {
            betas: self.betas[..len].to_vec(),
            alphas_cumprod: self.alphas_cumprod[..len].to_vec(),
            input_scales: self.input_scales[..len].to_vec(),
        })
    }

    /// Whether the network sees the VP sample unchanged (every input scale is 1).
    pub fn is_vp(&self) -> bool {
        self.input_scales.iter().all(|&c| c == 1.0)
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

    /// alpha_bar at a continuous timestep `t` in [-1, T-1]: 1 at -1 (the clean data), the
    /// schedule's value at integers, ln sigma linear in between (`sigmas::sigma_at`); linear in
    /// alpha_bar between -1 and 0. This is what a step between fractional timesteps (the
    /// trailing grid, distilled students) uses.
    pub fn alpha_bar_at(&self, t: f64) -> f64 {
        if t <= -1.0 {
            1.0
        } else if t.fract() == 0.0 && t >= 0.0 && t < self.len() as f64 {
            self.alphas_cumprod[t as usize] // exact at integers
        } else if t < 0.0 {
            1.0 + (t + 1.0) * (self.alphas_cumprod[0] - 1.0)
        } else {
            crate::sigmas::alpha_bar_at(self, t)
        }
    }

    /// The decreasing timesteps of a `k`-step run with the given spacing (see [`Spacing`]);
    /// the step after the last one goes to the clean data (timestep -1). Errors if k is 0 or
    /// above T.
    pub fn timesteps(&self, k: usize, spacing: Spacing) -> Result<Vec<f64>> {
        match spacing {
            Spacing::Linspace => Ok(self
                .spaced_timesteps(k)?
                .into_iter()
                .map(|t| t as f64)
                .collect()),
            Spacing::Trailing => {
                let t = self.len();
                if k == 0 || k > t {
                    return Err(Error::InvalidInput(format!(
                        "number of sampling steps must be between 1 and the model's {t} timesteps, got {k}"
                    )));
                }
                Ok((1..=k).rev().map(|i| trailing_timestep(t, i, k)).collect())
            }
            Spacing::LogSnr => {
                let t = self.len();
                if k == 0 || k > t {
                    return Err(Error::InvalidInput(format!(
                        "number of sampling steps must be between 1 and the model's {t} timesteps, got {k}"
                    )));
                }
                if k == 1 {
                    return Ok(vec![(t - 1) as f64]);
                }
                // ln sigma = -lambda / 2: uniform in lambda is uniform in ln sigma.
                let lo = crate::sigmas::sigma_at(self, 0.0).ln();
                let hi = crate::sigmas::sigma_at(self, (t - 1) as f64).ln();
                Ok((0..k)
                    .map(|j| {
                        let ls = hi + (lo - hi) * j as f64 / (k - 1) as f64;
                        crate::sigmas::timestep_at(self, ls.exp())
                    })
                    .collect())
            }
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

/// Where the steps of a k-step sampling run sit on the model's T timesteps.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Spacing {
    /// `round(j (T-1) / (k-1))`, both ends included (DDIM's evenly spaced subsequence, and
    /// diffusers' "linspace" whenever (T-1)/(k-1) is an integer).
    #[default]
    Linspace,
    /// `T i / k - 1` for i = k..1, fractional where k does not divide T: starts at T-1 and
    /// ends one interval above the clean data (diffusers' "trailing", without its rounding).
    /// Halving k keeps every other step, so a k-step grid lies inside the 2k-step one: the
    /// grid progressive distillation needs (Salimans & Ho 2022, Alg. 2: t = i/N).
    Trailing,
    /// Uniform in log-SNR, lambda = ln(alpha_bar / (1 - alpha_bar)), from timestep T-1 to 0
    /// (both ends), at the fractional timesteps where the schedule reaches each lambda: the
    /// spacing Lu et al. 2022 (DPM-Solver, Sec. 3.3/App. D) use for few-step sampling.
    LogSnr,
}

impl std::fmt::Display for Spacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Linspace => "linspace",
            Self::Trailing => "trailing",
            Self::LogSnr => "logsnr",
        })
    }
}

impl std::str::FromStr for Spacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linspace" => Ok(Self::Linspace),
            "trailing" => Ok(Self::Trailing),
            "logsnr" => Ok(Self::LogSnr),
            _ => Err(Error::InvalidInput(format!(
                "unknown timestep spacing `{s}` (known: linspace, trailing, logsnr)"
            ))),
        }
    }
}

/// Timestep i of a k-step trailing grid over T timesteps (i = 0 is the clean data, -1).
pub fn trailing_timestep(t: usize, i: usize, k: usize) -> f64 {
    t as f64 * i as f64 / k as f64 - 1.0
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
    /// |ln alpha_bar| gap between Ho et al.'s discrete schedule and the VP SDE it discretises:
    /// the second-order term sum(beta_i^2) / 2 is 0.067 at T = 1000.
    const DDPM_VS_VP_LOG_TOL: f64 = 0.08;

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
    fn scaled_linear_matches_stable_diffusion() {
        // SD 1.x/2.x: sqrt-linear from 0.00085 to 0.012 over 1000 steps.
        let s = NoiseSchedule::new(
            &BetaSchedule::ScaledLinear {
                beta_start: 0.00085,
                beta_end: 0.012,
            },
            1000,
        )
        .unwrap();
        assert!((s.betas[0] - 0.00085).abs() < 1e-15);
        assert!((s.betas[999] - 0.012).abs() < 1e-15);
        let mid =
            (0.00085f64.sqrt() + (0.012f64.sqrt() - 0.00085f64.sqrt()) * 500.0 / 999.0).powi(2);
        assert!((s.betas[500] - mid).abs() < 1e-15);
        // Known value of SD's schedule: alpha_bar at t = 999 is 0.0046.
        assert!(
            (s.alphas_cumprod[999] - 0.004_660_5).abs() < 1e-6,
            "{}",
            s.alphas_cumprod[999]
        );
        let t = NoiseSchedule::new(
            &BetaSchedule::Trained {
                betas: s.betas.clone(),
            },
            1000,
        )
        .unwrap();
        assert_eq!(t, s);
        assert!(NoiseSchedule::new(
            &BetaSchedule::Trained {
                betas: vec![0.1; 3]
            },
            4
        )
        .is_err());
        assert!(NoiseSchedule::new(&BetaSchedule::Trained { betas: vec![1.5] }, 1).is_err());
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
    fn trailing_grids_nest_and_cover_the_discrete_grid() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        // k = T: every integer timestep, T-1 down to 0.
        let full = s.timesteps(1000, Spacing::Trailing).unwrap();
        assert_eq!(full, (0..1000).rev().map(|t| t as f64).collect::<Vec<_>>());
        // Halving keeps every other step (the k-grid is inside the 2k-grid), down to 1 step.
        for k in [256usize, 128, 64, 8, 2] {
            let fine = s.timesteps(2 * k, Spacing::Trailing).unwrap();
            let coarse = s.timesteps(k, Spacing::Trailing).unwrap();
            for (i, c) in coarse.iter().enumerate() {
                assert!((fine[2 * i] - c).abs() < 1e-12, "k={k} i={i}");
            }
        }
        assert_eq!(s.timesteps(1, Spacing::Trailing).unwrap(), vec![999.0]);
        // diffusers' trailing spacing for 50 of 1000 steps: 999, 979, ..., 19.
        let t50 = s.timesteps(50, Spacing::Trailing).unwrap();
        assert_eq!((t50[0], t50[1], t50[49]), (999.0, 979.0, 19.0));
        assert!(s.timesteps(0, Spacing::Trailing).is_err());
        assert!(s.timesteps(1001, Spacing::Trailing).is_err());
        assert_eq!("trailing".parse::<Spacing>().unwrap(), Spacing::Trailing);
        // logsnr: both ends, and equal steps in lambda = -2 ln sigma.
        let ls = s.timesteps(10, Spacing::LogSnr).unwrap();
        assert_eq!(ls.len(), 10);
        assert!((ls[0] - 999.0).abs() < 1e-9 && ls[9].abs() < 1e-9, "{ls:?}");
        let lambda = |t: f64| {
            let a = s.alpha_bar_at(t);
            (a / (1.0 - a)).ln()
        };
        let d0 = lambda(ls[1]) - lambda(ls[0]);
        for w in ls.windows(2) {
            assert!(
                ((lambda(w[1]) - lambda(w[0])) - d0).abs() < 1e-6 * d0.abs(),
                "{ls:?}"
            );
        }
        assert_eq!("logsnr".parse::<Spacing>().unwrap(), Spacing::LogSnr);
        assert!("even"
            .parse::<Spacing>()
            .unwrap_err()
            .to_string()
            .contains("linspace"));
    }

    #[test]
    fn continuous_alpha_bar_is_exact_at_integers_and_monotone() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        assert_eq!(s.alpha_bar_at(-1.0), 1.0);
        for t in [0usize, 1, 17, 500, 999] {
            let rel = (s.alpha_bar_at(t as f64) - s.alphas_cumprod[t]).abs() / s.alphas_cumprod[t];
            assert!(rel < F64_REL_TOL, "t={t}: {rel}");
        }
        let mut prev = 1.0 + 1e-12;
        for i in 0..=4000 {
            let a = s.alpha_bar_at(-1.0 + i as f64 * 0.25);
            assert!(a < prev, "alpha_bar must fall with t (i={i})");
            prev = a;
        }
    }

    #[test]
    fn sde_schedules_match_their_perturbation_kernels() {
        let t_steps = 1000;
        let (lo, hi) = (0.1, 20.0);
        let vp = NoiseSchedule::new(
            &BetaSchedule::VpSde {
                beta_min: lo,
                beta_max: hi,
            },
            t_steps,
        )
        .unwrap();
        let sub = NoiseSchedule::new(
            &BetaSchedule::SubVpSde {
                beta_min: lo,
                beta_max: hi,
            },
            t_steps,
        )
        .unwrap();
        let ve = NoiseSchedule::new(
            &BetaSchedule::VeSde {
                sigma_min: 0.01,
                sigma_max: 50.0,
            },
            t_steps,
        )
        .unwrap();
        let ddpm = NoiseSchedule::new(&BetaSchedule::default(), t_steps).unwrap();
        for i in [0usize, 10, 499, 999] {
            let t = (i + 1) as f64 / t_steps as f64;
            let b = lo * t + 0.5 * (hi - lo) * t * t; // int_0^t beta, by hand
                                                      // VP: alpha_bar = exp(-B), input scale 1.
            assert!((vp.alphas_cumprod[i] - (-b).exp()).abs() <= F64_REL_TOL * (-b).exp());
            assert_eq!(vp.input_scales[i], 1.0);
            // The DDPM linear schedule is its discretisation: ln prod(1 - beta_i) differs from
            // -B(t) by about sum(beta_i^2) / 2 <= 0.07 at t = 1.
            let gap = (ddpm.alphas_cumprod[i].ln() - vp.alphas_cumprod[i].ln()).abs();
            assert!(gap < DDPM_VS_VP_LOG_TOL, "i={i}: {gap}");
            // sub-VP: m = exp(-B/2), s = 1 - exp(-B); alpha_bar = m^2 / (m^2 + s^2).
            let (m, s) = ((-0.5 * b).exp(), 1.0 - (-b).exp());
            let a = m * m / (m * m + s * s);
            assert!((sub.alphas_cumprod[i] - a).abs() <= 1e-12 * a.max(1e-300) + 1e-15);
            assert!((sub.input_scales[i] - (m * m + s * s).sqrt()).abs() < 1e-12);
            // VE: sigma = 0.01 * 5000^t, alpha_bar = 1 / (1 + sigma^2), scale sqrt(1 + sigma^2).
            let sigma = 0.01 * 5000f64.powf(t);
            assert!((ve.alphas_cumprod[i] - 1.0 / (1.0 + sigma * sigma)).abs() < 1e-12);
            assert!(
                (ve.input_scales[i] - (1.0 + sigma * sigma).sqrt()).abs() < 1e-9 * sigma.max(1.0)
            );
        }
        // Every VP-form schedule's betas rebuild its alpha_bar as a product.
        for s in [&vp, &sub, &ve] {
            let mut acc = 1.0;
            for (b, a) in s.betas.iter().zip(&s.alphas_cumprod) {
                acc *= 1.0 - b;
                assert!((acc - a).abs() <= 1e-9 * a, "{acc} vs {a}");
            }
            assert!(s.betas.iter().all(|b| *b > 0.0 && *b < 1.0));
        }
        assert!(vp.is_vp() && ddpm.is_vp() && !sub.is_vp() && !ve.is_vp());
        assert_eq!(ve.input_scale_at(-1.0), 1.0);
        let mid = ve.input_scale_at(10.5);
        assert!((mid - 0.5 * (ve.input_scales[10] + ve.input_scales[11])).abs() < 1e-12);
        assert!(NoiseSchedule::new(
            &BetaSchedule::VeSde {
                sigma_min: 1.0,
                sigma_max: 0.5
            },
            10
        )
        .is_err());
        assert!(NoiseSchedule::new(
            &BetaSchedule::VpSde {
                beta_min: 0.0,
                beta_max: 20.0
            },
            10
        )
        .is_err());
    }

    #[test]
    fn a_ve_chain_in_vp_form_is_a_vp_chain() {
        // x_t = x_{t-1} + sqrt(s_t^2 - s_{t-1}^2) z (Song & Ermon's noise levels) and, divided by
        // sqrt(1 + s^2), x_vp,t = sqrt(a_t / a_{t-1}) x_vp,t-1 + sqrt(1 - a_t / a_{t-1}) z: the
        // same coefficients, for any x_{t-1} and z.
        let ve = NoiseSchedule::new(
            &BetaSchedule::VeSde {
                sigma_min: 0.01,
                sigma_max: 50.0,
            },
            100,
        )
        .unwrap();
        for i in 1..100 {
            let (c0, c1) = (ve.input_scales[i - 1], ve.input_scales[i]);
            let (s0, s1) = ((c0 * c0 - 1.0).sqrt(), (c1 * c1 - 1.0).sqrt());
            let ratio = ve.alphas_cumprod[i] / ve.alphas_cumprod[i - 1];
            for (x, z) in [(0.3, -1.2), (-2.0, 0.7)] {
                let ve_next = x + (s1 * s1 - s0 * s0).sqrt() * z;
                let vp_next = ratio.sqrt() * (x / c0) + (1.0 - ratio).sqrt() * z;
                assert!((ve_next / c1 - vp_next).abs() < 1e-9, "i={i}");
            }
        }
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
