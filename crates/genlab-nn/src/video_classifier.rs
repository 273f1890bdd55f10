//! A small video classifier for clips of moving digits: genlab's feature extractor for an
//! FVD-style Frechet distance (FVD: Unterthiner et al. 2018, arXiv:1812.01717, uses I3D
//! features; no I3D weights exist here, so this network, trained on Moving MNIST, stands in).
//!
//! Per-frame convolutions with weights shared over time, then a *slow fusion* of the frames
//! (Karpathy et al. 2014, "Large-scale Video Classification with Convolutional Neural
//! Networks", CVPR): the per-frame feature maps are stacked along channels and one
//! convolution sees all frames at once, so motion (where the digit is in each frame) reaches
//! the feature layer. Two heads: the digit (10 classes) and the direction of motion (8
//! compass sectors).
//!
//! ```text
//! x [B, T, C, H, W] -> [B*T, C, H, W]
//! -> relu(conv3x3 C->c0) -> relu(conv3x3 s2 c0->c0) -> relu(conv3x3 s2 c0->c1)   [B*T, c1, H/4, W/4]
//! -> [B, T*c1, H/4, W/4] -> relu(conv3x3 s2 T*c1->c2)                           [B, c2, H/8, W/8]
//! -> flatten -> fc -> relu                                                      features [B, F]
//! -> digit head (F -> 10), direction head (F -> 8)
//! ```
//! Parameter names: `frame.{0..2}`, `fuse`, `fc`, `digit`, `direction`.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::conv::Conv;
use crate::linear::Linear;

/// Sizes of [`VideoClassifier`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VideoClassifierConfig {
    /// Clip shape `[T, C, H, W]`.
    pub input: [usize; 4],
    pub digit_classes: usize,
    pub direction_classes: usize,
    /// Channels of the per-frame stages and of the fusion convolution.
    pub channels: [usize; 3],
    /// Width of the feature layer.
    pub features: usize,
}

impl Default for VideoClassifierConfig {
    fn default() -> Self {
        Self {
            input: [8, 1, 32, 32],
            digit_classes: 10,
            direction_classes: 8,
            // Narrow per-frame stages (they run T times per clip); a wider fusion.
            channels: [16, 32, 64],
            // 128: the image classifier's feature width (FID covariances stay well
            // conditioned with a few thousand clips).
            features: 128,
        }
    }
}

