//! CLIP: contrastive language-image pre-training (Radford et al. 2021, "Learning
//! Transferable Visual Models From Natural Language Supervision", arXiv:2103.00020).
//!
//! Two towers map an image and a text into one embedding space (Sec. 2.4): an image
//! encoder (a [`VisionTransformer`] or genlab's small CNN, [`Classifier`]) and the causal
//! [`TextTransformer`] pooled at the end-of-text token, each followed by a linear
//! projection without bias to `embed_dim`. Training ([`infonce`]) pulls the embeddings of
//! matching pairs together against every other pair of the batch, at a learned temperature
//! `exp(logit_scale)` initialised to `1/0.07` and clamped at 100 (Sec. 2.5).
//!
//! Parameter names: `visual.*` (the image tower), `text.*`, `visual_proj [w_img, E]`,
//! `text_proj [w_txt, E]`, `logit_scale [1]`.

pub mod infonce;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};
use genlab_nn::{
    Classifier, ClassifierConfig, TextTransformer, TextTransformerConfig, VisionTransformer,
    VitConfig,
};

pub use infonce::{clip_loss, l2_normalize};

/// Which image tower.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ImageTowerKind {
    #[default]
    Vit,
    /// genlab's two-stage CNN; its output layer (`num_classes` wide) is the feature.
    Cnn,
}

/// A CLIP model's shape and its temperature settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClipConfig {
    /// Width of the joint embedding space.
    pub embed_dim: usize,
    pub image_tower: ImageTowerKind,
    pub vit: VitConfig,
    /// The CNN tower (used when `image_tower = "cnn"`): `num_classes` is its output width.
    pub cnn: ClassifierConfig,
    pub text: TextTransformerConfig,
    /// Initial temperature τ: `logit_scale` starts at `ln(1/τ)` (the paper's 0.07).
    pub init_temperature: f64,
    /// Largest `exp(logit_scale)` (the paper clips it at 100 "to prevent scaling the logits
    /// by more than 100").
    pub max_logit_scale: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            embed_dim: 64, // ten digit classes and a few attributes need few dimensions
            image_tower: ImageTowerKind::Vit,
            // 4x4 patches of 7x7 pixels: 17 tokens on MNIST, a CPU-sized step (0.4-0.8 s at
            // batch 256 on 2 cores) that still reads stroke shape.
            vit: VitConfig {
                patch: 7,
                width: 96,
                layers: 4,
                heads: 4,
                ..Default::default()
            },
            cnn: ClassifierConfig {
                num_classes: 128,
                ..Default::default()
            },
            // captions of a few dozen distinct words need a narrower, shallower tower
            text: TextTransformerConfig {
                width: 64,
                layers: 3,
                heads: 4,
                ..Default::default()
            },
            init_temperature: 0.07,
            max_logit_scale: 100.0,
        }
    }
}

impl ClipConfig {
    pub fn validate(&self) -> Result<()> {
        if self.embed_dim == 0 {
            return Err(Error::Setting {
                setting: "clip.embed_dim".into(),
                problem: "must be positive".into(),
            });
        }
        let ok = self.init_temperature > 0.0
            && self.max_logit_scale >= 1.0 / self.init_temperature
            && self.max_logit_scale.is_finite();
        if !ok {
            return Err(Error::Setting {
                setting: "clip.init_temperature".into(),
                problem: format!(
                    "must be positive with 1/init_temperature <= max_logit_scale ({}), got {}",
                    self.max_logit_scale, self.init_temperature
                ),
            });
        }
        match self.image_tower {
            ImageTowerKind::Vit => self.vit.validate()?,
            ImageTowerKind::Cnn => self.cnn.validate()?,
        }
        self.text.validate()
    }

    /// Input `[C, H, W]` of the image tower.
    pub fn input(&self) -> [usize; 3] {
        match self.image_tower {
            ImageTowerKind::Vit => self.vit.input,
            ImageTowerKind::Cnn => self.cnn.input,
        }
    }
}

#[derive(Debug, Clone)]
enum Visual {
    Vit(VisionTransformer),
    Cnn(Classifier),
}

/// The two towers, their projections and the temperature.
#[derive(Debug, Clone)]
pub struct Clip {
    cfg: ClipConfig,
    visual: Visual,
    text: TextTransformer,
    visual_proj: Tensor,
    text_proj: Tensor,
    logit_scale: Tensor,
}

impl Clip {
    pub fn new(cfg: &ClipConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (visual, w_img) = match cfg.image_tower {
            ImageTowerKind::Vit => (
                Visual::Vit(VisionTransformer::new(&cfg.vit, vb.pp("visual"))?),
                cfg.vit.width,
            ),
            ImageTowerKind::Cnn => (
                Visual::Cnn(Classifier::new(&cfg.cnn, vb.pp("visual"))?),
                cfg.cnn.num_classes,
            ),
        };
        let text = TextTransformer::new(&cfg.text, vb.pp("text"))?;
        // Projections: N(0, width^-1/2), the paper's code.
        let proj = |w: usize, name: &str| {
            vb.get_with_hints(
                (w, cfg.embed_dim),
                name,
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: (w as f64).powf(-0.5),
                },
            )
        };
        let visual_proj = proj(w_img, "visual_proj")?;
        let text_proj = proj(cfg.text.width, "text_proj")?;
        let logit_scale = vb.get_with_hints(
            1,
            "logit_scale",
            candle_nn::Init::Const((1.0 / cfg.init_temperature).ln()),
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            visual,
            text,
            visual_proj,
            text_proj,
            logit_scale,
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// Images `[B, C, H, W]` in `[0, 1]` -> unnormalised embeddings `[B, E]`.
    pub fn encode_image(&self, x: &Tensor) -> Result<Tensor> {
        self.project_image(&self.image_features(x)?)
    }

    /// Pre-projection image features `[B, W]` -> unnormalised joint-space embeddings
    /// `[B, E]`.
    pub fn project_image(&self, f: &Tensor) -> Result<Tensor> {
        Ok(f.matmul(&self.visual_proj)?)
    }

    /// Images `[B, C, H, W]` in `[0, 1]` -> the image tower's output before the projection
    /// to the joint space `[B, W]` (the ViT's `ln_post` class token, the CNN's 128-wide
    /// output): the features Radford et al.'s linear probes read (Sec. 3.2).
    pub fn image_features(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1..] != self.cfg.input() {
            return Err(Error::InvalidInput(format!(
                "CLIP's image tower takes images of shape {:?}, got {:?}",
                self.cfg.input(),
                dims.get(1..).unwrap_or(&[])
            )));
        }
        let f = match &self.visual {
            Visual::Vit(v) => v.forward(x)?,
            Visual::Cnn(c) => c.forward(x)?,
        };
        Ok(f)
    }

