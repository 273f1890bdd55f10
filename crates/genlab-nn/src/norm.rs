//! Group normalisation layer, optionally fused with the SiLU that follows it.
//!
//! Wu & He 2018, "Group Normalization" (arXiv:1803.08494): the channels of each sample are
//! split into `G` groups, each normalised to zero mean and unit variance over its channels
//! and positions, then scaled and shifted per channel:
//! `y = γ_c · (x - μ_bg) / sqrt(σ²_bg + ε) + β_c`. With `silu` the output is
//! `y · sigmoid(y)` (Elfwing et al. 2018, arXiv:1702.03118), the pairing of every DDPM
//! ResNet block.
//!
//! On CPU f32 the layer runs `genlab_kernels::group_norm`, one fused kernel forward and one
//! backward (`candle_nn::GroupNorm`'s backward pass is a long chain of broadcast ops, about
//! 20x the forward time). Elsewhere it falls back to `candle_nn::GroupNorm` (then `silu`),
//! which computes the same function. Parameters are created exactly like
//! `candle_nn::group_norm`: `weight` (ones) and `bias` (zeros), `[C]`; inputs are `[B, C, ...]`.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// GroupNorm over `[B, C, ...]` with a per-channel affine map, optionally followed by SiLU.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    reference: candle_nn::GroupNorm,
    channels: usize,
    groups: usize,
    eps: f64,
    silu: bool,
}

impl GroupNorm {
    /// `groups` must divide `channels`; `silu` fuses the activation that follows.
    pub fn new(
        groups: usize,
        channels: usize,
        eps: f64,
        silu: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if groups == 0 || channels % groups != 0 {
            candle_core::bail!(
                "GroupNorm: groups ({groups}) must be positive and divide channels ({channels})"
            );
        }
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let reference =
            candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
        Ok(Self {
            weight,
            bias,
            reference,
            channels,
            groups,
            eps,
            silu,
        })
    }

    /// `[B, C, ...]` -> same shape.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.forward_reference(x);
        }
        let dims = x.dims();
        if dims.len() < 3 || dims[1] != self.channels || dims[2..].contains(&0) {
            candle_core::bail!(
                "GroupNorm: expected [B, {}, ...] with non-empty spatial dims, got {dims:?}",
                self.channels
            );
        }
        genlab_kernels::group_norm(
            x,
            &self.weight,
            &self.bias,
            self.groups,
            self.eps,
            self.silu,
        )
    }

    /// `candle_nn::GroupNorm` (then SiLU when fused): the reference the tests compare to.
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.reference.forward(x)?;
        if self.silu {
            y.silu()
        } else {
            Ok(y)
        }
    }
}

/// Added under the square root of [`l2_normalize`] so a zero row does not divide by zero.
pub const L2_NORM_EPS: f64 = 1e-12;

/// Each row (last dim) divided by its Euclidean norm, `sqrt(sum x^2 + 1e-12)`:
/// `[N, E]` -> `[N, E]`, differentiable. The one copy for CLIP's embeddings and the
/// contrastive losses of genlab-labels (the BERT and transformers-CLIP ports keep their
/// upstream's exact forms).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = (x.sqr()?.sum_keepdim(D::Minus1)? + L2_NORM_EPS)?.sqrt()?;
    x.broadcast_div(&n)
}
