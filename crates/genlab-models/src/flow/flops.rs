//! Forward FLOPs of the image flow (counted like every genlab FLOP figure: see
//! `genlab_nn::flops`), for the `flow-train` benchmark's GFLOP/s.

use genlab_core::{Error, Result};
use genlab_nn::flops::conv_flops;

use super::{DequantizationKind, FlowConfig, MaskKind, Mixing};

/// Forward FLOPs of the image [`Flow`](super::Flow) of `cfg` (affine couplings with channel masks, the
/// image preset's shape) on a batch of `b`: the convolutions of every conditioner (the
/// variational dequantiser's on the pixels, each coupling's on its half or all of the
/// channels) and the 1x1 invertible maps. Elementwise work is not counted.
pub fn forward_flops(cfg: &FlowConfig, b: usize) -> Result<f64> {
    let [c0, h0, w0] = match cfg.data.shape.as_slice() {
        [c, h, w] if cfg.data.images => [*c, *h, *w],
        s => {
            return Err(Error::InvalidInput(format!(
                "flow FLOPs are counted for images [C, H, W], got {s:?}"
            )))
        }
    };
    if cfg.mask != MaskKind::Channel {
        return Err(Error::InvalidInput(
            "flow FLOPs are counted for channel masks".into(),
        ));
    }
    // The conditioner CNN: 3x3 conv, 1x1 convs, 3x3 conv to k * c_out channels.
    let net = |c_in: usize, c_out: usize, k: usize, n: usize| {
        let mut f = 0.0;
        let mut ci = c_in;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            f += conv_flops(b, ci, h, if i == 0 { 3 } else { 1 }, n);
            ci = h;
        }
        f + conv_flops(b, ci, k * c_out, 3, n)
    };
    let coupling = |c: usize, n: usize| {
        if cfg.narrow_conditioner {
            net(c / 2, c / 2, 2, n)
        } else {
            net(c, c, 2, n)
        }
    };
    let mut f = 0.0;
    if cfg.dequantization == DequantizationKind::Variational {
        f += net(c0, c0, 2, h0 * w0);
    }
    let (mut c, mut h, mut w) = (c0, h0, w0);
    for s in 0..cfg.scales {
        (c, h, w) = (4 * c, h / 2, w / 2);
        let n = h * w;
        for _ in 0..cfg.layers {
            if cfg.mixing == Mixing::InvLinear {
                f += conv_flops(b, c, c, 1, n);
            }
            f += coupling(c, n);
        }
        if s + 1 < cfg.scales {
            if cfg.split_prior {
                f += coupling(c, n);
            }
            c /= 2;
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataSpace;

    #[test]
    fn flow_flops_match_a_hand_count() {
        // The MNIST preset (hidden [64, 64], halved conditioners, split prior, variational
        // dequantisation), batch 1. Conditioner on c_in -> 2 c_out channels over n pixels:
        // 2n(9·64·c_in + 64·64 + 9·64·2·c_out).
        let cfg = FlowConfig::for_data(&DataSpace {
            shape: vec![1, 28, 28],
            images: true,
        });
        let net = |ci: f64, co: f64, n: f64| 2.0 * n * (576.0 * ci + 4096.0 + 1152.0 * co);
        let deq = net(1.0, 1.0, 784.0);
        // Scale 0: 4 channels at 14x14, 8 steps of (4x4 map + coupling on 2 -> 2) + prior.
        let s0 = 8.0 * (2.0 * 196.0 * 16.0) + 9.0 * net(2.0, 2.0, 196.0);
        // Scale 1: 2 kept channels squeezed to 8 at 7x7, 8 steps, no prior.
        let s1 = 8.0 * (2.0 * 49.0 * 64.0 + net(4.0, 4.0, 49.0));
        assert_eq!(forward_flops(&cfg, 1).unwrap(), deq + s0 + s1);
        assert_eq!(forward_flops(&cfg, 3).unwrap(), 3.0 * (deq + s0 + s1));
    }
}
