//! The sampler interface and the one list of samplers the CLI knows.
//!
//! Adding a sampler: write its file (it implements [`Sampler`] and owns its loop), then add
//! one line to [`SAMPLERS`]. `genlab list` and `genlab sample --sampler NAME` pick it up.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::{Denoiser, NoiseSchedule, SolverOptions, Spacing};

/// Options every sampler reads (each ignores what does not apply to it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerOptions {
    /// Number of denoising steps (network evaluations for one-step-per-eval samplers).
    pub steps: usize,
    /// DDIM stochasticity: 0 is the deterministic DDIM, 1 matches DDPM's posterior variance.
    pub eta: f64,
    /// Clamp the predicted x0 into this range (images live in [-1, 1]); `None` for data
    /// without bounds such as 2-D points.
    pub clip_x0: Option<(f64, f64)>,
    /// Settings of the solver samplers (order, tolerances, corrector, Karras sigmas).
    pub solver: SolverOptions,
    /// Where the steps sit on the model's timesteps (Karras sigmas, when on, replace it for
    /// the sigma-space samplers).
    pub spacing: Spacing,
    /// Standard deviation of a flow's base noise (Kingma & Dhariwal 2018, Glow, Sec. 5:
    /// T = 0.7 trades diversity for cleaner samples); 1 samples the model itself. Only
    /// flows take other values.
    pub temperature: f64,
    /// Explicit decreasing timesteps in [0, T-1] (fractional allowed) that replace `steps`
    /// and `spacing` for the samplers that walk timesteps or sigmas (ddim, ddpm, euler,
    /// euler-ancestral, heun, dpm++2m, ...): diffusers' exact grids for a scheduler JSON
    /// (`scheduler_json`) come this way. Karras sigmas, when on, still replace them.
    pub timesteps: Option<Vec<f64>>,
    /// DDIM's last step goes to alpha_bar = 1 (the clean data); `false` makes it go to
    /// `alphas_cumprod[0]` instead (diffusers' `set_alpha_to_one = false`, as in Stable
    /// Diffusion's scheduler configs). Only DDIM reads it.
    pub set_alpha_to_one: bool,
    /// How the sigma-space samplers find sigma at a fractional timestep.
    pub sigma_interpolation: crate::sigmas::SigmaInterpolation,
    /// The sigma-space samplers start from x_T * sigma_max (diffusers' `init_noise_sigma`
    /// for its "linspace" and "trailing" spacings) instead of the exact VP-to-sigma-space
    /// factor x_T * sqrt(1 + sigma_max^2). x_T is still the VP-scale noise.
    pub init_noise_sigma_max: bool,
    /// With `clip_x0`: DDIM's direction term uses the network's own eps (diffusers'
    /// `use_clipped_model_output = False`, what its DDIMScheduler does) instead of the eps
    /// recomputed from the clipped x0 (genlab's default, as GLIDE and the DDPM posterior
    /// keep x0 and eps consistent). Only DDIM reads it.
    pub keep_model_eps: bool,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            steps: 50, // DDIM's sweet spot in Song et al. 2021 (Table 1): near-DDPM quality at 20x fewer steps
            eta: 0.0,  // deterministic DDIM by default
            clip_x0: None, // set by the model from its data range
            solver: SolverOptions::default(),
            spacing: Spacing::default(), // DDIM's evenly spaced subsequence, both ends
            temperature: 1.0,            // the model's own distribution
            timesteps: None,             // the grid comes from steps and spacing
            set_alpha_to_one: true,      // the last DDIM step lands on the clean data
            sigma_interpolation: Default::default(), // ln sigma linear in t (exact inverse of timestep_at)
            init_noise_sigma_max: false,             // the exact sqrt(1 + sigma_max^2)
            keep_model_eps: false,                   // eps consistent with the clipped x0
        }
    }
}

/// What a sampling run returns.
#[derive(Debug, Clone)]
pub struct SampleOutput {
    /// The samples, in the model's data space.
    pub x: Tensor,
    /// Network evaluations actually used.
    pub nfe: usize,
}

/// A way to turn noise into data with a [`Denoiser`].
pub trait Sampler {
    /// Runs the full loop from the noise `x_t` (shape [B, ...]); `progress(done, total)` is
    /// called after every step. Noise for stochastic steps comes from `rng`.
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        x_t: Tensor,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput>;
}

/// One registered sampler.
pub struct SamplerEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn(&SamplerOptions, &SolverOptions) -> Result<Box<dyn Sampler>>,
}

