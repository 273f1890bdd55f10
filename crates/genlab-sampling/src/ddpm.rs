//! Ancestral DDPM sampling.
//!
//! Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239,
//! Algorithm 2, using the posterior q(x_{t-1} | x_t, x0) of Eqs. 6-7 with the predicted x0
//! (clipped for images), and its variance beta~_t ("fixed small"). With fewer steps than
//! the model's T, the schedule is respaced as in Nichol & Dhariwal 2021 (arXiv:2102.09672,
//! Sec. 4): for kept timesteps t_k the step beta is 1 - alpha_bar(t_k) / alpha_bar(t_{k-1}).

use candle_core::Tensor;

use genlab_core::{Result, Rng};

use crate::registry::{
    check_finite, noise_like, predict_eps_x0, step_pairs, SampleOutput, Sampler, SamplerOptions,
    StepPair,
};
use crate::{Denoiser, NoiseSchedule};

pub struct DdpmSampler {
    opts: SamplerOptions,
}

impl DdpmSampler {
    pub fn new(opts: &SamplerOptions) -> Result<Self> {
        crate::options::require_steps(opts)?;
        Ok(Self { opts: opts.clone() })
    }
}

/// One ancestral step (Ho et al. Alg. 2 line 4, posterior of Eqs. 6-7): the posterior mean
/// given the predicted x0, plus sqrt(beta~) * `noise` when noise is given (every step but
/// the last). `x` is the VP sample at `p.t`.
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    noise: Option<&Tensor>,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    let (a_t, a_prev) = (p.a_t, p.a_prev);
    let alpha = a_t / a_prev; // respaced per-step alpha
    let beta = 1.0 - alpha;
    let (_, x0) = predict_eps_x0(model, x, p, clip)?;
    // Posterior mean, Eq. 7: c0 * x0 + ct * x_t.
    let c0 = a_prev.sqrt() * beta / (1.0 - a_t);
    let ct = alpha.sqrt() * (1.0 - a_prev) / (1.0 - a_t);
    let mean = ((x0 * c0)? + (x * ct)?)?;
    Ok(match noise {
        Some(z) => {
            let var = beta * (1.0 - a_prev) / (1.0 - a_t); // beta~, Eq. 7
            (mean + (z * var.sqrt())?)?
        }
        None => mean,
    })
}

impl Sampler for DdpmSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        mut x: Tensor,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let steps = step_pairs(schedule, &self.opts)?;
        let total = steps.len();
        for (k, p) in steps.iter().enumerate() {
            let z = if k + 1 < total {
                Some(noise_like(rng, &x)?)
            } else {
                None
            };
            x = step(model, &x, p, z.as_ref(), self.opts.clip_x0)?;
            check_finite(&x, "ddpm", k, p.t)?;
            progress(k + 1, total);
        }
        Ok(SampleOutput { x, nfe: total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::{moments, GaussianDenoiser};
    use crate::BetaSchedule;
    use candle_core::Device;

    /// Sample moments of 20k draws agree with the exact target to this absolute error.
    const MOMENT_TOL: f64 = 0.03;

    #[test]
    fn ancestral_sampling_recovers_a_gaussian_target() {
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let model = GaussianDenoiser {
            mu: 1.5,
            std: 0.5,
            schedule: &sched,
        };
        // Respaced steps add discretisation error; at the full T the target is exact.
        {
            let steps = 1000;
            let mut rng = Rng::new(0);
            let x = rng.normal_tensor(&[20_000, 1], &Device::Cpu).unwrap();
            let s = DdpmSampler::new(&SamplerOptions {
                steps,
                ..Default::default()
            })
            .unwrap();
            let out = s
                .sample(&model, &sched, x, &mut rng, &mut |_, _| {})
                .unwrap();
            assert_eq!(out.nfe, steps);
            let (m, sd) = moments(&out.x);
            assert!(
                (m - 1.5).abs() < MOMENT_TOL && (sd - 0.5).abs() < MOMENT_TOL,
                "steps {steps}: {m} {sd}"
            );
        }
    }

    #[test]
    fn zero_steps_is_an_error() {
        assert!(DdpmSampler::new(&SamplerOptions {
            steps: 0,
            ..Default::default()
        })
        .is_err());
    }
}
