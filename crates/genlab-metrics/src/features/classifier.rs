//! genlab's own digit classifier (`genlab train --model classifier`) as a feature extractor:
//! the ReLU feature layer for FID/KID/MMD/Wasserstein/1-NN, softmax of the head for the
//! Inception and Mode Scores.

use super::{Extracted, FeatureExtractor};
use crate::FeatureMatrix;
use candle_core::Tensor;
use genlab_core::{Error, Result};
use genlab_nn::Classifier;

pub struct ClassifierExtractor {
    net: Classifier,
    /// Names the weights (run directory and step), recorded with every number.
    label: String,
}

impl ClassifierExtractor {
    pub fn new(net: Classifier, label: impl Into<String>) -> Self {
        Self {
            net,
            label: label.into(),
        }
    }
}

impl FeatureExtractor for ClassifierExtractor {
    fn id(&self) -> String {
        format!("genlab-classifier/fc ({})", self.label)
    }

    fn feature_dim(&self) -> usize {
        self.net.config().features
    }

    fn num_classes(&self) -> Option<usize> {
        Some(self.net.config().num_classes)
    }

    fn preprocessing(&self) -> String {
        let [c, h, w] = self.net.config().input;
        format!("none: images must be {c}x{h}x{w} in [0, 1] (scaled to [-1, 1] inside the network)")
    }

    fn extract(&self, images: &Tensor) -> Result<Extracted> {
        let want = self.net.config().input;
        let dims = images.dims();
        if dims.len() != 4 || dims[1..] != want {
            return Err(Error::InvalidInput(format!(
                "the classifier extractor takes images of shape [N, {}, {}, {}], got {dims:?}",
                want[0], want[1], want[2]
            )));
        }
        let f = self.net.features(images)?.detach();
        let p = genlab_nn::classifier::log_softmax(&self.net.head(&f)?)?.exp()?;
        let n = dims[0];
        Ok(Extracted {
            features: FeatureMatrix::from_f32(
                n,
                self.feature_dim(),
                &f.flatten_all()?.to_vec1::<f32>()?,
                "classifier features",
            )?,
            probs: Some(FeatureMatrix::from_f32(
                n,
                self.net.config().num_classes,
                &p.flatten_all()?.to_vec1::<f32>()?,
                "classifier probabilities",
            )?),
        })
    }
}

/// Flattened pixels as features (no network): for point data and quick checks.
pub struct PixelExtractor {
    pub dim: usize,
}

impl FeatureExtractor for PixelExtractor {
    fn id(&self) -> String {
        "pixels".into()
    }
    fn feature_dim(&self) -> usize {
        self.dim
    }
    fn num_classes(&self) -> Option<usize> {
        None
    }
    fn preprocessing(&self) -> String {
        "none: raw values, flattened".into()
    }
    fn extract(&self, images: &Tensor) -> Result<Extracted> {
        let n = images.dim(0)?;
        let v = images.flatten_all()?.to_vec1::<f32>()?;
        if v.len() != n * self.dim {
            return Err(Error::InvalidInput(format!(
                "pixel features: {} values for {n} samples, expected {} each",
                v.len(),
                self.dim
            )));
        }
        Ok(Extracted {
            features: FeatureMatrix::from_f32(n, self.dim, &v, "pixels")?,
            probs: None,
        })
    }
}

/// Runs `ex` over `images` in batches of `batch`, calling `progress(done, total)`.
pub fn extract_all(
    ex: &dyn FeatureExtractor,
    images: &Tensor,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Extracted> {
    let n = images.dim(0)?;
    let batch = batch.max(1);
    let mut feats = Vec::new();
    let mut probs: Option<Vec<f64>> = None;
    let mut k = 0;
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let e = ex.extract(&images.narrow(0, start, len)?)?;
        feats.extend_from_slice(e.features.data());
        if let Some(p) = e.probs {
            k = p.cols();
            probs
                .get_or_insert_with(Vec::new)
                .extend_from_slice(p.data());
        }
        start += len;
        progress(start, n);
    }
    Ok(Extracted {
        features: FeatureMatrix::new(n, ex.feature_dim(), feats, "features")?,
        probs: probs
            .map(|p| FeatureMatrix::new(n, k, p, "probabilities"))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::ParamStore;
    use genlab_nn::ClassifierConfig;

    #[test]
    fn batched_extraction_equals_one_batch_and_probs_sum_to_one() {
        let cfg = ClassifierConfig {
            input: [1, 8, 8],
            num_classes: 3,
            channels: [4, 4],
            features: 5,
            group_norm: 0,
        };
        let ps = ParamStore::new(1, &Device::Cpu);
        let ex = ClassifierExtractor::new(Classifier::new(&cfg, ps.vb()).unwrap(), "test");
        let x = Tensor::rand(0f32, 1.0, (7, 1, 8, 8), &Device::Cpu).unwrap();
        let mut calls = 0;
        let a = extract_all(&ex, &x, 3, &mut |_, _| calls += 1).unwrap();
        let b = ex.extract(&x).unwrap();
        assert_eq!(calls, 3);
        assert_eq!(a.features.rows(), 7);
        for (u, v) in a.features.data().iter().zip(b.features.data()) {
            assert!((u - v).abs() < 1e-5);
        }
        let p = a.probs.unwrap();
        crate::score::check_probs(&p, "p").unwrap();
        let bad = Tensor::zeros((2, 1, 9, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(ex
            .extract(&bad)
            .unwrap_err()
            .to_string()
            .contains("[N, 1, 8, 8]"));
    }
}
