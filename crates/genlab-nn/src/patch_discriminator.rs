//! PatchGAN discriminator with the hinge losses and the adaptive weight of VQGAN.
//!
//! Isola, Zhu, Zhou & Efros 2017, "Image-to-Image Translation with Conditional Adversarial
//! Networks" (pix2pix, arXiv:1611.07004), Sec. 3.2.2: a convolutional discriminator that
//! scores overlapping patches, one logit per output position; in the form Esser, Rombach &
//! Ommer 2021, "Taming Transformers for High-Resolution Image Synthesis" (VQGAN,
//! arXiv:2012.09841), Sec. 3.1, train their first stage with (their `NLayerDiscriminator`):
//!
//! ```text
//! x [B, C, H, W]
//! -> conv 4x4 stride 2 pad 1 (C -> ch) -> LeakyReLU(0.2)
//! -> for n in 1..layers: conv 4x4 stride 2 pad 1 (ch·m(n-1) -> ch·m(n)) -> norm -> LeakyReLU(0.2)
//! -> conv 4x4 stride 1 pad 1 (ch·m(layers-1) -> ch·m(layers)) -> norm -> LeakyReLU(0.2)
//! -> conv 4x4 stride 1 pad 1 (-> 1)                               logits [B, 1, H', W']
//! ```
//! with `m(n) = min(2^n, 8)`. Each stride-2 conv maps a side `s` to `s/2` (floor), each
//! stride-1 conv to `s - 1`: 28x28 with the default two layers gives 5x5 patch logits, 28x56
//! gives 5x12. VQGAN's norm is BatchNorm; here it is GroupNorm (Wu & He 2018,
//! arXiv:1803.08494) or none, so that a sample's logits never depend on the rest of its
//! batch. The convolutions keep their bias (redundant before a norm, harmless) and PyTorch's
//! default initialisation rather than VQGAN's `N(0, 0.02)`.
//!
//! Losses (VQGAN's `hinge_d_loss` and generator term, after Lim & Ye 2017, arXiv:1705.02894):
//! - discriminator: `½ (mean relu(1 - D(x)) + mean relu(1 + D(x̂)))` — VQGAN's factor ½;
//! - generator: `-mean D(x̂)`.
//!
//! Adaptive weight (VQGAN Eq. 7): `λ = ||∇_{G_L} L_rec|| / (||∇_{G_L} L_GAN|| + δ)`, the
//! gradients taken with respect to the decoder's last layer `G_L`, `δ = 1e-4`, clamped to
//! `[0, 1e4]` and treated as a constant; the caller multiplies it by `disc_weight` and by
//! [`disc_factor`], which is 0 before `disc_start` steps (VQGAN's `adopt_weight` warm-up:
//! the autoencoder first learns to reconstruct, then the adversarial term switches on).
//!
//! Parameter names: `conv.{0..=layers}` (the last one is the stride-1 conv), `norm.{1..=layers}`
//! with GroupNorm, `out`.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::activation::leaky_relu;
use crate::conv::Conv;
use crate::norm::GroupNorm;

/// LeakyReLU slope of pix2pix and VQGAN.
pub const LEAKY_SLOPE: f64 = 0.2;
/// `δ` in the denominator of the adaptive weight (VQGAN's code).
pub const ADAPTIVE_DELTA: f64 = 1e-4;
/// Upper clamp of the adaptive weight (VQGAN's code).
pub const ADAPTIVE_MAX: f64 = 1e4;
/// Channel multiplier cap `m(n) = min(2^n, MAX_MULT)`.
pub const MAX_MULT: usize = 8;
/// GroupNorm epsilon (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;

/// The normalisation after the inner convolutions.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscNorm {
    /// GroupNorm with `groups` groups.
    Group,
    None,
}

/// Settings of [`PatchDiscriminator`] and of its place in the autoencoder's loss.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PatchDiscConfig {
    /// Channels of the first conv (`ndf`).
    pub channels: usize,
    /// Stride-2 convolutions (`n_layers`); the stride-1 and output convs come on top.
    pub layers: usize,
    pub norm: DiscNorm,
    /// GroupNorm groups; must divide every normalised layer's channels.
    pub groups: usize,
    /// Training step from which the adversarial term is on (warm-up before).
    pub disc_start: u64,
    /// Multiplier of the adaptive weight (VQGAN's `discriminator_weight`).
    pub disc_weight: f64,
}

