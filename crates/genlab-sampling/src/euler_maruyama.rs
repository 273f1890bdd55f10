//! Euler-Maruyama on the reverse-time VP SDE.
//!
//! Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations", arXiv:2011.13456. The VP SDE (Eq. 11)
//! dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw has the reverse-time SDE (Eq. 6)
//!   dx = [-1/2 beta(t) x - beta(t) grad log p_t(x)] dt + sqrt(beta(t)) dw_bar.
//! One Euler-Maruyama step backwards over a (respaced) interval, with beta(t) dt replaced by
//! the interval's discrete beta~ = 1 - alpha_bar_t / alpha_bar_prev (App. B: beta_i = beta(t) dt):
//!   x_prev = x + beta~ (x / 2 + s(x, t)) + sqrt(beta~) z,   s = -eps / sqrt(1 - alpha_bar_t).
//! The last step returns the mean (no noise), the paper's final denoising step (App. G).
//! Weak order 1 in the step size; `clip_x0` is not used (the update follows the score).

use candle_core::Tensor;

use genlab_core::{Result, Rng};

use crate::options::require_steps;
use crate::registry::{
    check_finite, noise_like, predict_eps_x0, step_pairs, SampleOutput, Sampler, SamplerOptions,
    StepPair,
};
use crate::{Denoiser, NoiseSchedule};

pub struct EulerMaruyamaSampler {
    opts: SamplerOptions,
}

impl EulerMaruyamaSampler {
    pub fn new(opts: &SamplerOptions) -> Result<Self> {
        require_steps(opts)?;
        Ok(Self { opts: opts.clone() })
    }
}

/// The score s(x, t) = -eps / sqrt(1 - alpha_bar_t) (Song et al. 2021, Eq. 3 / App. C).
pub(crate) fn score(model: &dyn Denoiser, x: &Tensor, p: &StepPair) -> Result<Tensor> {
    let (eps, _) = predict_eps_x0(model, x, p, None)?;
    Ok((eps * (-1.0 / (1.0 - p.a_t).sqrt()))?)
}

/// One Euler-Maruyama step of the VP sample `x` from `p.t` to its predecessor, plus
/// sqrt(beta~) `noise` when given.
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    noise: Option<&Tensor>,
) -> Result<Tensor> {
    let beta = 1.0 - p.a_t / p.a_prev;
    let mean = ((x * (1.0 + 0.5 * beta))? + (score(model, x, p)? * beta)?)?;
    Ok(match noise {
        Some(z) => (mean + (z * beta.sqrt())?)?,
        None => mean,
    })
}

impl Sampler for EulerMaruyamaSampler {
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
            x = step(model, &x, p, z.as_ref())?;
            check_finite(&x, "euler-maruyama", k, p.t)?;
            progress(k + 1, total);
        }
        Ok(SampleOutput { x, nfe: total })
    }
}
