//! DDIM sampling.
//!
//! Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502,
//! Eq. 12 with sigma from Eq. 16:
//!   x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
//!   sigma  = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev).
//! eta = 0 is the deterministic DDIM; eta = 1 gives DDPM's posterior variance. Any number
//! of steps over the model's T (evenly spaced timesteps, see `spaced_timesteps`, or an
//! explicit list); the last step goes to a_prev = 1, returning the predicted x0, or to
//! `alphas_cumprod[0]` with `set_alpha_to_one = false` (diffusers' option, which Stable
//! Diffusion's scheduler configs set).

use candle_core::Tensor;

use genlab_core::{Error, Result, Rng};

use crate::registry::{
    check_finite, noise_like, predict_eps_x0_with, step_pairs, SampleOutput, Sampler,
    SamplerOptions, StepPair,
};
use crate::{Denoiser, NoiseSchedule};

pub struct DdimSampler {
    opts: SamplerOptions,
}

impl DdimSampler {
    pub fn new(opts: &SamplerOptions) -> Result<Self> {
        crate::options::require_steps(opts)?;
        if !(opts.eta >= 0.0 && opts.eta.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "DDIM eta must be >= 0, got {}",
                opts.eta
            )));
        }
        Ok(Self { opts: opts.clone() })
    }
}

/// The noise scale sigma_t of Eq. 16 for this step.
pub fn ddim_sigma(eta: f64, p: &StepPair) -> f64 {
    eta * ((1.0 - p.a_prev) / (1.0 - p.a_t)).sqrt() * (1.0 - p.a_t / p.a_prev).sqrt()
}

/// One DDIM step (Eq. 12) from the VP sample `x` at `p.t`; `noise` is required when the
/// step's sigma (Eq. 16) is positive and ignored otherwise.
pub fn step(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    eta: f64,
    noise: Option<&Tensor>,
    clip: Option<(f64, f64)>,
) -> Result<Tensor> {
    step_with(model, x, p, eta, noise, clip, false)
}

/// [`step`]; `keep_model_eps` as [`crate::SamplerOptions::keep_model_eps`].
pub fn step_with(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    eta: f64,
    noise: Option<&Tensor>,
    clip: Option<(f64, f64)>,
    keep_model_eps: bool,
) -> Result<Tensor> {
    let (eps, x0) = predict_eps_x0_with(model, x, p, clip, keep_model_eps)?;
    let sigma = ddim_sigma(eta, p);
    let dir = (1.0 - p.a_prev - sigma * sigma).max(0.0).sqrt();
    let next = ((x0 * p.a_prev.sqrt())? + (eps * dir)?)?;
    if sigma > 0.0 {
        let z = noise.ok_or_else(|| {
            Error::InvalidInput(format!(
                "DDIM step at timestep {} has sigma {sigma} > 0 (eta = {eta}) and needs a noise tensor",
                p.t
            ))
        })?;
        return Ok((next + (z * sigma)?)?);
    }
    Ok(next)
}

