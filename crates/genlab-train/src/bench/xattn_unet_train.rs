//! `xattn-unet-train`: the cross-attention U-Net (`CondUNetConfig::default()`, the two-digit
//! text-to-image network: 4x7x14 latents, levels [32, 64, 64] with spatial transformers,
//! 4 heads) on batch 32 with a context of 8 tokens x 64: MSE to a noise target, backward,
//! Adam, EMA. Its twin is diffusers' `UNet2DConditionModel` with the same config
//! (scripts/bench/torch_bench.py).

use candle_core::{Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{CondUNet, CondUNetConfig};

use super::{adam, Workload, EMA_DECAY, LR};
use crate::ema::Ema;

/// Batch, latent shape and context of the workload.
const B: usize = 32;
const C: usize = 4;
const H: usize = 7;
const W: usize = 14;
const TOKENS: usize = 8;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let cfg = CondUNetConfig::default();
    let ps = ParamStore::new(0, &dev);
    let net = CondUNet::new(&cfg, ps.vb())?;
    let shadow = ParamStore::new(0, &dev);
    CondUNet::new(&cfg, shadow.vb())?;
    let ema = Ema::new(&shadow, &ps, EMA_DECAY)?;
    let x = rng.normal_tensor(&[B, C, H, W], &dev)?;
    let eps = rng.normal_tensor(&[B, C, H, W], &dev)?;
    let ctx = rng.normal_tensor(&[B, TOKENS, cfg.cross_attention_dim], &dev)?;
    let t: Vec<f32> = (0..B).map(|_| rng.below(1000) as f32).collect();
    let t = Tensor::from_vec(t, B, &dev)?;
    let mut opt = adam(&ps)?;
    let flop = 3.0 * cfg.forward_flops(B, H, W, TOKENS);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let pred = net.forward(&x, &t, Some(&ctx), None, None)?;
            let loss = (pred - &eps)?.sqr()?.mean_all()?;
            let n = opt.t;
            opt.step(&loss.backward()?, LR, 1.0)?;
            ema.update(n)?;
            Ok(())
        }),
    })
}
