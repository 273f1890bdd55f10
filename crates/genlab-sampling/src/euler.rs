//! Euler sampler for the probability-flow ODE in sigma space.
//!
//! Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based
//! Generative Models", arXiv:2206.00364, Algorithm 1 without its second-order correction:
//!   d_i = (x_i - D(x_i; sigma_i)) / sigma_i                    (Eq. 3 in Eq. 1, Alg. 1 line 4)
//!   x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i                (Alg. 1 line 5)
//! on the state x = x_vp / sqrt(alpha_bar), as diffusers' EulerDiscreteScheduler does. On
//! the same timesteps this is exactly deterministic DDIM (Song et al. 2021, Eq. 13-14).
//! Global order 1. Levels from `sigmas::levels` (the timestep grid, or Karras sigmas).

use candle_core::Tensor;

use genlab_core::{Result, Rng};

use crate::options::require_steps;
use crate::registry::{check_finite_sigma, SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise_at, levels, start_state, Level};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct EulerSampler {
    opts: SamplerOptions,
    karras: bool,
}

impl EulerSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        Ok(Self {
            opts: opts.clone(),
            karras: solver.karras_sigmas,
        })
    }
}

/// One Euler step of the sigma-space state `x` from level `from` to `to` (1 NFE).
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    from: Level,
    to: Level,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    let (d, _) = denoise_at(model, x, from, clip)?;
    Ok((x + (d * (to.sigma - from.sigma))?)?)
}

impl Sampler for EulerSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        x_t: Tensor,
        _rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let s = levels(schedule, &self.opts, self.karras)?;
        let n = s.len() - 1;
        let mut x = start_state(&x_t, s[0], &self.opts)?;
        for i in 0..n {
            x = step(model, &x, s[i], s[i + 1], self.opts.clip_x0)?;
            check_finite_sigma(&x, "euler", i, s[i].sigma)?;
            progress(i + 1, n);
        }
        Ok(SampleOutput { x, nfe: n })
    }
}
