//! Feature extractors: networks that turn images into the feature matrices (and class
//! probabilities) the metrics compare.
//!
//! | name | module | features | probabilities |
//! |---|---|---|---|
//! | CKPT (a classifier run) | [`classifier`] | genlab's digit classifier, feature layer | its softmax |
//! | `pixels` | [`classifier::PixelExtractor`] | raw values | - |
//! | `inception` | [`inception`] | 2048-d pool3 of pytorch-fid's FID Inception-v3 | 1008-way logits softmax |
//! | `efficientnet-lite0` | [`efficientnet`] | 1280-d pooled, ImageNet-trained | 1000-way |
//!
//! Every extractor takes NCHW f32 images in [0, 1] (1 or 3 channels; grey is repeated to
//! RGB where the network wants colour) and does its own resizing and normalisation, which
//! [`FeatureExtractor::preprocessing`] describes so that cached reference statistics can
//! record it.

pub mod classifier;
pub mod efficientnet;
pub mod inception;
pub mod torch_legacy;

use crate::FeatureMatrix;
use candle_core::Tensor;
use genlab_core::Result;

/// What an extractor returns for one batch.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// N x D features (FID, KID, MMD, Wasserstein, 1-NN).
    pub features: FeatureMatrix,
    /// N x K class probabilities (rows sum to 1), when the network has a classifier head
    /// (Inception Score, Mode Score).
    pub probs: Option<FeatureMatrix>,
}

/// An image -> features network.
pub trait FeatureExtractor {
    /// Stable identifier recorded next to every number computed with it, e.g.
    /// `"inception-v3-fid/pool3"`.
    fn id(&self) -> String;
    /// Feature dimension D.
    fn feature_dim(&self) -> usize;
    /// Number of classes of the probability head, if any.
    fn num_classes(&self) -> Option<usize>;
    /// One line describing resizing and normalisation ("bilinear resize to 299x299, scale
    /// to [-1, 1]").
    fn preprocessing(&self) -> String;
    /// Features (and probabilities) of a batch of NCHW f32 images in [0, 1].
    fn extract(&self, images: &Tensor) -> Result<Extracted>;
}
