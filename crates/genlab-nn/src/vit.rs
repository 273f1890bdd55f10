//! Vision transformer encoder (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words",
//! arXiv:2010.11929, Eq. 1-4) in CLIP's arrangement (Radford et al. 2021,
//! arXiv:2103.00020, Sec. 2.4): patch embedding without bias, a learned class token and
//! position embedding, a LayerNorm before the blocks (`ln_pre`), pre-norm
//! [`TransformerBlock`]s, and `ln_post` on the class token.
//!
//! ```text
//! z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos        (Eq. 1)
//! z  = blocks(ln_pre(z0))                              (Eq. 2-3)
//! y  = ln_post(z[:, 0])                                (Eq. 4)
//! ```
//!
//! [`patchify`] / [`unpatchify`] convert between images and patch tokens; a patch vector is
//! ordered `(channel, row, column)`, the layout of a `Conv2d(C, width, p, stride p)` weight,
//! so a convolutional patch embedding loads by reshaping its weight to `[width, C·p·p]`.
//!
//! Parameter names: `patch_embed.weight [width, C·p·p]`, `class_token [width]`,
//! `pos_embed [1 + N, width]`, `ln_pre`, `blocks.{i}`, `ln_post`.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::transformer::{LayerNorm, MlpAct, TransformerBlock, TransformerBlockConfig};

/// Standard deviation of the class token and position embedding at initialisation (ViT's
/// and timm's 0.02).
pub const EMBED_INIT_STD: f64 = 0.02;

/// `[B, C, H, W]` -> `[B, (H/p)·(W/p), C·p·p]`, patches in row-major order.
pub fn patchify(x: &Tensor, p: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if p == 0 || h % p != 0 || w % p != 0 {
        candle_core::bail!("patchify: a {h}x{w} image does not split into {p}x{p} patches");
    }
    let (gh, gw) = (h / p, w / p);
    // [B, C, gh, p, gw, p] -> [B, gh, gw, C, p, p] -> [B, gh·gw, C·p·p]
    x.reshape((b, c, gh, p, gw, p))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b, gh * gw, c * p * p))
}

/// Inverse of [`patchify`]: `[B, (H/p)·(W/p), C·p·p]` -> `[B, C, H, W]`.
pub fn unpatchify(
    t: &Tensor,
    c: usize,
    h: usize,
    w: usize,
    p: usize,
) -> candle_core::Result<Tensor> {
    let (b, n, k) = t.dims3()?;
    if p == 0 || h % p != 0 || w % p != 0 || n != (h / p) * (w / p) || k != c * p * p {
        candle_core::bail!(
            "unpatchify: {n} tokens of width {k} are not {c}x{h}x{w} in {p}x{p} patches"
        );
    }
    let (gh, gw) = (h / p, w / p);
    // [B, gh, gw, C, p, p] -> [B, C, gh, p, gw, p] -> [B, C, H, W]
    t.reshape((b, gh, gw, c, p, p))?
        .permute((0, 3, 1, 4, 2, 5))?
        .contiguous()?
        .reshape((b, c, h, w))
}

/// Shape of a [`VisionTransformer`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    pub patch: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// MLP hidden width as a multiple of `width` (4 in ViT and CLIP).
    pub mlp_ratio: usize,
    /// MLP hidden width when it is not a multiple of `width` (Hugging Face's
    /// `intermediate_size`); `None`: `mlp_ratio · width`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_hidden: Option<usize>,
    pub act: MlpAct,
    /// LayerNorm epsilon of `ln_pre`, every block and `ln_post` (CLIP's 1e-5).
    pub eps: f64,
}

impl Default for VitConfig {
    fn default() -> Self {
        Self {
            input: [1, 28, 28],
            patch: 4,   // 7x7 = 49 tokens on MNIST: attention stays cheap on a CPU
            width: 128, // a CPU-sized "ViT-Ti"-like width
            layers: 4,
            heads: 4,
            mlp_ratio: 4, // the paper's
            mlp_hidden: None,
            act: MlpAct::GeluErf,
            eps: 1e-5,
        }
    }
}

impl VitConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let [c, h, w] = self.input;
        let bad = |problem: String| genlab_core::Error::Setting {
            setting: "vit".into(),
            problem,
        };
        if c == 0 || self.patch == 0 || h % self.patch != 0 || w % self.patch != 0 {
            return Err(bad(format!(
                "patch size {} must divide the image size {h}x{w}",
                self.patch
            )));
        }
        if self.width == 0 || self.layers == 0 || self.mlp_ratio == 0 {
            return Err(bad("width, layers and mlp_ratio must be positive".into()));
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return Err(bad(format!(
                "heads ({}) must divide the width ({})",
                self.heads, self.width
            )));
        }
        if self.mlp_hidden == Some(0) || !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(bad(format!(
                "mlp_hidden ({:?}) and eps ({}) must be positive",
                self.mlp_hidden, self.eps
            )));
        }
        Ok(())
    }

    /// Number of patch tokens (without the class token).
    pub fn tokens(&self) -> usize {
        (self.input[1] / self.patch) * (self.input[2] / self.patch)
    }

    pub fn block(&self) -> TransformerBlockConfig {
        TransformerBlockConfig {
            dim: self.width,
            heads: self.heads,
            mlp_hidden: self.mlp_hidden.unwrap_or(self.mlp_ratio * self.width),
            pre_norm: true,
            act: self.act,
            eps: self.eps,
        }
    }

    /// Forward FLOPs per image.
    pub fn flops(&self) -> u64 {
        let n = self.tokens() + 1;
        let [c, ..] = self.input;
        let embed = 2 * (self.tokens() * c * self.patch * self.patch * self.width) as u64;
        embed + self.layers as u64 * crate::transformer::block_flops(&self.block(), n)
    }
}

