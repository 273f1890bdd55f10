//! Inverse autoregressive flow (IAF): fast sampling, sequential density evaluation.
//!
//! Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "Improving Variational
//! Inference with Inverse Autoregressive Flow", arXiv:1606.04934, Sec. 4 (Eq. 10):
//! the autoregressive network reads the NOISE side. With (mu_i, alpha_i) = f(u_{1:i-1})
//! from one MADE ([`Made`]) pass on u:
//!
//! ```text
//! sampling:  x_i = u_i exp(alpha_i) + mu_i         (all i at once; sigma = exp(alpha))
//! density:   u_i = (x_i - mu_i) exp(-alpha_i)      (sequential in i: mu_i needs u_{<i})
//! log |det du/dx| = -sum_i alpha_i
//! ```
//!
//! The mirror image of [`super::Maf`]: `inverse` (sampling, u -> x) is ONE MADE pass;
//! `forward` (density, x -> u) needs D sequential passes. The affine form of Eq. 10 is used
//! (with alpha soft-clamped to (-clamp, clamp)), not the gated variant of Eq. 13-14.
//! Training an IAF by maximum likelihood, as genlab does, therefore pays D passes per step;
//! IAF is meant for variational posteriors and density-distilled samplers, where only
//! sampling and the log-density of its own samples are needed (both one pass).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::Result;

use super::masks::param;
use super::{soft_clamp, sum_per_example, Made, Transform};

pub struct Iaf {
    made: Made,
    d: usize,
    clamp: f64,
}

impl Iaf {
    pub fn new(
        d: usize,
        hidden: &[usize],
        reverse: bool,
        clamp: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            made: Made::new(d, hidden, 2, reverse, vb.pp("made"))?,
            d,
            clamp,
        })
    }

    /// `(mu, alpha)` `[B, D]` from the noise side.
    fn params(&self, u: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.made.forward(u)?;
        Ok((param(&p, 0)?, soft_clamp(&param(&p, 1)?, self.clamp)?))
    }
}

impl Transform for Iaf {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        // After pass i the dimensions of degree <= i are exact; the last pass's alpha is
        // computed from an exact u_{<i} for every i.
        let mut u = x.zeros_like()?;
        let mut alpha = x.zeros_like()?;
        for _ in 0..self.d {
            let (mu, a) = self.params(&u)?;
            u = ((x - mu)? * a.neg()?.exp()?)?;
            alpha = a;
        }
        Ok((u, sum_per_example(&alpha)?.neg()?))
    }

    fn inverse(&self, u: &Tensor) -> Result<Tensor> {
        let (mu, alpha) = self.params(u)?;
        Ok(((u * alpha.exp()?)? + mu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    #[test]
    fn iaf_inverts_and_its_log_det_matches_the_jacobian() {
        for reverse in [false, true] {
            let (ps, vb) = vb64(1);
            let t = Iaf::new(4, &[16], reverse, 3.0, vb).unwrap();
            perturb(&ps, 3, 0.4);
            check_transform("iaf", &t, &randn64(2, &[5, 4], 1.0));
        }
    }
}