impl Default for PatchDiscConfig {
    fn default() -> Self {
        Self {
            // 32 channels, two stride-2 layers: MNIST-sized (VQGAN's 64 and 3 layers reduce
            // a 28x28 image to one 1x1 logit); 5x5 patch logits, 70x70-style receptive
            // field shrunk to 34x34 pixels.
            channels: 32,
            layers: 2,
            norm: DiscNorm::Group,
            // 32 groups: GroupNorm's paper default.
            groups: 32,
            // VQGAN's configs start the discriminator after several thousand steps; on
            // MNIST the reconstructions are sharp enough after about 2,000.
            disc_start: 2000,
            disc_weight: 1.0,
        }
    }
}

/// `m(n) = min(2^n, 8)`.
fn mult(n: usize) -> usize {
    (1usize << n.min(3)).min(MAX_MULT)
}

impl PatchDiscConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let bad = |m: String| Err(genlab_core::Error::Config(m));
        if self.channels == 0 || self.layers == 0 {
            return bad(format!(
                "disc.channels and disc.layers must be positive, got {} and {}",
                self.channels, self.layers
            ));
        }
        if self.norm == DiscNorm::Group {
            for n in 1..=self.layers {
                let c = self.channels * mult(n);
                if self.groups == 0 || c % self.groups != 0 {
                    return bad(format!(
                        "disc.groups ({}) must be positive and divide the {c} channels of \
                         layer {n}",
                        self.groups
                    ));
                }
            }
        }
        if !(self.disc_weight.is_finite() && self.disc_weight >= 0.0) {
            return bad(format!(
                "disc.disc_weight must be a finite number >= 0, got {}",
                self.disc_weight
            ));
        }
        Ok(())
    }

    /// Output side for an input side `s`: `layers` halvings, then `- 1` twice.
    pub fn output_side(&self, s: usize) -> Option<usize> {
        let mut s = s;
        for _ in 0..self.layers {
            if s < 2 {
                return None;
            }
            s /= 2; // (s + 2 - 4) / 2 + 1
        }
        s.checked_sub(2).filter(|&v| v > 0)
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct PatchDiscriminator {
    cfg: PatchDiscConfig,
    c_in: usize,
    convs: Vec<Conv>,
    norms: Vec<Option<GroupNorm>>,
    out: Conv,
}

impl PatchDiscriminator {
    /// A discriminator of `c_in`-channel images.
    pub fn new(cfg: &PatchDiscConfig, c_in: usize, vb: VarBuilder) -> genlab_core::Result<Self> {
        cfg.validate()?;
        if c_in == 0 {
            return Err(genlab_core::Error::Config(
                "disc: the image must have at least one channel".into(),
            ));
        }
        let ch = cfg.channels;
        let mut convs = vec![Conv::new(c_in, ch, 4, 2, 1, vb.pp("conv.0"))?];
        let mut norms = vec![None];
        for n in 1..=cfg.layers {
            let stride = if n < cfg.layers { 2 } else { 1 };
            let (a, b) = (ch * mult(n - 1), ch * mult(n));
            convs.push(Conv::new(a, b, 4, stride, 1, vb.pp(format!("conv.{n}")))?);
            norms.push(match cfg.norm {
                DiscNorm::Group => Some(GroupNorm::new(
                    cfg.groups,
                    b,
                    NORM_EPS,
                    false,
                    vb.pp(format!("norm.{n}")),
                )?),
                DiscNorm::None => None,
            });
        }
        let out = Conv::new(ch * mult(cfg.layers), 1, 4, 1, 1, vb.pp("out"))?;
        Ok(Self {
            cfg: cfg.clone(),
            c_in,
            convs,
            norms,
            out,
        })
    }

    pub fn config(&self) -> &PatchDiscConfig {
        &self.cfg
    }

    /// Images `[B, C, H, W]` -> patch logits `[B, 1, H', W']` (see
    /// [`PatchDiscConfig::output_side`]); an image too small for the stack is an error.
    pub fn forward(&self, x: &Tensor) -> genlab_core::Result<Tensor> {
        let dims = x.dims();
        let fits = |s: usize| self.cfg.output_side(s).is_some();
        if dims.len() != 4
            || dims[1] != self.c_in
            || dims[0] == 0
            || !fits(dims[2])
            || !fits(dims[3])
        {
            return Err(genlab_core::Error::InvalidInput(format!(
                "patch discriminator: expected images [B, {}, H, W] large enough for {} \
                 stride-2 layers (H, W >= {}), got {dims:?}",
                self.c_in,
                self.cfg.layers,
                (1..).find(|&s| fits(s)).unwrap_or(0)
            )));
        }
        // The first conv has no norm (pix2pix's C64 block).
        let mut h = x.clone();
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            h = conv.forward(&h)?;
            if let Some(n) = norm {
                h = n.forward(&h)?;
            }
            h = leaky_relu(&h, LEAKY_SLOPE)?;
        }
        Ok(self.out.forward(&h)?)
    }
}

