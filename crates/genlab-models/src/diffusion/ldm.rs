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
use crate::edit::Edit;
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};
use genlab_sampling::inpaint::InpaintOptions;

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
        // `any_image_size` is applied by whoever builds the autoencoder (at these images).
        if autoencoder.config().data != cfg.data {
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

    /// Images in [0, 1] -> scaled posterior means (what editing starts from), no graph.
    pub fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_device(self.autoencoder.device())?;
        let z = self.autoencoder.encode(&x)?.mean;
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

    fn as_editor(&self) -> Option<&dyn Edit> {
        Some(self)
    }
}

/// The known-pixel mask `[N, 1, H, W]` (1 known) on the latent grid `h x w`: a latent cell
/// is known only when every pixel of its `f x f` block is (so the generated region covers
/// the hole), computed on the host.
pub fn latent_mask(known: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (n, c, hh, ww) = known.dims4()?;
    if c != 1 {
        return Err(Error::InvalidInput(format!(
            "the inpainting mask must have one channel, got {c}"
        )));
    }
    let (fh, fw) = (hh.div_ceil(h), ww.div_ceil(w));
    let v: Vec<f32> = known
        .to_device(&candle_core::Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let mut out = vec![0f32; n * h * w];
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                let all = (i * fh..((i + 1) * fh).min(hh)).all(|y| {
                    (j * fw..((j + 1) * fw).min(ww)).all(|x| v[(b * hh + y) * ww + x] >= 0.5)
                });
                out[(b * h + i) * w + j] = all as u8 as f32;
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, 1, h, w), known.device())?)
}

impl Edit for Ldm {
    /// SDEdit in latent space: the posterior means of `x`, noised and denoised by the DDPM,
    /// decoded.
    fn img2img(
        &self,
        x: &Tensor,
        strength: f64,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        self.cfg.data.check_batch(x, "the LDM")?;
        let z = self.encode_mean(x)?;
        let out = self.ddpm.img2img(&z, strength, req, rng, progress)?;
        Ok(SampleResult {
            x: self.decode(&out.x)?.to_device(&candle_core::Device::Cpu)?,
            nfe: out.nfe,
        })
    }

    /// Inpainting in latent space (the mask taken to the latent grid, the known latents
    /// re-noised at every step by the DDPM's inpainting), decoded, and the known pixels
    /// pasted back from `x`.
    fn inpaint(
        &self,
        x: &Tensor,
        known: &Tensor,
        opts: &InpaintOptions,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        self.cfg.data.check_batch(x, "the LDM")?;
        let (kd, xd) = (known.dims(), x.dims());
        if kd.len() != 4 || kd[1] != 1 || kd[2..] != xd[2..] || (kd[0] != 1 && kd[0] != xd[0]) {
            return Err(Error::InvalidInput(format!(
                "the mask has shape {kd:?}; expected [1 or {}, 1, {}, {}] to match the images",
                xd[0], xd[2], xd[3]
            )));
        }
        let z = self.encode_mean(x)?;
        let (_, _, h, w) = z.dims4()?;
        let zmask = latent_mask(known, h, w)?.to_device(z.device())?;
        let out = self.ddpm.inpaint(&z, &zmask, opts, req, rng, progress)?;
        let dec = self.decode(&out.x)?.to_device(&candle_core::Device::Cpu)?;
        let x = x.to_device(&candle_core::Device::Cpu)?;
        let k = known
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(x.dtype())?
            .broadcast_as(x.shape())?;
        let merged = ((&x * &k)? + (&dec * (1.0 - &k)?)?)?;
        Ok(SampleResult {
            x: merged,
            nfe: out.nfe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latent_cell_is_known_only_when_its_whole_block_is() {
        // 1 x 1 x 4 x 4, f = 2: only the top-left block is entirely known.
        let v = [
            1f32, 1., 1., 0., //
            1., 1., 1., 1., //
            1., 0., 1., 1., //
            1., 1., 1., 1.,
        ];
        let k = Tensor::from_vec(v.to_vec(), (1, 1, 4, 4), &candle_core::Device::Cpu).unwrap();
        let m: Vec<f32> = latent_mask(&k, 2, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(m, vec![1.0, 0.0, 0.0, 1.0]);
        // 7 -> 4 (a ragged last block).
        let k = Tensor::ones(
            (1, 1, 7, 7),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let m = latent_mask(&k, 4, 4).unwrap();
        assert_eq!(m.sum_all().unwrap().to_scalar::<f32>().unwrap(), 16.0);
    }

    #[test]
    fn the_scale_is_one_over_the_sample_std() {
        // values 1, 2, 3, 4: mean 2.5, sample variance 5/3
        let s = latent_scale(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((s - (3.0f64 / 5.0).sqrt()).abs() < 1e-12);
        assert!(latent_scale(&[1.0, 1.0, 1.0]).is_err());
    }
}
