//! First-stage autoencoders for latent diffusion: a KL-regularised autoencoder with a
//! diagonal Gaussian latent (the LDM / Stable Diffusion `AutoencoderKL`), or with a vector
//! quantiser (`vq`: VQ-VAE, van den Oord et al. 2017, arXiv:1711.00937, as VQGAN uses it,
//! Esser et al. 2021, arXiv:2012.09841).
//!
//! Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"
//! (arXiv:2112.10752), Sec. 3.1 and App. G.1: an encoder E maps an image x (in [-1, 1]) to
//! the mean and log-variance of q(z|x) = N(mu, diag(exp(logvar))), `z` has `latent_channels`
//! channels at `1/f` of the resolution; a decoder D maps z back. The loss of their
//! `LPIPSWithDiscriminator` without the perceptual and adversarial terms:
//!
//! ```text
//! L = sum_pixels |x - D(z)| / B  +  kl_weight * sum_latent KL(q(z|x) || N(0, I)) / B,
//! z = mu + exp(logvar / 2) * eps,   logvar clamped to [-30, 20],
//! KL = 1/2 sum (mu^2 + exp(logvar) - 1 - logvar)     (Kingma & Welling 2014, App. B)
//! ```
//!
//! with a small `kl_weight` (1e-6 in LDM) so that the latent stays close to a plain
//! autoencoder's while its scale is kept in check. No LPIPS weights exist on this machine:
//! the perceptual term is left out (the slot is `rec_loss`), which LDM's own ablations show
//! costs sharpness on natural images, little on digits.
//!
//! With `vq` set the latent is the encoder output `z` (no variance, no KL); the decoder
//! quantises it first (`genlab_nn::VectorQuantizer`: nearest code, straight-through
//! gradient, EMA codebook updates by default). The loss is the reconstruction sum plus the
//! quantiser's loss (a mean over latent elements) times the latent elements per example,
//! so that both are sums per example. As in LDM's VQ-regularised models, latent diffusion
//! works on the continuous `z` and the decoder's quantiser absorbs small errors.
//!
//! Images are mapped [0, 1] -> [-1, 1] on the way in and back (clamped) on the way out.
//! `encode` returns the posterior, `decode` images in [0, 1]; `reconstruct` decodes the
//! posterior mean (what `genlab reconstruct` and the metrics use).

pub mod nets;
pub mod taef2;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::sample::DataSpace;
use crate::Figure;
use nets::{level_sizes, Decoder, Encoder, NetSizes};

/// Log-variance clamp of the posterior (LDM's `DiagonalGaussianDistribution`).
const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

/// The reconstruction term.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RecLoss {
    /// Sum of absolute errors (LDM's choice: sharper than L2).
    L1,
    /// Sum of squared errors.
    L2,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderConfig {
    /// Channels per level; `len - 1` downsamplings give the factor `f = 2^(len - 1)`.
    pub channels: Vec<usize>,
    /// ResNet blocks per level in the encoder (the decoder has one more, as in LDM).
    pub layers_per_block: usize,
    /// Channels of the latent z.
    pub latent_channels: usize,
    /// GroupNorm groups; must divide every level's channel count.
    pub groups: usize,
    /// Self-attention in the middle blocks (at the lowest resolution).
    pub mid_attention: bool,
    pub rec_loss: RecLoss,
    /// Weight of the KL term (LDM: 1e-6; unused with `vq`).
    pub kl_weight: f64,
    /// A vector quantiser instead of the KL-regularised Gaussian (`null`: KL).
    #[serde(default)]
    pub vq: Option<genlab_nn::VqConfig>,
    pub data: DataSpace,
    /// Stable Diffusion's `AutoencoderKL` arithmetic, for its pretrained weights: stride-2
    /// downsampling padded only at the right and bottom, and GroupNorm epsilon 1e-6 in the
    /// middle attention. Image sides must then be multiples of the factor f. `false` (the
    /// default) for what genlab trains.
    #[serde(default)]
    pub upstream_layout: bool,
}

