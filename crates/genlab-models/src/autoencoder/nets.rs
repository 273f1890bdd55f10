//! The first-stage encoder and decoder of latent diffusion.
//!
//! Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"
//! (arXiv:2112.10752), Sec. 3.1 and App. G: a convolutional encoder that downsamples by
//! `f = 2^(levels - 1)` and a mirrored decoder, built from the ResNet blocks of the DDPM U-Net
//! without a time input (He et al. 2016, arXiv:1512.03385; GroupNorm, Wu & He 2018,
//! arXiv:1803.08494), with one self-attention block in the middle at the lowest resolution.
//!
//! ```text
//! encoder: conv_in -> per level i: layers_per_block x ResBlock(ch[i]) (+ Downsample unless last)
//!          -> mid: ResBlock, attention, ResBlock -> GroupNorm+SiLU -> conv_out (z_channels)
//! decoder: conv_in -> mid: ResBlock, attention, ResBlock
//!          -> per level i from the last: (layers_per_block + 1) x ResBlock(ch[i])
//!             (+ Upsample to the encoder's size at level i - 1 unless i = 0)
//!          -> GroupNorm+SiLU -> conv_out (image channels)
//! ```
//!
//! Downsampling is the U-Net's stride-2 3x3 convolution with padding 1 (`H -> ceil(H/2)`:
//! 28 -> 14 -> 7); Stable Diffusion's pads only right and bottom, which matters only when
//! its weights are loaded (issue 23), not for what genlab trains. The layout and parameter
//! names follow diffusers' `Encoder` / `Decoder` (`down_blocks.{i}.resnets.{j}`,
//! `down_blocks.{i}.downsamplers.0`, `mid_block.resnets.{0,1}`, `mid_block.attentions.0`,
//! `up_blocks.{k}.resnets.{j}`, `up_blocks.{k}.upsamplers.0`, `conv_norm_out`, `conv_out`)
//! with `k = levels - 1 - i` counted from the lowest resolution, as diffusers counts;
//! the ResNet parameters are `norm1, conv1, norm2, conv2, conv_shortcut`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_nn::{
    AttentionBlock, Conv, Downsample, GroupNorm, ResnetBlock2D as ResnetBlock, Upsample,
};

/// GroupNorm epsilon of the LDM / diffusers autoencoder (1e-6).
pub const AE_GN_EPS: f64 = 1e-6;

/// A diffusers `ResnetBlock2D` without a time input, with the autoencoder's norms.
fn resnet(
    c_in: usize,
    c_out: usize,
    groups: usize,
    vb: VarBuilder,
) -> candle_core::Result<ResnetBlock> {
    ResnetBlock::new(c_in, c_out, None, groups, AE_GN_EPS, vb)
}

/// ResBlock, single-head self-attention, ResBlock at the lowest resolution.
#[derive(Debug, Clone)]
struct MidBlock {
    res0: ResnetBlock,
    attn: Option<AttentionBlock>,
    res1: ResnetBlock,
}

