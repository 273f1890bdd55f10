//! `flow-train`: the MNIST flow preset (docs/flows.md), batch 64: NLL (variational
//! dequantisation), backward, Adam.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_models::flow::{flops::forward_flops, Flow, FlowConfig};
use genlab_models::DataSpace;

use super::{adam, Workload, LR};

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let b = 64;
    let cfg = FlowConfig::for_data(&DataSpace {
        shape: vec![1, 28, 28],
        images: true,
    });
    let ps = ParamStore::new(0, &dev);
    let flow = Flow::new(&cfg, ps.vb())?;
    // Pixels on MNIST's 256 levels, uniformly drawn (the speed does not depend on them).
    let k: Vec<f32> = (0..b * 28 * 28)
        .map(|_| rng.below(256) as f32 / 255.0)
        .collect();
    let x = Tensor::from_vec(k, (b, 1, 28, 28), &dev)?;
    // ActNorm's data-dependent initialisation, once, outside the timed iterations
    // (training does it on the first batch).
    let vars: HashMap<String, candle_core::Var> = ps.vars().into_iter().collect();
    for (name, v) in flow.data_init(&x)? {
        let var = vars
            .get(&name)
            .ok_or_else(|| Error::InvalidInput(format!("flow data init: no variable `{name}`")))?;
        var.set(&v)?;
    }
    let mut opt = adam(&ps)?;
    let mut noise = Rng::new(1); // the dequantisation noise of each step
    let flop = 3.0 * forward_flops(&cfg, b)?;
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let t = flow.terms(&x, &mut noise)?;
            opt.step(&t.loss.backward()?, LR, 1.0)?;
            Ok(())
        }),
    })
}
