//! A small convolutional image classifier: genlab's own digit feature extractor.
//!
//! The classic LeNet-style recipe (LeCun et al. 1998) with modern parts: 3x3 convolutions
//! and ReLU, downsampling by stride-2 convolutions instead of pooling (Springenberg et al.
//! 2015, "Striving for Simplicity"), one hidden fully connected layer whose activations are
//! the *features* used by FID/KID/MMD/1-NN on digit data, and a linear head whose softmax
//! gives the class probabilities used by the Inception and Mode Scores.
//!
//! ```text
//! x [B, C, H, W]
//! -> relu(conv3x3 C->c0)           -> relu(conv3x3 stride 2 c0->c0)    [B, c0, H/2, W/2]
//! -> relu(conv3x3 c0->c1)          -> relu(conv3x3 stride 2 c1->c1)    [B, c1, H/4, W/4]
//! -> flatten -> fc (c1*H/4*W/4 -> features) -> relu                   features [B, F]
//! -> head (F -> classes)                                               logits [B, K]
//! ```
//! Parameter names: `conv.{0..3}`, `fc`, `head`; with `group_norm` G > 0 each convolution is
//! followed by a group normalisation of G groups (Wu & He 2018, arXiv:1803.08494) before
//! its ReLU, `norm.{0..3}`: batch-independent, so training and evaluation compute the same
//! function (what Richemond et al. 2020, arXiv:2010.10241, give BYOL in place of batch norm).

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use crate::linear::Linear;
use serde::{Deserialize, Serialize};

use crate::conv::Conv;
use crate::norm::GroupNorm;

/// Group norm's epsilon (PyTorch's default).
const GN_EPS: f64 = 1e-5;

/// Sizes of [`Classifier`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    pub num_classes: usize,
    /// Channels of the two convolution stages.
    pub channels: [usize; 2],
    /// Width of the feature layer.
    pub features: usize,
    /// Groups of the group normalisation after every convolution; 0 (the default): none.
    /// Must divide both channel counts.
    pub group_norm: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            input: [1, 28, 28],
            num_classes: 10,
            // 32/64: the usual MNIST CNN widths; ~99% test accuracy within a few epochs.
            channels: [32, 64],
            // 128: a compact feature space (FID covariances stay well conditioned with the
            // 10,000 test images) that still separates the ten classes.
            features: 128,
            group_norm: 0,
        }
    }
}

impl ClassifierConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let [c, h, w] = self.input;
        if c == 0 || h < 4 || w < 4 {
            return Err(genlab_core::Error::Config(format!(
                "classifier.input must be [C, H, W] with C >= 1 and H, W >= 4, got {:?}",
                self.input
            )));
        }
        if self.num_classes < 2 || self.features == 0 || self.channels.contains(&0) {
            return Err(genlab_core::Error::Config(format!(
                "classifier needs >= 2 classes and non-zero widths, got classes {}, channels {:?}, features {}",
                self.num_classes, self.channels, self.features
            )));
        }
        if self.group_norm > 0 && self.channels.iter().any(|c| c % self.group_norm != 0) {
            return Err(genlab_core::Error::Config(format!(
                "classifier.group_norm ({}) must divide both channel counts {:?}",
                self.group_norm, self.channels
            )));
        }
        Ok(())
    }

    /// Spatial size after the two stride-2 stages.
    fn reduced(&self) -> (usize, usize) {
        let down = |s: usize| (s - 1) / 2 + 1;
        (down(down(self.input[1])), down(down(self.input[2])))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Classifier {
    cfg: ClassifierConfig,
    convs: Vec<Conv>,
    /// One per convolution, or none.
    norms: Vec<GroupNorm>,
    fc: Linear,
    head: Linear,
}

impl Classifier {
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let [c, _, _] = cfg.input;
        let [c0, c1] = cfg.channels;
        let convs = vec![
            Conv::new(c, c0, 3, 1, 1, vb.pp("conv.0"))?,
            Conv::new(c0, c0, 3, 2, 1, vb.pp("conv.1"))?,
            Conv::new(c0, c1, 3, 1, 1, vb.pp("conv.2"))?,
            Conv::new(c1, c1, 3, 2, 1, vb.pp("conv.3"))?,
        ];
        let norms = match cfg.group_norm {
            0 => Vec::new(),
            g => [c0, c0, c1, c1]
                .iter()
                .enumerate()
                .map(|(i, &ch)| GroupNorm::new(g, ch, GN_EPS, false, vb.pp(format!("norm.{i}"))))
                .collect::<candle_core::Result<_>>()?,
        };
        let (h, w) = cfg.reduced();
        let fc = Linear::new(c1 * h * w, cfg.features, vb.pp("fc"))?;
        let head = Linear::new(cfg.features, cfg.num_classes, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            convs,
            norms,
            fc,
            head,
        })
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// Images `[B, C, H, W]` in [0, 1] -> features `[B, F]` (scaled to [-1, 1] inside, the
    /// same convention as the diffusion models).
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.features_from_trunk(&self.trunk(x)?)
    }

    /// Images in [0, 1] -> the flattened output of the convolutions `[B, c1*H/4*W/4]`
    /// (what the feature layer reads; detach it to train the layers above alone).
    pub fn trunk(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.affine(2.0, -1.0)?;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?;
            if let Some(norm) = self.norms.get(i) {
                h = norm.forward(&h)?;
            }
            h = h.relu()?;
        }
        let b = h.dim(0)?;
        h.reshape((b, ()))
    }

    /// [`Self::trunk`]'s output -> features `[B, F]`.
    pub fn features_from_trunk(&self, trunk: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(trunk)?.relu()
    }

    /// Features `[B, F]` -> logits `[B, K]`.
    pub fn head(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(features)
    }

    /// Images in [0, 1] -> logits.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.head(&self.features(x)?)
    }
}

