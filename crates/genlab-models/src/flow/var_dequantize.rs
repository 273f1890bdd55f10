//! Variational dequantisation: learned noise for discrete pixels.
//!
//! Ho, Chen, Srinivas, Duan & Abbeel 2019, "Flow++", arXiv:1902.00275, Sec. 3.1. Uniform
//! dequantisation adds u ~ U[0, 1)^D to the pixel levels k and bounds
//! log P(k) >= E_u[log p((k + u) / L)] - D ln L; it forces the flow to put a flat density on
//! every unit cube. A learned q(u | k) gives the tighter bound
//!   log P(k) >= E_{u ~ q}[log p((k + u) / L) - D ln L - log q(u | k)],
//! equal to the uniform one when q is uniform (log q = 0). Flow++ uses a conditional flow
//! for q; genlab's q is the simplest conditional flow, an elementwise logistic-normal:
//!   e ~ N(0, I),  h = mu(k) + exp(s(k)) e,  u = sigmoid(h),
//!   log q(u | k) = sum_j [log N(e_j; 0, 1) - s_j - log sigmoid(h_j) - log sigmoid(-h_j)],
//! with (mu, s) from a conditioner CNN of the centred pixels (the couplings' network, with
//! a small head: q starts near the logistic-normal with mu = 0, s = 0), s soft-clamped to
//! [-3, 3] like the couplings' log-scales. u is a reparameterised draw, so the bound's
//! gradient reaches q's weights.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::{Result, Rng};
use genlab_nn::softplus;

use super::{CouplingNet, Dequantizer};

/// Bound on |s| (log of the logistic-normal's scale).
const LOG_SCALE_CLAMP: f64 = 3.0;

pub struct VariationalDequantizer {
    net: CouplingNet,
    levels: u32,
}

/// A dequantised batch: the flow's input y = (k + u) / L in (0, 1)^D and log q(u | k) `[B]`.
pub struct Dequantized {
    pub y: Tensor,
    pub log_q: Tensor,
}

impl VariationalDequantizer {
    /// q for images of `shape` `[C, H, W]`, its conditioner with `hidden` channels.
    pub fn new(shape: &[usize], hidden: &[usize], levels: u32, vb: VarBuilder) -> Result<Self> {
        Dequantizer::new(levels)?;
        Ok(Self {
            net: CouplingNet::new(shape, hidden, 2, vb)?,
            levels,
        })
    }

    /// (mu, s) of q for the pixels `x` in [0, 1], each `[B, C, H, W]`.
    pub fn params(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = self.levels_of(x)?;
        let centred = (k / (self.levels as f64 - 1.0))?.affine(1.0, -0.5)?;
        let out = self.net.forward(&centred)?; // [B, 2, C, H, W]
        let mu = out.narrow(1, 0, 1)?.squeeze(1)?;
        let raw = out.narrow(1, 1, 1)?.squeeze(1)?;
        let s = ((raw / LOG_SCALE_CLAMP)?.tanh()? * LOG_SCALE_CLAMP)?;
        Ok((mu, s))
    }

    fn levels_of(&self, x: &Tensor) -> Result<Tensor> {
        Dequantizer::check_range(x)?;
        Ok(x.affine(self.levels as f64 - 1.0, 0.0)?.round()?)
    }

