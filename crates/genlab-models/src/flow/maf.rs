//! Masked autoregressive flow (MAF): fast density evaluation, sequential sampling.
//!
//! Papamakarios, Pavlakou & Murray 2017, "Masked Autoregressive Flow for Density
//! Estimation", arXiv:1705.07057, Sec. 3.1. With (mu_i, alpha_i) = f(x_{1:i-1}) computed by
//! one MADE ([`Made`]) pass on the data:
//!
//! ```text
//! sampling:  x_i = u_i exp(alpha_i) + mu_i                  (sequential in i)
//! density:   u_i = (x_i - mu_i) exp(-alpha_i)               (all i at once)
//! log |det du/dx| = -sum_i alpha_i
//! ```
//!
//! Cost: `forward` (density, x -> u) is ONE MADE pass; `inverse` (sampling) needs D
//! sequential passes, pass i fixing the dimension of degree i. alpha is soft-clamped to
//! (-clamp, clamp). `reverse` flips the variable ordering (alternate it between layers).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::Result;

use super::masks::param;
use super::{soft_clamp, sum_per_example, Made, Transform};

pub struct Maf {
    made: Made,
    d: usize,
    clamp: f64,
}

impl Maf {
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

    /// `(mu, alpha)` `[B, D]` from the data side.
    fn params(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.made.forward(x)?;
        Ok((param(&p, 0)?, soft_clamp(&param(&p, 1)?, self.clamp)?))
    }
}

impl Transform for Maf {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mu, alpha) = self.params(x)?;
        let u = ((x - mu)? * alpha.neg()?.exp()?)?;
        Ok((u, sum_per_example(&alpha)?.neg()?))
    }

    fn inverse(&self, u: &Tensor) -> Result<Tensor> {
        // After pass i the dimensions of degree <= i are exact (they see only exact inputs).
        let mut x = u.zeros_like()?;
        for _ in 0..self.d {
            let (mu, alpha) = self.params(&x)?;
            x = ((u * alpha.exp()?)? + mu)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    #[test]
    fn maf_inverts_and_its_log_det_matches_the_jacobian() {
        for reverse in [false, true] {
            let (ps, vb) = vb64(1);
            let t = Maf::new(4, &[16], reverse, 3.0, vb).unwrap();
            perturb(&ps, 3, 0.4);
            check_transform("maf", &t, &randn64(2, &[5, 4], 1.0));
        }
    }
}