/// Every sampler genlab has, one line each.
pub const SAMPLERS: &[SamplerEntry] = &[
    SamplerEntry {
        name: "ddpm",
        description: "ancestral DDPM sampling (Ho et al. 2020), any number of respaced steps",
        build: |o, _| Ok(Box::new(crate::ddpm::DdpmSampler::new(o)?)),
    },
    SamplerEntry {
        name: "ddim",
        description: "DDIM (Song, Meng & Ermon 2021), eta = 0 deterministic, eta = 1 DDPM-like",
        build: |o, _| Ok(Box::new(crate::ddim::DdimSampler::new(o)?)),
    },
    SamplerEntry {
        name: "euler",
        description: "Euler on the probability-flow ODE in sigma space (Karras et al. 2022)",
        build: |o, s| Ok(Box::new(crate::euler::EulerSampler::new(o, s)?)),
    },
    SamplerEntry {
        name: "heun",
        description: "Heun 2nd order on the probability-flow ODE (Karras et al. 2022, Alg. 1)",
        build: |o, s| Ok(Box::new(crate::heun::HeunSampler::new(o, s)?)),
    },
    SamplerEntry {
        name: "euler-ancestral",
        description: "Euler with ancestral noise in sigma space (k-diffusion / diffusers)",
        build: |o, s| {
            Ok(Box::new(
                crate::euler_ancestral::EulerAncestralSampler::new(o, s)?,
            ))
        },
    },
    SamplerEntry {
        name: "euler-maruyama",
        description: "Euler-Maruyama on the reverse VP SDE (Song et al. 2021)",
        build: |o, _| {
            Ok(Box::new(crate::euler_maruyama::EulerMaruyamaSampler::new(
                o,
            )?))
        },
    },
    SamplerEntry {
        name: "pc",
        description:
            "predictor-corrector: reverse diffusion + Langevin corrector (Song et al. 2021, Alg. 3/5)",
        build: |o, s| Ok(Box::new(crate::pc::PcSampler::new(o, s)?)),
    },
    SamplerEntry {
        name: "rk45",
        description: "adaptive Dormand-Prince RK45 on the probability-flow ODE, to a relative and absolute tolerance",
        build: |o, s| Ok(Box::new(crate::rk45::Rk45Sampler::new(o, s)?)),
    },
    SamplerEntry {
        name: "dpm-solver",
        description: "singlestep DPM-Solver-1/2/3 (Lu et al. 2022) of order 1, 2 or 3",
        build: |o, s| Ok(Box::new(crate::dpm_solver::DpmSolverSampler::new(o, s)?)),
    },
    SamplerEntry {
        name: "dpm++2m",
        description: "multistep DPM-Solver++(2M) (Lu et al. 2022b)",
        build: |o, s| Ok(Box::new(crate::dpmpp_2m::DpmPp2mSampler::new(o, s)?)),
    },
];

/// Names and descriptions, for `genlab list`.
pub fn sampler_names() -> Vec<(&'static str, &'static str)> {
    SAMPLERS.iter().map(|e| (e.name, e.description)).collect()
}

/// Builds the named sampler with `opts.solver`; an unknown name lists the
/// known ones.
pub fn build_sampler(name: &str, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    build_sampler_with(name, opts, &opts.solver)
}

/// Builds the named sampler with explicit solver options (order, tolerances, corrector).
pub fn build_sampler_with(
    name: &str,
    opts: &SamplerOptions,
    solver: &SolverOptions,
) -> Result<Box<dyn Sampler>> {
    match SAMPLERS.iter().find(|e| e.name == name) {
        Some(e) => (e.build)(opts, solver),
        None => Err(Error::unknown(
            "sampler",
            name,
            SAMPLERS.iter().map(|e| e.name),
        )),
    }
}

/// Errors with the step number if `x` holds NaN or infinity.
pub(crate) fn check_finite(x: &Tensor, sampler: &str, step: usize, t: f64) -> Result<()> {
    check_finite_at(x, sampler, step, &format!("timestep {t}"))
}

/// [`check_finite`] for the sigma-space samplers, whose steps sit at a sigma.
pub(crate) fn check_finite_sigma(x: &Tensor, sampler: &str, step: usize, sigma: f64) -> Result<()> {
    check_finite_at(x, sampler, step, &format!("sigma {sigma:.6}"))
}

fn check_finite_at(x: &Tensor, sampler: &str, step: usize, at: &str) -> Result<()> {
    let s: f32 = x
        .sum_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar()?;
    if !s.is_finite() {
        return Err(Error::Numeric(format!(
            "{sampler} sampling produced NaN or infinity at step {step} ({at})"
        )));
    }
    Ok(())
}

/// Standard normal noise shaped and typed like `x` (samplers run in f32 or f64).
pub(crate) fn noise_like(rng: &mut Rng, x: &Tensor) -> Result<Tensor> {
    Ok(rng
        .normal_tensor(x.dims(), x.device())?
        .to_dtype(x.dtype())?)
}

/// One step of a discrete-time sampler: the timestep `t` (fractional on a trailing grid),
/// and the alpha_bar values at `t` and at the timestep it steps to (1 for the clean data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPair {
    pub t: f64,
    pub a_t: f64,
    pub a_prev: f64,
}