impl AutoencoderConfig {
    /// The preset for a data space: f = 4 with 4 latent channels (MNIST 28x28 -> 4x7x7).
    pub fn for_data(data: &DataSpace) -> Self {
        Self {
            // Two downsamplings (f = 4). Images up to 32 pixels a side (MNIST): [16, 32, 64],
            // 0.43 s per batch-32 step on one CPU thread ([32, 64, 64] takes 0.85 s); larger
            // images get twice the width.
            channels: if data.shape.get(1).is_some_and(|&h| h <= 32) {
                vec![16, 32, 64]
            } else {
                vec![32, 64, 128]
            },
            // 1: the decoder gets 2 per level; enough for 28x28 digits.
            layers_per_block: 1,
            // 4: Stable Diffusion's latent depth (issue 22's MNIST target).
            latent_channels: 4,
            // 8: divides 32 and 64.
            groups: 8,
            // true: LDM's mid-block attention (49 positions at 7x7 are cheap).
            mid_attention: true,
            rec_loss: RecLoss::L1,
            // 1e-6: LDM's kl-f4/f8 weight.
            kl_weight: 1e-6,
            vq: None,
            data: data.clone(),
            upstream_layout: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("autoencoder.{m}")));
        if !self.data.images || self.data.shape.len() != 3 {
            return Err(Error::Config(format!(
                "the autoencoder is for images [C, H, W]; the data have shape {:?}",
                self.data.shape
            )));
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad(format!(
                "channels must be a non-empty list of positive counts, got {:?}",
                self.channels
            ));
        }
        if self.groups == 0 || self.channels.iter().any(|c| c % self.groups != 0) {
            return bad(format!(
                "groups ({}) must divide every level's channel count {:?}",
                self.groups, self.channels
            ));
        }
        if self.layers_per_block == 0 {
            return bad("layers_per_block must be at least 1".into());
        }
        if self.latent_channels == 0 {
            return bad("latent_channels must be at least 1".into());
        }
        if let Some(q) = &self.vq {
            q.validate()?;
        }
        let f = self.factor();
        if self.upstream_layout
            && (!self.data.shape[1].is_multiple_of(f) || !self.data.shape[2].is_multiple_of(f))
        {
            return Err(Error::InvalidInput(format!(
                "this autoencoder (Stable Diffusion's layout) needs image sides that are \
                 multiples of {f}; got {}x{}",
                self.data.shape[1], self.data.shape[2]
            )));
        }
        if !(self.kl_weight >= 0.0 && self.kl_weight.is_finite()) {
            return bad(format!(
                "kl_weight must be finite and >= 0, got {}",
                self.kl_weight
            ));
        }
        Ok(())
    }

    /// The downsampling factor f.
    pub fn factor(&self) -> usize {
        1 << (self.channels.len() - 1)
    }

    /// The latent shape `[latent_channels, h, w]` of this config's images.
    pub fn latent_shape(&self) -> Vec<usize> {
        let s = &self.data.shape;
        let sizes = level_sizes(s[1], s[2], self.channels.len());
        let (h, w) = sizes[sizes.len() - 1];
        vec![self.latent_channels, h, w]
    }

    fn sizes(&self) -> NetSizes {
        NetSizes {
            image_channels: self.data.shape[0],
            channels: self.channels.clone(),
            layers_per_block: self.layers_per_block,
            groups: self.groups,
            mid_attention: self.mid_attention,
            upstream: self.upstream_layout,
        }
    }
}

/// q(z|x): a diagonal Gaussian per latent element (KL), or a point (VQ: no `logvar`).
#[derive(Clone, Debug)]
pub struct Posterior {
    pub mean: Tensor,
    pub logvar: Option<Tensor>,
}

