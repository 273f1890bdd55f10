//! The fused convolution kernels behind [`conv2d`](crate::conv2d): forward, input
//! gradient and weight gradient, each done image by image with a small, cache-resident
//! im2col buffer and one GEMM (the `gemm` crate, as candle uses).
//!
//! Why fused: materialising the whole `[B*Ho*Wo, C*k*k]` column matrix as a candle tensor
//! (58 MB for 64x32x28x28, k3) costs several passes over fresh memory in forward and
//! backward (im2col, its gradient, candle's zero-init + add of that gradient, col2im),
//! and on a loaded 2-core machine those page-faulting passes dominated the GEMMs.
//!
//! Per image `b` (Caffe layout, so the GEMM output is already NCHW):
//!
//! - `cols_b [C*k*k, Ho*Wo]`, row `(c*k + ky)*k + kx`, column `oy*Wo + ox`;
//! - forward: `y_b [O, Ho*Wo] = W [O, C*k*k] @ cols_b`;
//! - input gradient: `dcols_b = W^T @ g_b`, then scatter-add (col2im) into `dx_b`;
//! - weight gradient: `dW += g_b [O, Ho*Wo] @ cols_b^T`, partial sums per rayon task.
//!
//! Images are split over rayon threads when there are at least as many images as
//! threads; otherwise images run in turn and each GEMM is itself parallel.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::im2col::Geom;

/// Borrows the f32 data of a contiguous CPU storage, offset applied.
fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: inputs must be contiguous (call .contiguous() first)"),
    }
}

