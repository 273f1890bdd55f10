//! `sd-vae-decode-512`: Stable Diffusion's VAE decoder (diffusers' `AutoencoderKL` of SD
//! 1.x/2.x: block_out_channels [128, 256, 512, 512], layers_per_block 2, 4 latent channels,
//! 32 groups, single-head attention in the middle block), random weights from genlab's
//! seeded initialisation, decoding one 4x64x64 latent to a 3x512x512 image, no gradients.
//! genlab's `autoencoder::nets::Decoder` has no `post_quant_conv` (a 1x1 4 -> 4 convolution,
//! 0.03% of the work); the twin (scripts/bench/torch_bench.py) times
//! `AutoencoderKL.decode`, which includes it.

use candle_core::{DType, Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_models::autoencoder::nets::{level_sizes, Decoder, NetSizes};
use genlab_nn::flops::{attention_flops, conv_flops};

use super::sd15_unet_step::plain_weights;
use super::Workload;

/// Image side and latent side.
const IMAGE: usize = 512;
const LATENT: usize = 64;

pub(crate) fn sd_vae_sizes() -> NetSizes {
    NetSizes {
        image_channels: 3,
        channels: vec![128, 256, 512, 512],
        layers_per_block: 2,
        groups: 32,
        mid_attention: true,
        // Stable Diffusion's arithmetic (1e-6 attention norm; right-bottom padding is the
        // encoder's and does not change the decoder's work).
        upstream: true,
    }
}

/// The decoder, its parameter count and its upsampling sizes.
pub(crate) type SizedDecoder = (Decoder, usize, Vec<(usize, usize)>);

/// The decoder on plain tensors, its parameter count and its upsampling sizes for a
/// 512x512 image.
pub(crate) fn sd_vae_decoder(dev: &Device) -> Result<SizedDecoder> {
    let s = sd_vae_sizes();
    let ps = ParamStore::new(1, dev);
    Decoder::new(&s, 4, ps.vb())?;
    let params = ps.num_params();
    let vb = candle_nn::VarBuilder::from_tensors(plain_weights(&ps), DType::F32, dev);
    let dec = Decoder::new(&s, 4, vb)?;
    let mut sizes = level_sizes(IMAGE, IMAGE, s.channels.len());
    sizes.reverse();
    sizes.remove(0); // the latent's own size
    Ok((dec, params, sizes))
}

/// Forward FLOPs of the decoder on `b` latents (convolutions and the attention products).
pub(crate) fn decoder_flops(b: usize) -> f64 {
    let s = sd_vae_sizes();
    let res = |ci: usize, co: usize, n: usize| {
        conv_flops(b, ci, co, 3, n)
            + conv_flops(b, co, co, 3, n)
            + if ci != co {
                conv_flops(b, ci, co, 1, n)
            } else {
                0.0
            }
    };
    let mut ch = *s.channels.last().expect("levels");
    let mut side = LATENT;
    let mut f = conv_flops(b, 4, ch, 3, side * side);
    f += 2.0 * res(ch, ch, side * side) + attention_flops(b, ch, side * side);
    let last = s.channels.len() - 1;
    for (k, &c) in s.channels.iter().rev().enumerate() {
        for _ in 0..=s.layers_per_block {
            f += res(ch, c, side * side);
            ch = c;
        }
        if k != last {
            side *= 2;
            f += conv_flops(b, ch, ch, 3, side * side);
        }
    }
    f + conv_flops(b, ch, s.image_channels, 3, side * side)
}

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let (dec, params, sizes) = sd_vae_decoder(&dev)?;
    let z = Rng::new(0).normal_tensor(&[1, 4, LATENT, LATENT], &dev)?;
    Ok(Workload {
        params,
        flop_per_iter: decoder_flops(1),
        iter: Box::new(move || {
            let img: Tensor = dec.forward(&z, &sizes)?;
            debug_assert_eq!(img.dims(), &[1, 3, IMAGE, IMAGE]);
            Ok(())
        }),
    })
}