impl Posterior {
    /// z = mean + exp(logvar / 2) * eps, eps from our seeded RNG (the mean for a point).
    pub fn sample(&self, rng: &mut Rng) -> Result<Tensor> {
        let Some(logvar) = &self.logvar else {
            return Ok(self.mean.clone());
        };
        let eps = rng.normal_tensor(self.mean.dims(), self.mean.device())?;
        Ok((&self.mean + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?)
    }

    /// KL(q || N(0, I)) summed over each example's latent elements: `[B]` (zeros for a
    /// point, which has no KL term).
    pub fn kl(&self) -> Result<Tensor> {
        let Some(logvar) = &self.logvar else {
            return Ok(self.mean.flatten_from(1)?.sum(1)?.zeros_like()?);
        };
        let t = ((self.mean.sqr()? + logvar.exp()?)? - logvar)?.affine(0.5, -0.5)?;
        Ok(t.flatten_from(1)?.sum(1)?)
    }
}

/// The loss of one batch and its parts (per-pixel and per-example means, for the log).
pub struct AeLoss {
    pub loss: Tensor,
    /// Mean absolute (L1) or squared (L2) error per pixel, in [-1, 1] units.
    pub rec: f64,
    /// KL per example (nats).
    pub kl: f64,
    /// The reconstructions, in model space [-1, 1] (for an adversarial term on top).
    pub recon: Tensor,
    /// The reconstruction term of `loss` (for the adaptive GAN weight).
    pub rec_term: Tensor,
    /// VQ only: the encoder output and its codes (for the EMA codebook update after the
    /// optimiser step), and the batch's code perplexity and used fraction.
    pub vq: Option<VqBatch>,
}

/// What a VQ batch leaves for the training step.
pub struct VqBatch {
    pub z: Tensor,
    pub indices: Tensor,
    pub perplexity: f64,
    pub usage: f64,
}

/// The KL autoencoder (cloning shares the weights).
#[derive(Clone)]
pub struct Autoencoder {
    cfg: AutoencoderConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: genlab_nn::Conv,
    post_quant_conv: genlab_nn::Conv,
    quantizer: Option<genlab_nn::VectorQuantizer>,
    device: Device,
}

impl Autoencoder {
    pub fn new(cfg: &AutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let s = cfg.sizes();
        let z = cfg.latent_channels;
        // KL: mean and log-variance; VQ: the vector to quantise.
        let moments = if cfg.vq.is_some() { z } else { 2 * z };
        let quantizer = match &cfg.vq {
            Some(q) => Some(genlab_nn::VectorQuantizer::new(q, z, vb.pp("quantize"))?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            encoder: Encoder::new(&s, moments, vb.pp("encoder"))?,
            decoder: Decoder::new(&s, z, vb.pp("decoder"))?,
            quant_conv: genlab_nn::Conv::new(moments, moments, 1, 1, 0, vb.pp("quant_conv"))?,
            post_quant_conv: genlab_nn::Conv::new(z, z, 1, 1, 0, vb.pp("post_quant_conv"))?,
            quantizer,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        self.cfg.data.check_batch(x, "the autoencoder")
    }

    /// Images `[B, C, H, W]` in [0, 1] -> q(z|x).
    pub fn encode(&self, x: &Tensor) -> Result<Posterior> {
        self.check(x)?;
        let h = self.encoder.forward(&x.affine(2.0, -1.0)?)?;
        let moments = self.quant_conv.forward(&h)?;
        if self.quantizer.is_some() {
            return Ok(Posterior {
                mean: moments,
                logvar: None,
            });
        }
        let z = self.cfg.latent_channels;
        let mean = moments.narrow(1, 0, z)?;
        let logvar = moments
            .narrow(1, z, z)?
            .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)?;
        Ok(Posterior {
            mean,
            logvar: Some(logvar),
        })
    }

    /// Latents -> images in model space [-1, 1] (not clamped; what the loss compares).
    pub fn decode_raw(&self, z: &Tensor) -> Result<Tensor> {
        let shape = self.cfg.latent_shape();
        let dims = z.dims();
        if dims.len() != 4 || dims[1..] != shape[..] {
            return Err(Error::InvalidInput(format!(
                "latents have shape {:?}, this autoencoder decodes [B, {}, {}, {}]",
                dims, shape[0], shape[1], shape[2]
            )));
        }
        // A VQ decoder quantises first (the nearest codes; no gradient needed here).
        let zq;
        let z = match &self.quantizer {
            Some(q) => {
                zq = q.forward(z)?.z_q;
                &zq
            }
            None => z,
        };
        self.decode_quantized(z)
    }

    /// Decodes latents that are already quantised (or KL latents), model space.
    fn decode_quantized(&self, z: &Tensor) -> Result<Tensor> {
        let s = &self.cfg.data.shape;
        let sizes = level_sizes(s[1], s[2], self.cfg.channels.len());
        // The decoder's upsamplers go to the encoder's sizes, lowest first (skipping z's own).
        let up: Vec<(usize, usize)> = sizes.iter().rev().skip(1).copied().collect();
        Ok(self
            .decoder
            .forward(&self.post_quant_conv.forward(z)?, &up)?)
    }

    /// The quantiser of a VQ autoencoder.
    pub fn quantizer(&self) -> Option<&genlab_nn::VectorQuantizer> {
        self.quantizer.as_ref()
    }

    /// Latents -> images `[B, C, H, W]` in [0, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.decode_raw(z)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
    }

