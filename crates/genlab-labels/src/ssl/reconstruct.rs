//! What the reconstruction pretext tasks share ([`super::dae`], [`super::masked`]): a
//! decoder from the encoder's features to one logit per pixel (dense, ReLU, dense: the
//! decoder is thrown away with the pretext task, so it is kept light, as in He et al.
//! 2022's MAE), and the Bernoulli reconstruction loss over chosen pixels: the
//! cross-entropy `-(x log p + (1 - x) log(1 - p))` with `p = sigmoid(l)` of Vincent et al.
//! 2008 (section 2.2) for inputs in [0, 1], computed as `softplus(l) - x l`, averaged over
//! the pixels whose weight is 1.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use genlab_core::{Error, Result};
use genlab_nn::{softplus, Act, Mlp};

/// Features `[B, F]` -> pixel logits `[B, C*H*W]`.
pub struct Decoder {
    mlp: Mlp,
}

impl Decoder {
    pub fn new(features: usize, hidden: usize, pixels: usize, vb: VarBuilder) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::setting(
                "method.decoder_hidden",
                "must be at least 1",
            ));
        }
        Ok(Self {
            mlp: Mlp::new(&[features, hidden, pixels], Act::Relu, vb)?,
        })
    }

    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(self.mlp.forward(features)?)
    }
}

/// The decoder of `s`'s encoder features to its images' pixels (parameters `decoder.*`).
pub fn decoder_for(s: &super::Spec, hidden: usize) -> Result<Decoder> {
    Decoder::new(
        s.encoder.config().features,
        hidden,
        s.shape.iter().product(),
        s.params.vb().pp("decoder"),
    )
}

/// The pretext loss of a batch: `input` (the corrupted or masked images, host `[b, C, H,
/// W]`) through the encoder and `dec`, scored against the clean images `x` over `weight`
/// (host `[b, C*H*W]`; `None`: every pixel).
#[allow(clippy::too_many_arguments)]
pub fn reconstruction_loss(
    enc: &genlab_nn::Classifier,
    dec: &Decoder,
    input: Vec<f32>,
    x: &[f32],
    weight: Option<Vec<f32>>,
    b: usize,
    shape: [usize; 3],
    device: &candle_core::Device,
) -> Result<Tensor> {
    let [c, h, w] = shape;
    let d = c * h * w;
    let input = Tensor::from_vec(input, (b, c, h, w), device)?;
    let target = Tensor::from_slice(x, (b, d), device)?;
    let weight = weight
        .map(|wt| Tensor::from_vec(wt, (b, d), device))
        .transpose()?;
    let logits = dec.logits(&enc.features(&input)?)?;
    bernoulli_loss(&logits, &target, weight.as_ref())
}

/// Mean over the pixels with `weight` 1 (all pixels when `None`) of the Bernoulli
/// cross-entropy of `logits` against `target` in [0, 1]; shapes `[B, D]`.
pub fn bernoulli_loss(logits: &Tensor, target: &Tensor, weight: Option<&Tensor>) -> Result<Tensor> {
    let per_pixel = (softplus(logits)? - (target * logits)?)?;
    Ok(match weight {
        None => per_pixel.mean_all()?,
        Some(w) => {
            let count = w.sum_all()?.to_scalar::<f32>()?;
            if count <= 0.0 {
                return Err(Error::InvalidInput(
                    "the reconstruction loss has no pixel to score".into(),
                ));
            }
            ((per_pixel * w)?.sum_all()? / count as f64)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 arithmetic on a few values.
    const TOL: f64 = 1e-5;

    #[test]
    fn the_loss_is_the_bernoulli_cross_entropy_over_the_weighted_pixels() {
        let l = [-3.0f32, -0.5, 0.0, 0.7, 2.5, 8.0];
        let x = [0.0f32, 1.0, 0.3, 1.0, 0.0, 0.9];
        let w = [1.0f32, 0.0, 1.0, 1.0, 0.0, 1.0];
        let t = |v: &[f32]| Tensor::from_slice(v, (2, 3), &Device::Cpu).unwrap();
        let ce = |l: f32, x: f32| {
            let p = 1.0 / (1.0 + (-(l as f64)).exp());
            -(x as f64 * p.ln() + (1.0 - x as f64) * (1.0 - p).ln())
        };
        let all: f64 = l.iter().zip(&x).map(|(&l, &x)| ce(l, x)).sum::<f64>() / 6.0;
        let got = bernoulli_loss(&t(&l), &t(&x), None).unwrap();
        assert!((got.to_scalar::<f32>().unwrap() as f64 - all).abs() < TOL);
        let masked: f64 = (0..6)
            .filter(|&i| w[i] > 0.0)
            .map(|i| ce(l[i], x[i]))
            .sum::<f64>()
            / 4.0;
        let got = bernoulli_loss(&t(&l), &t(&x), Some(&t(&w))).unwrap();
        assert!((got.to_scalar::<f32>().unwrap() as f64 - masked).abs() < TOL);
        assert!(bernoulli_loss(&t(&l), &t(&x), Some(&t(&[0.0; 6]))).is_err());
    }
}
