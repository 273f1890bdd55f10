//! `dit-train`: a DDPM training step of the class-conditional DiT-S/4 (Peebles & Xie 2023,
//! arXiv:2212.09748; `DitConfig::size("s", 4)`: width 192, 6 blocks, 3 heads, 49 tokens
//! of 4x4 patches) on MNIST-size images, batch 32: the label embedding (11 x 192, the 10
//! digits and the null label, added to the time embedding as `genlab_models`' `Ddpm` does),
//! eps-MSE, backward, Adam, EMA. Its twin is `DitTorch` in scripts/bench/torch_bench.py.

use candle_core::{DType, Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{Dit, DitConfig};

use super::{adam, Workload, EMA_DECAY, LR};
use crate::ema::Ema;

/// Batch and example shape of the workload.
const B: usize = 32;
const SHAPE: [usize; 3] = [1, 28, 28];
/// The digits, plus the "no label" row.
const CLASSES: usize = 10;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let cfg = DitConfig::size("s", 4)?;
    let make = |ps: &ParamStore| -> Result<(Dit, candle_nn::Embedding)> {
        let vb = ps.vb();
        let net = Dit::new(&cfg, &SHAPE, SHAPE[0], vb.pp("net"))?;
        let emb = candle_nn::embedding(CLASSES + 1, net.temb_dim(), vb.pp("label_emb"))?;
        Ok((net, emb))
    };
    let ps = ParamStore::new(0, &dev);
    let (net, emb) = make(&ps)?;
    let shadow = ParamStore::new(0, &dev);
    make(&shadow)?;
    let ema = Ema::new(&shadow, &ps, EMA_DECAY)?;
    let x = rng.normal_tensor(&[B, 1, 28, 28], &dev)?;
    let eps = rng.normal_tensor(&[B, 1, 28, 28], &dev)?;
    let t: Vec<f32> = (0..B).map(|_| rng.below(1000) as f32).collect();
    let t = Tensor::from_vec(t, B, &dev)?;
    let labels: Vec<u32> = (0..B)
        .map(|_| rng.below(CLASSES as u64 + 1) as u32)
        .collect();
    let labels = Tensor::from_vec(labels, B, &dev)?.to_dtype(DType::U32)?;
    let mut opt = adam(&ps)?;
    let flop = 3.0 * cfg.forward_flops(B, &SHAPE, 0);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let extra = candle_nn::Module::forward(&emb, &labels)?;
            let pred = net.forward_with(&x, &t, Some(&extra), None)?;
            let loss = (pred - &eps)?.sqr()?.mean_all()?;
            let n = opt.t;
            opt.step(&loss.backward()?, LR, 1.0)?;
            ema.update(n)?;
            Ok(())
        }),
    })
}
