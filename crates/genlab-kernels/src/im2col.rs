//! `Im2Col` and `Col2Im`: the two linear, mutually adjoint custom candle ops
//! that turn a 2-D convolution into one matrix multiply.
//!
//! Layout conventions (NCHW input, square kernel `k`, zero padding `p`, stride `s`):
//!
//! - `x`: `[B, C, H, W]`, contiguous f32;
//! - `cols`: `[B*Ho*Wo, C*k*k]`, row-major, with row `(b*Ho + oy)*Wo + ox` and
//!   column `(c*k + ky)*k + kx` holding `x[b, c, oy*s + ky - p, ox*s + kx - p]`
//!   (zero where that lies in the padding). The column order matches
//!   `w.reshape((O, C*k*k))` for a weight `w` of shape `[O, C, k, k]`.
//!
//! `Col2Im` is the transpose (adjoint) of `Im2Col`: it scatter-adds every
//! column entry back onto the input pixel it was read from. Each op's
//! backward is the other one, so double backward through them is exact.
//!
//! Both kernels run on the CPU only and are split over cores with rayon:
//! `Im2Col` over output rows `(b, oy)`, `Col2Im` over input planes `(b, c)`
//! (each task owns the pixels it writes, so no atomics or locks are needed).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The geometry shared by `Im2Col` and `Col2Im`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// Checks the parameters and derives the output size
    /// `Ho = (H + 2p - k)/s + 1`, `Wo = (W + 2p - k)/s + 1`.
    pub fn new(
        (b, c, h, w): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        if k == 0 || stride == 0 {
            bail!("im2col: kernel size ({k}) and stride ({stride}) must be at least 1")
        }
        if h + 2 * padding < k || w + 2 * padding < k {
            bail!("im2col: kernel {k} larger than padded input {h}x{w} (padding {padding})")
        }
        let ho = (h + 2 * padding - k) / stride + 1;
        let wo = (w + 2 * padding - k) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            k,
            stride,
            padding,
            ho,
            wo,
        })
    }

    /// Number of rows of `cols`: one per output position, `B*Ho*Wo`.
    pub fn rows(&self) -> usize {
        self.b * self.ho * self.wo
    }

    /// Number of columns of `cols`: one per weight tap, `C*k*k`.
    pub fn cols(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Number of input elements, `B*C*H*W`.
    pub fn input_len(&self) -> usize {
        self.b * self.c * self.h * self.w
    }
}

/// Borrows the f32 data of a contiguous CPU storage, offset applied.
fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous (call .contiguous() first)"),
    }
}

/// im2col on raw slices: `x` is `[B, C, H, W]`, the result `[B*Ho*Wo, C*k*k]`.
pub(crate) fn im2col_f32(x: &[f32], g: &Geom) -> Vec<f32> {
    let Geom {
        c: nc,
        h,
        w,
        k,
        stride,
        padding,
        ho,
        wo,
        ..
    } = *g;
    let ckk = g.cols();
    let plane = h * w;
    // Zero-initialised: padding taps are simply never written.
    let mut out = vec![0f32; g.rows() * ckk];
    if out.is_empty() {
        return out;
    }
    // One task per output row (b, oy): a [Wo, C*k*k] block of `out`.
    out.par_chunks_mut(wo * ckk)
        .enumerate()
        .for_each(|(b_oy, block)| {
            let b = b_oy / ho;
            let oy = b_oy % ho;
            let xb = &x[b * nc * plane..(b + 1) * nc * plane];
            for ox in 0..wo {
                let row = &mut block[ox * ckk..(ox + 1) * ckk];
                // Leftmost input column of this window (may be in the padding).
                let ix0 = (ox * stride) as isize - padding as isize;
                let inside_x = ix0 >= 0 && ix0 as usize + k <= w;
                for ci in 0..nc {
                    let xc = &xb[ci * plane..(ci + 1) * plane];
                    for ky in 0..k {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        let src = &xc[iy as usize * w..(iy as usize + 1) * w];
                        let dst = &mut row[(ci * k + ky) * k..(ci * k + ky + 1) * k];
                        if inside_x {
                            let ix0 = ix0 as usize;
                            dst.copy_from_slice(&src[ix0..ix0 + k]);
                        } else {
                            for (kx, d) in dst.iter_mut().enumerate() {
                                let ix = ix0 + kx as isize;
                                if ix >= 0 && (ix as usize) < w {
                                    *d = src[ix as usize];
                                }
                            }
                        }
                    }
                }
            }
        });
    out
}

