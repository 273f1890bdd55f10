//! Down- and upsampling layers of the DDPM U-Net.
//!
//! As in Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239),
//! following the U-Net of Ronneberger et al. 2015 (arXiv:1505.04597): downsampling is a
//! stride-2 3x3 convolution with padding 1 (`H -> ceil(H / 2)`, so odd sizes work: 7 -> 4),
//! upsampling is nearest-neighbour x2 followed by a 3x3 convolution. When the target (skip)
//! size is odd the x2 result is cropped to it. On CPU f32 the nearest x2 (+ crop) is
//! genlab-kernels' `upsample_nearest2x`, whose backward sums each 2x2 block (candle's
//! `upsample_nearest2d` backward is a grouped convolution that took 10x the forward time,
//! and has no backward for non-integer factors); elsewhere candle's op plus `narrow` is used.
//!
//! Parameter names: `conv` in both.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::resblock::conv3x3;

/// Stride-2 3x3 convolution: `[B, C, H, W]` -> `[B, C, ceil(H/2), ceil(W/2)]`.
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv,
    /// Stable Diffusion's autoencoder: zero-pad one row and column at the bottom and right,
    /// then convolve without padding (`H -> floor(H / 2)` for even H, the same size as the
    /// symmetric padding but shifted by one pixel).
    pad_right_bottom: bool,
}

impl Downsample {
    pub fn new(channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            conv: Conv::new(channels, channels, 3, 2, 1, vb.pp("conv"))?,
            pad_right_bottom: false,
        })
    }

    /// The downsampler of diffusers' `Encoder` (`Downsample2D(padding=0)`): pad right and
    /// bottom by one, 3x3 stride-2 convolution without padding.
    pub fn new_right_bottom(channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            conv: Conv::new(channels, channels, 3, 2, 0, vb.pp("conv"))?,
            pad_right_bottom: true,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.pad_right_bottom {
            let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest x2 then 3x3 convolution: `[B, C, H, W]` -> `[B, C, out_h, out_w]` with
/// `out_h <= 2H`, `out_w <= 2W` (normally exactly `2H`, `2W`).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv,
}

impl Upsample {
    pub fn new(channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            conv: conv3x3(channels, channels, vb.pp("conv"))?,
        })
    }

    /// Upsamples to exactly `(out_h, out_w)`, the size of the matching skip tensor.
    pub fn forward(&self, x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
        // [B, C, H, W] -> [B, C, out_h, out_w]
        self.conv.forward(&upsample_nearest(x, out_h, out_w)?)
    }
}

/// candle's nearest x2 (`[B, C, H, W]` -> `[B, C, 2H, 2W]`) then a crop to `out_h x out_w`:
/// the reference the CPU kernel is tested against.
pub fn upsample_reference(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    // [B, C, H, W] -> [B, C, 2H, 2W]
    let mut x = x.upsample_nearest2d(2 * h, 2 * w)?;
    if out_h != 2 * h {
        // [B, C, 2H, 2W] -> [B, C, out_h, 2W]
        x = x.narrow(2, 0, out_h)?;
    }
    if out_w != 2 * w {
        // [B, C, out_h, 2W] -> [B, C, out_h, out_w]
        x = x.narrow(3, 0, out_w)?;
    }
    Ok(x)
}

/// Nearest x2 then a crop to `out_h x out_w` (`<= 2H`, `<= 2W`), without the convolution:
/// `genlab_kernels::upsample_nearest2x` on CPU f32, [`upsample_reference`] elsewhere (public
/// for tests).
pub fn upsample_nearest(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if out_h > 2 * h || out_w > 2 * w || out_h == 0 || out_w == 0 {
        candle_core::bail!("upsample: cannot go from {h}x{w} to {out_h}x{out_w} by a factor of 2");
    }
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return upsample_reference(x, out_h, out_w);
    }
    genlab_kernels::upsample_nearest2x(x, out_h, out_w)
}
