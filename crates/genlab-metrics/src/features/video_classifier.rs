//! genlab's video classifier (`genlab train --model video-classifier`, [`VideoClassifier`])
//! as a feature extractor for clips: its ReLU feature layer feeds [`crate::fid`], an
//! FVD-style Frechet distance (Unterthiner et al. 2018, arXiv:1812.01717, which uses I3D
//! features instead: this is a stand-in, not FVD). Its probabilities are the digit head's
//! softmax.
//!
//! Unlike the image extractors, [`FeatureExtractor::extract`] takes clips `[N, T, C, H, W]`.

use super::{Extracted, FeatureExtractor};
use crate::FeatureMatrix;
use candle_core::Tensor;
use genlab_core::{Error, Result};
use genlab_nn::classifier::log_softmax;
use genlab_nn::VideoClassifier;

pub struct VideoClassifierExtractor {
    net: VideoClassifier,
    /// Names the weights (run directory and step), recorded with every number.
    label: String,
}

impl VideoClassifierExtractor {
    pub fn new(net: VideoClassifier, label: impl Into<String>) -> Self {
        Self {
            net,
            label: label.into(),
        }
    }

    pub fn net(&self) -> &VideoClassifier {
        &self.net
    }

    /// Digit and direction probabilities `[N, 10]`, `[N, 8]` of clips `[N, T, C, H, W]`.
    pub fn predict(&self, clips: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check(clips)?;
        let f = self.net.features(clips)?.detach();
        let (d, r) = self.net.heads(&f)?;
        Ok((log_softmax(&d)?.exp()?, log_softmax(&r)?.exp()?))
    }

    fn check(&self, clips: &Tensor) -> Result<()> {
        let want = self.net.config().input;
        let dims = clips.dims();
        if dims.len() != 5 || dims[1..] != want {
            return Err(Error::InvalidInput(format!(
                "the video classifier {} takes clips of shape [N, {}, {}, {}, {}], got {dims:?}",
                self.label, want[0], want[1], want[2], want[3]
            )));
        }
        Ok(())
    }
}

impl FeatureExtractor for VideoClassifierExtractor {
    fn id(&self) -> String {
        format!("genlab-video-classifier/fc ({})", self.label)
    }

    fn feature_dim(&self) -> usize {
        self.net.config().features
    }

    fn num_classes(&self) -> Option<usize> {
        Some(self.net.config().digit_classes)
    }

    fn preprocessing(&self) -> String {
        let [t, c, h, w] = self.net.config().input;
        format!(
            "none: clips must be {t}x{c}x{h}x{w} in [0, 1] (scaled to [-1, 1] inside the network)"
        )
    }

    fn extract(&self, clips: &Tensor) -> Result<Extracted> {
        self.check(clips)?;
        let n = clips.dim(0)?;
        let f = self.net.features(clips)?.detach();
        let p = log_softmax(&self.net.heads(&f)?.0)?.exp()?;
        Ok(Extracted {
            features: FeatureMatrix::from_f32(
                n,
                self.feature_dim(),
                &f.flatten_all()?.to_vec1::<f32>()?,
                "video classifier features",
            )?,
            probs: Some(FeatureMatrix::from_f32(
                n,
                self.net.config().digit_classes,
                &p.flatten_all()?.to_vec1::<f32>()?,
                "video classifier digit probabilities",
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::ParamStore;
    use genlab_nn::VideoClassifierConfig;

    #[test]
    fn batched_clip_features_match_and_bad_shapes_are_refused() {
        let cfg = VideoClassifierConfig {
            input: [2, 1, 8, 8],
            channels: [2, 2, 3],
            features: 4,
            ..Default::default()
        };
        let ps = ParamStore::new(3, &Device::Cpu);
        let ex = VideoClassifierExtractor::new(VideoClassifier::new(&cfg, ps.vb()).unwrap(), "t");
        let x = Tensor::rand(0f32, 1.0, (5, 2, 1, 8, 8), &Device::Cpu).unwrap();
        let a = super::super::classifier::extract_all(&ex, &x, 2, &mut |_, _| {}).unwrap();
        let b = ex.extract(&x).unwrap();
        for (u, v) in a.features.data().iter().zip(b.features.data()) {
            assert!((u - v).abs() < 1e-5);
        }
        crate::score::check_probs(&a.probs.unwrap(), "p").unwrap();
        let (d, r) = ex.predict(&x).unwrap();
        assert_eq!((d.dims(), r.dims()), (&[5, 10][..], &[5, 8][..]));
        let bad = Tensor::zeros((1, 3, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = ex.extract(&bad).unwrap_err().to_string();
        assert!(e.contains("[N, 2, 1, 8, 8]"), "{e}");
    }
}
