//! Latent diffusion: a DDPM on the latents of a frozen first-stage autoencoder.
//!
//! Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"
//! (arXiv:2112.10752), Sec. 3.2 and App. D.1 / G: the diffusion model is trained on
//! `z = s * E(x)` (one posterior sample per image) and samples are decoded as
//! `x = D(z / s)`. The scale factor `s = 1 / std(z)` over training latents gives the
//! latents unit variance, so that the noise schedule made for [-1, 1] images fits them
//! (LDM measures it on the first batch, `scale_by_std`; genlab measures it on up to 5,000
//! training images when the run is created and stores it in the config).
//!
//! The DDPM is genlab's own ([`Ddpm`]) on a data space with `images = false`: latents are
//! unbounded, so there is no [0, 1] <-> [-1, 1] map and no x0 clipping. The whole sampler
//! zoo, classifier-free guidance and class conditioning apply unchanged; sampling ends with
//! the decoder. The autoencoder is not trained here and not stored in the LDM checkpoint:
//! the config names its run directory, which must stay where it was.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use super::ddpm::{Ddpm, DdpmConfig};
use crate::autoencoder::Autoencoder;
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LdmConfig {
    /// The run directory of the trained `autoencoder` (required).
    pub autoencoder: String,
    /// s = 1 / std of the training latents; measured when the run is created (`null`: not
    /// yet measured).
    #[serde(default)]
    pub scale_factor: Option<f64>,
    /// The diffusion model on the latents (its `data` is the latent space, set from the
    /// autoencoder when the run is created).
    pub ddpm: DdpmConfig,
    /// The image space (the dataset's).
    pub data: DataSpace,
    /// Text conditioning through cross-attention (needs `ddpm.net = cond-unet`); `null`:
    /// none (class labels may still condition a `unet`).
    #[serde(default)]
    pub text: Option<TextCondition>,
    /// Use the autoencoder at this run's image size although it was trained on another
    /// (it is fully convolutional: e.g. MNIST's autoencoder on 28x56 two-digit canvases).
    #[serde(default)]
    pub any_image_size: bool,
}

/// Where prompts come from and how they are encoded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextCondition {
    /// A frozen pretrained text encoder (`genlab list`: minilm).
    pub encoder: String,
    /// Tokens per prompt (special tokens included); longer prompts are cut (reported).
    pub max_tokens: usize,
    /// The captions training pairs each image with, from its label: `pairs` (the two-digit
    /// canvas: "a 3 on the left and a 7 on the right", ...) or `digits` ("a handwritten 3").
    pub captions: String,
}

impl LdmConfig {
    pub fn validate(&self) -> Result<()> {
        if self.autoencoder.trim().is_empty() {
            return Err(Error::setting(
                "ldm.autoencoder",
                "is required: the run directory of a trained autoencoder (`genlab train --model \
                 autoencoder ...`), e.g. --set ldm.autoencoder=runs/ae-mnist",
            ));
        }
        if let Some(s) = self.scale_factor {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::setting(
                    "ldm.scale_factor",
                    format!("must be a positive number, got {s}"),
                ));
            }
        }
        self.ddpm.validate()
    }

    /// The scale factor, which must have been measured.
    pub fn scale(&self) -> Result<f64> {
        self.scale_factor.ok_or_else(|| {
            Error::Config(
                "ldm.scale_factor was never measured (it is set when `genlab train --model ldm` \
                 creates the run)"
                    .into(),
            )
        })
    }
}

/// The 1 / std of latents, in f64 over every element.
pub fn latent_scale(z: &[f32]) -> Result<f64> {
    let n = z.len() as f64;
    if z.len() < 2 {
        return Err(Error::InvalidInput(
            "the latent scale needs at least two latent values".into(),
        ));
    }
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if !(var.is_finite() && var > 0.0) {
        return Err(Error::Numeric(format!(
            "the latents have variance {var}; the autoencoder is degenerate"
        )));
    }
    Ok(1.0 / var.sqrt())
}

/// A latent diffusion model: the DDPM, the frozen autoencoder, the scale.
pub struct Ldm {
    cfg: LdmConfig,
    scale: f64,
    pub ddpm: Ddpm,
    pub autoencoder: Autoencoder,
}

impl Ldm {
    pub fn new(cfg: &LdmConfig, ddpm: Ddpm, autoencoder: Autoencoder) -> Result<Self> {
        cfg.validate()?;
        let scale = cfg.scale()?;
        let want = autoencoder.config().latent_shape();
        if cfg.ddpm.data.shape != want {
            return Err(Error::Config(format!(
                "the LDM's diffusion model works on latents {:?}, its autoencoder makes {:?}",
                cfg.ddpm.data.shape, want
            )));
        }
        if autoencoder.config().data != cfg.data && !cfg.any_image_size {
            return Err(Error::Config(format!(
                "the autoencoder {} was trained on images {:?}, this LDM's data are {:?}",
                cfg.autoencoder,
                autoencoder.config().data.shape,
                cfg.data.shape
            )));
        }
        Ok(Self {
            cfg: cfg.clone(),
            scale,
            ddpm,
            autoencoder,
        })
    }

    pub fn config(&self) -> &LdmConfig {
        &self.cfg
    }

    /// Images in [0, 1] -> scaled latents (one posterior sample each), no graph.
    pub fn encode(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let z = self.autoencoder.encode(x)?.sample(rng)?;
        Ok(z.affine(self.scale, 0.0)?.detach())
    }

    /// Scaled latents -> images in [0, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let z = z.to_device(self.autoencoder.device())?;
        Ok(self
            .autoencoder
            .decode(&z.affine(1.0 / self.scale, 0.0)?)?
            .detach())
    }

    /// The DDPM's training loss on the latents of images `x`, with class labels or prompt
    /// token states (`[B, L, D]` and their mask; see [`Ddpm::loss_cond`]).
    pub fn loss(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        tokens: Option<(&Tensor, &Tensor)>,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        self.cfg.data.check_batch(x, "the LDM")?;
        let z = self.encode(x, rng)?;
        match tokens {
            Some((t, m)) => self.ddpm.loss_cond(&z, labels, Some(t), Some(m), rng),
            None => self.ddpm.loss_labeled(&z, labels, rng),
        }
    }
}

/// Decodes in chunks so that the decoder's activations stay bounded.
const DECODE_BATCH: usize = 250;

impl Sample for Ldm {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        let out = self.ddpm.sample(req, rng, progress)?;
        let n = out.x.dim(0)?;
        let mut parts = Vec::new();
        for start in (0..n).step_by(DECODE_BATCH) {
            let len = DECODE_BATCH.min(n - start);
            let x = self.decode(&out.x.narrow(0, start, len)?)?;
            parts.push(x.to_device(&candle_core::Device::Cpu)?);
        }
        Ok(SampleResult {
            x: Tensor::cat(&parts, 0)?,
            nfe: out.nfe,
        })
    }

    fn data_space(&self) -> &DataSpace {
        &self.cfg.data
    }

    fn num_classes(&self) -> usize {
        self.ddpm.num_classes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_one_over_the_sample_std() {
        // values 1, 2, 3, 4: mean 2.5, sample variance 5/3
        let s = latent_scale(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((s - (3.0f64 / 5.0).sqrt()).abs() < 1e-12);
        assert!(latent_scale(&[1.0, 1.0, 1.0]).is_err());
    }
}
