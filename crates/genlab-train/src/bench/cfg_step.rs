//! `cfg-step`: one classifier-free guided sampling step (Ho & Salimans 2022) of the
//! class-conditional MNIST DDPM (the `unet-train` U-Net plus an 11 x 64 label embedding
//! added to its time embedding): 64 samples of digit 3 at guidance w = 3, so one network
//! call on a batch of 128 (the labels and the null label), the guided combination, and the
//! DDIM update (a one-step grid: t = 999 to x_0). No gradients. It runs the code
//! `genlab sample --class 3 --guidance 3` runs: `Ddpm` behind `ClassifierFree`.

use candle_core::{DType, Device};

use genlab_core::{Condition, Error, ParamStore, Result, Rng};
use genlab_models::diffusion::{Ddpm, DdpmConfig, NetConfig};
use genlab_models::DataSpace;
use genlab_nn::UNetConfig;
use genlab_sampling::guidance::ClassifierFree;
use genlab_sampling::{build_sampler, SamplerOptions};

use super::Workload;

/// Batch, class and guidance scale of the step.
const BATCH: usize = 64;
const CLASS: u32 = 3;
const GUIDANCE: f64 = 3.0;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let data = DataSpace {
        shape: vec![1, 28, 28],
        images: true,
    };
    let mut cfg = DdpmConfig::for_data(&data);
    cfg.net = NetConfig::Unet(UNetConfig::mnist_small());
    cfg.num_classes = 10;
    let ps = ParamStore::new(0, &dev);
    Ddpm::new(&cfg, ps.vb())?;
    // Plain tensors, not variables, as a loaded checkpoint: no autograd graph.
    let vb = candle_nn::VarBuilder::from_tensors(ps.tensors(), DType::F32, &dev);
    let model = Ddpm::new(&cfg, vb)?;
    let opts = SamplerOptions {
        steps: 1,
        eta: 0.0,
        clip_x0: None,
        ..Default::default()
    };
    let sampler = build_sampler("ddim", &opts)?;
    let x_t = Rng::new(0).normal_tensor(&[BATCH, 1, 28, 28], &dev)?;
    let cond = Condition::class_repeated(CLASS, BATCH, &dev)?;
    let net = match &cfg.net {
        NetConfig::Unet(u) => u.clone(),
        NetConfig::Mlp(_) | NetConfig::CondUnet(_) | NetConfig::Dit(_) => {
            unreachable!("set to a U-Net above")
        }
    };
    // The network runs on both halves: twice the batch.
    let flop = net.forward_flops(2 * BATCH, 1, 28);
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let guided = ClassifierFree::new(&model, &cond, GUIDANCE)?;
            let out = sampler.sample(
                &guided,
                model.schedule(),
                x_t.clone(),
                &mut Rng::new(1),
                &mut |_, _| {},
            )?;
            if out.nfe != 1 {
                return Err(Error::Numeric(format!(
                    "the guided step ran {} network calls, 1 was asked",
                    out.nfe
                )));
            }
            Ok(())
        }),
    })
}