impl StepPair {
    /// The step from timestep `t` to `t_prev` (-1 for the clean data); errors unless
    /// -1 <= t_prev < t < T.
    pub fn new(schedule: &NoiseSchedule, t: usize, t_prev: isize) -> Result<Self> {
        if t >= schedule.len() || t_prev < -1 || t_prev >= t as isize {
            return Err(Error::InvalidInput(format!(
                "a step needs -1 <= t_prev < t < {}, got t = {t}, t_prev = {t_prev}",
                schedule.len()
            )));
        }
        Ok(Self {
            t: t as f64,
            a_t: schedule.alpha_bar(t as isize),
            a_prev: schedule.alpha_bar(t_prev),
        })
    }
}

/// The decreasing timesteps of a run with these options: `opts.timesteps` when given
/// (checked: non-empty, finite, strictly decreasing, inside [0, T-1]), otherwise
/// `NoiseSchedule::timesteps(opts.steps, opts.spacing)`.
pub fn grid_timesteps(schedule: &NoiseSchedule, opts: &SamplerOptions) -> Result<Vec<f64>> {
    let Some(ts) = &opts.timesteps else {
        return schedule.timesteps(opts.steps, opts.spacing);
    };
    let last = (schedule.len() - 1) as f64;
    if ts.is_empty() {
        return Err(Error::setting(
            "timesteps",
            "an explicit timestep list must not be empty",
        ));
    }
    if let Some(t) = ts
        .iter()
        .find(|t| !(t.is_finite() && **t >= 0.0 && **t <= last))
    {
        return Err(Error::setting(
            "timesteps",
            format!("timestep {t} is outside the model's 0 ..= {last}"),
        ));
    }
    if ts.windows(2).any(|w| w[1] >= w[0]) {
        return Err(Error::setting(
            "timesteps",
            format!("explicit timesteps must strictly decrease, got {ts:?}"),
        ));
    }
    Ok(ts.clone())
}

/// The steps of a run over `schedule` with these options (see [`grid_timesteps`]); the last
/// step goes to the clean data (alpha_bar 1).
pub(crate) fn step_pairs(schedule: &NoiseSchedule, opts: &SamplerOptions) -> Result<Vec<StepPair>> {
    let ts = grid_timesteps(schedule, opts)?;
    Ok(ts
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let prev = ts.get(i + 1).copied().unwrap_or(-1.0);
            StepPair {
                t,
                a_t: schedule.alpha_bar_at(t),
                a_prev: schedule.alpha_bar_at(prev),
            }
        })
        .collect())
}

/// Runs the model at step `p` and returns (eps, x0). When `clip` asks for it, x0 is clamped
/// and eps recomputed from the clamped x0, eps = (x - sqrt(a_t) x0) / sqrt(1 - a_t), so
/// that the pair still reconstructs x (diffusers' DDIMScheduler does the same with
/// `clip_sample`); otherwise DDIM's direction term would carry the unclipped prediction.
pub(crate) fn predict_eps_x0(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    clip: Option<(f64, f64)>,
) -> Result<(Tensor, Tensor)> {
    predict_eps_x0_with(model, x, p, clip, false)
}

/// [`predict_eps_x0`]; with `keep_eps` the clipped x0 comes with the network's own eps.
pub(crate) fn predict_eps_x0_with(
    model: &dyn Denoiser,
    x: &Tensor,
    p: &StepPair,
    clip: Option<(f64, f64)>,
    keep_eps: bool,
) -> Result<(Tensor, Tensor)> {
    let out = model.predict(x, p.t)?;
    let (eps, x0) = crate::denoiser::to_eps_x0(model.prediction(), &out, x, p.a_t)?;
    if clip.is_none() || p.a_t >= 1.0 {
        return Ok((eps, x0));
    }
    let x0 = maybe_clip(x0, clip)?;
    if keep_eps {
        return Ok((eps, x0));
    }
    let eps = ((x - (&x0 * p.a_t.sqrt())?)? / (1.0 - p.a_t).sqrt())?;
    Ok((eps, x0))
}

/// Clamps x0 when the options ask for it.
pub(crate) fn maybe_clip(x0: Tensor, clip: Option<(f64, f64)>) -> Result<Tensor> {
    Ok(match clip {
        Some((lo, hi)) => x0.clamp(lo, hi)?,
        None => x0,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A denoiser that is exact for Gaussian data: if x0 ~ N(mu, s^2) per coordinate, then
    //! E[eps | x_t] = sqrt(1-a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a). Samplers driven by it
    //! must return N(mu, s^2) samples: a closed-form reference needing no network.
    use super::*;

    pub struct GaussianDenoiser<'a> {
        pub mu: f64,
        pub std: f64,
        pub schedule: &'a NoiseSchedule,
    }

    impl Denoiser for GaussianDenoiser<'_> {
        fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
            let a = self.schedule.alpha_bar(t.round() as isize);
            let var = a * self.std * self.std + 1.0 - a;
            Ok(((x - a.sqrt() * self.mu)? * ((1.0 - a).sqrt() / var))?)
        }
    }

    pub fn moments(x: &Tensor) -> (f64, f64) {
        let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn unknown_sampler_lists_known_ones() {
        let err = build_sampler("dpm++", &SamplerOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ddpm, ddim"), "{err}");
    }
}
