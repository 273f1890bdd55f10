//! Elementwise affine transformation with learned per-dimension scale and shift.
//!
//! Dinh, Krueger & Bengio 2014, "NICE: Non-linear Independent Components Estimation",
//! arXiv:1410.8516, Sec. 3.3 ("Allowing rescaling"): a diagonal scaling layer
//! `z_d = S_dd x_d` whose log-det is `sum_d log |S_dd|` (the term added to the objective
//! in Sec. 3.3). With S = exp(s) (positive by construction) and a shift b:
//!
//! ```text
//! forward:  z = x * exp(s) + b,      log |det dz/dx| = sum_d s_d   (same for every x)
//! inverse:  x = (z - b) * exp(-s)
//! ```
//!
//! Parameters `log_scale` and `shift`, one per data dimension (the full example shape),
//! both initialised to 0 (the identity).

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use genlab_core::{Error, Result};

use super::Transform;

pub struct ElementwiseAffine {
    log_scale: Tensor,
    shift: Tensor,
    shape: Vec<usize>,
}

impl ElementwiseAffine {
    /// One scale and shift per element of an example of `shape`.
    pub fn new(shape: &[usize], vb: VarBuilder) -> Result<Self> {
        if shape.is_empty() || shape.contains(&0) {
            return Err(Error::Config(format!(
                "elementwise affine: empty example shape {shape:?}"
            )));
        }
        Ok(Self {
            log_scale: vb.get_with_hints(shape, "log_scale", Init::Const(0.0))?,
            shift: vb.get_with_hints(shape, "shift", Init::Const(0.0))?,
            shape: shape.to_vec(),
        })
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        if x.dims().get(1..) != Some(&self.shape[..]) {
            return Err(Error::InvalidInput(format!(
                "elementwise affine built for examples of shape {:?}, got {:?}",
                self.shape,
                x.dims()
            )));
        }
        Ok(())
    }
}

impl Transform for ElementwiseAffine {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check(x)?;
        let z = x
            .broadcast_mul(&self.log_scale.exp()?.unsqueeze(0)?)?
            .broadcast_add(&self.shift.unsqueeze(0)?)?;
        let ld = self
            .log_scale
            .sum_all()?
            .broadcast_as(x.dim(0)?)?
            .contiguous()?; // [B]
        Ok((z, ld))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        self.check(z)?;
        Ok(z.broadcast_sub(&self.shift.unsqueeze(0)?)?
            .broadcast_mul(&self.log_scale.neg()?.exp()?.unsqueeze(0)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    #[test]
    fn elementwise_affine_inverts_and_its_log_det_matches_the_jacobian() {
        let (ps, vb) = vb64(1);
        let t = ElementwiseAffine::new(&[3], vb).unwrap();
        // Move away from the identity so the check means something.
        for (_, v) in ps.vars() {
            v.set(&randn64(9, v.dims(), 0.5)).unwrap();
        }
        check_transform("elementwise", &t, &randn64(2, &[4, 3], 1.0));
        let (_, vb) = vb64(1);
        let t = ElementwiseAffine::new(&[2, 2, 2], vb).unwrap();
        check_transform("elementwise image", &t, &randn64(2, &[2, 2, 2, 2], 1.0));
    }
}