impl VideoClassifierConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let [t, c, h, w] = self.input;
        if t == 0 || c == 0 || h < 8 || w < 8 {
            return Err(genlab_core::Error::Config(format!(
                "video_classifier.input must be [T, C, H, W] with T, C >= 1 and H, W >= 8, got {:?}",
                self.input
            )));
        }
        if self.digit_classes < 2
            || self.direction_classes < 2
            || self.features == 0
            || self.channels.contains(&0)
        {
            return Err(genlab_core::Error::Config(format!(
                "video_classifier needs >= 2 classes per head and non-zero widths, got {self:?}"
            )));
        }
        Ok(())
    }

    fn reduced(&self) -> (usize, usize) {
        let down = |s: usize| (s - 1) / 2 + 1;
        (
            down(down(down(self.input[2]))),
            down(down(down(self.input[3]))),
        )
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct VideoClassifier {
    cfg: VideoClassifierConfig,
    frame: Vec<Conv>,
    fuse: Conv,
    fc: Linear,
    digit: Linear,
    direction: Linear,
}

impl VideoClassifier {
    pub fn new(cfg: &VideoClassifierConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let [t, c, _, _] = cfg.input;
        let [c0, c1, c2] = cfg.channels;
        let frame = vec![
            Conv::new(c, c0, 3, 1, 1, vb.pp("frame.0"))?,
            Conv::new(c0, c0, 3, 2, 1, vb.pp("frame.1"))?,
            Conv::new(c0, c1, 3, 2, 1, vb.pp("frame.2"))?,
        ];
        let fuse = Conv::new(t * c1, c2, 3, 2, 1, vb.pp("fuse"))?;
        let (h, w) = cfg.reduced();
        let fc = Linear::new(c2 * h * w, cfg.features, vb.pp("fc"))?;
        let digit = Linear::new(cfg.features, cfg.digit_classes, vb.pp("digit"))?;
        let direction = Linear::new(cfg.features, cfg.direction_classes, vb.pp("direction"))?;
        Ok(Self {
            cfg: cfg.clone(),
            frame,
            fuse,
            fc,
            digit,
            direction,
        })
    }

    pub fn config(&self) -> &VideoClassifierConfig {
        &self.cfg
    }

    /// Clips `[B, T, C, H, W]` in [0, 1] -> features `[B, F]` (scaled to [-1, 1] inside).
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let [t, c, h, w] = self.cfg.input;
        let dims = x.dims();
        if dims.len() != 5 || dims[1..] != [t, c, h, w] {
            candle_core::bail!(
                "the video classifier takes clips of shape [N, {t}, {c}, {h}, {w}], got {dims:?}"
            );
        }
        let b = dims[0];
        let mut z = x.reshape((b * t, c, h, w))?.affine(2.0, -1.0)?;
        for conv in &self.frame {
            z = conv.forward(&z)?.relu()?;
        }
        let (_, c1, h4, w4) = z.dims4()?;
        let z = z.reshape((b, t * c1, h4, w4))?;
        let z = self.fuse.forward(&z)?.relu()?;
        self.fc.forward(&z.reshape((b, ()))?)?.relu()
    }

    /// Features -> (digit logits `[B, 10]`, direction logits `[B, 8]`).
    pub fn heads(&self, features: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.digit.forward(features)?,
            self.direction.forward(features)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::cross_entropy;
    use candle_core::{DType, Device};
    use genlab_core::ParamStore;

    #[test]
    fn shapes_bad_input_and_every_variable_gets_a_gradient() {
        let cfg = VideoClassifierConfig {
            input: [3, 1, 9, 8],
            channels: [2, 3, 4],
            features: 5,
            ..Default::default()
        };
        cfg.validate().unwrap();
        let ps = ParamStore::new(0, &Device::Cpu);
        let m = VideoClassifier::new(&cfg, ps.vb()).unwrap();
        let x = Tensor::rand(0f32, 1.0, (2, 3, 1, 9, 8), &Device::Cpu).unwrap();
        let f = m.features(&x).unwrap();
        assert_eq!(f.dims(), &[2, 5]);
        let (d, r) = m.heads(&f).unwrap();
        assert_eq!((d.dims(), r.dims()), (&[2, 10][..], &[2, 8][..]));
        let loss = (cross_entropy(&d, &Tensor::new(&[3u32, 1], &Device::Cpu).unwrap()).unwrap()
            + cross_entropy(&r, &Tensor::new(&[7u32, 0], &Device::Cpu).unwrap()).unwrap())
        .unwrap();
        let g = loss.backward().unwrap();
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
        // Frames are shared-weight, so swapping two clips in the batch swaps their features.
        let swapped =
            Tensor::cat(&[x.narrow(0, 1, 1).unwrap(), x.narrow(0, 0, 1).unwrap()], 0).unwrap();
        let fs = m.features(&swapped).unwrap().to_vec2::<f32>().unwrap();
        let f = f.to_vec2::<f32>().unwrap();
        for (a, b) in fs[0].iter().chain(&fs[1]).zip(f[1].iter().chain(&f[0])) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let bad = Tensor::zeros((2, 4, 1, 9, 8), DType::F32, &Device::Cpu).unwrap();
        let e = m.features(&bad).unwrap_err().to_string();
        assert!(e.contains("[N, 3, 1, 9, 8]"), "{e}");
        assert!(VideoClassifierConfig {
            input: [0, 1, 9, 9],
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
