//! Affine coupling layer with checkerboard or channel masks.
//!
//! Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using Real NVP",
//! arXiv:1605.08803, Sec. 3.2-3.3:
//!
//! ```text
//! y_{1:d}   = x_{1:d}
//! y_{d+1:D} = x_{d+1:D} * exp(s(x_{1:d})) + t(x_{1:d})                 (Eq. 4-5)
//! log |det dy/dx| = sum_j s(x_{1:d})_j                                  (Eq. 6)
//! inverse: x_{d+1:D} = (y_{d+1:D} - t(y_{1:d})) * exp(-s(y_{1:d}))       (Eq. 7-8)
//! masked form: y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))     (Eq. 9)
//! ```
//!
//! s and t come from one conditioner ([`CouplingNet`]) with two outputs per element; s is
//! soft-clamped to (-scale_clamp, scale_clamp) (`c tanh(s / c)`, as the scale of Glow's
//! coupling is bounded by a sigmoid) so that no single layer can blow the log-det up.
//! Both directions cost one conditioner evaluation.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::Result;

use super::masks::param;
use super::{soft_clamp, sum_per_example, CouplingNet, Mask, MaskKind, Transform};

pub struct AffineCoupling {
    net: CouplingNet,
    mask: Mask,
    clamp: f64,
}

impl AffineCoupling {
    /// A coupling for examples of `shape`, conditioner widths `hidden`.
    pub fn new(
        shape: &[usize],
        mask: MaskKind,
        parity: bool,
        hidden: &[usize],
        clamp: f64,
        narrow: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let like = Tensor::zeros(1, vb.dtype(), vb.device())?;
        let m = Mask::new(mask, shape, parity, &like)?;
        Ok(Self {
            net: CouplingNet::for_mask(shape, hidden, 2, mask, parity, narrow, vb.pp("net"))?,
            mask: m,
            clamp,
        })
    }

    /// `(s, t)` masked to the transformed part, from the conditioning part of `x`.
    fn scale_shift(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.net.forward(&x.broadcast_mul(&self.mask.b)?)?;
        let s = soft_clamp(&param(&p, 0)?, self.clamp)?.broadcast_mul(&self.mask.not_b)?;
        let t = param(&p, 1)?.broadcast_mul(&self.mask.not_b)?;
        Ok((s, t))
    }
}

impl Transform for AffineCoupling {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(h) = self.net.split(x)? {
            // Eq. 4-6 on the transformed half alone (halved conditioner).
            let s = soft_clamp(&param(&h.p, 0)?, self.clamp)?;
            let y = ((&h.transformed * s.exp()?)? + param(&h.p, 1)?)?;
            return Ok((h.join(&y)?, sum_per_example(&s)?));
        }
        let (s, t) = self.scale_shift(x)?;
        // Where b = 1, s = t = 0: y = x there (Eq. 9).
        let z = ((x * s.exp()?)? + t)?;
        Ok((z, sum_per_example(&s)?))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        if let Some(h) = self.net.split(z)? {
            let s = soft_clamp(&param(&h.p, 0)?, self.clamp)?;
            let x = ((&h.transformed - param(&h.p, 1)?)? * s.neg()?.exp()?)?;
            return h.join(&x);
        }
        let (s, t) = self.scale_shift(z)?; // b * z = b * x
        Ok(((z - t)? * s.neg()?.exp()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    #[test]
    fn affine_coupling_inverts_and_its_log_det_matches_the_jacobian() {
        for (kind, parity) in [
            (MaskKind::Checkerboard, false),
            (MaskKind::Checkerboard, true),
            (MaskKind::Channel, false),
            (MaskKind::Channel, true),
        ] {
            for narrow in [false, true] {
                let (ps, vb) = vb64(1);
                let t = AffineCoupling::new(&[4], kind, parity, &[8, 8], 2.0, narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                check_transform(
                    &format!("affine coupling points {kind:?} {parity} {narrow}"),
                    &t,
                    &randn64(2, &[3, 4], 1.0),
                );
                let (ps, vb) = vb64(1);
                let t =
                    AffineCoupling::new(&[2, 2, 2], kind, parity, &[4], 2.0, narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                check_transform(
                    &format!("affine coupling images {kind:?} {parity} {narrow}"),
                    &t,
                    &randn64(2, &[2, 2, 2, 2], 1.0),
                );
            }
        }
    }
}
