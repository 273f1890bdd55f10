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
//!
//! The first stage ([`FirstStage`]) is either such a trained genlab autoencoder (KL or VQ;
//! one posterior sample per training image) or the pretrained TAEF2 (`autoencoder =
//! "taef2"`, `crate::autoencoder::taef2`: RGB images with sides multiple of 8 -> 32
//! deterministic channels at 1/8 the size). TAEF2's raw latents already have a spread near
//! one; the measured `s` makes it exactly one (the `x / 6 + 0.5` map of taesd.py,
//! [`crate::autoencoder::taef2::scale_latents`], is for models trained on [0, 1] latents
//! and is not used here).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use super::ddpm::{Ddpm, DdpmConfig};
use crate::autoencoder::taef2::{self, Taef2};
use crate::autoencoder::Autoencoder;
use crate::edit::Edit;
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};
use genlab_sampling::inpaint::InpaintOptions;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LdmConfig {
    /// The run directory of the trained `autoencoder`, or `taef2` for the pretrained TAEF2
    /// (required; a run directory named `taef2` is given as `./taef2`).
    pub autoencoder: String,
    /// With `autoencoder = "taef2"`: the folder holding `taef2_encoder.pth` and
    /// `taef2_decoder.pth` (`null`: the genlab cache after `genlab data fetch taef2`, or a
    /// local copy).
    #[serde(default)]
    pub weights: Option<String>,
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
                 autoencoder ...`) or `taef2` (the pretrained TAEF2), e.g. \
                 --set ldm.autoencoder=runs/ae-mnist",
            ));
        }
        if self.uses_taef2() {
            taef2_image_check(&self.data)
                .map_err(|e| Error::setting("ldm.autoencoder", format!("taef2: {e}")))?;
        } else if self.weights.is_some() {
            return Err(Error::setting(
                "ldm.weights",
                "names TAEF2's weights folder; it applies only with ldm.autoencoder = taef2",
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

    /// Whether the first stage is the pretrained TAEF2.
    pub fn uses_taef2(&self) -> bool {
        self.autoencoder.trim() == TAEF2_FIRST_STAGE
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

/// The value of `ldm.autoencoder` that selects the pretrained TAEF2.
pub const TAEF2_FIRST_STAGE: &str = "taef2";

/// Why TAEF2 cannot encode images of `data` (RGB, sides multiple of 8), if it cannot.
fn taef2_image_check(data: &DataSpace) -> Result<()> {
    match data.shape.as_slice() {
        [c, h, w] if data.images && *c == taef2::TAEF2_IMAGE_CHANNELS => {
            taef2::latent_shape(*h, *w).map(|_| ())
        }
        s => Err(Error::InvalidInput(format!(
            "TAEF2 encodes RGB images [3, H, W]; these data have shape {s:?}"
        ))),
    }
}

/// Anything that reconstructs images in [0, 1] (what `genlab reconstruct` and the
/// reconstruction metrics run).
pub trait Reconstruct {
    /// Images `[B, C, H, W]` in [0, 1] -> reconstructions in [0, 1].
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor>;
    /// Where the network's weights are (inputs are moved there).
    fn device(&self) -> &Device;
}

impl Reconstruct for Autoencoder {
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        Autoencoder::reconstruct(self, x)
    }
    fn device(&self) -> &Device {
        Autoencoder::device(self)
    }
}

impl Reconstruct for Taef2 {
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        Taef2::reconstruct(self, x)
    }
    fn device(&self) -> &Device {
        Taef2::device(self)
    }
}

/// The frozen first stage of an LDM (cloning shares the weights).
#[derive(Clone)]
pub enum FirstStage {
    /// A genlab autoencoder run (KL: a posterior sample per training image; VQ: `z`).
    Trained(Box<Autoencoder>),
    /// The pretrained TAEF2 on images of `data` (deterministic latents).
    Taef2 { net: Taef2, data: DataSpace },
}

impl FirstStage {
    /// TAEF2 for images of `data` (RGB, sides multiple of 8).
    pub fn taef2(net: Taef2, data: &DataSpace) -> Result<Self> {
        taef2_image_check(data)?;
        Ok(Self::Taef2 {
            net,
            data: data.clone(),
        })
    }

    /// The image space it encodes.
    pub fn data(&self) -> &DataSpace {
        match self {
            Self::Trained(ae) => &ae.config().data,
            Self::Taef2 { data, .. } => data,
        }
    }

    /// `[C, h, w]` of one image's latent.
    pub fn latent_shape(&self) -> Vec<usize> {
        match self {
            Self::Trained(ae) => ae.config().latent_shape(),
            Self::Taef2 { data, .. } => {
                // Checked when built.
                let s = &data.shape;
                vec![
                    taef2::TAEF2_LATENT_CHANNELS,
                    s[1] / taef2::TAEF2_FACTOR,
                    s[2] / taef2::TAEF2_FACTOR,
                ]
            }
        }
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Trained(ae) => format!(
                "a trained autoencoder (f = {}, latents {:?})",
                ae.config().factor(),
                self.latent_shape()
            ),
            Self::Taef2 { .. } => format!(
                "TAEF2 (pretrained, f = {}, latents {:?})",
                taef2::TAEF2_FACTOR,
                self.latent_shape()
            ),
        }
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        self.data().check_batch(x, "the first stage")
    }

    /// Images in [0, 1] -> latents for training: one posterior sample each (TAEF2: its
    /// deterministic latents).
    pub fn encode_sample(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        match self {
            Self::Trained(ae) => ae.encode(x)?.sample(rng),
            Self::Taef2 { net, .. } => {
                self.check(x)?;
                net.encode(x)
            }
        }
    }

    /// Images in [0, 1] -> posterior means (TAEF2: its latents).
    pub fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Trained(ae) => Ok(ae.encode(x)?.mean),
            Self::Taef2 { net, .. } => {
                self.check(x)?;
                net.encode(x)
            }
        }
    }

    /// Latents -> images in [0, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let want = self.latent_shape();
        let dims = z.dims();
        if dims.len() != 4 || dims[1..] != want[..] {
            return Err(Error::InvalidInput(format!(
                "latents have shape {dims:?}, this first stage decodes [B, {}, {}, {}]",
                want[0], want[1], want[2]
            )));
        }
        match self {
            Self::Trained(ae) => ae.decode(z),
            Self::Taef2 { net, .. } => net.decode(z),
        }
    }
}

impl Reconstruct for FirstStage {
    fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode_mean(x)?)
    }
    fn device(&self) -> &Device {
        match self {
            Self::Trained(ae) => ae.device(),
            Self::Taef2 { net, .. } => net.device(),
        }
    }
}

/// A latent diffusion model: the DDPM, the frozen first stage, the scale.
pub struct Ldm {
    cfg: LdmConfig,
    scale: f64,
    pub ddpm: Ddpm,
    pub first_stage: FirstStage,
}

impl Ldm {
    pub fn new(cfg: &LdmConfig, ddpm: Ddpm, first_stage: FirstStage) -> Result<Self> {
        cfg.validate()?;
        let scale = cfg.scale()?;
        let want = first_stage.latent_shape();
        if cfg.ddpm.data.shape != want {
            return Err(Error::Config(format!(
                "the LDM's diffusion model works on latents {:?}, its autoencoder makes {:?}",
                cfg.ddpm.data.shape, want
            )));
        }
        // `any_image_size` is applied by whoever builds the autoencoder (at these images).
        if *first_stage.data() != cfg.data {
            return Err(Error::Config(format!(
                "the first stage {} encodes images {:?}, this LDM's data are {:?}",
                cfg.autoencoder,
                first_stage.data().shape,
                cfg.data.shape
            )));
        }
        Ok(Self {
            cfg: cfg.clone(),
            scale,
            ddpm,
            first_stage,
        })
    }

    pub fn config(&self) -> &LdmConfig {
        &self.cfg
    }

    /// Images in [0, 1] -> scaled latents (one posterior sample each), no graph.
    pub fn encode(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let z = self.first_stage.encode_sample(x, rng)?;
        Ok(z.affine(self.scale, 0.0)?.detach())
    }

    /// Images in [0, 1] -> scaled posterior means (what editing starts from), no graph.
    pub fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_device(self.first_stage.device())?;
        let z = self.first_stage.encode_mean(&x)?;
        Ok(z.affine(self.scale, 0.0)?.detach())
    }

    /// Scaled latents -> images in [0, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let z = z.to_device(self.first_stage.device())?;
        Ok(self
            .first_stage
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
