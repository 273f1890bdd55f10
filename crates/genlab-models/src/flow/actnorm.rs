//! ActNorm: a per-channel affine layer initialised from the data.
//!
//! Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions",
//! arXiv:1807.03039, Sec. 3.1 and Table 1 (row "Actnorm"):
//!
//! ```text
//! forward:  z_{i,j} = s * x_{i,j} + b          (per channel; i, j the spatial position)
//! log-det:  h * w * sum(log |s|)
//! inverse:  x_{i,j} = (z_{i,j} - b) / s
//! ```
//!
//! Stored as in the Glow code, `z = (x + bias) * exp(logs)` (so s = exp(logs) > 0 and
//! b = bias * s). Data-dependent initialisation (Sec. 3.1): on the first minibatch, `bias`
//! and `logs` are set so that the outputs have zero mean and unit variance per channel;
//! afterwards they are ordinary trainable parameters. Channels are dimension 1: `[B, C]`
//! for points (every feature its own channel), `[B, C, H, W]` for images.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use genlab_core::{Error, Result};

use super::{Assignments, Transform};

/// Added to the per-channel standard deviation at initialisation (the Glow code's 1e-6):
/// a constant channel gets a large but finite scale.
pub const ACTNORM_EPS: f64 = 1e-6;

pub struct ActNorm {
    bias: Tensor,
    logs: Tensor,
    channels: usize,
    prefix: String,
}

impl ActNorm {
    /// Parameters `bias` and `logs` `[channels]`, both 0 (the identity) until
    /// [`Transform::data_init`] runs.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        if channels == 0 {
            return Err(Error::Config("actnorm: 0 channels".into()));
        }
        Ok(Self {
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            logs: vb.get_with_hints(channels, "logs", Init::Const(0.0))?,
            channels,
            prefix: vb.prefix(),
        })
    }

    /// `[C]` -> `[1, C]` or `[1, C, 1, 1]` to broadcast against `x`.
    fn shaped(&self, p: &Tensor, x: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1, self.channels];
        shape.extend(std::iter::repeat_n(1, x.rank().saturating_sub(2)));
        Ok(p.reshape(shape)?)
    }

    fn check(&self, x: &Tensor) -> Result<usize> {
        if x.rank() < 2 || x.dim(1)? != self.channels {
            return Err(Error::InvalidInput(format!(
                "actnorm built for {} channels, got input {:?}",
                self.channels,
                x.dims()
            )));
        }
        // Positions per channel: h * w for images, 1 for points.
        Ok(x.dims()[2..].iter().product())
    }

    fn apply(&self, x: &Tensor, bias: &Tensor, logs: &Tensor) -> Result<(Tensor, Tensor)> {
        let hw = self.check(x)?;
        let z = x
            .broadcast_add(&self.shaped(bias, x)?)?
            .broadcast_mul(&self.shaped(&logs.exp()?, x)?)?;
        let ld = (logs.sum_all()? * hw as f64)?
            .broadcast_as(x.dim(0)?)?
            .contiguous()?;
        Ok((z, ld))
    }
}

impl Transform for ActNorm {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.apply(x, &self.bias, &self.logs)
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        self.check(z)?;
        Ok(z.broadcast_mul(&self.shaped(&self.logs.neg()?.exp()?, z)?)?
            .broadcast_sub(&self.shaped(&self.bias, z)?)?)
    }

    /// bias = -mean, logs = -log(std + eps) per channel over the batch (and positions),
    /// computed in f64.
    fn data_init(&self, x: &Tensor) -> Result<(Tensor, Assignments)> {
        self.check(x)?;
        // [B, C, ...] -> [C, B * positions]
        let xc = x.detach().transpose(0, 1)?.reshape((self.channels, ()))?;
        let xc = xc.to_dtype(DType::F64)?;
        let mean = xc.mean(1)?; // [C]
        let var = xc.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
        let logs = (var.sqrt()? + ACTNORM_EPS)?.log()?.neg()?;
        let (bias, logs) = (
            mean.neg()?.to_dtype(self.bias.dtype())?,
            logs.to_dtype(self.logs.dtype())?,
        );
        let (z, _) = self.apply(x, &bias, &logs)?;
        Ok((
            z,
            vec![
                (format!("{}.bias", self.prefix), bias),
                (format!("{}.logs", self.prefix), logs),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    /// Mean of the initialised outputs: f64 sums of 320 values.
    const MEAN_TOL: f64 = 1e-9;
    /// Variance of the initialised outputs: std / (std + ACTNORM_EPS) squared is
    /// 1 - 2 eps / std, 4e-6 below 1 for the std-0.5 channel.
    const VAR_TOL: f64 = 1e-5;

    #[test]
    fn actnorm_inverts_and_its_log_det_matches_the_jacobian() {
        let (ps, vb) = vb64(1);
        let t = ActNorm::new(3, vb.pp("an")).unwrap();
        perturb(&ps, 4, 0.7);
        check_transform("actnorm points", &t, &randn64(2, &[4, 3], 1.0));
        check_transform("actnorm images", &t, &randn64(2, &[2, 3, 2, 2], 1.0));
    }

    #[test]
    fn data_init_gives_zero_mean_unit_variance_per_channel_and_names_the_variables() {
        let (ps, vb) = vb64(1);
        let t = ActNorm::new(2, vb.pp("an")).unwrap();
        // Channel 0 ~ N(3, 0.5^2), channel 1 ~ N(-1, 4^2), on 4x4 images.
        let x = randn64(3, &[20, 2, 4, 4], 1.0);
        let sc = Tensor::new(&[0.5f64, 4.0], &candle_core::Device::Cpu)
            .unwrap()
            .reshape((1, 2, 1, 1))
            .unwrap();
        let sh = Tensor::new(&[3.0f64, -1.0], &candle_core::Device::Cpu)
            .unwrap()
            .reshape((1, 2, 1, 1))
            .unwrap();
        let x = x.broadcast_mul(&sc).unwrap().broadcast_add(&sh).unwrap();
        let (z, a) = t.data_init(&x).unwrap();
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["an.bias", "an.logs"]);
        for c in 0..2 {
            let v: Vec<f64> = z
                .narrow(1, c, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
            assert!(
                m.abs() < MEAN_TOL && (var - 1.0).abs() < VAR_TOL,
                "{c}: {m} {var}"
            );
        }
        // Written into the variables, the layer reproduces the initialised output.
        for (n, v) in &a {
            let var = ps.vars().into_iter().find(|(k, _)| k == n).unwrap().1;
            var.set(v).unwrap();
        }
        let (z2, _) = t.forward(&x).unwrap();
        assert!(max_abs_diff(&z, &z2) < 1e-12);
    }
}