/// Discriminator hinge loss `½ (mean relu(1 - real) + mean relu(1 + fake))` (VQGAN).
pub fn hinge_d_loss(real_logits: &Tensor, fake_logits: &Tensor) -> candle_core::Result<Tensor> {
    let real = real_logits.affine(-1.0, 1.0)?.relu()?.mean_all()?;
    let fake = fake_logits.affine(1.0, 1.0)?.relu()?.mean_all()?;
    (real + fake)? * 0.5
}

/// Generator hinge loss `-mean fake`.
pub fn hinge_g_loss(fake_logits: &Tensor) -> candle_core::Result<Tensor> {
    fake_logits.mean_all()?.neg()
}

/// VQGAN's adaptive weight from the gradients of the reconstruction loss and of the
/// generator loss with respect to the decoder's last layer (the same tensor, any shape):
/// `clamp(||g_rec|| / (||g_gan|| + δ), 0, 1e4)`, a plain number (no gradient).
pub fn adaptive_weight(rec_grad: &Tensor, gan_grad: &Tensor) -> genlab_core::Result<f64> {
    if rec_grad.dims() != gan_grad.dims() {
        return Err(genlab_core::Error::InvalidInput(format!(
            "adaptive weight: the two gradients must be of the same layer, got shapes {:?} and {:?}",
            rec_grad.dims(),
            gan_grad.dims()
        )));
    }
    let norm = |t: &Tensor| -> candle_core::Result<f64> {
        Ok(t.detach()
            .to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?
            .sqrt())
    };
    let (r, g) = (norm(rec_grad)?, norm(gan_grad)?);
    let w = r / (g + ADAPTIVE_DELTA);
    if !w.is_finite() {
        return Err(genlab_core::Error::Numeric(format!(
            "adaptive weight: gradient norms {r} and {g} are not finite"
        )));
    }
    Ok(w.clamp(0.0, ADAPTIVE_MAX))
}

