//! Feature extractors by spec: a name from `genlab_metrics`' registry (`inception`,
//! `efficientnet-lite0`, `pixels`), `hf-clip:DIR` (a transformers CLIPModel folder,
//! [`crate::hf_clip_eval`]), or the run directory of a trained classifier, whose
//! checkpoint this crate reads.

use std::path::Path;

use genlab_core::{Error, Result};
use genlab_metrics::features::classifier::ClassifierExtractor;
use genlab_metrics::features::{
    find_extractor, load_extractor, ExtractorRequest, FeatureExtractor, EXTRACTORS,
};

use crate::registry::load_classifier;

/// Every extractor spec users can give: the registry's names, then a classifier run.
pub fn extractor_names() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = EXTRACTORS
        .iter()
        .map(|e| (e.name.to_string(), e.description))
        .collect();
    v.push((
        "hf-clip:DIR".into(),
        "a Hugging Face transformers CLIPModel folder (config.json, model.safetensors, \
         tokenizer files): unit image embeddings + zero-shot digit probabilities",
    ));
    v.push((
        "RUN_DIR".into(),
        "the run directory of a trained `classifier` model (128-d features + class \
         probabilities), `clip` model (image embeddings + zero-shot digit probabilities) or \
         `video-classifier` model (clips [N, T, C, H, W]: 128-d features + digit probabilities)",
    ));
    v
}

/// Opens the extractor `spec` names (a registry name or a classifier run directory) for
/// images of `image_shape` (`[C, H, W]`); `weights` replaces a pretrained network's default
/// weights file.
pub fn open_extractor(
    spec: &str,
    weights: Option<&Path>,
    image_shape: &[usize],
) -> Result<Box<dyn FeatureExtractor>> {
    if find_extractor(spec).is_some() {
        return load_extractor(
            spec,
            &ExtractorRequest {
                weights,
                image_shape,
            },
        );
    }
    if let Some(dir) = crate::hf_clip_eval::spec_dir(spec) {
        return Ok(Box::new(crate::hf_clip_eval::HfClipDigits::open(
            &dir,
            &[],
        )?));
    }
    let p = Path::new(spec);
    if !p.exists() {
        return Err(Error::setting(
            "features",
            format!(
                "`{spec}` is neither a feature extractor ({}, hf-clip:DIR) nor a classifier run \
                 directory",
                EXTRACTORS
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let family = crate::registry::run_model(p)?;
    if family == crate::steps::video_classifier::ENTRY.name {
        let (net, run) = crate::steps::video_classifier::load_video_classifier(p)?;
        return Ok(Box::new(
            genlab_metrics::features::video_classifier::VideoClassifierExtractor::new(
                net,
                format!("{} trained on {}", p.display(), run.data),
            ),
        ));
    }
    if family == "clip" {
        let clip = crate::steps::clip::load_clip(p, &candle_core::Device::Cpu)?;
        let label = format!("{} trained on {}", p.display(), clip.run.data);
        return Ok(Box::new(crate::clip_eval::ClipExtractor::new(clip, label)?));
    }
    let (net, run) = load_classifier(p)?;
    Ok(Box::new(ClassifierExtractor::new(
        net,
        format!("{} trained on {}", p.display(), run.data),
    )))
}

/// The square image side and channels the extractor `spec` takes (image folders are read
/// at it by default), or `None` when it takes any size or cannot be read (opening it will
/// say why).
pub fn extractor_input(spec: &str) -> Result<Option<(usize, usize)>> {
    if let Some(e) = find_extractor(spec) {
        return Ok(e.input);
    }
    if let Some(dir) = crate::hf_clip_eval::spec_dir(spec) {
        return Ok(crate::hf_clip_eval::input(&dir).ok());
    }
    if let Ok(c) = crate::steps::clip::load_clip(Path::new(spec), &candle_core::Device::Cpu) {
        let [ch, h, _] = c.net.config().input();
        return Ok(Some((h, ch)));
    }
    let Ok((net, _)) = load_classifier(Path::new(spec)) else {
        return Ok(None);
    };
    let [c, h, w] = net.config().input;
    if h != w {
        return Err(Error::InvalidInput(format!(
            "the classifier {spec} takes {h}x{w} images; image folders are read square, so \
             it needs a square classifier"
        )));
    }
    Ok(Some((h, c)))
}
