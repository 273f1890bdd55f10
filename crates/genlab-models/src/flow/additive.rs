//! Additive coupling layer.
//!
//! Dinh, Krueger & Bengio 2014, "NICE: Non-linear Independent Components Estimation",
//! arXiv:1410.8516, Sec. 3.2 ("Additive coupling layer"), with the coupling law
//! g(a; b) = a + b:
//!
//! ```text
//! y_{I1} = x_{I1},           y_{I2} = x_{I2} + m(x_{I1})
//! inverse: x_{I2} = y_{I2} - m(y_{I1})
//! log |det dy/dx| = 0        (unit triangular Jacobian: volume preserving)
//! ```
//!
//! The partition (I1, I2) is a [`Mask`]: y = x + (1 - b) * m(b * x). A flow built only of
//! additive couplings has a constant log-det, so NICE ends with a diagonal scaling
//! ([`super::ElementwiseAffine`]). One conditioner evaluation each way.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::Result;

use super::masks::param;
use super::{zeros_b, CouplingNet, Mask, MaskKind, Transform};

pub struct AdditiveCoupling {
    net: CouplingNet,
    mask: Mask,
}

impl AdditiveCoupling {
    pub fn new(
        shape: &[usize],
        mask: MaskKind,
        parity: bool,
        hidden: &[usize],
        narrow: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let like = Tensor::zeros(1, vb.dtype(), vb.device())?;
        Ok(Self {
            mask: Mask::new(mask, shape, parity, &like)?,
            net: CouplingNet::for_mask(shape, hidden, 1, mask, parity, narrow, vb.pp("net"))?,
        })
    }

    fn shift(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.net.forward(&x.broadcast_mul(&self.mask.b)?)?;
        Ok(param(&p, 0)?.broadcast_mul(&self.mask.not_b)?)
    }
}

impl Transform for AdditiveCoupling {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(h) = self.net.split(x)? {
            // The transformed half alone (halved conditioner).
            let y = (&h.transformed + param(&h.p, 0)?)?;
            return Ok((h.join(&y)?, zeros_b(x)?));
        }
        Ok(((x + self.shift(x)?)?, zeros_b(x)?))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        if let Some(h) = self.net.split(z)? {
            return h.join(&(&h.transformed - param(&h.p, 0)?)?);
        }
        Ok((z - self.shift(z)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    #[test]
    fn additive_coupling_inverts_and_is_volume_preserving() {
        for kind in [MaskKind::Checkerboard, MaskKind::Channel] {
            for narrow in [false, true] {
                let (ps, vb) = vb64(1);
                let t = AdditiveCoupling::new(&[4], kind, true, &[8], narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                check_transform("additive points", &t, &randn64(2, &[3, 4], 1.0));
                let (ps, vb) = vb64(1);
                let t = AdditiveCoupling::new(&[2, 2, 2], kind, false, &[4], narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                check_transform("additive images", &t, &randn64(2, &[2, 2, 2, 2], 1.0));
            }
        }
    }
}