    /// Token ids `[B, N]` (u32) with each sequence's end-of-text position -> unnormalised
    /// embeddings `[B, E]`.
    pub fn encode_text(&self, ids: &Tensor, eot: &[usize]) -> Result<Tensor> {
        Ok(self.text.forward(ids, eot)?.matmul(&self.text_proj)?)
    }

    /// `exp(logit_scale)` clamped to `[1, max_logit_scale]`, as a differentiable `[1]`
    /// tensor.
    pub fn scale(&self) -> Result<Tensor> {
        Ok(self
            .logit_scale
            .clamp(0.0, self.cfg.max_logit_scale.ln())?
            .exp()?)
    }

    /// The current `exp(logit_scale)` (clamped).
    pub fn scale_value(&self) -> Result<f64> {
        Ok(self.scale()?.to_vec1::<f32>()?[0] as f64)
    }

    /// Scaled cosine similarities `[B_img, B_txt]` of two embedding batches.
    pub fn logits(&self, img: &Tensor, txt: &Tensor) -> Result<Tensor> {
        let sim = l2_normalize(img)?.matmul(&l2_normalize(txt)?.t()?)?;
        Ok(sim.broadcast_mul(&self.scale()?)?)
    }

    /// The symmetric contrastive loss of a batch of matching pairs, with its logits.
    pub fn loss(&self, x: &Tensor, ids: &Tensor, eot: &[usize]) -> Result<(Tensor, Tensor)> {
        let img = self.encode_image(x)?;
        let txt = self.encode_text(ids, eot)?;
        if img.dim(0)? != txt.dim(0)? {
            return Err(Error::InvalidInput(format!(
                "{} images but {} texts",
                img.dim(0)?,
                txt.dim(0)?
            )));
        }
        let logits = self.logits(&img, &txt)?;
        Ok((clip_loss(&logits)?, logits))
    }

    /// Forward FLOPs of one image and one `n`-token text through the towers.
    pub fn flops(&self, n: usize) -> u64 {
        let img = match self.cfg.image_tower {
            ImageTowerKind::Vit => self.cfg.vit.flops(),
            ImageTowerKind::Cnn => 0,
        };
        img + self.cfg.text.flops(n)
    }
}

/// Cosine similarity of every row of `a [N, E]` with every row of `b [M, E]` (unit rows
/// after normalisation) -> `[N, M]`.
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(l2_normalize(a)?.matmul(&l2_normalize(b)?.t()?)?)
}

/// Mean of `[K, E]` normalised rows, renormalised: the prompt-ensemble class embedding
/// (Sec. 3.1.4).
pub fn ensemble(rows: &Tensor) -> Result<Tensor> {
    let m = l2_normalize(rows)?.mean_keepdim(0)?;
    Ok(l2_normalize(&m)?.squeeze(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::ParamStore;

    /// The two-digit canvas is 28x56: both image towers take a non-square input (the CNN
    /// flattens its 7x14 feature map, so left and right stay apart; the ViT reads 4x8
    /// patches), and the loss sends a gradient to every parameter.
    #[test]
    fn both_towers_take_a_non_square_canvas() {
        for tower in [ImageTowerKind::Cnn, ImageTowerKind::Vit] {
            let mut cfg = ClipConfig {
                image_tower: tower,
                embed_dim: 8,
                ..Default::default()
            };
            cfg.cnn.input = [1, 28, 56];
            cfg.cnn.channels = [4, 4];
            cfg.cnn.features = 8;
            cfg.vit.input = [1, 28, 56];
            cfg.vit.width = 16;
            cfg.vit.layers = 1;
            cfg.vit.heads = 2;
            cfg.text.width = 16;
            cfg.text.layers = 1;
            cfg.text.heads = 2;
            cfg.validate().unwrap();
            let ps = ParamStore::new(0, &Device::Cpu);
            let clip = Clip::new(&cfg, ps.vb()).unwrap();
            let x = Tensor::rand(0f32, 1.0, (3, 1, 28, 56), &Device::Cpu).unwrap();
            let emb = clip.encode_image(&x).unwrap();
            assert_eq!(emb.dims(), &[3, 8], "{tower:?}");
            let ids = Tensor::new(
                &[
                    [49406u32, 320, 49407],
                    [49406, 321, 49407],
                    [49406, 49407, 0],
                ],
                &Device::Cpu,
            )
            .unwrap();
            let (loss, _) = clip.loss(&x, &ids, &[2, 2, 1]).unwrap();
            let g = loss.backward().unwrap();
            for (name, v) in ps.vars() {
                assert!(
                    g.get(v.as_tensor()).is_some(),
                    "{tower:?}: {name} has no gradient"
                );
            }
        }
    }
}