/// 0 before `disc_start`, 1 from it on (VQGAN's `adopt_weight`).
pub fn disc_factor(step: u64, disc_start: u64) -> f64 {
    if step < disc_start {
        0.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use genlab_core::{ParamStore, Rng};

    /// f32 sums of a few terms.
    const TOL: f64 = 1e-6;

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn hinge_losses_match_hand_values() {
        let dev = Device::Cpu;
        let real = Tensor::new(&[[2.0f32, 0.5], [-1.0, 1.0]], &dev).unwrap();
        let fake = Tensor::new(&[-3.0f32, 0.0, 0.25], &dev).unwrap();
        // relu(1 - real) = [0, 0.5, 2, 0] -> mean 0.625; relu(1 + fake) = [0, 1, 1.25] ->
        // mean 0.75; d = ½ (0.625 + 0.75) = 0.6875.
        assert!((scalar(&hinge_d_loss(&real, &fake).unwrap()) - 0.6875).abs() < TOL);
        // g = -mean(fake) = -(-2.75 / 3).
        assert!((scalar(&hinge_g_loss(&fake).unwrap()) - 2.75 / 3.0).abs() < TOL);
        // gradients: d/dfake_i of ½ mean relu(1 + fake) = ½ · 1/3 where 1 + fake > 0.
        let v = Var::from_tensor(&fake).unwrap();
        let g = hinge_d_loss(&real, v.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
        let gv: Vec<f32> = g.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        for (a, b) in gv.iter().zip([0.0, 1.0 / 6.0, 1.0 / 6.0]) {
            assert!((*a as f64 - b).abs() < TOL);
        }
    }

    #[test]
    fn adaptive_weight_follows_the_formula_and_clamps() {
        let dev = Device::Cpu;
        let rec = Tensor::new(&[3.0f32, 4.0], &dev).unwrap(); // norm 5
        let gan = Tensor::new(&[0.0f32, 2.0], &dev).unwrap(); // norm 2
        let w = adaptive_weight(&rec, &gan).unwrap();
        assert!((w - 5.0 / (2.0 + ADAPTIVE_DELTA)).abs() < 1e-12);
        let zero = Tensor::zeros(2, DType::F32, &dev).unwrap();
        assert_eq!(adaptive_weight(&rec, &zero).unwrap(), ADAPTIVE_MAX); // 5 / 1e-4 = 5e4
        assert_eq!(adaptive_weight(&zero, &gan).unwrap(), 0.0);
        let other = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(adaptive_weight(&rec, &other).is_err());
        assert_eq!(disc_factor(1999, 2000), 0.0);
        assert_eq!(disc_factor(2000, 2000), 1.0);
    }

    #[test]
    fn output_shapes_on_single_and_double_canvases() {
        let ps = ParamStore::new(0, &Device::Cpu);
        let cfg = PatchDiscConfig::default();
        let d = PatchDiscriminator::new(&cfg, 1, ps.vb()).unwrap();
        let mut rng = Rng::new(1);
        for (h, w, oh, ow) in [(28, 28, 5, 5), (28, 56, 5, 12)] {
            let x = rng
                .uniform_tensor(0.0, 1.0, &[2, 1, h, w], &Device::Cpu)
                .unwrap();
            let y = d.forward(&x).unwrap();
            assert_eq!(y.dims(), &[2, 1, oh, ow]);
            assert_eq!(
                (cfg.output_side(h), cfg.output_side(w)),
                (Some(oh), Some(ow))
            );
        }
        // VQGAN's three layers: 28 -> 14 -> 7 -> 3 -> 2 -> 1, 56 -> 28 -> 14 -> 7 -> 6 -> 5.
        let c3 = PatchDiscConfig {
            layers: 3,
            ..Default::default()
        };
        let d3 = PatchDiscriminator::new(&c3, 1, ParamStore::new(0, &Device::Cpu).vb()).unwrap();
        let x = rng
            .uniform_tensor(0.0, 1.0, &[1, 1, 28, 56], &Device::Cpu)
            .unwrap();
        assert_eq!(d3.forward(&x).unwrap().dims(), &[1, 1, 1, 5]);
        let tiny = rng
            .uniform_tensor(0.0, 1.0, &[1, 1, 7, 28], &Device::Cpu)
            .unwrap();
        let err = d.forward(&tiny).unwrap_err().to_string();
        assert!(err.contains("H, W >= 12"), "{err}");
        let rgb = rng
            .uniform_tensor(0.0, 1.0, &[1, 3, 28, 28], &Device::Cpu)
            .unwrap();
        assert!(d.forward(&rgb).is_err());
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        for norm in [DiscNorm::Group, DiscNorm::None] {
            let ps = ParamStore::new(2, &Device::Cpu);
            let cfg = PatchDiscConfig {
                channels: 8,
                groups: 4,
                norm,
                ..Default::default()
            };
            let d = PatchDiscriminator::new(&cfg, 1, ps.vb()).unwrap();
            let mut rng = Rng::new(3);
            let real = rng
                .uniform_tensor(0.0, 1.0, &[2, 1, 28, 56], &Device::Cpu)
                .unwrap();
            let fake = rng
                .uniform_tensor(0.0, 1.0, &[2, 1, 28, 56], &Device::Cpu)
                .unwrap();
            let loss =
                hinge_d_loss(&d.forward(&real).unwrap(), &d.forward(&fake).unwrap()).unwrap();
            let g = loss.backward().unwrap();
            let n_expected = 2 * (cfg.layers + 2) + if norm == DiscNorm::Group { 4 } else { 0 };
            assert_eq!(ps.len(), n_expected);
            for (name, v) in ps.vars() {
                let gv = g
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"));
                let n = scalar(&gv.sqr().unwrap().sum_all().unwrap());
                assert!(n > 0.0 && n.is_finite(), "{name}: gradient norm {n}");
            }
        }
    }

    #[test]
    fn config_errors() {
        let bad_groups = PatchDiscConfig {
            channels: 24,
            ..Default::default()
        };
        assert!(bad_groups.validate().is_err());
        assert!(PatchDiscConfig {
            layers: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        let ok: PatchDiscConfig =
            serde_json::from_str(r#"{"norm": "none", "disc_start": 10}"#).unwrap();
        assert_eq!((ok.norm, ok.disc_start), (DiscNorm::None, 10));
        assert!(serde_json::from_str::<PatchDiscConfig>(r#"{"start": 10}"#).is_err());
    }
}
