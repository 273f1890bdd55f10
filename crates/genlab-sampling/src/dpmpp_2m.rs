//! DPM-Solver++(2M): the multistep second-order data-prediction solver.
//!
//! Lu, Zhou, Bao, Chen, Li & Zhu 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of
//! Diffusion Probabilistic Models", arXiv:2211.01095, Algorithm 2. With the x0 prediction
//! D_i = D(x_i; sigma_i), h_i = lambda_{i+1} - lambda_i and r_i = h_{i-1} / h_i:
//!   D'_i = (1 + 1/(2 r_i)) D_i - (1/(2 r_i)) D_{i-1}                 (first step: D'_0 = D_0)
//!   x_{i+1} = (sigma_{i+1}/sigma_i) x_i - alpha_{i+1} (e^{-h_i} - 1) D'_i
//! In the sigma-space state x = x_vp / alpha (lambda = -ln sigma) the update reads
//!   x_{i+1} = (sigma_{i+1}/sigma_i) x_i + (1 - sigma_{i+1}/sigma_i) D'_i,
//! the form of k-diffusion's `sample_dpmpp_2m`. The step to sigma = 0 is first order
//! (diffusers' `lower_order_final` / `final_sigmas_type = "zero"`), returning D. 1 NFE a step.

use candle_core::Tensor;

use genlab_core::{Result, Rng};

use crate::options::require_steps;
use crate::registry::{check_finite_sigma, SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise_at, levels, Level};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct DpmPp2mSampler {
    opts: SamplerOptions,
    karras: bool,
}

impl DpmPp2mSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        Ok(Self {
            opts: opts.clone(),
            karras: solver.karras_sigmas,
        })
    }
}

/// One DPM-Solver++(2M) step of the sigma-space state `x` from level `from` to `to`;
/// `prev` is the previous step's (x0 prediction, sigma), `None` on the first step.
/// Returns (x_next, x0 prediction at `from`) so that the caller keeps the history.
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    from: Level,
    to: Level,
    prev: Option<(&Tensor, f64)>,
    clip: Option<(f64, f64)>,
) -> Result<(Tensor, Tensor)> {
    let (sigma, sigma_next) = (from.sigma, to.sigma);
    let (_, x0) = denoise_at(model, x, from, clip)?;
    let d = match prev {
        Some((old, sigma_prev)) if sigma_next > 0.0 => {
            let h = (sigma / sigma_next).ln();
            let r = (sigma_prev / sigma).ln() / h;
            ((&x0 * (1.0 + 0.5 / r))? - (old * (0.5 / r))?)?
        }
        _ => x0.clone(),
    };
    let ratio = sigma_next / sigma; // e^{-h}
    let x_next = ((x * ratio)? + (d * (1.0 - ratio))?)?;
    Ok((x_next, x0))
}

impl Sampler for DpmPp2mSampler {
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
        // diffusers' DPMSolverMultistepScheduler starts from the VP sample itself
        // (init_noise_sigma = 1), which is exactly x_T * sqrt(1 + sigma^2) here.
        let mut x = crate::sigmas::to_sigma_space(&x_t, s[0].sigma)?;
        let mut prev: Option<(Tensor, f64)> = None;
        for i in 0..n {
            let hist = prev.as_ref().map(|(d, sp)| (d, *sp));
            let (next, x0) = step(model, &x, s[i], s[i + 1], hist, self.opts.clip_x0)?;
            check_finite_sigma(&next, "dpm++2m", i, s[i].sigma)?;
            x = next;
            prev = Some((x0, s[i].sigma));
            progress(i + 1, n);
        }
        Ok(SampleOutput { x, nfe: n })
    }
}
