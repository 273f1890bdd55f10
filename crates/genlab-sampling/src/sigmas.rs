//! The sigma-space view of a discrete VP schedule, shared by the ODE/SDE samplers (Euler,
//! Heun, Euler-ancestral, RK45, DPM-Solver, DPM-Solver++).
//!
//! Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based
//! Generative Models", arXiv:2206.00364. With sigma = sqrt((1-a)/a) and the state
//! x = x_vp / sqrt(a) (the VP scaling s(t) = 1/sqrt(1+sigma^2) divided out, as diffusers'
//! EulerDiscreteScheduler does), the probability-flow ODE is (Eq. 1 with Eq. 3, sigma(t) = t)
//!   dx/dsigma = (x - D(x; sigma)) / sigma,
//! where D is the x0 prediction; for an epsilon network the slope is eps itself. In this
//! state, Lu et al.'s half log-SNR lambda = log(alpha/sigma_vp) is simply -ln sigma.
//!
//! Continuous time: between the schedule's integer timesteps ln sigma is interpolated
//! linearly in t (the rule diffusers' `_sigma_to_t` uses to map Karras sigmas back to
//! timesteps), so [`sigma_at`] and [`timestep_at`] are inverses and exact at integers.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::Result;

use crate::denoiser::to_eps_x0;
use crate::registry::maybe_clip;
use crate::{Denoiser, NoiseSchedule, SamplerOptions, Spacing};

/// How sigma is found at a fractional timestep.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SigmaInterpolation {
    /// ln sigma linear in t ([`sigma_at`]; the exact inverse of [`timestep_at`]).
    #[default]
    LogLinear,
    /// sigma itself linear in t (numpy's `interp` over the sigmas: diffusers'
    /// Euler-family `interpolation_type = "linear"`, their default).
    Linear,
}

/// One noise level of a sigma-space run: sigma and the timestep the network is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub sigma: f64,
    pub t: f64,
}

impl Level {
    /// The clean data: sigma 0 (timestep -1, never shown to the network).
    pub const CLEAN: Level = Level {
        sigma: 0.0,
        t: -1.0,
    };

    /// The level at `sigma`, at the timestep [`timestep_at`] gives.
    pub fn at_sigma(schedule: &NoiseSchedule, sigma: f64) -> Self {
        Level {
            sigma,
            t: timestep_at(schedule, sigma),
        }
    }
}

/// sigma at a continuous timestep with the given interpolation.
pub fn sigma_at_with(schedule: &NoiseSchedule, t: f64, how: SigmaInterpolation) -> f64 {
    match how {
        SigmaInterpolation::LogLinear => sigma_at(schedule, t),
        SigmaInterpolation::Linear => {
            let last = schedule.len() - 1;
            let t = t.clamp(0.0, last as f64);
            let i = (t.floor() as usize).min(last.saturating_sub(1));
            let w = t - i as f64;
            let s0 = sigma_from_alpha_bar(schedule.alphas_cumprod[i]);
            if w == 0.0 || last == 0 {
                return s0;
            }
            let s1 = sigma_from_alpha_bar(schedule.alphas_cumprod[i + 1]);
            s0 + (s1 - s0) * w
        }
    }
}

/// The decreasing levels of a run with these options, ending with [`Level::CLEAN`]: the
/// grid timesteps (`registry::grid_timesteps`) with their sigmas (`opts.sigma_interpolation`),
/// or with `karras` Eq. 5 sigmas between sigma(0) and the first timestep's sigma, each at
/// [`timestep_at`] its sigma.
pub fn levels(schedule: &NoiseSchedule, opts: &SamplerOptions, karras: bool) -> Result<Vec<Level>> {
    let ts = crate::registry::grid_timesteps(schedule, opts)?;
    let mut out: Vec<Level> = if karras {
        let (lo, hi) = (sigma_at(schedule, 0.0), sigma_at(schedule, ts[0]));
        karras_sigmas(lo, hi, ts.len(), KARRAS_RHO)
            .into_iter()
            .map(|s| Level::at_sigma(schedule, s))
            .collect()
    } else {
        ts.iter()
            .map(|&t| Level {
                sigma: sigma_at_with(schedule, t, opts.sigma_interpolation),
                t,
            })
            .collect()
    };
    out.push(Level::CLEAN);
    Ok(out)
}