    /// Images in [0, 1] -> reconstructions in [0, 1] from the posterior mean.
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?.mean)
    }

    /// The training loss on a batch of images in [0, 1] (one posterior sample per example).
    pub fn loss(&self, x: &Tensor, rng: &mut Rng) -> Result<AeLoss> {
        let post = self.encode(x)?;
        let post_kl = self.quantizer.is_none().then(|| post.clone());
        let (recon, vq_term, vq) = match &self.quantizer {
            Some(q) => {
                // Checked like decode_raw's input, then quantised with the straight-through
                // gradient and the codebook / commitment loss.
                let z = post.mean;
                let out = q.forward(&z)?;
                let per_example = (z.elem_count() / z.dim(0)?) as f64;
                let term = out.loss.affine(per_example, 0.0)?;
                let batch = VqBatch {
                    z: z.detach(),
                    indices: out.indices.clone(),
                    perplexity: out.perplexity,
                    usage: out.usage,
                };
                (self.decode_quantized(&out.z_q)?, Some(term), Some(batch))
            }
            None => (self.decode_raw(&post.sample(rng)?)?, None, None),
        };
        let target = x.affine(2.0, -1.0)?;
        let diff = (&recon - &target)?;
        let per_pixel = match self.cfg.rec_loss {
            RecLoss::L1 => diff.abs()?,
            RecLoss::L2 => diff.sqr()?,
        };
        let b = x.dim(0)? as f64;
        let numel = per_pixel.elem_count() as f64;
        let rec_sum = per_pixel.sum_all()?;
        let rec = rec_sum.to_scalar::<f32>()? as f64 / numel;
        let rec_term = rec_sum.affine(1.0 / b, 0.0)?;
        let (loss, kl_v) = match (vq_term, post_kl) {
            (Some(t), _) => ((&rec_term + t)?, 0.0),
            (None, Some(post)) => {
                let kl = post.kl()?.mean_all()?;
                let kl_v = kl.to_scalar::<f32>()? as f64;
                ((&rec_term + kl.affine(self.cfg.kl_weight, 0.0)?)?, kl_v)
            }
            (None, None) => (rec_term.clone(), 0.0),
        };
        Ok(AeLoss {
            loss,
            rec,
            kl: kl_v,
            recon,
            rec_term,
            vq,
        })
    }

    /// The last decoder layer's weight (the adaptive GAN weight is computed there).
    pub fn last_layer(&self) -> &Tensor {
        self.decoder.last_layer()
    }

    /// Inputs above their reconstructions, and the latent channels of the first examples.
    pub fn figures(&self, x: &Tensor) -> Result<Vec<Figure>> {
        let n = x.dim(0)?.min(32) / 8 * 8;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = x.narrow(0, 0, n)?;
        let rec = self.reconstruct(&x)?.detach().to_device(&Device::Cpu)?;
        let inp = x.to_device(&Device::Cpu)?;
        let mut rows = Vec::new();
        for r in 0..n / 8 {
            rows.push(inp.narrow(0, 8 * r, 8)?);
            rows.push(rec.narrow(0, 8 * r, 8)?);
        }
        let mut figs = vec![Figure::Images {
            name: "reconstructions".into(),
            x: Tensor::cat(&rows, 0)?,
            ncol: 8,
            caption: "odd rows: held-out inputs; even rows: reconstructions from the posterior \
                      mean"
                .into(),
        }];
        // Each latent channel of 8 examples as a grey image, min-max scaled per channel.
        let m = self.encode(&x.narrow(0, 0, 8)?)?.mean.detach();
        let m = m.to_device(&Device::Cpu)?;
        let (b, c, h, w) = m.dims4()?;
        let mut tiles = Vec::new();
        for ch in 0..c {
            let t = m.narrow(1, ch, 1)?;
            let (lo, hi) = (
                t.min_all()?.to_scalar::<f32>()?,
                t.max_all()?.to_scalar::<f32>()?,
            );
            let span = (hi - lo).max(1e-6);
            tiles.push(t.affine(1.0 / span as f64, -(lo / span) as f64)?);
        }
        let grid = Tensor::stack(&tiles, 0)?.reshape((c * b, 1, h, w))?;
        figs.push(Figure::Images {
            name: "latents".into(),
            x: grid,
            ncol: b,
            caption: format!(
                "posterior means of 8 held-out examples, one row per latent channel ({c} \
                 channels at {h}x{w}, min-max scaled per channel)"
            ),
        });
        Ok(figs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use genlab_core::ParamStore;

    fn tiny(shape: [usize; 3]) -> AutoencoderConfig {
        AutoencoderConfig {
            channels: vec![8, 16],
            groups: 4,
            ..AutoencoderConfig::for_data(&DataSpace {
                shape: shape.to_vec(),
                images: true,
            })
        }
    }

    /// Closed-form KL of a diagonal Gaussian against N(0, 1), element by element in f64.
    #[test]
    fn kl_matches_the_closed_form() {
        let dev = Device::Cpu;
        let mean = Tensor::new(&[[0.3f32, -1.2], [2.0, 0.0]], &dev).unwrap();
        let logvar = Tensor::new(&[[0.1f32, -0.7], [1.5, 0.0]], &dev).unwrap();
        let p = Posterior {
            mean: mean.clone(),
            logvar: Some(logvar.clone()),
        };
        let got: Vec<f32> = p.kl().unwrap().to_vec1().unwrap();
        let m: Vec<Vec<f32>> = mean.to_vec2().unwrap();
        let l: Vec<Vec<f32>> = logvar.to_vec2().unwrap();
        for i in 0..2 {
            let want: f64 = (0..2)
                .map(|j| {
                    let (mu, lv) = (m[i][j] as f64, l[i][j] as f64);
                    0.5 * (mu * mu + lv.exp() - 1.0 - lv)
                })
                .sum();
            assert!((got[i] as f64 - want).abs() < 1e-5, "{} vs {want}", got[i]);
        }
    }

    #[test]
    fn shapes_follow_the_factor_on_odd_and_wide_images() {
        for shape in [[1, 28, 28], [1, 28, 56], [3, 12, 20]] {
            let cfg = tiny(shape);
            let ps = ParamStore::new(0, &Device::Cpu);
            let ae = Autoencoder::new(&cfg, ps.vb()).unwrap();
            let x =
                Tensor::zeros((2, shape[0], shape[1], shape[2]), DType::F32, &Device::Cpu).unwrap();
            let post = ae.encode(&x).unwrap();
            let ls = cfg.latent_shape();
            assert_eq!(post.mean.dims()[1..], ls[..]);
            assert_eq!(ls[1], shape[1].div_ceil(2));
            assert_eq!(ae.decode(&post.mean).unwrap().dims(), x.dims());
        }
    }

    #[test]
    fn the_loss_reaches_every_parameter() {
        let cfg = tiny([1, 8, 8]);
        let ps = ParamStore::new(0, &Device::Cpu);
        let ae = Autoencoder::new(&cfg, ps.vb()).unwrap();
        let mut rng = Rng::new(1);
        let x = rng
            .uniform_tensor(0.0, 1.0, &[3, 1, 8, 8], &Device::Cpu)
            .unwrap();
        let l = ae.loss(&x, &mut rng).unwrap();
        let g = l.loss.backward().unwrap();
        for (name, v) in ps.vars() {
            let gv = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let s = gv
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(s > 0.0, "zero gradient for {name}");
        }
    }

    #[test]
    fn a_vq_autoencoder_decodes_codes_and_its_loss_reaches_the_network() {
        let mut cfg = tiny([1, 8, 8]);
        cfg.vq = Some(genlab_nn::VqConfig {
            codebook_size: 16,
            ..Default::default()
        });
        let ps = ParamStore::new(0, &Device::Cpu);
        let ae = Autoencoder::new(&cfg, ps.vb()).unwrap();
        let mut rng = Rng::new(2);
        let x = rng
            .uniform_tensor(0.0, 1.0, &[3, 1, 8, 8], &Device::Cpu)
            .unwrap();
        let l = ae.loss(&x, &mut rng).unwrap();
        let vq = l.vq.as_ref().unwrap();
        assert_eq!(vq.indices.dims(), &[3, 4, 4]);
        assert_eq!(l.kl, 0.0);
        let g = l.loss.backward().unwrap();
        let buffers = ae.quantizer().unwrap().buffer_names();
        for (name, v) in ps.vars() {
            if buffers.contains(&name) {
                continue;
            }
            let gv = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let s = gv
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(s > 0.0, "zero gradient for {name}");
        }
        // Decoding the encoder's z equals decoding its nearest codes.
        let z = ae.encode(&x).unwrap().mean;
        let codes = ae.quantizer().unwrap().lookup(&vq.indices).unwrap();
        let a: Vec<f32> = ae
            .decode(&z)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = ae
            .decode(&codes)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut cfg = tiny([1, 8, 8]);
        cfg.groups = 3;
        assert!(cfg.validate().unwrap_err().to_string().contains("groups"));
        let cfg = tiny([1, 8, 8]);
        let ps = ParamStore::new(0, &Device::Cpu);
        let ae = Autoencoder::new(&cfg, ps.vb()).unwrap();
        let z = Tensor::zeros((1, 4, 5, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(ae
            .decode(&z)
            .unwrap_err()
            .to_string()
            .contains("latents have shape"));
    }
}
