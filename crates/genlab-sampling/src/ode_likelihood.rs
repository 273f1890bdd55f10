//! Exact log-likelihood of a diffusion model through its probability-flow ODE.
//!
//! Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations", arXiv:2011.13456, Sec. 4.3: the
//! probability-flow ODE is a continuous normalizing flow, so the instantaneous change of
//! variables (Chen et al. 2018, "Neural Ordinary Differential Equations", arXiv:1806.07366,
//! Theorem 1) gives, for dy/du = g(y, u),
//!   log p_{u0}(y(u0)) = log p_{u1}(y(u1)) + int_{u0}^{u1} div_y g(y(u), u) du.
//!
//! genlab integrates it in the sigma-space form the samplers use (see [`crate::sigmas`]):
//! y = x_vp / sqrt(alpha_bar), dy/dsigma = d(y; sigma) = (y - D(y; sigma)) / sigma, and
//! u = ln sigma from sigma_min = sigma(0) up to sigma_max = sigma(T-1), on the state
//! augmented with the running integral l:
//!   dy/du = sigma d,   dl/du = sigma div_y d,   y(u0) = x,   l(u0) = 0,
//!   log p(x) = log N(y(u1); 0, (1 + sigma_max^2) I) + l(u1),
//! the prior being x_vp ~ N(0, I) at T seen in sigma space (y = x_vp sqrt(1 + sigma^2)).
//! What this measures is the density at x of the data smoothed by N(0, sigma_min^2 I), the
//! marginal the ODE starts from (sigma_min = 0.010 for the linear 1e-4..0.02 schedule).
//!
//! The divergence is exact (one backward pass per dimension; small D) or Hutchinson's
//! estimate v^T (dd/dy) v with one Rademacher probe v per example held fixed during the
//! solve (Grathwohl et al. 2019, "FFJORD", arXiv:1810.01367, Sec. 3.1), which is unbiased
//! for the integral. Only first derivatives of the network are needed, through
//! [`Denoiser::predict_differentiable`]. Integration: adaptive Dormand-Prince RK45
//! ([`crate::rk45::dormand_prince`]); the default tolerances rtol = atol = 1e-5 are the
//! ones Song et al. use with scipy's RK45.

use candle_core::{DType, Tensor, Var};

use genlab_core::{Error, Result, Rng};

use crate::denoiser::to_eps_x0;
use crate::options::require_positive;
use crate::rk45::dormand_prince;
use crate::sigmas::{alpha_bar_from_sigma, sigma_at, timestep_at};
use crate::{Denoiser, NoiseSchedule};

/// Up to this many dimensions the default trace is exact (D backward passes per
/// evaluation); above it, Hutchinson's estimator (one backward pass).
pub const EXACT_TRACE_MAX_DIM: usize = 16;

/// How the divergence of the ODE's vector field is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEstimator {
    /// Sum of the Jacobian's diagonal, one backward pass per dimension.
    Exact,
    /// v^T J v with a Rademacher probe v per example, fixed for the whole solve.
    Hutchinson,
}

#[derive(Clone, Debug)]
pub struct OdeLikelihoodOptions {
    pub rtol: f64,
    pub atol: f64,
    pub trace: TraceEstimator,
}

impl OdeLikelihoodOptions {
    /// rtol = atol = 1e-5; the exact trace up to [`EXACT_TRACE_MAX_DIM`] dimensions.
    pub fn for_dim(d: usize) -> Self {
        Self {
            rtol: 1e-5,
            atol: 1e-5,
            trace: if d <= EXACT_TRACE_MAX_DIM {
                TraceEstimator::Exact
            } else {
                TraceEstimator::Hutchinson
            },
        }
    }
}

/// log p per example and what the solve cost.
#[derive(Clone, Debug)]
pub struct OdeLikelihood {
    /// Nats per example, in the units of the state the model sees (sigma-space y = x at
    /// sigma_min).
    pub log_p: Vec<f64>,
    /// Network evaluations (each also costs one backward pass per trace probe / dimension).
    pub nfe: usize,
    /// Attempted RK45 steps.
    pub steps: usize,
    /// The ODE's end point y(sigma_max) `[B, D]` (f64) and the integral of the divergence
    /// per example: log_p = log N(end; 0, (1 + sigma_max^2) I) + delta.
    pub end: Tensor,
    pub delta: Vec<f64>,
}