impl Sampler for DdimSampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        mut x: Tensor,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let mut steps = step_pairs(schedule, &self.opts)?;
        if !self.opts.set_alpha_to_one {
            // diffusers' `set_alpha_to_one = false`: the last step lands on alphas_cumprod[0].
            if let Some(last) = steps.last_mut() {
                last.a_prev = schedule.alphas_cumprod[0];
            }
        }
        let total = steps.len();
        for (k, p) in steps.iter().enumerate() {
            let z = if ddim_sigma(self.opts.eta, p) > 0.0 {
                Some(noise_like(rng, &x)?)
            } else {
                None
            };
            x = step_with(
                model,
                &x,
                p,
                self.opts.eta,
                z.as_ref(),
                self.opts.clip_x0,
                self.opts.keep_model_eps,
            )?;
            check_finite(&x, "ddim", k, p.t)?;
            progress(k + 1, total);
        }
        Ok(SampleOutput { x, nfe: total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddpm::DdpmSampler;
    use crate::registry::test_support::{moments, GaussianDenoiser};
    use crate::BetaSchedule;
    use candle_core::Device;

    /// Sample moments of 20k draws agree with the exact target to this absolute error.
    const MOMENT_TOL: f64 = 0.03;
    /// f32 arithmetic over 100 steps: two algebraically equal updates agree to this.
    const F32_PATH_TOL: f32 = 1e-4;

    #[test]
    fn deterministic_ddim_recovers_a_gaussian_target() {
        // With the exact denoiser, the only error left is discretisation: a DDIM step on a
        // Gaussian shrinks the spread (Cauchy-Schwarz), so few steps under-disperse and the
        // error must fall as steps grow, reaching the target at T steps.
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let model = GaussianDenoiser {
            mu: -0.5,
            std: 0.8,
            schedule: &sched,
        };
        let mut errs = vec![];
        for steps in [20, 100, 1000] {
            let mut rng = Rng::new(1);
            let x = rng.normal_tensor(&[20_000, 1], &Device::Cpu).unwrap();
            let s = DdimSampler::new(&SamplerOptions {
                steps,
                eta: 0.0,
                clip_x0: None,
                ..Default::default()
            })
            .unwrap();
            let before = rng.clone();
            let out = s
                .sample(&model, &sched, x, &mut rng, &mut |_, _| {})
                .unwrap();
            assert_eq!(rng, before, "eta = 0 must draw no noise");
            let (m, sd) = moments(&out.x);
            assert!((m + 0.5).abs() < MOMENT_TOL, "steps {steps}: mean {m}");
            errs.push((sd - 0.8).abs());
        }
        assert!(errs[0] > errs[1] && errs[1] > errs[2], "{errs:?}");
        assert!(errs[2] < MOMENT_TOL, "{errs:?}");
    }

    #[test]
    fn ddim_eta_one_equals_ancestral_ddpm() {
        // With eta = 1 the DDIM update is the DDPM posterior step (Song et al. Sec. 4.1):
        // same noise in, same samples out.
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let model = GaussianDenoiser {
            mu: 0.3,
            std: 1.2,
            schedule: &sched,
        };
        let opts = SamplerOptions {
            steps: 100,
            eta: 1.0,
            clip_x0: None,
            ..Default::default()
        };
        let x = Rng::new(2).normal_tensor(&[64, 2], &Device::Cpu).unwrap();
        let a = DdimSampler::new(&opts)
            .unwrap()
            .sample(&model, &sched, x.clone(), &mut Rng::new(3), &mut |_, _| {})
            .unwrap();
        let b = DdpmSampler::new(&opts)
            .unwrap()
            .sample(&model, &sched, x, &mut Rng::new(3), &mut |_, _| {})
            .unwrap();
        let d: f32 = (a.x - b.x)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < F32_PATH_TOL, "max difference {d}");
    }

    /// f32 arithmetic on O(1) values.
    const STEP_TOL: f32 = 1e-5;

    #[test]
    fn a_clipped_step_recomputes_eps_from_the_clipped_x0() {
        // A model that predicts eps = -2 at x = 1.5, a_t = 0.25: x0 = (x - sqrt(1-a) eps) /
        // sqrt(a) = (1.5 + 2 sqrt(0.75)) / 0.5 = 6.46, clipped to 1; then eps = (1.5 - 0.5) /
        // sqrt(0.75), and the eta = 0 step to a_prev = 0.64 is 0.8 x0 + 0.6 eps.
        struct Const;
        impl Denoiser for Const {
            fn predict(&self, x: &Tensor, _t: f64) -> Result<Tensor> {
                Ok(x.ones_like()?.affine(-2.0, 0.0)?)
            }
        }
        let p = StepPair {
            t: 10.0,
            a_t: 0.25,
            a_prev: 0.64,
        };
        let x = Tensor::new(&[1.5f32], &Device::Cpu).unwrap();
        let got: Vec<f32> = step(&Const, &x, &p, 0.0, None, Some((-1.0, 1.0)))
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = 0.8 * 1.0 + 0.6 * (1.0 / 0.75f64.sqrt());
        assert!((got[0] - want as f32).abs() < STEP_TOL, "{got:?} vs {want}");
        // Unclipped: the model's own eps and x0 (which reconstruct x exactly).
        let got: Vec<f32> = step(&Const, &x, &p, 0.0, None, None)
            .unwrap()
            .to_vec1()
            .unwrap();
        let x0 = (1.5 + 2.0 * 0.75f64.sqrt()) / 0.5;
        let want = 0.8 * x0 + 0.6 * -2.0;
        assert!((got[0] - want as f32).abs() < STEP_TOL, "{got:?} vs {want}");
    }

    #[test]
    fn nan_is_reported_with_its_step() {
        struct Broken;
        impl Denoiser for Broken {
            fn predict(&self, x: &Tensor, _t: f64) -> Result<Tensor> {
                Ok((x * f64::NAN)?)
            }
        }
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 10).unwrap();
        let x = Rng::new(0).normal_tensor(&[2, 2], &Device::Cpu).unwrap();
        let s = DdimSampler::new(&SamplerOptions {
            steps: 5,
            ..Default::default()
        })
        .unwrap();
        let err = s
            .sample(&Broken, &sched, x, &mut Rng::new(0), &mut |_, _| {})
            .unwrap_err();
        assert!(err.to_string().contains("step 0"), "{err}");
    }

    #[test]
    fn bad_options() {
        assert!(DdimSampler::new(&SamplerOptions {
            steps: 0,
            ..Default::default()
        })
        .is_err());
        assert!(DdimSampler::new(&SamplerOptions {
            eta: -1.0,
            ..Default::default()
        })
        .is_err());
    }
}
