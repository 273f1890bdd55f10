//! `unet-train`: the MNIST DDPM U-Net (`UNetConfig::mnist_small`), batch 32: MSE to a noise
//! target, backward, Adam, EMA.

use candle_core::{Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{UNet, UNetConfig};

use super::{adam, Workload, EMA_DECAY, LR};
use crate::ema::Ema;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let b = 32;
    let cfg = UNetConfig::mnist_small();
    let ps = ParamStore::new(0, &dev);
    let net = UNet::new(&cfg, 1, 1, ps.vb())?;
    let shadow = ParamStore::new(0, &dev);
    UNet::new(&cfg, 1, 1, shadow.vb())?;
    let ema = Ema::new(&shadow, &ps, EMA_DECAY)?;
    let x = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
    let eps = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
    let t: Vec<f32> = (0..b).map(|_| rng.below(1000) as f32).collect();
    let t = Tensor::from_vec(t, b, &dev)?;
    let mut opt = adam(&ps)?;
    let flop = 3.0 * cfg.forward_flops(b, 1, 28);
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
