//! Spatial self-attention block of the DDPM U-Net.
//!
//! Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need",
//! arXiv:1706.03762) over the `H·W` positions of a feature map, as placed in the U-Net of
//! Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239):
//!
//! ```text
//! h   = GroupNorm(x)
//! qkv = conv1x1(h)                          [B, 3C, H, W]
//! a   = softmax(q kᵀ / sqrt(d)) v           per head, d = C / heads, over N = H·W positions
//! out = x + conv1x1(a)
//! ```
//!
//! The attention itself is `genlab_kernels::attention` (one fused op with its own backward;
//! candle 0.11.1's fused `softmax_last_dim` and `sdpa` pass no gradient).
//!
//! Parameter names: `norm`, `qkv`, `proj`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::norm::GroupNorm;
use crate::resblock::GN_EPS;

/// Multi-head self-attention over spatial positions with a residual connection.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    channels: usize,
    heads: usize,
    norm: GroupNorm,
    qkv: Conv,
    proj: Conv,
}

impl AttentionBlock {
    /// `heads` must divide `channels`, `groups` must divide `channels`.
    pub fn new(
        channels: usize,
        heads: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Self::with_eps(channels, heads, groups, GN_EPS, vb)
    }

    /// [`AttentionBlock::new`] with the GroupNorm's epsilon chosen (diffusers' autoencoder
    /// attention uses 1e-6).
    pub fn with_eps(
        channels: usize,
        heads: usize,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if heads == 0 || channels % heads != 0 {
            candle_core::bail!(
                "AttentionBlock: heads ({heads}) must be positive and divide channels ({channels})"
            );
        }
        let norm = GroupNorm::new(groups, channels, eps, false, vb.pp("norm"))?;
        let qkv = Conv::new(channels, 3 * channels, 1, 1, 0, vb.pp("qkv"))?;
        let proj = Conv::new(channels, channels, 1, 1, 0, vb.pp("proj"))?;
        Ok(Self {
            channels,
            heads,
            norm,
            qkv,
            proj,
        })
    }

    /// `x` `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!(
                "AttentionBlock: x has {c} channels, expected {}",
                self.channels
            );
        }
        let (heads, d, n) = (self.heads, c / self.heads, h * w);
        let qkv = self.qkv.forward(&self.norm.forward(x)?)?;
        // [B, 3C, H, W] -> [B, 3C, N]: q, k, v of every head packed channels-first
        // (channel index = part·C + head·d + j).
        let qkv = qkv.reshape((b, 3 * c, n))?;
        // softmax(q kᵀ / √d) v per head: genlab-kernels' fused attention on the packed
        // tensor (its own backward; candle's softmax_last_dim / sdpa would drop gradients).
        let out = genlab_kernels::attention_qkv(&qkv, heads, 1.0 / (d as f64).sqrt())?;
        let out = out.reshape((b, c, h, w))?;
        x + self.proj.forward(&out)?
    }
}
