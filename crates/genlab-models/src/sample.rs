//! The `Sample` interface every model family implements.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{Condition, Error, Result, Rng};
use genlab_sampling::SamplerOptions;

use crate::LogLikelihood;

/// What the data look like, recorded in every model config so that a checkpoint alone is
/// enough to sample.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSpace {
    /// Shape of one example: `[D]` for points, `[C, H, W]` for images.
    pub shape: Vec<usize>,
    /// Images live in [0, 1]; points are unbounded.
    pub images: bool,
}

impl DataSpace {
    /// `Err(InvalidInput)` unless `x` is a batch `[B, ...shape]` of this space's examples;
    /// `model` names the model in the message ("the VAE").
    pub fn check_batch(&self, x: &Tensor, model: &str) -> Result<()> {
        let dims = x.dims();
        if dims.len() < 2 || dims[1..] != self.shape[..] {
            return Err(Error::InvalidInput(format!(
                "examples have shape {:?}, {model} was built for {:?}",
                dims.get(1..).unwrap_or(&[]),
                self.shape
            )));
        }
        Ok(())
    }
}

/// A request for samples.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    pub n: usize,
    /// Sampler name for models that have several (diffusion); ignored by others.
    pub sampler: String,
    pub options: SamplerOptions,
    /// At most this many samples go through the network at once (memory bound).
    pub batch_size: usize,
    /// What to generate: one condition per sample (`n` of them), or none.
    pub condition: Condition,
    /// Classifier-free guidance scale towards the condition (0: unconditional, 1:
    /// conditional); `None` samples the conditional model as it is.
    pub guidance: Option<f64>,
    /// Classifier guidance towards the condition's classes by a noisy classifier.
    pub classifier: Option<genlab_sampling::guidance::ClassifierGuidance>,
}

impl Default for SampleRequest {
    fn default() -> Self {
        Self {
            n: 64,
            sampler: "ddim".into(),
            options: SamplerOptions::default(),
            batch_size: 500, // ~bounded activation memory for the image models
            condition: Condition::none(),
            guidance: None,
            classifier: None,
        }
    }
}

/// Samples in data space (images NCHW in [0, 1]), on the CPU whatever device the model runs
/// on, and the network evaluations used.
#[derive(Debug)]
pub struct SampleResult {
    pub x: Tensor,
    /// Network evaluations per sample (the steps a sampler took), however many batches ran.
    pub nfe: usize,
}

pub trait Sample {
    /// Draws `req.n` samples; `progress(done, total)` counts network evaluations.
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult>;
    fn data_space(&self) -> &DataSpace;
    /// The model's log-likelihood (exact or a bound), for families that have one.
    fn as_likelihood(&self) -> Option<&dyn LogLikelihood> {
        None
    }
    /// The number of sampling steps this model was made for (a distilled student's), used
    /// when the user gives none.
    fn preferred_steps(&self) -> Option<usize> {
        None
    }
    /// The timestep spacing this model always samples with, whatever is asked (a distilled
    /// student's trailing grid); `None` when the request's spacing applies.
    fn fixed_spacing(&self) -> Option<genlab_sampling::Spacing> {
        None
    }
    /// The number of classes a request's class condition may name (0: the model takes no
    /// class).
    fn num_classes(&self) -> usize {
        0
    }
    /// Image editing (img2img, inpainting), for models that can.
    fn as_editor(&self) -> Option<&dyn crate::Edit> {
        None
    }
    /// The image map this model is conditioned on (SR3's upsampled low-resolution image, an
    /// edge map), computed from images `x` (`[B, C, H, W]` in [0, 1]) and ready to go into a
    /// request's `condition.image`; `None` for models without one.
    fn image_map(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let _ = x;
        Ok(None)
    }
    /// What [`Sample::image_map`] is, in words (e.g. "low-res:7"); `None` without one.
    fn image_map_name(&self) -> Option<String> {
        None
    }
}

/// Errors unless `req` asks for no condition and no guidance: for models that take none.
pub fn require_no_condition(req: &SampleRequest, family: &str) -> Result<()> {
    if !req.condition.is_none() {
        return Err(Error::InvalidInput(format!(
            "a {family} takes no condition, got {}",
            req.condition.describe()
        )));
    }
    if req.guidance.is_some() {
        return Err(Error::setting(
            "guidance",
            format!("applies to conditional diffusion models; a {family} takes none"),
        ));
    }
    if req.classifier.is_some() {
        return Err(Error::setting(
            "classifier",
            format!("guidance applies to diffusion models; a {family} takes none"),
        ));
    }
    Ok(())
}

/// Errors unless `req` samples at temperature 1: only flows scale their base noise.
pub fn require_unit_temperature(req: &SampleRequest, family: &str) -> Result<()> {
    let t = req.options.temperature;
    if t != 1.0 {
        return Err(Error::setting(
            "temperature",
            format!("applies to flows only; a {family} samples at temperature 1, got {t}"),
        ));
    }
    Ok(())
}

/// The loop every one-shot sampler shares (VAE, GAN, flow): draws `req.n` samples in batches
/// of at most `req.batch_size` with `batch(n, offset, rng)`, moves each to the CPU, reports
/// progress per batch, and concatenates. `n` must be at least 1.
pub fn sample_in_batches(
    req: &SampleRequest,
    rng: &mut Rng,
    progress: &mut dyn FnMut(usize, usize),
    mut batch: impl FnMut(usize, usize, &mut Rng) -> Result<Tensor>,
) -> Result<Tensor> {
    if req.n == 0 {
        return Err(Error::InvalidInput(
            "the number of samples must be at least 1, got 0".into(),
        ));
    }
    let bs = req.batch_size.max(1);
    let mut outs = Vec::new();
    let mut done = 0;
    while done < req.n {
        let nb = bs.min(req.n - done);
        outs.push(batch(nb, done, rng)?.to_device(&candle_core::Device::Cpu)?);
        done += nb;
        progress(done, req.n);
    }
    Ok(Tensor::cat(&outs, 0)?)
}