/// The encoder: image -> pooled class-token feature `[B, width]`.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    cfg: VitConfig,
    patch_embed: Tensor,
    class_token: Tensor,
    pos_embed: Tensor,
    ln_pre: LayerNorm,
    blocks: Vec<TransformerBlock>,
    ln_post: LayerNorm,
}

impl VisionTransformer {
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let [c, ..] = cfg.input;
        let k = c * cfg.patch * cfg.patch;
        let patch_embed = vb.get_with_hints(
            (cfg.width, k),
            "patch_embed.weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (k as f64).sqrt(), // PyTorch's conv fan-in scale
            },
        )?;
        let std = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: EMBED_INIT_STD,
        };
        let class_token = vb.get_with_hints(cfg.width, "class_token", std)?;
        let pos_embed = vb.get_with_hints((cfg.tokens() + 1, cfg.width), "pos_embed", std)?;
        let block = cfg.block();
        let blocks = (0..cfg.layers)
            .map(|i| TransformerBlock::new(&block, vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed,
            class_token,
            pos_embed,
            ln_pre: LayerNorm::new(cfg.width, cfg.eps, vb.pp("ln_pre"))?,
            blocks,
            ln_post: LayerNorm::new(cfg.width, cfg.eps, vb.pp("ln_post"))?,
        })
    }

    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Every token after the blocks, `[B, 1 + N, width]` (before `ln_post`).
    pub fn forward_tokens(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if [c, h, w] != self.cfg.input {
            candle_core::bail!(
                "vision transformer: images are {c}x{h}x{w}, the model takes {:?}",
                self.cfg.input
            );
        }
        // [B, N, C·p·p] @ [C·p·p, width] -> [B, N, width]
        let patches = patchify(x, self.cfg.patch)?.broadcast_matmul(&self.patch_embed.t()?)?;
        // class token [width] -> [B, 1, width]
        let cls = self
            .class_token
            .reshape((1, 1, self.cfg.width))?
            .broadcast_as((b, 1, self.cfg.width))?;
        let z = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos_embed)?;
        let mut z = self.ln_pre.forward(&z)?;
        for blk in &self.blocks {
            z = blk.forward(&z, None)?;
        }
        Ok(z)
    }

    /// `[B, C, H, W]` -> `[B, width]`: `ln_post` of the class token.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let z = self.forward_tokens(x)?;
        self.ln_post.forward(&z.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::ParamStore;

    #[test]
    #[allow(clippy::needless_range_loop)] // index-for-index with the formula
    fn patchify_matches_index_formula_and_inverts() {
        let (b, c, h, w, p) = (2, 3, 4, 6, 2);
        let v: Vec<f32> = (0..b * c * h * w).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v, (b, c, h, w), &Device::Cpu).unwrap();
        let t = patchify(&x, p).unwrap();
        assert_eq!(t.dims(), &[b, (h / p) * (w / p), c * p * p]);
        let tv = t.to_vec3::<f32>().unwrap();
        for bi in 0..b {
            for gy in 0..h / p {
                for gx in 0..w / p {
                    for ci in 0..c {
                        for py in 0..p {
                            for px in 0..p {
                                let want =
                                    (((bi * c + ci) * h + gy * p + py) * w + gx * p + px) as f32;
                                let got = tv[bi][gy * (w / p) + gx][(ci * p + py) * p + px];
                                assert_eq!(got, want);
                            }
                        }
                    }
                }
            }
        }
        let back = unpatchify(&t, c, h, w, p).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    /// The patch embedding equals a stride-p convolution with the weight reshaped.
    #[test]
    fn patch_embedding_equals_strided_convolution() {
        let (c, p, width) = (2, 2, 3);
        let mut rng = genlab_core::Rng::new(1);
        let wv: Vec<f32> = (0..width * c * p * p)
            .map(|_| rng.normal() as f32)
            .collect();
        let xv: Vec<f32> = (0..c * 4 * 4).map(|_| rng.normal() as f32).collect();
        let wconv = Tensor::from_vec(wv.clone(), (width, c, p, p), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(xv, (1, c, 4, 4), &Device::Cpu).unwrap();
        let conv = x.conv2d(&wconv, 0, p, 1, 1).unwrap(); // [1, width, 2, 2]
        let want = conv.flatten_from(2).unwrap().transpose(1, 2).unwrap(); // [1, 4, width]
        let wlin = Tensor::from_vec(wv, (width, c * p * p), &Device::Cpu).unwrap();
        let got = patchify(&x, p)
            .unwrap()
            .broadcast_matmul(&wlin.t().unwrap())
            .unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let ps = ParamStore::new(0, &Device::Cpu);
        let cfg = VitConfig {
            patch: 5,
            ..Default::default()
        };
        assert!(VisionTransformer::new(&cfg, ps.vb()).is_err());
        let vit = VisionTransformer::new(
            &VitConfig {
                width: 16,
                layers: 1,
                heads: 2,
                ..Default::default()
            },
            ps.vb(),
        )
        .unwrap();
        let x = Tensor::zeros((1, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(vit.forward(&x).is_err());
        let x = Tensor::zeros((2, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(vit.forward(&x).unwrap().dims(), &[2, 16]);
    }
}
