//! Time-conditioned ResNet block of the DDPM U-Net.
//!
//! He et al. 2016, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385), in the
//! form used by Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (arXiv:2006.11239): GroupNorm (Wu & He 2018, arXiv:1803.08494) -> SiLU -> conv 3x3 ->
//! plus a linear projection of the time embedding broadcast over space -> GroupNorm -> SiLU
//! -> conv 3x3, added to the input (through a 1x1 conv when the channel count changes).
//! Dropout is left out: every random number in genlab comes from `genlab_core::Rng`, and the
//! small models trained here do not need it.
//!
//! Parameter names: `norm1`, `conv1`, `temb`, `norm2`, `conv2`, and `skip` when the channel
//! count changes.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::linear::Linear;

use crate::conv::Conv;
use crate::norm::GroupNorm;

/// GroupNorm epsilon (PyTorch's default, also what the DDPM code uses).
pub const GN_EPS: f64 = 1e-5;

/// A 3x3 convolution with padding 1: keeps the spatial size.
pub(crate) fn conv3x3(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Conv> {
    Conv::new(c_in, c_out, 3, 1, 1, vb)
}

/// `x` `[B, C_in, H, W]`, activated time embedding `[B, T]` -> `[B, C_out, H, W]`.
#[derive(Debug, Clone)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    temb: Linear,
    norm2: GroupNorm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    /// `groups` must divide both `c_in` and `c_out`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        temb_dim: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(groups, c_in, GN_EPS, true, vb.pp("norm1"))?,
            conv1: conv3x3(c_in, c_out, vb.pp("conv1"))?,
            temb: Linear::new(temb_dim, c_out, vb.pp("temb"))?,
            norm2: GroupNorm::new(groups, c_out, GN_EPS, true, vb.pp("norm2"))?,
            conv2: conv3x3(c_out, c_out, vb.pp("conv2"))?,
            skip: if c_in != c_out {
                Some(Conv::new(c_in, c_out, 1, 1, 0, vb.pp("skip"))?)
            } else {
                None
            },
        })
    }

    /// `temb` is the time embedding after its final SiLU (Ho et al. apply the nonlinearity
    /// before each block's projection; it is computed once per forward pass).
    pub fn forward(&self, x: &Tensor, temb: &Tensor) -> candle_core::Result<Tensor> {
        // GroupNorm and SiLU are fused in `norm1` / `norm2`.
        let h = self.conv1.forward(&self.norm1.forward(x)?)?;
        // [B, T] -> [B, C_out] -> [B, C_out, 1, 1], broadcast over H, W
        let t = self.temb.forward(temb)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = h.broadcast_add(&t)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        skip + h
    }
}
