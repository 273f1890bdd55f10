//! `attention`: the U-Net's attention block, 64 channels at 14x14, batch 64: forward +
//! backward.

use candle_core::Device;

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::flops::attention_flops;
use genlab_nn::AttentionBlock;

use super::Workload;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let (b, c, hw) = (64, 64, 14);
    let ps = ParamStore::new(0, &dev);
    let block = AttentionBlock::new(c, 1, 8, ps.vb())?;
    let x = rng.normal_tensor(&[b, c, hw, hw], &dev)?;
    let flop = 3.0 * attention_flops(b, c, hw * hw);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let loss = block.forward(&x)?.sqr()?.mean_all()?;
            loss.backward()?;
            Ok(())
        }),
    })
}
