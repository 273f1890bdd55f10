//! Pretrained feature extractors by name (`--features inception|efficientnet-lite0`).

use std::path::Path;

use anyhow::bail;
use genlab_metrics::features::FeatureExtractor;

pub fn pretrained(name: &str, weights: Option<&Path>) -> anyhow::Result<Box<dyn FeatureExtractor>> {
    let _ = weights;
    bail!("feature extractor `{name}` is not wired yet")
}