/// A read-only matrix view: `data[r * rs + c * cs]` is element `(r, c)`.
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl MatRef<'_> {
    /// Panics unless every element `(r, c)` lies inside `data`.
    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst [m, n]` (row-major, contiguous) `= lhs @ rhs`, or `+=` when `accumulate`.
fn gemm_into(dst: &mut [f32], lhs: MatRef, rhs: MatRef, accumulate: bool, par: Parallelism) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: inner dimensions differ");
    assert_eq!(dst.len(), m * n, "gemm: destination has the wrong size");
    lhs.check();
    rhs.check();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: all three views were bounds-checked above for the strides passed, `dst` is
    // exclusively borrowed and does not alias `lhs`/`rhs` (distinct borrows). gemm computes
    // dst := alpha*dst + beta*lhs@rhs, reading dst only when `read_dst` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// The range of `ox` whose input column `ox*s + kx - p` lies in `[0, w)`.
fn valid_range(kx: usize, stride: usize, padding: usize, w: usize, wo: usize) -> (usize, usize) {
    // ox*s + kx >= p  <=>  ox >= ceil((p - kx) / s)
    let lo = padding.saturating_sub(kx).div_ceil(stride);
    // ox*s + kx - p < w  <=>  ox*s < w + p - kx  <=>  ox < ceil((w + p - kx) / s)
    let hi = (w + padding).saturating_sub(kx).div_ceil(stride);
    (lo.min(wo), hi.min(wo).max(lo.min(wo)))
}

/// Single-image im2col in the transposed (Caffe) layout: `x_b [C, H, W]` ->
/// `cols [C*k*k, Ho*Wo]`, every element written (padding taps as 0).
fn im2col_image(x_b: &[f32], g: &Geom, cols: &mut [f32]) {
    let Geom {
        c: nc,
        h,
        w,
        k,
        stride: s,
        padding: p,
        ho,
        wo,
        ..
    } = *g;
    let howo = ho * wo;
    debug_assert_eq!(cols.len(), nc * k * k * howo);
    for ci in 0..nc {
        let xc = &x_b[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut cols[row * howo..(row + 1) * howo];
                let (lo, hi) = valid_range(kx, s, p, w, wo);
                for oy in 0..ho {
                    let d = &mut dst[oy * wo..(oy + 1) * wo];
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy as usize >= h || lo >= hi {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * w..(iy as usize + 1) * w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    // Input column of ox = lo.
                    let ix0 = (lo * s + kx) - p;
                    if s == 1 {
                        d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (j, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = src[ix0 + j * s];
                        }
                    }
                }
            }
        }
    }
}

/// Single-image col2im, the adjoint of [`im2col_image`]: scatter-adds
/// `cols [C*k*k, Ho*Wo]` into `dx_b [C, H, W]` (which it accumulates into).
fn col2im_image(cols: &[f32], g: &Geom, dx_b: &mut [f32]) {
    let Geom {
        c: nc,
        h,
        w,
        k,
        stride: s,
        padding: p,
        ho,
        wo,
        ..
    } = *g;
    let howo = ho * wo;
    for ci in 0..nc {
        let dxc = &mut dx_b[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &cols[row * howo..(row + 1) * howo];
                let (lo, hi) = valid_range(kx, s, p, w, wo);
                if lo >= hi {
                    continue;
                }
                for oy in 0..ho {
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    let d = &mut dxc[iy as usize * w..(iy as usize + 1) * w];
                    let srow = &src[oy * wo + lo..oy * wo + hi];
                    let ix0 = (lo * s + kx) - p;
                    if s == 1 {
                        for (a, b) in d[ix0..ix0 + (hi - lo)].iter_mut().zip(srow) {
                            *a += *b;
                        }
                    } else {
                        for (j, b) in srow.iter().enumerate() {
                            d[ix0 + j * s] += *b;
                        }
                    }
                }
            }
        }
    }
}

/// Whether to split images over threads (true) or parallelise inside each GEMM (false),
/// and the GEMM parallelism that goes with that choice.
fn plan(batch: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if batch >= threads || threads == 1 {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(threads))
    }
}

/// Forward: `x [B, C, H, W]`, `w [O, C*k*k]` -> `y [B, O, Ho, Wo]`.
fn forward(x: &[f32], w: &[f32], o: usize, g: &Geom) -> Vec<f32> {
    let ckk = g.cols();
    let howo = g.ho * g.wo;
    let in_len = g.c * g.h * g.w;
    let mut y = vec![0f32; g.b * o * howo];
    let (outer, par) = plan(g.b);
    let w_mat = MatRef {
        data: w,
        rows: o,
        cols: ckk,
        rs: ckk,
        cs: 1,
    };
    let one = |b: usize, y_b: &mut [f32], cols: &mut Vec<f32>| {
        im2col_image(&x[b * in_len..(b + 1) * in_len], g, cols);
        let c_mat = MatRef {
            data: cols,
            rows: ckk,
            cols: howo,
            rs: howo,
            cs: 1,
        };
        // [O, C*k*k] @ [C*k*k, Ho*Wo] -> [O, Ho*Wo]
        gemm_into(y_b, w_mat, c_mat, false, par);
    };
    if o * howo == 0 {
        return y;
    }
    if outer {
        y.par_chunks_mut(o * howo).enumerate().for_each_init(
            || vec![0f32; ckk * howo],
            |cols, (b, y_b)| one(b, y_b, cols),
        );
    } else {
        let mut cols = vec![0f32; ckk * howo];
        for (b, y_b) in y.chunks_mut(o * howo).enumerate() {
            one(b, y_b, &mut cols);
        }
    }
    y
}

/// Input gradient: `grad [B, O, Ho, Wo]`, `w [O, C*k*k]` -> `dx [B, C, H, W]`.
fn backward_input(grad: &[f32], w: &[f32], o: usize, g: &Geom) -> Vec<f32> {
    let ckk = g.cols();
    let howo = g.ho * g.wo;
    let in_len = g.c * g.h * g.w;
    let mut dx = vec![0f32; g.input_len()];
    if in_len == 0 {
        return dx;
    }
    let (outer, par) = plan(g.b);
    // W^T as a strided view of W: [C*k*k, O].
    let wt = MatRef {
        data: w,
        rows: ckk,
        cols: o,
        rs: 1,
        cs: ckk,
    };
    let one = |b: usize, dx_b: &mut [f32], dcols: &mut Vec<f32>| {
        let g_mat = MatRef {
            data: &grad[b * o * howo..(b + 1) * o * howo],
            rows: o,
            cols: howo,
            rs: howo,
            cs: 1,
        };
        // [C*k*k, O] @ [O, Ho*Wo] -> [C*k*k, Ho*Wo]
        gemm_into(dcols, wt, g_mat, false, par);
        col2im_image(dcols, g, dx_b);
    };
    if outer {
        dx.par_chunks_mut(in_len).enumerate().for_each_init(
            || vec![0f32; ckk * howo],
            |dcols, (b, dx_b)| one(b, dx_b, dcols),
        );
    } else {
        let mut dcols = vec![0f32; ckk * howo];
        for (b, dx_b) in dx.chunks_mut(in_len).enumerate() {
            one(b, dx_b, &mut dcols);
        }
    }
    dx
}

/// Weight gradient: `x [B, C, H, W]`, `grad [B, O, Ho, Wo]` -> `dW [O, C*k*k]`.
fn backward_weight(x: &[f32], grad: &[f32], o: usize, g: &Geom) -> Vec<f32> {
    let ckk = g.cols();
    let howo = g.ho * g.wo;
    let in_len = g.c * g.h * g.w;
    let (outer, par) = plan(g.b);
    // Adds image b's contribution g_b @ cols_b^T to `dw`.
    let one = |b: usize, dw: &mut [f32], cols: &mut Vec<f32>| {
        im2col_image(&x[b * in_len..(b + 1) * in_len], g, cols);
        let g_mat = MatRef {
            data: &grad[b * o * howo..(b + 1) * o * howo],
            rows: o,
            cols: howo,
            rs: howo,
            cs: 1,
        };
        // cols_b^T as a strided view: [Ho*Wo, C*k*k].
        let ct = MatRef {
            data: cols,
            rows: howo,
            cols: ckk,
            rs: 1,
            cs: howo,
        };
        // [O, Ho*Wo] @ [Ho*Wo, C*k*k] -> [O, C*k*k], accumulated.
        gemm_into(dw, g_mat, ct, true, par);
    };
    if o * ckk == 0 || howo == 0 {
        return vec![0f32; o * ckk];
    }
    if outer {
        (0..g.b)
            .into_par_iter()
            .fold(
                || (vec![0f32; o * ckk], vec![0f32; ckk * howo]),
                |(mut dw, mut cols), b| {
                    one(b, &mut dw, &mut cols);
                    (dw, cols)
                },
            )
            .map(|(dw, _)| dw)
            .reduce(
                || vec![0f32; o * ckk],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += *y);
                    a
                },
            )
    } else {
        let mut dw = vec![0f32; o * ckk];
        let mut cols = vec![0f32; ckk * howo];
        for b in 0..g.b {
            one(b, &mut dw, &mut cols);
        }
        dw
    }
}

/// Fused convolution `(x [B, C, H, W], w [O, C, k, k]) -> [B, O, Ho, Wo]`, no bias.
/// Backward: [`ConvBwdInput`] and [`ConvBwdWeight`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "genlab-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (o, c, k, _) = l2.shape().dims4()?;
        let g = Geom::new(l1.shape().dims4()?, k, self.stride, self.padding)?;
        if g.c != c {
            bail!("genlab-conv2d: input has {} channels, weight {c}", g.c)
        }
        let x = contiguous_f32(self.name(), s1, l1)?;
        let w = contiguous_f32(self.name(), s2, l2)?;
        let y = forward(x, w, o, &g);
        Ok((CpuStorage::F32(y), Shape::from((g.b, o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2(
            w,
            ConvBwdInput {
                dims: x.dims4()?,
                stride: self.stride,
                padding: self.padding,
            },
        )?;
        let (_, _, k, _) = w.dims4()?;
        let dw = x.apply_op2(
            &grad,
            ConvBwdWeight {
                k,
                stride: self.stride,
                padding: self.padding,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `(grad [B, O, Ho, Wo], w [O, C, k, k]) -> dx [B, C, H, W]`. No backward of its own
/// (double backward through [`conv2d`](crate::conv2d) is unsupported and errors).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvBwdInput {
    pub dims: (usize, usize, usize, usize),
    pub stride: usize,
    pub padding: usize,
}

impl CustomOp2 for ConvBwdInput {
    fn name(&self) -> &'static str {
        "genlab-conv2d-bwd-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (o, _, k, _) = l2.shape().dims4()?;
        let g = Geom::new(self.dims, k, self.stride, self.padding)?;
        if l1.shape().dims4()? != (g.b, o, g.ho, g.wo) {
            bail!(
                "{}: unexpected gradient shape {:?}",
                self.name(),
                l1.shape()
            )
        }
        let grad = contiguous_f32(self.name(), s1, l1)?;
        let w = contiguous_f32(self.name(), s2, l2)?;
        let dx = backward_input(grad, w, o, &g);
        Ok((CpuStorage::F32(dx), Shape::from(self.dims)))
    }
}

/// `(x [B, C, H, W], grad [B, O, Ho, Wo]) -> dW [O, C, k, k]`. No backward of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvBwdWeight {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl CustomOp2 for ConvBwdWeight {
    fn name(&self) -> &'static str {
        "genlab-conv2d-bwd-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.shape().dims4()?, self.k, self.stride, self.padding)?;
        let (gb, o, gho, gwo) = l2.shape().dims4()?;
        if (gb, gho, gwo) != (g.b, g.ho, g.wo) {
            bail!(
                "{}: unexpected gradient shape {:?}",
                self.name(),
                l2.shape()
            )
        }
        let x = contiguous_f32(self.name(), s1, l1)?;
        let grad = contiguous_f32(self.name(), s2, l2)?;
        let dw = backward_weight(x, grad, o, &g);
        Ok((CpuStorage::F32(dw), Shape::from((o, g.c, self.k, self.k))))
    }
}

/// Per-channel bias add `(y [B, O, H, W], bias [O]) -> y + bias[o]`.
///
/// candle's own `broadcast_add` backward reduces the bias gradient with a multi-dim
/// `sum_keepdim([0, 2, 3])`, which is ~15x slower on CPU than reducing one dim at a time;
/// this op's backward does the latter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelBiasAdd;

impl CustomOp2 for ChannelBiasAdd {
    fn name(&self) -> &'static str {
        "genlab-channel-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, o, h, w) = l1.shape().dims4()?;
        if l2.shape().dims1()? != o {
            bail!("{}: bias {:?} for {o} channels", self.name(), l2.shape())
        }
        let y = contiguous_f32(self.name(), s1, l1)?;
        let bias = contiguous_f32(self.name(), s2, l2)?;
        let plane = h * w;
        let mut out = y.to_vec();
        if plane > 0 && b * o > 0 {
            // One plane per (b, o) pair: [B*O, H*W].
            out.par_chunks_mut(plane).enumerate().for_each(|(bo, p)| {
                let v = bias[bo % o];
                p.iter_mut().for_each(|x| *x += v);
            });
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // [B, O, H, W] -> [B, O, H, 1] -> [B, O, 1, 1] -> [1, O, 1, 1] -> [O]
        let db = grad
            .sum_keepdim(3)?
            .sum_keepdim(2)?
            .sum_keepdim(0)?
            .flatten_all()?;
        Ok((Some(grad.clone()), Some(db)))
    }
}
