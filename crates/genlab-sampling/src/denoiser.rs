//! The interface between samplers and networks.
//!
//! A sampler only ever calls [`Denoiser::predict`]: the network's output for a batch `x`
//! at one discrete timestep index `t` (a float so that continuous-time models and
//! respaced schedules fit the same call). [`Prediction`] says what the output means;
//! `to_eps_x0` converts any of them to the (epsilon, x0) pair the DDPM-family updates use.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::Result;

/// What a network predicts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Prediction {
    /// The noise eps in x_t = sqrt(a) x0 + sqrt(1-a) eps (Ho et al. 2020).
    #[default]
    Epsilon,
    /// The clean sample x0.
    X0,
    /// v = sqrt(a) eps - sqrt(1-a) x0 (Salimans & Ho 2022, arXiv:2202.00512, Sec. 4).
    V,
}

/// A network that denoises: x_t and a timestep in, a [`Prediction`] out.
pub trait Denoiser {
    /// Prediction for the whole batch `x` (shape [B, ...]) at timestep index `t`.
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor>;
    /// What [`Denoiser::predict`] returns.
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
    /// Like [`Denoiser::predict`], but keeping the autograd graph from `x` to the prediction
    /// (the probability-flow likelihood needs the prediction's derivatives with respect to
    /// its input). `None`: this denoiser cannot differentiate its prediction.
    fn predict_differentiable(&self, _x: &Tensor, _t: f64) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// Converts a prediction at alpha_bar `a` into (eps, x0).
pub fn to_eps_x0(kind: Prediction, out: &Tensor, x: &Tensor, a: f64) -> Result<(Tensor, Tensor)> {
    let (sa, s1a) = (a.sqrt(), (1.0 - a).sqrt());
    Ok(match kind {
        Prediction::Epsilon => {
            // x0 = (x - sqrt(1-a) eps) / sqrt(a)
            let x0 = ((x - (out * s1a)?)? / sa)?;
            (out.clone(), x0)
        }
        Prediction::X0 => {
            let eps = ((x - (out * sa)?)? / s1a)?;
            (eps, out.clone())
        }
        Prediction::V => {
            // x0 = sqrt(a) x - sqrt(1-a) v ; eps = sqrt(1-a) x + sqrt(a) v
            let x0 = ((x * sa)? - (out * s1a)?)?;
            let eps = ((x * s1a)? + (out * sa)?)?;
            (eps, x0)
        }
    })
}

/// [`to_eps_x0`] with a different alpha_bar per example: `sa` = sqrt(alpha_bar) and `s1a` =
/// sqrt(1 - alpha_bar) are tensors that broadcast over `x` (shape [B, 1, ...]); for training
/// losses and distillation targets that draw one timestep per example.
pub fn to_eps_x0_per_example(
    kind: Prediction,
    out: &Tensor,
    x: &Tensor,
    sa: &Tensor,
    s1a: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Ok(match kind {
        Prediction::Epsilon => {
            let x0 = (x - out.broadcast_mul(s1a)?)?.broadcast_div(sa)?;
            (out.clone(), x0)
        }
        Prediction::X0 => {
            let eps = (x - out.broadcast_mul(sa)?)?.broadcast_div(s1a)?;
            (eps, out.clone())
        }
        Prediction::V => {
            let x0 = (x.broadcast_mul(sa)? - out.broadcast_mul(s1a)?)?;
            let eps = (x.broadcast_mul(s1a)? + out.broadcast_mul(sa)?)?;
            (eps, x0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn conversions_are_consistent() {
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -1.0, 0.25], &dev).unwrap();
        let eps = Tensor::new(&[1.0f32, 0.3, -0.7], &dev).unwrap();
        let a = 0.64f64;
        let xt = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
        let v = ((&eps * a.sqrt()).unwrap() - (&x0 * (1.0 - a).sqrt()).unwrap()).unwrap();
        for (kind, out) in [
            (Prediction::Epsilon, &eps),
            (Prediction::X0, &x0),
            (Prediction::V, &v),
        ] {
            let (e, x) = to_eps_x0(kind, out, &xt, a).unwrap();
            let de: f32 = (e - &eps)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            let dx: f32 = (x - &x0)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(de < 1e-6 && dx < 1e-6, "{kind:?}: {de} {dx}");
        }
    }

    #[test]
    fn the_per_example_conversion_equals_the_scalar_one_row_by_row() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.5f32, -1.0], [1.5, 0.2]], &dev).unwrap();
        let out = Tensor::new(&[[0.3f32, 0.9], [-0.4, 1.1]], &dev).unwrap();
        let a = [0.64f64, 0.09];
        let col = |v: [f64; 2]| Tensor::new(&[[v[0] as f32], [v[1] as f32]], &dev).unwrap();
        let sa = col([a[0].sqrt(), a[1].sqrt()]);
        let s1a = col([(1.0 - a[0]).sqrt(), (1.0 - a[1]).sqrt()]);
        for kind in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
            let (e, x0) = to_eps_x0_per_example(kind, &out, &x, &sa, &s1a).unwrap();
            for (i, &ai) in a.iter().enumerate() {
                let row = |t: &Tensor| t.narrow(0, i, 1).unwrap();
                let (es, xs) = to_eps_x0(kind, &row(&out), &row(&x), ai).unwrap();
                for (p, q) in [(row(&e), es), (row(&x0), xs)] {
                    let d: f32 = (p - q)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar()
                        .unwrap();
                    assert!(d < 1e-5, "{kind:?} row {i}: {d}");
                }
            }
        }
    }
}
