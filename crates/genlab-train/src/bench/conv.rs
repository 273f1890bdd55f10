//! `conv`: 3 convolutions + 1 transposed convolution with a skip, 64x1x28x28, MSE,
//! backward, Adam.

use candle_core::Device;

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::flops::conv_flops;
use genlab_nn::{silu, Conv, ConvTranspose};

use super::{adam, Workload, LR};

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let b = 64;
    let ps = ParamStore::new(0, &dev);
    let vb = ps.vb();
    let c1 = Conv::new(1, 32, 3, 1, 1, vb.pp("c1"))?;
    let c2 = Conv::new(32, 64, 3, 2, 1, vb.pp("c2"))?;
    let up = ConvTranspose::new(64, 32, 4, 2, 1, vb.pp("up"))?;
    let c3 = Conv::new(32, 1, 3, 1, 1, vb.pp("c3"))?;
    let x = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
    let y = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
    let mut opt = adam(&ps)?;
    let fwd = conv_flops(b, 1, 32, 3, 28 * 28)
        + conv_flops(b, 32, 64, 3, 14 * 14)
        // transposed: every input position meets every output channel and tap
        + conv_flops(b, 32, 64, 4, 14 * 14)
        + conv_flops(b, 32, 1, 3, 28 * 28);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: 3.0 * fwd,
        iter: Box::new(move || {
            let h1 = silu(&c1.forward(&x)?)?;
            let h2 = silu(&c2.forward(&h1)?)?;
            let h3 = silu(&up.forward(&h2)?)?;
            let out = c3.forward(&(h3 + &h1)?)?;
            let loss = (out - &y)?.sqr()?.mean_all()?;
            opt.step(&loss.backward()?, LR, 1.0)?;
            Ok(())
        }),
    })
}
