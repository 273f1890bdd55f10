//! Nearest-neighbour x2 upsampling (with an optional crop) and its adjoint, the 2x2 block
//! sum: the resampling kernels of the DDPM U-Net.
//!
//! Algorithm: plain nearest-neighbour interpolation, `y[oy, ox] = x[oy / 2, ox / 2]`, as in
//! the U-Net of Ronneberger et al. 2015 (arXiv:1505.04597) used by Ho et al. 2020
//! (arXiv:2006.11239); the crop to `oh <= 2H`, `ow <= 2W` matches an odd skip size. Its
//! backward (the adjoint) gives each input pixel the sum of its (cropped) 2x2 output block,
//! and that sum's backward is the upsampling again. (candle 0.11.1's `upsample_nearest2d`
//! backward is a grouped convolution, 10x the forward time, with no backward for a
//! non-integer factor.)
//!
//! Layout conventions: `x [B, C, H, W]` -> `y [B, C, oh, ow]`, contiguous f32 on the CPU,
//! one `(b, c)` plane at a time; planes are split over [`crate::num_threads`] threads (all on
//! the calling thread with one thread or little data).

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use crate::par::{contiguous_f32, elementwise_parts, par_chunks_mut};

/// Nearest-neighbour x2 of `[B, C, H, W]` cropped to `[B, C, oh, ow]` (`oh <= 2H`, `ow <= 2W`).
/// Its backward is [`Sum2x2`].
#[derive(Debug, Clone, Copy)]
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

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "upsample")?;
        let (b, c) = (l.dims()[0], l.dims()[1]);
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        let mut y = vec![0f32; b * c * ohw];
        let parts = elementwise_parts(y.len());
        par_chunks_mut(
            &mut y,
            ohw,
            parts,
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

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let dx = grad.contiguous()?.apply_op1(Sum2x2 { h, w, oh, ow })?;
        // [B, C, H, W] (already; the reshape only restates the argument's shape)
        Ok(Some(dx.reshape(arg.shape())?))
    }
}

/// The adjoint of [`Nearest2x`]: each input pixel receives the sum of its (cropped) 2x2 block.
/// Its backward is [`Nearest2x`] again.
#[derive(Debug, Clone, Copy)]
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

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous_f32(s, l, "upsample backward")?;
        let (b, c) = (l.dims()[0], l.dims()[1]);
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        let mut dx = vec![0f32; b * c * hw];
        let parts = elementwise_parts(dy.len());
        par_chunks_mut(
            &mut dx,
            hw,
            parts,
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

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let dy = grad.contiguous()?.apply_op1(Nearest2x { h, w, oh, ow })?;
        // [B, C, oh, ow] (already; the reshape only restates the argument's shape)
        Ok(Some(dy.reshape(arg.shape())?))
    }
}

/// Nearest-neighbour x2 of `x [B, C, H, W]`, cropped to `[B, C, out_h, out_w]`
/// (`out_h <= 2H`, `out_w <= 2W`). CPU f32 only; differentiable (to any order).
pub fn upsample_nearest2x(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        bail!(
            "upsample_nearest2x: CPU f32 tensors only, got {:?} on {:?}",
            x.dtype(),
            x.device().location()
        )
    }
    let (_, _, h, w) = x.dims4()?;
    if out_h > 2 * h || out_w > 2 * w || out_h == 0 || out_w == 0 {
        bail!("upsample_nearest2x: cannot go from {h}x{w} to {out_h}x{out_w} by a factor of 2");
    }
    x.contiguous()?.apply_op1(Nearest2x {
        h,
        w,
        oh: out_h,
        ow: out_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_and_crops() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 24.0, &dev)
            .unwrap()
            .reshape((1, 2, 3, 4))
            .unwrap();
        let full = x.upsample_nearest2d(6, 8).unwrap();
        let got = upsample_nearest2x(&x, 5, 7).unwrap();
        let want = full.narrow(2, 0, 5).unwrap().narrow(3, 0, 7).unwrap();
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert!(upsample_nearest2x(&x, 7, 8).is_err());
    }

    /// The backward is the 2x2 block sum of the (cropped) gradient.
    #[test]
    fn backward_sums_blocks() {
        let dev = Device::Cpu;
        let x = candle_core::Var::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let y = upsample_nearest2x(x.as_tensor(), 3, 4).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let gx = grads.get(x.as_tensor()).unwrap();
        // Rows 0-1 feed input row 0 (4 outputs per pixel), row 2 feeds input row 1 (2 each).
        assert_eq!(
            gx.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0, 4.0, 2.0, 2.0]
        );
    }
}
