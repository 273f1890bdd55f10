//! Singlestep DPM-Solver of order 1, 2 or 3.
//!
//! Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver: A Fast ODE Solver for Diffusion
//! Probabilistic Model Sampling in Around 10 Steps", arXiv:2206.00927. The exact solution
//! of the probability-flow ODE from s to t (Eq. 3.4, lambda = log(alpha/sigma_vp)),
//!   x_t = (alpha_t/alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^{-lambda} eps dlambda,
//! is expanded in h = lambda_t - lambda_s: DPM-Solver-1 (Eq. 3.7, = DDIM), DPM-Solver-2
//! (Algorithm 1, r1 = 1/2) and DPM-Solver-3 (Algorithm 2, r1 = 1/3, r2 = 2/3).
//! Written in the sigma-space state x = x_vp / alpha (so lambda = -ln sigma and
//! sigma_t (e^h - 1) / alpha_t = sigma_s - sigma_t), with intermediate sigma_r = sigma_s e^{-r h}:
//!   order 1: x_t = x - (sigma_s - sigma_t) eps_s
//!   order 2: u = x - (sigma_s - sigma_1) eps_s;  x_t = x - (sigma_s - sigma_t) eps(u, sigma_1)
//!   order 3: u1 = x - (sigma_s - sigma_1) eps_s,  D1 = eps(u1, sigma_1) - eps_s,
//!            u2 = x - (sigma_s - sigma_2) eps_s - (1/r1) ((sigma_s - sigma_2)/h - r2 sigma_2) D1,
//!            D2 = eps(u2, sigma_2) - eps_s,
//!            x_t = x - (sigma_s - sigma_t) eps_s - (1/r2) ((sigma_s - sigma_t)/h - sigma_t) D2.
//! The last interval (to sigma = 0, where h is infinite) is a first-order step, which
//! returns D(x; sigma(0)). `steps` counts intervals: NFE = order (steps - 1) + 1.

use candle_core::Tensor;

use genlab_core::{Error, Result, Rng};

use crate::options::require_steps;
use crate::registry::{check_finite_sigma, SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise, lincomb, sigma_grid, to_sigma_space};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct DpmSolverSampler {
    opts: SamplerOptions,
    order: usize,
    karras: bool,
}

impl DpmSolverSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        if !(1..=3).contains(&solver.order) {
            return Err(Error::InvalidInput(format!(
                "DPM-Solver order must be 1, 2 or 3, got {}",
                solver.order
            )));
        }
        Ok(Self {
            opts: opts.clone(),
            order: solver.order,
            karras: solver.karras_sigmas,
        })
    }
}

/// One singlestep DPM-Solver step of `order` from `sigma` to `sigma_next` (`order` NFE;
/// first order, 1 NFE, when `sigma_next` is 0).
pub fn step(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    x: &Tensor,
    sigma: f64,
    sigma_next: f64,
    order: usize,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    let eps =
        |x: &Tensor, s: f64| -> Result<Tensor> { Ok(denoise(model, schedule, x, s, clip)?.0) };
    let e0 = eps(x, sigma)?;
    let order = if sigma_next == 0.0 { 1 } else { order };
    let h = (sigma / sigma_next).ln();
    let sig = |r: f64| sigma * (-r * h).exp();
    match order {
        1 => lincomb(x, &[(-(sigma - sigma_next), &e0)]),
        2 => {
            let s1 = sig(0.5);
            let u = lincomb(x, &[(-(sigma - s1), &e0)])?;
            let e1 = eps(&u, s1)?;
            lincomb(x, &[(-(sigma - sigma_next), &e1)])
        }
        _ => {
            let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
            let (s1, s2) = (sig(r1), sig(r2));
            let u1 = lincomb(x, &[(-(sigma - s1), &e0)])?;
            let d1 = (eps(&u1, s1)? - &e0)?;
            let c1 = ((sigma - s2) / h - r2 * s2) / r1;
            let u2 = lincomb(x, &[(-(sigma - s2), &e0), (-c1, &d1)])?;
            let d2 = (eps(&u2, s2)? - &e0)?;
            let c2 = ((sigma - sigma_next) / h - sigma_next) / r2;
            lincomb(x, &[(-(sigma - sigma_next), &e0), (-c2, &d2)])
        }
    }
}

impl Sampler for DpmSolverSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        x_t: Tensor,
        _rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let s = sigma_grid(schedule, self.opts.steps, self.karras, self.opts.spacing)?;
        let n = s.len() - 1;
        let mut x = to_sigma_space(&x_t, s[0])?;
        for i in 0..n {
            x = step(
                model,
                schedule,
                &x,
                s[i],
                s[i + 1],
                self.order,
                self.opts.clip_x0,
            )?;
            check_finite_sigma(&x, "dpm-solver", i, s[i])?;
            progress(i + 1, n);
        }
        Ok(SampleOutput {
            x,
            nfe: self.order * (n - 1) + 1,
        })
    }
}
