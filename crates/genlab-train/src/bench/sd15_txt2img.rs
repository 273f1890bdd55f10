//! `sd15-txt2img`: a whole Stable Diffusion 1.5 text-to-image run without the text encoder:
//! 20 DDIM steps configured from SD 1.5's scheduler_config.json
//! (`genlab_sampling::SchedulerJson`: scaled-linear betas, "leading" spacing with
//! steps_offset 1, set_alpha_to_one false) of the `sd15-unet-step` U-Net with
//! classifier-free guidance (scale 7.5; one batch-2 network call per step on the
//! unconditional and conditional 77x768 contexts, random here: the CLIP text encoder pass,
//! ~0.5% of the work, is omitted), then the `sd-vae-decode-512` decoder on latents / 0.18215.
//! Random weights; one 512x512 image. The twin is diffusers' U-Net, DDIMScheduler and
//! AutoencoderKL in the same loop (scripts/bench/torch_bench.py).

use candle_core::{DType, Device, Tensor};

use genlab_core::{Error, Result, Rng};
use genlab_nn::CondUNet;
use genlab_sampling::{build_sampler, Denoiser, SamplerOptions, SchedulerJson};

use super::sd15_unet_step::{sd15_config, sd15_unet, LATENT, TOKENS};
use super::sd_vae_decode::{decoder_flops, sd_vae_decoder};
use super::Workload;

/// runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json.
pub(crate) const SD15_SCHEDULER: &str = r#"{"_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#;
const STEPS: usize = 20;
const GUIDANCE: f64 = 7.5;
/// SD's latent scaling factor (`vae.config.scaling_factor`).
const VAE_SCALE: f64 = 0.18215;

/// The U-Net with classifier-free guidance: one batch-2 call on [uncond, cond].
struct Guided {
    net: CondUNet,
    ctx: Tensor,
}

impl Denoiser for Guided {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let xx = Tensor::cat(&[x, x], 0)?;
        let tt = Tensor::full(t as f32, 2, x.device())?.to_dtype(DType::F32)?;
        let out = self.net.forward(&xx, &tt, Some(&self.ctx), None, None)?;
        let (u, c) = (out.narrow(0, 0, 1)?, out.narrow(0, 1, 1)?);
        Ok((&u + ((c - &u)? * GUIDANCE)?)?)
    }
}

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let (net, unet_params) = sd15_unet(&dev)?;
    let (dec, vae_params, sizes) = sd_vae_decoder(&dev)?;
    let cfg = sd15_config();
    let sched_json: SchedulerJson = SD15_SCHEDULER.parse()?;
    let schedule = sched_json.schedule()?;
    let opts = sched_json.sampler_options("ddim", STEPS, &SamplerOptions::default())?;
    let sampler = build_sampler("ddim", &opts)?;
    let ctx = rng.normal_tensor(&[2, TOKENS, cfg.cross_attention_dim], &dev)?;
    let x_t = rng.normal_tensor(&[1, 4, LATENT, LATENT], &dev)?;
    let model = Guided { net, ctx };
    let flop = STEPS as f64 * cfg.forward_flops(2, LATENT, LATENT, TOKENS) + decoder_flops(1);
    Ok(Workload {
        params: unet_params + vae_params,
        flop_per_iter: flop,
        iter: Box::new(move || {
            let out = sampler.sample(
                &model,
                &schedule,
                x_t.clone(),
                &mut Rng::new(1),
                &mut |_, _| {},
            )?;
            if out.nfe != STEPS {
                return Err(Error::Numeric(format!(
                    "DDIM ran {} steps, {STEPS} were asked",
                    out.nfe
                )));
            }
            dec.forward(&(out.x / VAE_SCALE)?, &sizes)?;
            Ok(())
        }),
    })
}