/// Rademacher (+-1) probes of shape `[b, d]`.
fn rademacher(b: usize, d: usize, rng: &mut Rng, like: &Tensor) -> Result<Tensor> {
    let v: Vec<f64> = (0..b * d)
        .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
        .collect();
    Ok(Tensor::from_vec(v, (b, d), like.device())?.to_dtype(like.dtype())?)
}

/// log p(x) for every example of `x` (`[B, ...]`, in the model's space and dtype) under the
/// probability-flow ODE of `model` on `schedule`. `progress(permille, 1000)`.
pub fn ode_log_likelihood(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    x: &Tensor,
    opts: &OdeLikelihoodOptions,
    rng: &mut Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<OdeLikelihood> {
    require_positive("the ODE relative tolerance rtol", opts.rtol)?;
    require_positive("the ODE absolute tolerance atol", opts.atol)?;
    let dims = x.dims().to_vec();
    let b = dims.first().copied().unwrap_or(0);
    let d: usize = dims.iter().skip(1).product();
    if b == 0 || d == 0 || dims.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "the likelihood needs a batch of examples [B, ...] with B, D >= 1, got shape {dims:?}"
        )));
    }
    let (s_min, s_max) = (sigma_at(schedule, 0.0), sigma_at(schedule, f64::MAX));
    let probe = match opts.trace {
        TraceEstimator::Exact => None,
        TraceEstimator::Hutchinson => Some(rademacher(b, d, rng, x)?),
    };
    let zero = Tensor::zeros((b, 1), x.dtype(), x.device())?;
    let z0 = Tensor::cat(&[&x.reshape((b, d))?, &zero], 1)?;
    let mut nfe = 0;
    let mut f = |z: &Tensor, u: f64| -> Result<Tensor> {
        nfe += 1;
        let sigma = u.exp();
        let y = Var::from_tensor(&z.narrow(1, 0, d)?.contiguous()?.detach())?;
        let yt = y.as_tensor().reshape(dims.as_slice())?;
        let a = alpha_bar_from_sigma(sigma);
        let x_vp = (&yt * a.sqrt())?;
        let out = model
            .predict_differentiable(&x_vp, timestep_at(schedule, sigma))?
            .ok_or_else(|| {
                Error::InvalidInput(
                    "this denoiser cannot differentiate its prediction, which the \
                     probability-flow likelihood needs"
                        .into(),
                )
            })?;
        let (_, x0) = to_eps_x0(model.prediction(), &out, &x_vp, a)?;
        let slope = ((&yt - &x0)? / sigma)?.reshape((b, d))?;
        let input_grad = |scalar: Tensor| -> Result<Tensor> {
            let g = scalar.backward()?;
            Ok(g.get(y.as_tensor())
                .ok_or_else(|| Error::Numeric("no gradient reached the ODE state".into()))?
                .clone())
        };
        let div = match &probe {
            None => {
                let mut diag = Vec::with_capacity(d);
                for i in 0..d {
                    diag.push(input_grad(slope.narrow(1, i, 1)?.sum_all()?)?.narrow(1, i, 1)?);
                }
                Tensor::cat(&diag, 1)?.sum_keepdim(1)?
            }
            Some(v) => (input_grad((&slope * v)?.sum_all()?)? * v)?.sum_keepdim(1)?,
        };
        Ok((Tensor::cat(&[&slope.detach(), &div.detach()], 1)? * sigma)?)
    };
    let (z1, _, steps) = dormand_prince(
        &mut f,
        z0,
        s_min.ln(),
        s_max.ln(),
        opts.rtol,
        opts.atol,
        "the probability-flow likelihood",
        progress,
    )?;
    let var = 1.0 + s_max * s_max;
    let y1 = z1.narrow(1, 0, d)?.to_dtype(DType::F64)?;
    let prior = (y1.sqr()?.sum(1)? * (-0.5 / var))?.affine(
        1.0,
        -0.5 * d as f64 * (2.0 * std::f64::consts::PI * var).ln(),
    )?;
    let l = z1.narrow(1, d, 1)?.squeeze(1)?.to_dtype(DType::F64)?;
    let log_p: Vec<f64> = (prior + &l)?.to_vec1()?;
    if log_p.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numeric(
            "the probability-flow likelihood is NaN or infinite".into(),
        ));
    }
    Ok(OdeLikelihood {
        log_p,
        nfe,
        steps,
        end: y1,
        delta: l.to_vec1()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BetaSchedule;
    use candle_core::Device;

    /// The ODE solve at rtol = atol = 1e-7, with the exact marginal at sigma_max in place of
    /// the N(0, 1 + sigma_max^2) prior, against the closed form.
    const LOGP_TOL: f64 = 1e-4;
    /// The prior's own error: the true marginal at sigma_max = 157 is the data smoothed by
    /// 157, not N(0, 1 + 157^2); log-densities differ by ~ |m| |y| / sigma_max^2 ~ |m| /
    /// sigma_max, below 0.01 nats for means within 1.5 of the origin.
    const PRIOR_TOL: f64 = 0.01;

    /// A 2-D Gaussian mixture with isotropic components; its exact epsilon prediction is
    /// written with tensor ops, so it is differentiable like a network.
    struct Mixture {
        w: Vec<f64>,
        m: Vec<[f64; 2]>,
        s: Vec<f64>,
        schedule: NoiseSchedule,
    }

    impl Mixture {
        fn new() -> Self {
            Self {
                w: vec![0.3, 0.7],
                m: vec![[-1.0, 0.5], [1.0, -0.25]],
                s: vec![0.3, 0.5],
                schedule: NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap(),
            }
        }

        /// log of the sigma-space marginal at noise level `sigma`, in closed form.
        fn log_p(&self, y: [f64; 2], sigma: f64) -> f64 {
            let terms: Vec<f64> = (0..self.w.len())
                .map(|k| {
                    let v = self.s[k].powi(2) + sigma * sigma;
                    let r2 = (y[0] - self.m[k][0]).powi(2) + (y[1] - self.m[k][1]).powi(2);
                    self.w[k].ln() - (2.0 * std::f64::consts::PI * v).ln() - 0.5 * r2 / v
                })
                .collect();
            let mx = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            mx + terms.iter().map(|t| (t - mx).exp()).sum::<f64>().ln()
        }

        /// eps*(x_vp) = -sqrt(1-a) score(x_vp), with x_vp's component k ~ N(sqrt(a) m_k,
        /// (a s_k^2 + 1 - a) I).
        fn eps(&self, x: &Tensor, a: f64) -> Result<Tensor> {
            let mut logits = Vec::new();
            let mut pulls = Vec::new();
            for k in 0..self.w.len() {
                let v = a * self.s[k].powi(2) + 1.0 - a;
                let mu = Tensor::new(
                    &[[a.sqrt() * self.m[k][0], a.sqrt() * self.m[k][1]]],
                    x.device(),
                )?;
                let diff = x.broadcast_sub(&mu)?; // x - sqrt(a) m_k
                let lp = ((diff.sqr()?.sum_keepdim(1)? * (-0.5 / v))? + (self.w[k].ln() - v.ln()))?;
                logits.push(lp);
                pulls.push((diff * (1.0 / v))?);
            }
            let l = Tensor::cat(&logits, 1)?;
            let mx = l.max_keepdim(1)?.detach();
            let e = l.broadcast_sub(&mx)?.exp()?;
            let r = e.broadcast_div(&e.sum_keepdim(1)?)?;
            let mut minus_score = pulls[0].broadcast_mul(&r.narrow(1, 0, 1)?)?;
            for (k, p) in pulls.iter().enumerate().skip(1) {
                minus_score = (minus_score + p.broadcast_mul(&r.narrow(1, k, 1)?)?)?;
            }
            Ok((minus_score * (1.0 - a).sqrt())?)
        }
    }

    impl Denoiser for Mixture {
        fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
            Ok(self.predict_differentiable(x, t)?.unwrap().detach())
        }
        fn predict_differentiable(&self, x: &Tensor, t: f64) -> Result<Option<Tensor>> {
            let a = crate::sigmas::alpha_bar_at(&self.schedule, t);
            Ok(Some(self.eps(x, a)?))
        }
    }

    fn points() -> Tensor {
        Tensor::new(
            &[
                [-1.0f64, 0.5],
                [1.2, -0.1],
                [0.0, 0.0],
                [-0.7, 0.9],
                [2.0, 1.0],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    fn tight(trace: TraceEstimator) -> OdeLikelihoodOptions {
        OdeLikelihoodOptions {
            rtol: 1e-7,
            atol: 1e-7,
            trace,
        }
    }

    #[test]
    fn exact_trace_recovers_the_closed_form_density_of_a_mixture() {
        let m = Mixture::new();
        let x = points();
        let r = ode_log_likelihood(
            &m,
            &m.schedule,
            &x,
            &tight(TraceEstimator::Exact),
            &mut Rng::new(0),
            &mut |_, _| {},
        )
        .unwrap();
        let (s_min, s_max) = (sigma_at(&m.schedule, 0.0), sigma_at(&m.schedule, 1e9));
        let ends = r.end.to_vec2::<f64>().unwrap();
        for (i, p) in x.to_vec2::<f64>().unwrap().iter().enumerate() {
            let want = m.log_p([p[0], p[1]], s_min);
            // The transport itself: exact marginal at the end + the divergence integral.
            let exact_end = m.log_p([ends[i][0], ends[i][1]], s_max) + r.delta[i];
            eprintln!(
                "{p:?}: ode {:.6} (with the exact end marginal {exact_end:.6}), closed form {want:.6}",
                r.log_p[i]
            );
            assert!(
                (exact_end - want).abs() < LOGP_TOL,
                "{p:?}: {exact_end} vs {want}"
            );
            assert!(
                (r.log_p[i] - want).abs() < PRIOR_TOL,
                "{p:?}: {} vs {want}",
                r.log_p[i]
            );
        }
        assert!(r.nfe > 10 && r.steps > 1, "{r:?}");
    }

    #[test]
    fn hutchinson_averages_to_the_exact_trace() {
        let m = Mixture::new();
        // 400 copies of one point, each with its own probe.
        let x = points().narrow(0, 1, 1).unwrap().repeat((400, 1)).unwrap();
        let opts = OdeLikelihoodOptions {
            rtol: 1e-6,
            atol: 1e-6,
            trace: TraceEstimator::Hutchinson,
        };
        let r = ode_log_likelihood(&m, &m.schedule, &x, &opts, &mut Rng::new(3), &mut |_, _| {})
            .unwrap();
        let n = r.log_p.len() as f64;
        let mean = r.log_p.iter().sum::<f64>() / n;
        let sd = (r.log_p.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let want = m.log_p([1.2, -0.1], sigma_at(&m.schedule, 0.0));
        eprintln!("hutchinson mean {mean:.5} (sd {sd:.5}), closed form {want:.5}");
        assert!(sd > 0.0, "the probes should vary the estimate");
        assert!(
            (mean - want).abs() < 4.0 * sd / n.sqrt() + PRIOR_TOL,
            "{mean} vs {want}"
        );
    }

    #[test]
    fn bad_options_and_non_differentiable_models_are_clear_errors() {
        let m = Mixture::new();
        let x = points();
        for bad in [0.0, -1.0, f64::NAN] {
            let mut o = tight(TraceEstimator::Exact);
            o.rtol = bad;
            let e = ode_log_likelihood(&m, &m.schedule, &x, &o, &mut Rng::new(0), &mut |_, _| {})
                .unwrap_err();
            assert!(e.to_string().contains("rtol"), "{e}");
        }
        struct Opaque<'a>(&'a Mixture);
        impl Denoiser for Opaque<'_> {
            fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
                self.0.predict(x, t)
            }
        }
        let e = ode_log_likelihood(
            &Opaque(&m),
            &m.schedule,
            &x,
            &tight(TraceEstimator::Exact),
            &mut Rng::new(0),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("differentiate"), "{e}");
    }
}
