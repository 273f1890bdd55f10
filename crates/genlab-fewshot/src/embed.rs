//! The conv-4 embedding of the metric-based methods (Vinyals et al. 2016, arXiv:1606.04080,
//! section 4.1; Snell et al. 2017, arXiv:1703.05175, section 3.1): four blocks of a 3x3
//! convolution with `channels` filters, a normalisation, ReLU and 2x2 max-pooling, so a
//! 28x28 image becomes a `channels`-vector (28 -> 14 -> 7 -> 3 -> 1).
//!
//! Normalisation is GroupNorm (Wu & He 2018, arXiv:1803.08494) instead of the papers'
//! BatchNorm: genlab-nn's kernel carries a gradient and it normalises each example alone, so
//! an embedding never depends on which other images share its episode. Max-pooling is a
//! reshape and two max reductions ([`genlab_nn::max_pool2`]: candle 0.11.1's `max_pool2d`
//! backward scales by the tie count the wrong way); odd sides are cropped first, as
//! PyTorch's floor mode does.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use genlab_nn::{Conv, GroupNorm};
use serde::{Deserialize, Serialize};

/// Sizes of [`Conv4`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Conv4Config {
    /// Filters of every block.
    pub channels: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// Blocks (4 in the papers; fewer for small images: each halves the side).
    pub blocks: usize,
}

impl Default for Conv4Config {
    fn default() -> Self {
        Self {
            // 64: the papers' width.
            channels: 64,
            // 8: GroupNorm's usual groups of 8 channels.
            groups: 8,
            // 4: 28x28 -> 1x1.
            blocks: 4,
        }
    }
}

/// 2x2 max-pooling (genlab-nn's, which passes a correct gradient).
pub use genlab_nn::max_pool2;

/// The embedding network.
#[derive(Debug, Clone)]
pub struct Conv4 {
    convs: Vec<Conv>,
    norms: Vec<GroupNorm>,
    out_dim: usize,
}

impl Conv4 {
    /// For inputs `[C, H, W]`; parameters `block.{i}.conv`, `block.{i}.norm` under `vb`.
    pub fn new(cfg: &Conv4Config, input: &[usize], vb: VarBuilder) -> candle_core::Result<Self> {
        let [c, h, w] = input[..] else {
            candle_core::bail!("conv-4 needs [C, H, W] inputs, got {input:?}");
        };
        let (mut side_h, mut side_w) = (h, w);
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for i in 0..cfg.blocks {
            if side_h < 2 || side_w < 2 {
                candle_core::bail!(
                    "conv-4: {} blocks halve a {h}x{w} image below 1x1 (use fewer blocks)",
                    cfg.blocks
                );
            }
            let cin = if i == 0 { c } else { cfg.channels };
            convs.push(Conv::new(
                cin,
                cfg.channels,
                3,
                1,
                1,
                vb.pp(format!("block.{i}.conv")),
            )?);
            norms.push(GroupNorm::new(
                cfg.groups,
                cfg.channels,
                1e-5,
                false,
                vb.pp(format!("block.{i}.norm")),
            )?);
            side_h /= 2;
            side_w /= 2;
        }
        Ok(Self {
            convs,
            norms,
            out_dim: cfg.channels * side_h * side_w,
        })
    }

    /// Length of an embedding.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `[B, C, H, W]` -> the last block's feature maps `[B, channels, H', W']`.
    pub fn forward_map(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            h = max_pool2(&genlab_nn::relu(&norm.forward(&conv.forward(&h)?)?)?)?;
        }
        Ok(h)
    }

    /// `[B, C, H, W]` -> `[B, out_dim]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.forward_map(x)?;
        let b = h.dim(0)?;
        // [B, channels, H', W'] -> [B, channels * H' * W'].
        h.reshape((b, ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_28_pixel_image_becomes_a_vector_and_every_parameter_gets_a_gradient() {
        let store = genlab_core::ParamStore::new(0, &Device::Cpu);
        let cfg = Conv4Config {
            channels: 8,
            groups: 2,
            blocks: 4,
        };
        let net = Conv4::new(&cfg, &[1, 28, 28], store.vb()).unwrap();
        assert_eq!(net.out_dim(), 8);
        let x = genlab_core::Rng::new(2)
            .uniform_tensor(0.0, 1.0, &[3, 1, 28, 28], &Device::Cpu)
            .unwrap();
        let y = net.forward(&x).unwrap();
        assert_eq!(y.dims(), &[3, 8]);
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in store.vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "zero gradient for {name}");
        }
    }
}
