//! Shared pieces of the sampler conformance and parity tests: an exact Gaussian-mixture
//! denoiser (no network), the target's exact quantiles, the 1-D Wasserstein distance and a
//! least-squares slope.
#![allow(dead_code)] // each test binary uses a different subset

use candle_core::{DType, Device, Tensor};
use genlab_core::{Result, Rng};
use genlab_sampling::sigmas::alpha_bar_at;
use genlab_sampling::{BetaSchedule, Denoiser, NoiseSchedule};

/// genlab's default schedule: linear betas 1e-4 .. 0.02 over T = 1000 (Ho et al. 2020).
pub fn default_schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap()
}

/// A 1-D Gaussian mixture sum_k w_k N(m_k, s_k^2), applied to every coordinate.
#[derive(Clone, Debug)]
pub struct Gmm {
    pub w: Vec<f64>,
    pub m: Vec<f64>,
    pub s: Vec<f64>,
}

impl Gmm {
    /// Two well separated, unequal modes: a sampler that loses one, flattens the weights or
    /// blurs the widths moves the 1-D Wasserstein distance by 0.1 or more.
    pub fn two_modes() -> Self {
        Self {
            w: vec![0.3, 0.7],
            m: vec![-1.5, 1.0],
            s: vec![0.25, 0.5],
        }
    }

    /// Exact eps prediction at alpha_bar `a`. Pushed through x_t = sqrt(a) x0 + sqrt(1-a) e,
    /// component k becomes N(sqrt(a) m_k, v_k), v_k = a s_k^2 + 1 - a, so
    ///   score(x) = sum_k r_k(x) (sqrt(a) m_k - x) / v_k,  r_k = posterior responsibility,
    ///   eps*(x)  = -sqrt(1 - a) score(x).
    pub fn eps(&self, x: f64, a: f64) -> f64 {
        let (sa, s1a) = (a.sqrt(), (1.0 - a).sqrt());
        let mut logp = Vec::with_capacity(self.w.len());
        for k in 0..self.w.len() {
            let v = a * self.s[k] * self.s[k] + 1.0 - a;
            let d = x - sa * self.m[k];
            logp.push(self.w[k].ln() - 0.5 * v.ln() - 0.5 * d * d / v);
        }
        let mx = logp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let (mut num, mut den) = (0.0, 0.0);
        for (k, lp) in logp.iter().enumerate() {
            let r = (lp - mx).exp();
            let v = a * self.s[k] * self.s[k] + 1.0 - a;
            num += r * (sa * self.m[k] - x) / v;
            den += r;
        }
        -s1a * num / den
    }

    pub fn cdf(&self, x: f64) -> f64 {
        (0..self.w.len())
            .map(|k| {
                self.w[k] * 0.5 * erfc(-(x - self.m[k]) / (self.s[k] * std::f64::consts::SQRT_2))
            })
            .sum()
    }

    /// Inverse CDF by bisection (the CDF is continuous and strictly increasing).
    pub fn quantile(&self, u: f64) -> f64 {
        let (mut lo, mut hi) = (-20.0, 20.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < u {
                lo = mid
            } else {
                hi = mid
            }
        }
        0.5 * (lo + hi)
    }

    /// W1 between the empirical distribution of `samples` and this mixture, by quantile
    /// matching: (1/n) sum_i |x_(i) - Q((i - 1/2)/n)|.
    pub fn w1(&self, samples: &[f64]) -> f64 {
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len() as f64;
        v.iter()
            .enumerate()
            .map(|(i, x)| (x - self.quantile((i as f64 + 0.5) / n)).abs())
            .sum::<f64>()
            / n
    }
}

/// erfc with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit `erfcc`), ample for
/// Wasserstein tolerances of 1e-2.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The exact eps-prediction denoiser of a [`Gmm`] under `schedule`, at continuous timesteps
/// (alpha_bar from `sigmas::alpha_bar_at`, the samplers' own continuous-time rule).
pub struct GmmDenoiser<'a> {
    pub gmm: Gmm,
    pub schedule: &'a NoiseSchedule,
}

impl Denoiser for GmmDenoiser<'_> {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let a = alpha_bar_at(self.schedule, t);
        let v: Vec<f64> = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        let e: Vec<f64> = v.iter().map(|&x| self.gmm.eps(x, a)).collect();
        Ok(Tensor::from_vec(e, x.dims(), x.device())?.to_dtype(x.dtype())?)
    }
}

/// A tensor of standard normals from `seed`, shape [n, 1], in `dtype`.
pub fn noise(seed: u64, n: usize, dtype: DType) -> Tensor {
    Rng::new(seed)
        .normal_tensor(&[n, 1], &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

pub fn to_f64_vec(x: &Tensor) -> Vec<f64> {
    x.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    to_f64_vec(a)
        .iter()
        .zip(to_f64_vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Least-squares slope of y against x.
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}
