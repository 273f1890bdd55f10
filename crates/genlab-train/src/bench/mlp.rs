//! `mlp`: Linear 2-256-256-2 with SiLU, batch 512, MSE, backward, Adam.

use candle_core::Device;

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::flops::linear_flops;
use genlab_nn::{silu, Linear};

use super::{adam, Workload, LR};

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let (b, h) = (512, 256);
    let ps = ParamStore::new(0, &dev);
    let vb = ps.vb();
    let l1 = Linear::new(2, h, vb.pp("l1"))?;
    let l2 = Linear::new(h, h, vb.pp("l2"))?;
    let l3 = Linear::new(h, 2, vb.pp("l3"))?;
    let x = rng.normal_tensor(&[b, 2], &dev)?;
    let y = rng.normal_tensor(&[b, 2], &dev)?;
    let mut opt = adam(&ps)?;
    let flop = 3.0 * linear_flops(b, &[(2, h), (h, h), (h, 2)]);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let out = l3.forward(&silu(&l2.forward(&silu(&l1.forward(&x)?)?)?)?)?;
            let loss = (out - &y)?.sqr()?.mean_all()?;
            opt.step(&loss.backward()?, LR, 1.0)?;
            Ok(())
        }),
    })
}
