//! `ddim50`: the `unet-train` U-Net sampling 64 images with 50 DDIM steps, no gradients.

use candle_core::{DType, Device, Tensor};

use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::{UNet, UNetConfig};
use genlab_sampling::{build_sampler, Denoiser, NoiseSchedule, SamplerOptions};

use super::Workload;

/// The U-Net as an epsilon predictor for the sampler.
struct UNetEps(UNet);

impl Denoiser for UNetEps {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let b = x.dim(0)?;
        let tt = Tensor::full(t as f32, b, x.device())?.to_dtype(DType::F32)?;
        Ok(self.0.forward(x, &tt)?.detach())
    }
}

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let (b, steps) = (64, 50);
    let cfg = UNetConfig::mnist_small();
    let ps = ParamStore::new(0, &dev);
    UNet::new(&cfg, 1, 1, ps.vb())?;
    // Sampling runs on plain tensors, not variables (as `genlab sample` loads a
    // checkpoint): no autograd graph is recorded, so activations are freed as the
    // forward pass goes.
    let vb = candle_nn::VarBuilder::from_tensors(ps.tensors(), DType::F32, &dev);
    let net = UNet::new(&cfg, 1, 1, vb)?;
    let schedule = NoiseSchedule::new(&Default::default(), 1000)?;
    let opts = SamplerOptions {
        steps,
        eta: 0.0,
        clip_x0: None,
        ..Default::default()
    };
    let sampler = build_sampler("ddim", &opts)?;
    let x_t = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
    let params = ps.num_params();
    let flop = steps as f64 * cfg.forward_flops(b, 1, 28);
    let model = UNetEps(net);
    Ok(Workload {
        params,
        flop_per_iter: flop,
        iter: Box::new(move || {
            let out = sampler.sample(
                &model,
                &schedule,
                x_t.clone(),
                &mut Rng::new(1),
                &mut |_, _| {},
            )?;
            if out.nfe != steps {
                return Err(Error::Numeric(format!(
                    "DDIM ran {} steps, {steps} were asked",
                    out.nfe
                )));
            }
            Ok(())
        }),
    })
}
