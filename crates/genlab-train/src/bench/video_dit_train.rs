//! `video-dit-train`: a DDPM training step of the video DiT for Moving MNIST clips
//! `[8, 1, 32, 32]` (Peebles & Xie 2023, arXiv:2212.09748, with ViViT's tubelet embedding,
//! Arnab et al. 2021, arXiv:2103.15691): DiT-XS (width 128, 4 blocks, 4 heads), 4x4 patches,
//! tubelets of 2 frames, joint attention over all 4 x 8 x 8 = 256 spacetime tokens; batch
//! 16, unconditional: eps-MSE, backward, Adam, EMA. Its twin is `DitTorch` in
//! scripts/bench/torch_bench.py.

use candle_core::{Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{Dit, DitConfig, VideoAttention};

use super::{adam, Workload, EMA_DECAY, LR};
use crate::ema::Ema;

/// Batch and clip shape `[T, C, H, W]` of the workload.
const B: usize = 16;
const SHAPE: [usize; 4] = [8, 1, 32, 32];

/// The network of the workload: DiT-XS/4 with 2-frame tubelets and joint attention.
pub fn config() -> Result<DitConfig> {
    let mut cfg = DitConfig::size("xs", 4)?;
    cfg.tubelet = 2;
    cfg.attention = VideoAttention::Joint;
    Ok(cfg)
}

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let cfg = config()?;
    let ps = ParamStore::new(0, &dev);
    let net = Dit::new(&cfg, &SHAPE, SHAPE[1], ps.vb().pp("net"))?;
    let shadow = ParamStore::new(0, &dev);
    Dit::new(&cfg, &SHAPE, SHAPE[1], shadow.vb().pp("net"))?;
    let ema = Ema::new(&shadow, &ps, EMA_DECAY)?;
    let dims = [B, SHAPE[0], SHAPE[1], SHAPE[2], SHAPE[3]];
    let x = rng.normal_tensor(&dims, &dev)?;
    let eps = rng.normal_tensor(&dims, &dev)?;
    let t: Vec<f32> = (0..B).map(|_| rng.below(1000) as f32).collect();
    let t = Tensor::from_vec(t, B, &dev)?;
    let mut opt = adam(&ps)?;
    let flop = 3.0 * cfg.forward_flops(B, &SHAPE, 0);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let loss = (net.forward(&x, &t)? - &eps)?.sqr()?.mean_all()?;
            let n = opt.t;
            opt.step(&loss.backward()?, LR, 1.0)?;
            ema.update(n)?;
            Ok(())
        }),
    })
}