    /// Draws u ~ q(u | k) for the pixels `x` in [0, 1] (`[B, C, H, W]`).
    pub fn dequantize(&self, x: &Tensor, rng: &mut Rng) -> Result<Dequantized> {
        let k = self.levels_of(x)?;
        let (mu, s) = self.params(x)?;
        let e = rng
            .normal_tensor(x.dims(), x.device())?
            .to_dtype(x.dtype())?;
        let h = (mu + (s.exp()? * &e)?)?;
        let u = (h.neg()?.exp()? + 1.0)?.recip()?;
        let b = x.dim(0)?;
        let per = ((e.sqr()? * -0.5)? - 0.5 * (2.0 * std::f64::consts::PI).ln())?;
        let per = ((per - s)? + (softplus(&h)? + softplus(&h.neg()?)?)?)?;
        let log_q = per.reshape((b, ()))?.sum(1)?;
        let y = ((k + u)? / self.levels as f64)?;
        Ok(Dequantized { y, log_q })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::vb64;
    use candle_core::{DType, Device};
    use genlab_core::ParamStore;

    /// f64 sums of 16 terms, through exp/ln of u near 0 or 1 (1 - u loses digits).
    const TOL: f64 = 1e-6;

    fn q(seed: u64) -> (ParamStore, VariationalDequantizer) {
        let (ps, vb) = vb64(seed);
        let q = VariationalDequantizer::new(&[1, 4, 4], &[8], 256, vb).unwrap();
        (ps, q)
    }

    fn pixels(seed: u64) -> Tensor {
        let mut r = Rng::new(seed);
        let v: Vec<f64> = (0..2 * 16).map(|_| r.below(256) as f64 / 255.0).collect();
        Tensor::from_vec(v, (2, 1, 4, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn log_q_is_the_logistic_normal_density_of_the_drawn_noise() {
        let (ps, q) = q(1);
        // Move the head off its small init so that mu and s vary per pixel.
        for (_, v) in ps.vars() {
            let t = v.as_tensor();
            let noise = Rng::new(7).normal_tensor(t.dims(), t.device()).unwrap();
            v.set(&(t + (noise.to_dtype(DType::F64).unwrap() * 0.3).unwrap()).unwrap())
                .unwrap();
        }
        let x = pixels(2);
        let d = q.dequantize(&x, &mut Rng::new(3)).unwrap();
        let (mu, s) = q.params(&x).unwrap();
        let k = (x.affine(255.0, 0.0).unwrap().round().unwrap())
            .flatten_all()
            .unwrap();
        let y: Vec<f64> = d.y.flatten_all().unwrap().to_vec1().unwrap();
        let (mu, s): (Vec<f64>, Vec<f64>) = (
            mu.flatten_all().unwrap().to_vec1().unwrap(),
            s.flatten_all().unwrap().to_vec1().unwrap(),
        );
        let k: Vec<f64> = k.to_vec1().unwrap();
        let log_q: Vec<f64> = d.log_q.to_vec1().unwrap();
        for (b, &got) in log_q.iter().enumerate() {
            let mut want = 0.0;
            for j in 16 * b..16 * (b + 1) {
                let u = y[j] * 256.0 - k[j];
                assert!(u > 0.0 && u < 1.0, "u = {u}");
                // logit(u) ~ N(mu, e^{2s}); density of u = N(logit u) / (u (1 - u)).
                let z = ((u / (1.0 - u)).ln() - mu[j]) / s[j].exp();
                want += -0.5 * z * z
                    - 0.5 * (2.0 * std::f64::consts::PI).ln()
                    - s[j]
                    - (u * (1.0 - u)).ln();
            }
            assert!((got - want).abs() < TOL, "example {b}: {got} vs {want}");
        }
    }

    #[test]
    fn the_bound_reaches_q_weights_and_bad_pixels_are_errors() {
        let (ps, q) = q(4);
        let d = q.dequantize(&pixels(5), &mut Rng::new(6)).unwrap();
        let g = (d.y.sum_all().unwrap() + d.log_q.sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap();
        let reached = ps
            .vars()
            .iter()
            .filter(|(_, v)| g.get(v.as_tensor()).is_some())
            .count();
        assert_eq!(
            reached,
            ps.vars().len(),
            "every conditioner weight gets a gradient"
        );
        let bad = Tensor::full(1.5f64, (1, 1, 4, 4), &Device::Cpu).unwrap();
        assert!(q.dequantize(&bad, &mut Rng::new(0)).is_err());
    }
}