impl MidBlock {
    fn new(ch: usize, s: &NetSizes, vb: VarBuilder) -> candle_core::Result<Self> {
        let (groups, attention) = (s.groups, s.mid_attention);
        // diffusers' autoencoder attention normalises with the blocks' 1e-6.
        let attn_eps = if s.upstream {
            AE_GN_EPS
        } else {
            genlab_nn::resblock::GN_EPS
        };
        Ok(Self {
            res0: resnet(ch, ch, groups, vb.pp("resnets.0"))?,
            attn: if attention {
                Some(AttentionBlock::with_eps(
                    ch,
                    1,
                    groups,
                    attn_eps,
                    vb.pp("attentions.0"),
                )?)
            } else {
                None
            },
            res1: resnet(ch, ch, groups, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.res0.forward(x, None)?;
        if let Some(a) = &self.attn {
            h = a.forward(&h)?;
        }
        self.res1.forward(&h, None)
    }
}

/// Sizes shared by the encoder and the decoder.
#[derive(Clone, Debug)]
pub struct NetSizes {
    /// Image channels.
    pub image_channels: usize,
    /// Channels per level (`len - 1` downsamplings).
    pub channels: Vec<usize>,
    pub layers_per_block: usize,
    pub groups: usize,
    pub mid_attention: bool,
    /// Stable Diffusion's arithmetic (see [`super::AutoencoderConfig::upstream_layout`]).
    pub upstream: bool,
}

/// Image `[B, C, H, W]` -> `[B, out_channels, H / f, W / f]` (sizes rounded up per level).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: Conv,
    levels: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Encoder {
    pub fn new(s: &NetSizes, out_channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let conv_in = Conv::new(s.image_channels, s.channels[0], 3, 1, 1, vb.pp("conv_in"))?;
        let mut levels = Vec::new();
        let mut ch = s.channels[0];
        let last = s.channels.len() - 1;
        for (i, &c) in s.channels.iter().enumerate() {
            let vbl = vb.pp(format!("down_blocks.{i}"));
            let mut blocks = Vec::new();
            for j in 0..s.layers_per_block {
                blocks.push(resnet(ch, c, s.groups, vbl.pp(format!("resnets.{j}")))?);
                ch = c;
            }
            let down = if i != last {
                Some(if s.upstream {
                    Downsample::new_right_bottom(ch, vbl.pp("downsamplers.0"))?
                } else {
                    Downsample::new(ch, vbl.pp("downsamplers.0"))?
                })
            } else {
                None
            };
            levels.push((blocks, down));
        }
        Ok(Self {
            conv_in,
            levels,
            mid: MidBlock::new(ch, s, vb.pp("mid_block"))?,
            norm_out: GroupNorm::new(s.groups, ch, AE_GN_EPS, true, vb.pp("conv_norm_out"))?,
            conv_out: Conv::new(ch, out_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for (blocks, down) in &self.levels {
            for b in blocks {
                h = b.forward(&h, None)?;
            }
            if let Some(d) = down {
                h = d.forward(&h)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward(&h)?)
    }
}

/// Latent `[B, z_channels, h, w]` -> image `[B, C, H, W]` (the sizes of the encoder's levels).
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv,
    mid: MidBlock,
    /// From the lowest resolution up: blocks, then an upsampler to the next level's size.
    levels: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl Decoder {
    pub fn new(s: &NetSizes, z_channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let last = s.channels.len() - 1;
        let mut ch = s.channels[last];
        let conv_in = Conv::new(z_channels, ch, 3, 1, 1, vb.pp("conv_in"))?;
        let mid = MidBlock::new(ch, s, vb.pp("mid_block"))?;
        let mut levels = Vec::new();
        for (k, &c) in s.channels.iter().rev().enumerate() {
            let vbl = vb.pp(format!("up_blocks.{k}"));
            let mut blocks = Vec::new();
            for j in 0..=s.layers_per_block {
                blocks.push(resnet(ch, c, s.groups, vbl.pp(format!("resnets.{j}")))?);
                ch = c;
            }
            let up = if k != last {
                Some(Upsample::new(ch, vbl.pp("upsamplers.0"))?)
            } else {
                None
            };
            levels.push((blocks, up));
        }
        Ok(Self {
            conv_in,
            mid,
            levels,
            norm_out: GroupNorm::new(s.groups, ch, AE_GN_EPS, true, vb.pp("conv_norm_out"))?,
            conv_out: Conv::new(ch, s.image_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    /// `sizes[k]` is the `(h, w)` after upsampler `k` (the encoder's sizes, highest last).
    pub fn forward(&self, z: &Tensor, sizes: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for (k, (blocks, up)) in self.levels.iter().enumerate() {
            for b in blocks {
                h = b.forward(&h, None)?;
            }
            if let Some(u) = up {
                let (oh, ow) = sizes[k];
                h = u.forward(&h, oh, ow)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h)?)
    }

    /// The last convolution's weight: the adaptive GAN weight of Esser et al. 2021 (Eq. 7)
    /// compares the reconstruction and adversarial gradients there.
    pub fn last_layer(&self) -> &Tensor {
        self.conv_out.weight()
    }
}

/// The spatial sizes of each level for an `h x w` input: `[(h, w), (ceil(h/2), ..), ..]`.
pub fn level_sizes(h: usize, w: usize, levels: usize) -> Vec<(usize, usize)> {
    let mut out = vec![(h, w)];
    for _ in 1..levels {
        let (a, b) = *out.last().expect("non-empty");
        out.push((a.div_ceil(2), b.div_ceil(2)));
    }
    out
}