/// The sigma-space state a run starts from: x_T * sqrt(1 + sigma^2), or x_T * sigma with
/// `opts.init_noise_sigma_max` (diffusers' linspace/trailing `init_noise_sigma`).
pub fn start_state(x_t: &Tensor, first: Level, opts: &SamplerOptions) -> Result<Tensor> {
    if opts.init_noise_sigma_max {
        Ok((x_t * first.sigma)?)
    } else {
        to_sigma_space(x_t, first.sigma)
    }
}

/// Karras et al.'s rho (Eq. 5; "rho = 7 ... as a reasonable default", Sec. 3).
pub const KARRAS_RHO: f64 = 7.0;

/// sigma = sqrt((1 - a) / a) for alpha_bar `a`.
pub fn sigma_from_alpha_bar(a: f64) -> f64 {
    ((1.0 - a) / a).sqrt()
}

/// alpha_bar = 1 / (1 + sigma^2), the inverse of [`sigma_from_alpha_bar`].
pub fn alpha_bar_from_sigma(sigma: f64) -> f64 {
    1.0 / (1.0 + sigma * sigma)
}

fn log_sigma(schedule: &NoiseSchedule, i: usize) -> f64 {
    sigma_from_alpha_bar(schedule.alphas_cumprod[i]).ln()
}

/// sigma at a continuous timestep `t`, clamped to [0, T-1]; ln sigma is linear in t between
/// integer timesteps and exact at them.
pub fn sigma_at(schedule: &NoiseSchedule, t: f64) -> f64 {
    let last = schedule.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let i = (t.floor() as usize).min(last.saturating_sub(1));
    let w = t - i as f64;
    if w == 0.0 || last == 0 {
        return sigma_from_alpha_bar(schedule.alphas_cumprod[i]);
    }
    if w == 1.0 {
        return sigma_from_alpha_bar(schedule.alphas_cumprod[i + 1]);
    }
    (log_sigma(schedule, i) * (1.0 - w) + log_sigma(schedule, i + 1) * w).exp()
}

/// alpha_bar at a continuous timestep (via [`sigma_at`]): what a continuous-time denoiser
/// must use to agree with the samplers between integer timesteps.
pub fn alpha_bar_at(schedule: &NoiseSchedule, t: f64) -> f64 {
    alpha_bar_from_sigma(sigma_at(schedule, t))
}

/// The continuous timestep whose sigma is `sigma` (inverse of [`sigma_at`]), clamped to
/// [0, T-1]. Schedule sigmas increase strictly with t, so a bisection finds the segment.
pub fn timestep_at(schedule: &NoiseSchedule, sigma: f64) -> f64 {
    let n = schedule.len();
    let ls = sigma.ln();
    if n == 1 || ls <= log_sigma(schedule, 0) {
        return 0.0;
    }
    if ls >= log_sigma(schedule, n - 1) {
        return (n - 1) as f64;
    }
    let (mut lo, mut hi) = (0, n - 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if log_sigma(schedule, mid) <= ls {
            lo = mid
        } else {
            hi = mid
        }
    }
    let (l0, l1) = (log_sigma(schedule, lo), log_sigma(schedule, hi));
    lo as f64 + (ls - l0) / (l1 - l0)
}

/// Karras et al. Eq. 5: n sigmas from `sigma_max` down to `sigma_min`, evenly spaced in
/// sigma^(1/rho).
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize, rho: f64) -> Vec<f64> {
    if n == 1 {
        return vec![sigma_max];
    }
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    (0..n)
        .map(|i| (hi + i as f64 / (n - 1) as f64 * (lo - hi)).powf(rho))
        .collect()
}

/// The decreasing sigmas of a `steps`-interval run, ending with 0 (so `steps + 1` values).
/// Default: the sigmas of `NoiseSchedule::timesteps(steps, spacing)` (linspace: both ends
/// included, equal to diffusers' "linspace" spacing whenever (T-1)/(steps-1) is an integer).
/// `karras`: Eq. 5 between sigma(0) and sigma(T-1) with rho = 7, whatever the spacing.
/// Errors like `timesteps` when steps is 0 or above T.
pub fn sigma_grid(
    schedule: &NoiseSchedule,
    steps: usize,
    karras: bool,
    spacing: Spacing,
) -> Result<Vec<f64>> {
    let ts = schedule.timesteps(steps, spacing)?;
    let mut s = if karras {
        let (lo, hi) = (sigma_at(schedule, 0.0), sigma_at(schedule, ts[0]));
        karras_sigmas(lo, hi, ts.len(), KARRAS_RHO)
    } else {
        ts.iter().map(|&t| sigma_at(schedule, t)).collect()
    };
    s.push(0.0);
    Ok(s)
}

