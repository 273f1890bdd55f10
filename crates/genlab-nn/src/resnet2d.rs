//! diffusers' `ResnetBlock2D`, with or without a time input: the block of Stable
//! Diffusion's U-Net (with `time_emb_proj`) and of its autoencoder (without).
//!
//! He et al. 2016, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385), in the
//! form of Ho et al. 2020 (arXiv:2006.11239) and Rombach et al. 2022 (arXiv:2112.10752):
//! GroupNorm -> SiLU -> conv 3x3 (-> + a projection of the time embedding, broadcast over
//! space) -> GroupNorm -> SiLU -> conv 3x3, added to the input (through a 1x1 conv when the
//! channel count changes). Parameter names are diffusers': `norm1`, `conv1`,
//! `time_emb_proj`, `norm2`, `conv2`, `conv_shortcut`. (The DDPM U-Net's [`crate::ResBlock`]
//! is the same block under the names genlab's earlier checkpoints use.)

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::linear::Linear;
use crate::norm::GroupNorm;
use crate::resblock::conv3x3;

/// `[B, C_in, H, W]` (and, with a time input, the activated embedding `[B, T]`) ->
/// `[B, C_out, H, W]`.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv,
    conv_shortcut: Option<Conv>,
}

impl ResnetBlock2D {
    /// `temb`: the width of the time embedding, or `None` for a block without one;
    /// `groups` must divide both channel counts.
    pub fn new(
        c_in: usize,
        c_out: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            // GroupNorm with the SiLU that follows it fused.
            norm1: GroupNorm::new(groups, c_in, eps, true, vb.pp("norm1"))?,
            conv1: conv3x3(c_in, c_out, vb.pp("conv1"))?,
            time_emb_proj: temb
                .map(|t| Linear::new(t, c_out, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: GroupNorm::new(groups, c_out, eps, true, vb.pp("norm2"))?,
            conv2: conv3x3(c_out, c_out, vb.pp("conv2"))?,
            conv_shortcut: if c_in != c_out {
                Some(Conv::new(c_in, c_out, 1, 1, 0, vb.pp("conv_shortcut"))?)
            } else {
                None
            },
        })
    }

    /// `emb` is the time embedding after its SiLU, required exactly when the block was
    /// built with a time input.
    pub fn forward(&self, x: &Tensor, emb: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward(x)?)?;
        match (&self.time_emb_proj, emb) {
            // [B, T] -> [B, C_out, 1, 1], broadcast over H, W
            (Some(p), Some(e)) => {
                h = h.broadcast_add(&p.forward(e)?.unsqueeze(2)?.unsqueeze(3)?)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                candle_core::bail!("ResnetBlock2D: this block needs a time embedding")
            }
            (None, Some(_)) => {
                candle_core::bail!("ResnetBlock2D: this block takes no time embedding")
            }
        }
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        match &self.conv_shortcut {
            Some(c) => c.forward(x)? + h,
            None => x + h,
        }
    }
}
