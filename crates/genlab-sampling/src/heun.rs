//! Heun's second-order sampler for the probability-flow ODE in sigma space.
//!
//! Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based
//! Generative Models", arXiv:2206.00364, Algorithm 1 (deterministic, S_churn = 0):
//!   d_i  = (x_i - D(x_i; sigma_i)) / sigma_i                                  (line 4)
//!   x'   = x_i + (sigma_{i+1} - sigma_i) d_i                                  (line 5)
//!   d'_i = (x' - D(x'; sigma_{i+1})) / sigma_{i+1}                            (line 7)
//!   x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d_i + d'_i) / 2                  (line 8)
//! with the correction skipped on the last step to sigma = 0 (line 6), so N steps cost
//! 2N - 1 evaluations, as in diffusers' HeunDiscreteScheduler. Global order 2.

use candle_core::Tensor;

use genlab_core::{Result, Rng};

use crate::options::require_steps;
use crate::registry::{check_finite_sigma, SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise_at, levels, start_state, Level};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct HeunSampler {
    opts: SamplerOptions,
    karras: bool,
}

impl HeunSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        Ok(Self {
            opts: opts.clone(),
            karras: solver.karras_sigmas,
        })
    }
}

/// One Heun step from level `from` to `to` (2 NFE, 1 when `to.sigma` is 0).
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    from: Level,
    to: Level,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    let dt = to.sigma - from.sigma;
    let (d, _) = denoise_at(model, x, from, clip)?;
    let x_euler = (x + (&d * dt)?)?;
    if to.sigma == 0.0 {
        return Ok(x_euler);
    }
    let (d2, _) = denoise_at(model, &x_euler, to, clip)?;
    Ok((x + ((d + d2)? * (0.5 * dt))?)?)
}

impl Sampler for HeunSampler {
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
            check_finite_sigma(&x, "heun", i, s[i].sigma)?;
            progress(i + 1, n);
        }
        Ok(SampleOutput { x, nfe: 2 * n - 1 })
    }
}
