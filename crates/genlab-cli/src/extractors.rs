//! Pretrained feature extractors by name (`--features inception|efficientnet-lite0`).

use std::path::Path;

use anyhow::bail;
use candle_core::Device;
use genlab_metrics::features::efficientnet::{self, EfficientNetLite0};
use genlab_metrics::features::inception::{self, InceptionV3};
use genlab_metrics::features::FeatureExtractor;

/// Loads a pretrained extractor from `weights`, or from its default path under
/// `$GENLAB_DATA/weights/` (the error names the file expected and how to get it).
pub fn pretrained(name: &str, weights: Option<&Path>) -> anyhow::Result<Box<dyn FeatureExtractor>> {
    Ok(match name {
        "inception" => {
            let p = weights.map_or_else(inception::default_weights_path, Path::to_path_buf);
            Box::new(InceptionV3::load(&p, &Device::Cpu)?)
        }
        "efficientnet-lite0" => {
            let p = weights.map_or_else(efficientnet::default_weights_path, Path::to_path_buf);
            Box::new(EfficientNetLite0::load(&p)?)
        }
        other => bail!("unknown pretrained extractor `{other}` (inception, efficientnet-lite0)"),
    })
}