/// VP sample -> sigma-space state: x_vp * sqrt(1 + sigma^2).
pub fn to_sigma_space(x_vp: &Tensor, sigma: f64) -> Result<Tensor> {
    Ok((x_vp * (1.0 + sigma * sigma).sqrt())?)
}

/// The denoiser in sigma space at `sigma > 0`: returns (d, x0) with x0 = D(x; sigma)
/// (clamped when `clip` asks) and the ODE slope d = (x - x0) / sigma. The network sees
/// x_vp = x / sqrt(1 + sigma^2) (diffusers' `scale_model_input`) at `timestep_at(sigma)`.
pub(crate) fn denoise(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    x: &Tensor,
    sigma: f64,
    clip: Option<(f64, f64)>,
) -> Result<(Tensor, Tensor)> {
    denoise_at(model, x, Level::at_sigma(schedule, sigma), clip)
}

/// [`denoise`] at a [`Level`]: the network sees x / sqrt(1 + sigma^2) at `level.t`.
pub(crate) fn denoise_at(
    model: &dyn Denoiser,
    x: &Tensor,
    level: Level,
    clip: Option<(f64, f64)>,
) -> Result<(Tensor, Tensor)> {
    let sigma = level.sigma;
    let a = alpha_bar_from_sigma(sigma);
    let x_vp = (x * a.sqrt())?;
    let out = model.predict(&x_vp, level.t)?;
    let (_, x0) = to_eps_x0(model.prediction(), &out, &x_vp, a)?;
    let x0 = maybe_clip(x0, clip)?;
    let d = ((x - &x0)? / sigma)?;
    Ok((d, x0))
}

/// x + sum_i c_i k_i, skipping zero coefficients (Runge-Kutta stages, multistep updates).
pub(crate) fn lincomb(x: &Tensor, terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let mut acc = x.clone();
    for &(c, k) in terms {
        if c != 0.0 {
            acc = (acc + (k * c)?)?;
        }
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BetaSchedule;

    /// f64 round trips through ln/exp keep this relative accuracy.
    const ROUND_TRIP_TOL: f64 = 1e-12;

    #[test]
    fn sigma_and_timestep_are_inverse_and_exact_at_integers() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        for t in [0usize, 1, 111, 500, 998, 999] {
            let exact = sigma_from_alpha_bar(s.alphas_cumprod[t]);
            assert_eq!(sigma_at(&s, t as f64), exact);
            assert!((timestep_at(&s, exact) - t as f64).abs() < ROUND_TRIP_TOL);
        }
        for t in [0.25, 17.5, 640.3, 998.9] {
            let back = timestep_at(&s, sigma_at(&s, t));
            assert!((back - t).abs() < ROUND_TRIP_TOL * 1000.0, "{t} -> {back}");
        }
        // Clamped outside [sigma_min, sigma_max].
        assert_eq!(timestep_at(&s, 1e-9), 0.0);
        assert_eq!(timestep_at(&s, 1e9), 999.0);
    }

    #[test]
    fn karras_grid_matches_eq5_endpoints() {
        let s = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let g = sigma_grid(&s, 10, true, Spacing::Linspace).unwrap();
        assert_eq!(g.len(), 11);
        assert!((g[0] / sigma_at(&s, 999.0) - 1.0).abs() < ROUND_TRIP_TOL);
        assert!((g[9] / sigma_at(&s, 0.0) - 1.0).abs() < ROUND_TRIP_TOL);
        assert_eq!(g[10], 0.0);
        assert!(g.windows(2).all(|w| w[0] > w[1]));
        assert!(sigma_grid(&s, 0, false, Spacing::Linspace).is_err());
        assert_eq!(sigma_grid(&s, 1, true, Spacing::Linspace).unwrap().len(), 2);
    }
}
