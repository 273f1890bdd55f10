//! The conv-4 embedding of the metric-based methods (Vinyals et al. 2016, arXiv:1606.04080,
//! section 4.1; Snell et al. 2017, arXiv:1703.05175, section 3.1): four blocks of a 3x3
//! convolution with `channels` filters, a normalisation, ReLU and 2x2 max-pooling, so a
//! 28x28 image becomes a `channels`-vector (28 -> 14 -> 7 -> 3 -> 1).
//!
//! Normalisation is GroupNorm (Wu & He 2018, arXiv:1803.08494) instead of the papers'
//! BatchNorm: genlab-nn's kernel carries a gradient and it normalises each example alone, so
//! an embedding never depends on which other images share its episode. Max-pooling is a
//! reshape and two max reductions (candle 0.11.1's `max_pool2d` backward scales by the
//! tie count the wrong way); odd sides are cropped first, as PyTorch's floor mode does.

use candle_core::{Tensor, D};
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

/// 2x2 max-pooling with stride 2 of `[B, C, H, W]` (odd sides cropped).
pub fn max_pool2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?;
    // [B, C, 2*h2, 2*w2] -> [B, C, h2, 2, w2, 2] -> max over the two 2s.
    x.reshape((b, c, h2, 2, w2, 2))?.max(D::Minus1)?.max(3)
}

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
    use candle_core::{Device, Var};

    #[test]
    fn max_pool_matches_brute_force_and_routes_the_gradient_to_the_maxima() {
        let mut rng = genlab_core::Rng::new(1);
        let v: Vec<f32> = (0..2 * 5 * 5).map(|_| rng.uniform() as f32).collect();
        let x = Var::from_vec(v.clone(), (1, 2, 5, 5), &Device::Cpu).unwrap();
        let y = max_pool2(x.as_tensor()).unwrap();
        assert_eq!(y.dims(), &[1, 2, 2, 2]);
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut want_grad = vec![0f32; 50];
        for c in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    let cells = [
                        (2 * i, 2 * j),
                        (2 * i, 2 * j + 1),
                        (2 * i + 1, 2 * j),
                        (2 * i + 1, 2 * j + 1),
                    ];
                    let (arg, m) = cells
                        .iter()
                        .map(|&(a, b)| (c * 25 + a * 5 + b, v[c * 25 + a * 5 + b]))
                        .fold((0, f32::MIN), |acc, p| if p.1 > acc.1 { p } else { acc });
                    assert_eq!(got[c * 4 + i * 2 + j], m);
                    want_grad[arg] = 1.0;
                }
            }
        }
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(gx, want_grad);
    }

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
