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

use candle_core::{bail, Result, Shape, Tensor};

use crate::op::{apply, require_f32_cpu, Arg, Grads, Kernel};
use crate::par::{elementwise_parts, par_chunks_mut};

/// One direction of the pair on `[B, C, H, W]` <-> `[B, C, oh, ow]` (`oh <= 2H`,
/// `ow <= 2W`): nearest-neighbour x2 cropped ([`Resample::Up`]) or its adjoint, the 2x2 block
/// sum ([`Resample::Sum`]). The backward of each is the other.
#[derive(Debug, Clone, Copy)]
enum Resample {
    /// `[B, C, H, W] -> [B, C, oh, ow]`, `y[oy, ox] = x[oy / 2, ox / 2]`.
    Up(Geom),
    /// `[B, C, oh, ow] -> [B, C, H, W]`: each input pixel receives the sum of its (cropped)
    /// 2x2 block.
    Sum(Geom),
}

/// The small and the large plane of a [`Resample`].
#[derive(Debug, Clone, Copy)]
struct Geom {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Kernel for Resample {
    fn name(&self) -> &'static str {
        match self {
            Resample::Up(_) => "genlab-nearest2x",
            Resample::Sum(_) => "genlab-sum2x2",
        }
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let src = args[0].f32(self.name())?;
        let (b, c) = (args[0].shape().dims()[0], args[0].shape().dims()[1]);
        let (Resample::Up(g) | Resample::Sum(g)) = *self;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        // Planes are split by the size of the large side (the output of Up, the input of Sum).
        let parts = elementwise_parts(b * c * ohw);
        let (plane, shape) = match self {
            Resample::Up(_) => (ohw, (b, c, g.oh, g.ow)),
            Resample::Sum(_) => (hw, (b, c, g.h, g.w)),
        };
        let mut out = vec![0f32; b * c * plane];
        par_chunks_mut(
            &mut out,
            plane,
            parts,
            || (),
            |pl, out, _| match self {
                Resample::Up(_) => {
                    let src = &src[pl * hw..][..hw];
                    for (oy, row) in out.chunks_mut(g.ow).enumerate() {
                        let srow = &src[(oy / 2) * g.w..][..g.w];
                        for (ox, v) in row.iter_mut().enumerate() {
                            *v = srow[ox / 2];
                        }
                    }
                }
                Resample::Sum(_) => {
                    let src = &src[pl * ohw..][..ohw];
                    for (oy, row) in src.chunks(g.ow).enumerate() {
                        let drow = &mut out[(oy / 2) * g.w..][..g.w];
                        for (ox, v) in row.iter().enumerate() {
                            drow[ox / 2] += v;
                        }
                    }
                }
            },
        );
        Ok((out, Shape::from(shape)))
    }

    fn backward(&self, args: &[&Tensor], _res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let adjoint = match *self {
            Resample::Up(g) => Resample::Sum(g),
            Resample::Sum(g) => Resample::Up(g),
        };
        // The argument's shape (already; the reshape only restates it).
        let d = apply(adjoint, &[grad])?.reshape(args[0].shape())?;
        Ok(vec![Some(d)])
    }
}

/// Nearest-neighbour x2 of `x [B, C, H, W]`, cropped to `[B, C, out_h, out_w]`
/// (`out_h <= 2H`, `out_w <= 2W`). CPU f32 only; differentiable (to any order).
pub fn upsample_nearest2x(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    require_f32_cpu("upsample_nearest2x", &[x])?;
    let (_, _, h, w) = x.dims4()?;
    if out_h > 2 * h || out_w > 2 * w || out_h == 0 || out_w == 0 {
        bail!("upsample_nearest2x: cannot go from {h}x{w} to {out_h}x{out_w} by a factor of 2");
    }
    let g = Geom {
        h,
        w,
        oh: out_h,
        ow: out_w,
    };
    apply(Resample::Up(g), &[x])
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