/// col2im on raw slices: `cols` is `[B*Ho*Wo, C*k*k]`, the result `[B, C, H, W]`,
/// with overlapping windows accumulated (`+=`).
pub(crate) fn col2im_f32(cols: &[f32], g: &Geom) -> Vec<f32> {
    let Geom {
        c: nc,
        h,
        w,
        k,
        stride,
        padding,
        ho,
        wo,
        ..
    } = *g;
    let ckk = g.cols();
    let kk = k * k;
    let plane = h * w;
    let mut out = vec![0f32; g.input_len()];
    if out.is_empty() {
        return out;
    }
    // One task per input plane (b, c): it owns every pixel it writes.
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(b_c, dst)| {
            let b = b_c / nc;
            let ci = b_c % nc;
            for oy in 0..ho {
                for ox in 0..wo {
                    let r = (b * ho + oy) * wo + ox;
                    let taps = &cols[r * ckk + ci * kk..r * ckk + (ci + 1) * kk];
                    let ix0 = (ox * stride) as isize - padding as isize;
                    let inside_x = ix0 >= 0 && ix0 as usize + k <= w;
                    for ky in 0..k {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        let drow = &mut dst[iy as usize * w..(iy as usize + 1) * w];
                        let src = &taps[ky * k..(ky + 1) * k];
                        if inside_x {
                            let ix0 = ix0 as usize;
                            for (d, s) in drow[ix0..ix0 + k].iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            for (kx, s) in src.iter().enumerate() {
                                let ix = ix0 + kx as isize;
                                if ix >= 0 && (ix as usize) < w {
                                    drow[ix as usize] += *s;
                                }
                            }
                        }
                    }
                }
            }
        });
    out
}

/// Custom op: `x [B, C, H, W] -> cols [B*Ho*Wo, C*k*k]`. Backward is [`Col2Im`].
#[derive(Debug, Clone, Copy)]
pub struct Im2Col {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "genlab-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(layout.shape().dims4()?, self.k, self.stride, self.padding)?;
        let x = contiguous_f32(self.name(), storage, layout)?;
        let cols = im2col_f32(x, &g);
        Ok((CpuStorage::F32(cols), Shape::from((g.rows(), g.cols()))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let op = Col2Im {
            dims: arg.dims4()?,
            k: self.k,
            stride: self.stride,
            padding: self.padding,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1(op)?))
    }
}

/// Custom op: `cols [B*Ho*Wo, C*k*k] -> x [B, C, H, W]` (scatter-add, the adjoint
/// of [`Im2Col`]). Backward is [`Im2Col`].
#[derive(Debug, Clone, Copy)]
pub struct Col2Im {
    /// The `(B, C, H, W)` of the image being reconstructed.
    pub dims: (usize, usize, usize, usize),
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "genlab-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(self.dims, self.k, self.stride, self.padding)?;
        let (rows, ncols) = layout.shape().dims2()?;
        if (rows, ncols) != (g.rows(), g.cols()) {
            bail!(
                "col2im: expected cols [{}, {}] for image {:?}, k {}, stride {}, padding {}, got [{rows}, {ncols}]",
                g.rows(),
                g.cols(),
                self.dims,
                self.k,
                self.stride,
                self.padding
            )
        }
        let cols = contiguous_f32(self.name(), storage, layout)?;
        let x = col2im_f32(cols, &g);
        Ok((CpuStorage::F32(x), Shape::from(self.dims)))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let op = Im2Col {
            k: self.k,
            stride: self.stride,
            padding: self.padding,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1(op)?))
    }
}

/// `x [B, C, H, W] -> cols [B*Ho*Wo, C*k*k]`, differentiable (see the module docs
/// for the layout). Non-contiguous inputs are copied to contiguous first.
pub fn im2col(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Im2Col { k, stride, padding })
}

/// `cols [B*Ho*Wo, C*k*k] -> [B, C, H, W]` with `dims = (B, C, H, W)`: the adjoint of
/// [`im2col`], differentiable. Non-contiguous inputs are copied to contiguous first.
pub fn col2im(
    cols: &Tensor,
    dims: (usize, usize, usize, usize),
    k: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    cols.contiguous()?.apply_op1(Col2Im {
        dims,
        k,
        stride,
        padding,
    })
}
