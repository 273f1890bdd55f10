//! Feature extractors: networks that turn images into the feature matrices (and class
//! probabilities) the metrics compare.
//!
//! | name | module | features | probabilities |
//! |---|---|---|---|
//! | RUN_DIR (a classifier run; opened by `genlab_train`, which reads checkpoints) | [`classifier`] | genlab's digit classifier, feature layer | its softmax |
//! | `pixels` | [`classifier::PixelExtractor`] | raw values | - |
//! | `inception` | [`inception`] | 2048-d pool3 of pytorch-fid's FID Inception-v3 | 1008-way logits softmax |
//! | `efficientnet-lite0` | [`efficientnet`] | 1280-d pooled, ImageNet-trained | 1000-way |
//! | RUN_DIR of a `video-classifier` run (clips, not images) | [`video_classifier`] | genlab's video classifier, feature layer | its digit softmax |
//!
//! Every extractor takes NCHW f32 images in [0, 1] (1 or 3 channels; grey is repeated to
//! RGB where the network wants colour) and does its own resizing and normalisation, which
//! [`FeatureExtractor::preprocessing`] describes so that cached reference statistics can
//! record it.
//!
//! Adding an extractor: its file (a type implementing [`FeatureExtractor`]) and one entry
//! in [`EXTRACTORS`].

pub mod classifier;
pub mod efficientnet;
pub mod inception;
pub mod torch_legacy;
pub mod video_classifier;

use std::path::{Path, PathBuf};

use crate::FeatureMatrix;
use candle_core::{Device, Tensor};
use genlab_core::{Error, Result};

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

/// What [`ExtractorEntry::load`] is given.
#[derive(Debug, Clone, Copy)]
pub struct ExtractorRequest<'a> {
    /// A weights file to read instead of the extractor's default one.
    pub weights: Option<&'a Path>,
    /// Shape `[C, H, W]` of the images it will see (the pixel extractor's dimension).
    pub image_shape: &'a [usize],
}

/// One registered, named feature extractor.
pub struct ExtractorEntry {
    pub name: &'static str,
    pub description: &'static str,
    /// The square image side and channels the network takes, which image folders are read
    /// at by default; `None` when it takes any size.
    pub input: Option<(usize, usize)>,
    /// Where its weights are looked for when none are given, if it has weights.
    pub default_weights: Option<fn() -> PathBuf>,
    pub load: fn(&ExtractorRequest) -> Result<Box<dyn FeatureExtractor>>,
}

/// Every named extractor. (A classifier run directory is an extractor too: it is opened by
/// `genlab_train::open_extractor`, since reading a checkpoint is the trainer's business.)
pub const EXTRACTORS: &[ExtractorEntry] = &[
    ExtractorEntry {
        name: "inception",
        description: "pytorch-fid's FID Inception-v3 (2048-d pool3); needs \
                      pt_inception-2015-12-05-6726825d.pth",
        input: Some((inception::INPUT_SIZE, 3)),
        default_weights: Some(inception::default_weights_path),
        load: |r| {
            let p = r
                .weights
                .map_or_else(inception::default_weights_path, Path::to_path_buf);
            Ok(Box::new(inception::InceptionV3::load(&p, &Device::Cpu)?))
        },
    },
    ExtractorEntry {
        name: "efficientnet-lite0",
        description: "ImageNet EfficientNet-Lite0 (1280-d); weights from \
                      `genlab data fetch efficientnet-lite0`",
        input: Some((efficientnet::INPUT_SIZE, 3)),
        default_weights: Some(efficientnet::default_weights_path),
        load: |r| {
            let p = r
                .weights
                .map_or_else(efficientnet::default_weights_path, Path::to_path_buf);
            Ok(Box::new(efficientnet::EfficientNetLite0::load(&p)?))
        },
    },
    ExtractorEntry {
        name: "pixels",
        description: "raw pixel values, flattened",
        input: None,
        default_weights: None,
        load: |r| {
            Ok(Box::new(classifier::PixelExtractor {
                dim: r.image_shape.iter().product(),
            }))
        },
    },
];

/// The named extractor, if `name` is one.
pub fn find_extractor(name: &str) -> Option<&'static ExtractorEntry> {
    EXTRACTORS.iter().find(|e| e.name == name)
}

/// Loads the named extractor; an unknown name lists the known ones.
pub fn load_extractor(name: &str, req: &ExtractorRequest) -> Result<Box<dyn FeatureExtractor>> {
    let e = find_extractor(name).ok_or_else(|| {
        Error::unknown("feature extractor", name, EXTRACTORS.iter().map(|e| e.name))
    })?;
    (e.load)(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_loads_pixels_and_names_missing_weights() {
        let shape = [1, 4, 4];
        let req = ExtractorRequest {
            weights: None,
            image_shape: &shape,
        };
        let px = load_extractor("pixels", &req).unwrap();
        assert_eq!((px.id(), px.feature_dim()), ("pixels".to_string(), 16));
        let missing = Path::new("no/such/weights.pth");
        let e = load_extractor(
            "inception",
            &ExtractorRequest {
                weights: Some(missing),
                image_shape: &shape,
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("no/such/weights.pth"), "{e}");
        let e = load_extractor("vgg", &req).err().unwrap().to_string();
        assert!(e.contains("vgg") && e.contains("efficientnet-lite0"), "{e}");
        assert_eq!(find_extractor("inception").unwrap().input, Some((299, 3)));
    }
}
