//! Down- and upsampling layers of the DDPM U-Net.
//!
//! As in Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239),
//! following the U-Net of Ronneberger et al. 2015 (arXiv:1505.04597): downsampling is a
//! stride-2 3x3 convolution with padding 1 (`H -> ceil(H / 2)`, so odd sizes work: 7 -> 4),
//! upsampling is nearest-neighbour x2 followed by a 3x3 convolution. When the target (skip)
//! size is odd the x2 result is cropped to it. The nearest x2 (+ crop) is a small CPU kernel
//! whose backward sums each 2x2 block: candle's `upsample_nearest2d` backward is a grouped
//! convolution that took 10x the forward time (and has no backward for non-integer factors);
//! elsewhere than CPU f32, candle's op plus `narrow` is used.
//!
//! Parameter names: `conv` in both.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::cpu::{contiguous_f32, par_chunks_mut};
use crate::resblock::conv3x3;

/// Nearest-neighbour x2 of `[B, C, H, W]` cropped to `[B, C, oh, ow]` (`oh <= 2H`, `ow <= 2W`).
struct Nearest2x {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl CustomOp1 for Nearest2x {
    fn name(&self) -> &'static str {
        "genlab-nearest2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "upsample")?;
        let (b, c) = (l.dims()[0], l.dims()[1]);
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        let mut y = vec![0f32; b * c * ohw];
        par_chunks_mut(
            &mut y,
            ohw,
            || (),
            |pl, out, _| {
                let src = &x[pl * hw..][..hw];
                for (oy, row) in out.chunks_mut(self.ow).enumerate() {
                    let srow = &src[(oy / 2) * self.w..][..self.w];
                    for (ox, v) in row.iter_mut().enumerate() {
                        *v = srow[ox / 2];
                    }
                }
            },
        );
        Ok((CpuStorage::F32(y), Shape::from((b, c, self.oh, self.ow))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let dx = grad
            .contiguous()?
            .apply_op1_no_bwd(&Sum2x2 { h, w, oh, ow })?;
        // [B, C, H, W] (already; the reshape only restates the argument's shape)
        Ok(Some(dx.reshape(arg.shape())?))
    }
}

/// The adjoint of [`Nearest2x`]: each input pixel receives the sum of its (cropped) 2x2 block.
struct Sum2x2 {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl CustomOp1 for Sum2x2 {
    fn name(&self) -> &'static str {
        "genlab-sum2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = contiguous_f32(s, l, "upsample backward")?;
        let (b, c) = (l.dims()[0], l.dims()[1]);
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        let mut dx = vec![0f32; b * c * hw];
        par_chunks_mut(
            &mut dx,
            hw,
            || (),
            |pl, out, _| {
                let src = &dy[pl * ohw..][..ohw];
                for (oy, row) in src.chunks(self.ow).enumerate() {
                    let drow = &mut out[(oy / 2) * self.w..][..self.w];
                    for (ox, v) in row.iter().enumerate() {
                        drow[ox / 2] += v;
                    }
                }
            },
        );
        Ok((CpuStorage::F32(dx), Shape::from((b, c, self.h, self.w))))
    }
}

/// Stride-2 3x3 convolution: `[B, C, H, W]` -> `[B, C, ceil(H/2), ceil(W/2)]`.
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv,
}

impl Downsample {
    pub fn new(channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            conv: Conv::new(channels, channels, 3, 2, 1, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward(x)
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
/// the CPU kernel used by [`Upsample`] (public for tests).
pub fn upsample_nearest(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if out_h > 2 * h || out_w > 2 * w || out_h == 0 || out_w == 0 {
        candle_core::bail!("upsample: cannot go from {h}x{w} to {out_h}x{out_w} by a factor of 2");
    }
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return upsample_reference(x, out_h, out_w);
    }
    x.contiguous()?.apply_op1(Nearest2x {
        h,
        w,
        oh: out_h,
        ow: out_w,
    })
}
