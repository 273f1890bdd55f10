//! `sd15-unet-step`: one eval forward pass of the cross-attention U-Net with Stable
//! Diffusion 1.5's exact configuration (diffusers' `UNet2DConditionModel` of
//! runwayml/stable-diffusion-v1-5: block_out_channels [320, 640, 1280, 1280],
//! layers_per_block 2, cross-attention on the first three levels, 8 heads,
//! cross_attention_dim 768, 32 groups, norm_eps 1e-5; 859,520,964 parameters), random weights
//! from genlab's seeded initialisation, on one 4x64x64 latent (a 512x512 image) with a
//! 77x768 text context, no gradients (batch 1, no classifier-free guidance: one network
//! call). Its twin is diffusers' model with the same config (scripts/bench/torch_bench.py).

use candle_core::{DType, Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{CondUNet, CondUNetConfig};

use super::Workload;

/// Latent side (512 / 8) and text tokens of SD 1.x.
pub(crate) const LATENT: usize = 64;
pub(crate) const TOKENS: usize = 77;

/// SD 1.5's U-Net configuration.
pub(crate) fn sd15_config() -> CondUNetConfig {
    CondUNetConfig {
        in_channels: 4,
        out_channels: 4,
        block_out_channels: vec![320, 640, 1280, 1280],
        layers_per_block: 2,
        cross_attention: vec![true, true, true, false],
        num_attention_heads: vec![8],
        cross_attention_dim: 768,
        transformer_layers_per_block: 1,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        use_linear_projection: false,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        num_class_embeds: 0,
    }
}

/// The store's values as plain tensors: the same storage, but not variables, so that no
/// autograd graph is recorded (a `Var`'s tensor keeps its variable flag when cloned, and a
/// graph keeps every activation alive until the output is dropped, and across sampling
/// steps when the output feeds the next step).
pub(crate) fn plain_weights(ps: &ParamStore) -> std::collections::HashMap<String, Tensor> {
    ps.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.detach()))
        .collect()
}

/// The SD 1.5 U-Net on plain tensors (no autograd graph, as a loaded checkpoint runs) and
/// its parameter count.
pub(crate) fn sd15_unet(dev: &Device) -> Result<(CondUNet, usize)> {
    let cfg = sd15_config();
    let ps = ParamStore::new(0, dev);
    CondUNet::new(&cfg, ps.vb())?;
    let params = ps.num_params();
    let vb = candle_nn::VarBuilder::from_tensors(plain_weights(&ps), DType::F32, dev);
    Ok((CondUNet::new(&cfg, vb)?, params))
}

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let (net, params) = sd15_unet(&dev)?;
    let cfg = sd15_config();
    let x = rng.normal_tensor(&[1, 4, LATENT, LATENT], &dev)?;
    let ctx = rng.normal_tensor(&[1, TOKENS, cfg.cross_attention_dim], &dev)?;
    let t = Tensor::new(&[981f32], &dev)?;
    let flop = cfg.forward_flops(1, LATENT, LATENT, TOKENS);
    Ok(Workload {
        params,
        flop_per_iter: flop,
        iter: Box::new(move || {
            net.forward(&x, &t, Some(&ctx), None, None)?;
            Ok(())
        }),
    })
}