/// Row-wise log-softmax from differentiable primitives (max-shifted log-sum-exp);
/// candle's fused `softmax_last_dim` passes no gradient, so it is not used in training.
pub fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Mean cross-entropy of `logits [B, K]` against `labels [B]` (u32).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let lp = log_softmax(logits)?;
    let picked = lp.gather(&labels.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use genlab_core::ParamStore;

    #[test]
    fn cross_entropy_matches_the_formula_and_has_gradients() {
        let dev = Device::Cpu;
        let logits = Var::from_vec(vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0], (2, 3), &dev).unwrap();
        let labels = Tensor::new(&[1u32, 0], &dev).unwrap();
        let loss = cross_entropy(logits.as_tensor(), &labels).unwrap();
        let lse = |r: [f64; 3]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
        let expect = ((lse([1.0, 2.0, 0.5]) - 2.0) + (lse([-1.0, 0.0, 3.0]) + 1.0)) / 2.0;
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - expect).abs() < 1e-6, "{got} vs {expect}");
        // d loss / d logits = (softmax - onehot) / B.
        let g = loss.backward().unwrap();
        let g = g.get(logits.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let e = [1f64.exp(), 2f64.exp(), 0.5f64.exp()];
        let s: f64 = e.iter().sum();
        assert!((g[0][1] as f64 - (e[1] / s - 1.0) / 2.0).abs() < 1e-6);
        assert!((g[0][0] as f64 - (e[0] / s) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn shapes_and_every_variable_gets_a_gradient() {
        for group_norm in [0, 1] {
            check_shapes_and_gradients(group_norm);
        }
        // Groups that do not divide the channels are refused.
        let bad = ClassifierConfig {
            channels: [32, 48],
            group_norm: 32,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    fn check_shapes_and_gradients(group_norm: usize) {
        let cfg = ClassifierConfig {
            input: [1, 9, 7],
            num_classes: 4,
            channels: [3, 5],
            features: 6,
            group_norm,
        };
        cfg.validate().unwrap();
        let ps = ParamStore::new(0, &Device::Cpu);
        let m = Classifier::new(&cfg, ps.vb()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 1, 9, 7), &Device::Cpu).unwrap();
        assert_eq!(m.features(&x).unwrap().dims(), &[2, 6]);
        let logits = m.forward(&x).unwrap();
        assert_eq!(logits.dims(), &[2, 4]);
        let labels = Tensor::new(&[3u32, 1], &Device::Cpu).unwrap();
        let g = cross_entropy(&logits, &labels).unwrap().backward().unwrap();
        for (name, v) in ps.vars() {
            let gv = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let n = gv
                .to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            assert!(n.to_scalar::<f64>().unwrap() > 0.0, "{name}: zero gradient");
        }
        let norms = ps
            .vars()
            .iter()
            .filter(|(n, _)| n.starts_with("norm."))
            .count();
        assert_eq!(norms, if group_norm > 0 { 8 } else { 0 });
    }
}
