//! Euler-ancestral sampler in sigma space.
//!
//! The ancestral Euler method of k-diffusion (`sample_euler_ancestral`, eta = 1) and
//! diffusers' EulerAncestralDiscreteScheduler, built on Karras, Aittala, Aila & Laine 2022,
//! arXiv:2206.00364 (Eq. 1/3 ODE slope) and the DDPM posterior of Ho et al. 2020
//! (arXiv:2006.11239, Eq. 7) written in sigma space (Song et al. 2021, arXiv:2011.13456,
//! Eq. 47 is the same split for SMLD models):
//!   sigma_up   = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)
//!   sigma_down = sqrt(sigma_next^2 - sigma_up^2)
//!   x_next = x + (sigma_down - sigma) d + sigma_up z,   d = (x - D(x; sigma)) / sigma.
//! A deterministic Euler step down to sigma_down, then fresh noise back up to sigma_next.
//! The last step (sigma_next = 0) adds no noise and draws none.

use candle_core::Tensor;

use genlab_core::{Error, Result, Rng};

use crate::options::require_steps;
use crate::registry::{check_finite_sigma, noise_like, SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise_at, levels, start_state, Level};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct EulerAncestralSampler {
    opts: SamplerOptions,
    karras: bool,
}

impl EulerAncestralSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        Ok(Self {
            opts: opts.clone(),
            karras: solver.karras_sigmas,
        })
    }
}

/// (sigma_down, sigma_up) of the step from `sigma` to `sigma_next`.
pub fn ancestral_sigmas(sigma: f64, sigma_next: f64) -> (f64, f64) {
    let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
        / (sigma * sigma))
        .max(0.0)
        .sqrt();
    let down = (sigma_next * sigma_next - up * up).max(0.0).sqrt();
    (down, up)
}

/// One ancestral step; `noise` is required when sigma_up > 0 (sigma_next > 0).
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    from: Level,
    to: Level,
    noise: Option<&Tensor>,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    let (sigma, sigma_next) = (from.sigma, to.sigma);
    let (down, up) = ancestral_sigmas(sigma, sigma_next);
    let (d, _) = denoise_at(model, x, from, clip)?;
    let x = (x + (d * (down - sigma))?)?;
    if up == 0.0 {
        return Ok(x);
    }
    let z = noise.ok_or_else(|| {
        Error::InvalidInput(format!(
            "Euler-ancestral step from sigma {sigma} to {sigma_next} needs a noise tensor"
        ))
    })?;
    Ok((x + (z * up)?)?)
}

impl Sampler for EulerAncestralSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        x_t: Tensor,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let s = levels(schedule, &self.opts, self.karras)?;
        let n = s.len() - 1;
        let mut x = start_state(&x_t, s[0], &self.opts)?;
        for i in 0..n {
            let z = if s[i + 1].sigma > 0.0 {
                Some(noise_like(rng, &x)?)
            } else {
                None
            };
            x = step(model, &x, s[i], s[i + 1], z.as_ref(), self.opts.clip_x0)?;
            check_finite_sigma(&x, "euler-ancestral", i, s[i].sigma)?;
            progress(i + 1, n);
        }
        Ok(SampleOutput { x, nfe: n })
    }
}
