//! Predictor-corrector sampling for the VP SDE.
//!
//! Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations", arXiv:2011.13456, Algorithm 1 (PC sampling)
//! specialised to VP as in Algorithm 3.
//!
//! Predictor, reverse diffusion (App. E, Eq. 46 applied to the VP SDE), over a (respaced)
//! interval with beta~ = 1 - alpha_bar_t / alpha_bar_prev:
//!   x_prev = (2 - sqrt(1 - beta~)) x + beta~ s(x, t) + sqrt(beta~) z.
//! Corrector, Langevin dynamics with signal-to-noise ratio r (Algorithm 5), M times at the
//! new noise level t_prev, with g = s(x, t_prev) and alpha_i = 1 - beta_{t_prev}:
//!   eps_L = 2 alpha_i (r ||z|| / ||g||)^2,   x <- x + eps_L g + sqrt(2 eps_L) z;
//! the norms are per-sample L2 norms averaged over the batch ("the average norm across the
//! mini-batch", App. G).
//!
//! No corrector after the last predictor step, which returns its mean (the final denoising
//! step of App. G). NFE = steps + M (steps - 1). `clip_x0` is not used.

use candle_core::{DType, Tensor};

use genlab_core::{Result, Rng};

use crate::euler_maruyama::score;
use crate::options::{require_positive, require_steps};
use crate::registry::{
    check_finite, noise_like, step_pairs, SampleOutput, Sampler, SamplerOptions, StepPair,
};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

pub struct PcSampler {
    opts: SamplerOptions,
    snr: f64,
    corrector_steps: usize,
}

impl PcSampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_steps(opts)?;
        require_positive("the Langevin corrector's snr", solver.snr)?;
        Ok(Self {
            opts: opts.clone(),
            snr: solver.snr,
            corrector_steps: solver.corrector_steps,
        })
    }
}

/// Reverse-diffusion predictor step of the VP sample `x` (1 NFE); adds sqrt(beta~) `noise`
/// when given.
pub fn predictor_step(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    noise: Option<&Tensor>,
) -> Result<Tensor> {
    let beta = 1.0 - p.a_t / p.a_prev;
    let mean = ((x * (2.0 - (1.0 - beta).sqrt()))? + (score(model, x, p)? * beta)?)?;
    Ok(match noise {
        Some(z) => (mean + (z * beta.sqrt())?)?,
        None => mean,
    })
}

/// Mean over the batch of per-sample L2 norms (x has shape [B, ...]).
fn mean_norm(x: &Tensor) -> Result<f64> {
    let v = x
        .flatten_from(1)? // [B, D]
        .sqr()?
        .sum(1)?
        .sqrt()?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(v)
}

/// One Langevin corrector step at timestep `t` (Algorithm 5, 1 NFE); a fractional `t` (a
/// trailing grid) uses the continuous alpha_bar, and alpha_t = alpha_bar(t) / alpha_bar(t-1),
/// which is 1 - beta_t at integers.
pub fn corrector_step(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    x: &Tensor,
    t: f64,
    snr: f64,
    noise: &Tensor,
) -> Result<Tensor> {
    let p = StepPair {
        t,
        a_t: schedule.alpha_bar_at(t),
        a_prev: schedule.alpha_bar_at(t - 1.0),
    };
    let g = score(model, x, &p)?;
    let g_norm = mean_norm(&g)?;
    if g_norm == 0.0 {
        return Ok(x.clone()); // at a mode of p_t: Langevin's step size is undefined, stay
    }
    let alpha = p.a_t / p.a_prev;
    let step = 2.0 * alpha * (snr * mean_norm(noise)? / g_norm).powi(2);
    Ok(((x + (g * step)?)? + (noise * (2.0 * step).sqrt())?)?)
}

impl Sampler for PcSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        mut x: Tensor,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let steps = step_pairs(schedule, &self.opts)?;
        let (total, mut nfe) = (steps.len(), 0);
        for (k, p) in steps.iter().enumerate() {
            let last = k + 1 == total;
            let z = if last {
                None
            } else {
                Some(noise_like(rng, &x)?)
            };
            x = predictor_step(model, &x, p, z.as_ref())?;
            nfe += 1;
            if !last {
                let t_prev = steps[k + 1].t;
                for _ in 0..self.corrector_steps {
                    let z = noise_like(rng, &x)?;
                    x = corrector_step(model, schedule, &x, t_prev, self.snr, &z)?;
                    nfe += 1;
                }
            }
            check_finite(&x, "pc", k, p.t)?;
            progress(k + 1, total);
        }
        Ok(SampleOutput { x, nfe })
    }
}
