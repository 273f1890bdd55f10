//! 2-D convolution as tiled im2col + matrix products, with a fused backward pass.
//!
//! The lowering of Chellapilla, Puri & Simard 2006, "High Performance Convolutional Neural
//! Networks for Document Processing" (inria-00112631): the input patches of a few images at
//! a time are unfolded into a matrix with one row per output position (im2col), so that the
//! convolution is a GEMM, run through candle's `matmul`. Per tile of `n` output positions:
//!
//! ```text
//! forward:   y[n, C_out]   = rows(x)[n, k·k·C] @ Wᵀ[k·k·C, C_out]         (+ bias)
//! backward:  dW[C_out, k·k·C] += dy[C_out, n] @ rows(x)[n, k·k·C]
//!            db[C_out]         += Σ_n dy
//!            stride 1: dx[n_in, C] = rows(dy, pad k-1-p)[n_in, C_out·k·k] @ W'[C_out·k·k, C]
//!                      (the "full" correlation with the flipped kernel W')
//!            stride 2: dx += row2im(dy[n, C_out] @ W[C_out, k·k·C])     (the adjoint of im2col)
//! ```
//!
//! Patch columns are ordered (ky, kx, channel), built from a zero-padded channels-last copy
//! of the tile, so that every patch row is `k` contiguous copies. These shapes (long `n` as
//! the GEMM's row count) run 1.5-2x faster in candle's GEMM than
//! the transposed ones. Why not candle's CPU `conv2d`: in 0.11.1 its input gradient is a
//! naive transposed convolution and its kernel gradient a convolution with an image-sized
//! kernel (the U-Net's fwd+bwd ran 5x slower). Why tiles: the patch matrix of a whole batch
//! is 9x the activation (hundreds of MB at 28x28, batch 64); tiles of about `TILE_BYTES`
//! are recomputed in the backward pass instead of being kept, and stay small enough for the
//! allocator to reuse rather than map fresh zeroed pages every time.
//!
//! The parameters are created by `candle_nn::conv2d` (names `weight`, `bias`; PyTorch's
//! initialisation). On a non-CPU device or a non-f32 input the layer falls back to candle's
//! own convolution, which computes the same function ([`Conv::forward_reference`]).

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Module, Shape, Storage, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};

use crate::cpu::{contiguous_f32, par_chunks_mut};

/// Target size of one tile's patch matrix: large enough for efficient GEMMs (thousands of
/// rows), well under glibc's 32 MiB mmap ceiling so the buffers are recycled.
const TILE_BYTES: usize = 16 << 20;

/// Geometry of one convolution: input `[b, c, h, w]`, square kernel `k`, output `[ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    #[allow(clippy::too_many_arguments)] // one per geometry field; a builder would add nothing
    fn new(
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Self {
            b,
            c,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            ho: (h + 2 * pad - k) / stride + 1,
            wo: (w + 2 * pad - k) / stride + 1,
        }
    }
    /// Columns of the patch matrix: one per (ky, kx, channel).
    fn patch(&self) -> usize {
        self.c * self.k * self.k
    }
    fn in_size(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_hw(&self) -> usize {
        self.ho * self.wo
    }
    /// Images per tile (at least one), sized on the larger of the two patch matrices.
    fn tile_images(&self) -> usize {
        let per_image =
            4 * self.k * self.k * (self.c * self.out_hw()).max(self.c_out * self.h * self.w);
        (TILE_BYTES / per_image.max(1)).clamp(1, self.b)
    }
}

/// Writes image `img` (`[C, H, W]`) into the interior of `xp` (`[H + 2p, W + 2p, C]`,
/// channels last); the zero border of width `p` is left untouched.
fn fill_padded_nhwc(g: &Geom, img: &[f32], xp: &mut [f32]) {
    let (wp, hw) = (g.w + 2 * g.pad, g.h * g.w);
    for iy in 0..g.h {
        for ix in 0..g.w {
            let dst = &mut xp[((iy + g.pad) * wp + ix + g.pad) * g.c..][..g.c];
            for (ci, d) in dst.iter_mut().enumerate() {
                *d = img[ci * hw + iy * g.w + ix];
            }
        }
    }
}

/// Patch matrix `[nb·Ho·Wo, k·k·C]` of `nb` contiguous `[C, H, W]` images; column
/// `(ky·k + kx)·C + ci`, zero where the patch leaves the image. Each image is first copied
/// into a zero-bordered channels-last scratch, so that every patch row is `k` contiguous
/// copies of `k·C` values.
fn im2row(g: &Geom, x: &[f32]) -> Vec<f32> {
    let (hp, wp, p, run) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.patch(), g.k * g.c);
    let nb = x.len() / g.in_size();
    let per_image = g.out_hw() * p;
    let mut out = vec![0f32; nb * per_image];
    // One chunk per image; one scratch per thread (its border stays zero).
    par_chunks_mut(
        &mut out,
        per_image,
        || vec![0f32; hp * wp * g.c],
        |bi, rows, xp| {
            fill_padded_nhwc(g, &x[bi * g.in_size()..][..g.in_size()], xp);
            for (pos, row) in rows.chunks_mut(p).enumerate() {
                let (oy, ox) = (pos / g.wo, pos % g.wo);
                for (ky, seg) in row.chunks_mut(run).enumerate() {
                    let at = ((oy * g.stride + ky) * wp + ox * g.stride) * g.c;
                    seg.copy_from_slice(&xp[at..at + run]);
                }
            }
        },
    );
    out
}

/// The adjoint of [`im2row`]: adds the patch-matrix gradient `[nb·Ho·Wo, k·k·C]` into `dx`
/// (`nb` contiguous `[C, H, W]` images).
fn row2im_add(g: &Geom, rows: &[f32], dx: &mut [f32]) {
    let (hp, wp, hw, p, run) = (
        g.h + 2 * g.pad,
        g.w + 2 * g.pad,
        g.h * g.w,
        g.patch(),
        g.k * g.c,
    );
    let ohw = g.out_hw();
    // One chunk per image: threads write disjoint images.
    par_chunks_mut(
        dx,
        g.in_size(),
        || (),
        |bi, img, _| {
            // Accumulate in padded channels-last form, then add the interior back as [C, H, W].
            let mut acc = vec![0f32; hp * wp * g.c];
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let row = &rows[(bi * ohw + oy * g.wo + ox) * p..][..p];
                    for (ky, seg) in row.chunks(run).enumerate() {
                        let at = ((oy * g.stride + ky) * wp + ox * g.stride) * g.c;
                        for (a, v) in acc[at..at + run].iter_mut().zip(seg) {
                            *a += v;
                        }
                    }
                }
            }
            for iy in 0..g.h {
                for ix in 0..g.w {
                    let src = &acc[((iy + g.pad) * wp + ix + g.pad) * g.c..][..g.c];
                    for (ci, v) in src.iter().enumerate() {
                        img[ci * hw + iy * g.w + ix] += v;
                    }
                }
            }
        },
    );
}

/// `W [C_out, C, k, k]` -> `[C_out, k·k·C]` with column `(ky·k + kx)·C + ci` (im2row's order).
fn weight_rows(g: &Geom, w: &[f32]) -> Vec<f32> {
    let kk = g.k * g.k;
    let mut out = vec![0f32; w.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c {
            for j in 0..kk {
                out[co * g.patch() + j * g.c + ci] = w[(co * g.c + ci) * kk + j];
            }
        }
    }
    out
}

/// Writes `m` `[nb·HW, C]` (rows = positions) into `dst` `[nb, C, HW]`, adding `bias[c]`.
fn rows_to_nchw(m: &[f32], c: usize, hw: usize, bias: Option<&[f32]>, dst: &mut [f32]) {
    par_chunks_mut(
        dst,
        hw,
        || (),
        |pl, plane, _| {
            let (bi, ci) = (pl / c, pl % c);
            let b = bias.map_or(0.0, |b| b[ci]);
            for (pos, d) in plane.iter_mut().enumerate() {
                *d = m[(bi * hw + pos) * c + ci] + b;
            }
        },
    );
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(contiguous_f32(s, layout, "conv tile")?)),
        _ => candle_core::bail!("conv: CPU tensor expected"),
    }
}

/// Forward: `(x [B, C, H, W], W [C_out, C, k, k], bias [C_out]) -> y [B, C_out, Ho, Wo]`.
struct ConvOp(Geom);

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "genlab-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s1, l1, "conv input")?;
        let wts = contiguous_f32(s2, l2, "conv weight")?;
        let bias = contiguous_f32(s3, l3, "conv bias")?;
        // [C_out, C, k, k] -> [C_out, k·k·C] -> its transpose [k·k·C, C_out] (a strided view)
        let wt = Tensor::from_vec(weight_rows(&g, wts), (g.c_out, g.patch()), &Device::Cpu)?.t()?;
        let (ohw, tb) = (g.out_hw(), g.tile_images());
        let mut y = vec![0f32; g.b * g.c_out * ohw];
        for b0 in (0..g.b).step_by(tb) {
            let nb = tb.min(g.b - b0);
            // [nb, C, H, W] -> [nb·Ho·Wo, k·k·C]
            let rows = im2row(&g, &x[b0 * g.in_size()..(b0 + nb) * g.in_size()]);
            let rows = Tensor::from_vec(rows, (nb * ohw, g.patch()), &Device::Cpu)?;
            // [nb·Ho·Wo, k·k·C] @ [k·k·C, C_out] -> [nb·Ho·Wo, C_out]
            let out = rows.matmul(&wt)?;
            // [nb·Ho·Wo, C_out] -> y[b0..b0+nb] as [nb, C_out, Ho·Wo], plus the bias
            let ys = &mut y[b0 * g.c_out * ohw..(b0 + nb) * g.c_out * ohw];
            with_f32(&out, |m| rows_to_nchw(m, g.c_out, ohw, Some(bias), ys))?;
        }
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.c_out, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let (nx, nw) = (x.elem_count(), w.elem_count());
        // [nx + nw + C_out] = dx (flattened) ++ dW (flattened) ++ db
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &ConvBwd(g))?;
        // [nx] -> [B, C, H, W]; [nw] -> [C_out, C, k, k]; [C_out]
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let db = packed.narrow(0, nx + nw, g.c_out)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Backward: `(x, W, dy) -> dx ++ dW ++ db`, flattened into one vector.
struct ConvBwd(Geom);

impl CustomOp3 for ConvBwd {
    fn name(&self) -> &'static str {
        "genlab-conv2d-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s1, l1, "conv backward input")?;
        let wts = contiguous_f32(s2, l2, "conv backward weight")?;
        let dy = contiguous_f32(s3, l3, "conv backward grad")?;
        let dev = Device::Cpu;
        let (k, kk, nx, nw) = (g.k, g.k * g.k, x.len(), wts.len());
        let ohw = g.out_hw();
        // Stride 1: dx is the correlation of dy (padded by k-1-p) with the flipped kernel
        // W'[(ky'·k + kx')·C_out + co, ci] = W[co, ci, k-1-ky', k-1-kx'] (im2row's order).
        let full = (g.stride == 1 && g.pad < k).then(|| {
            let mut wf = vec![0f32; nw];
            for co in 0..g.c_out {
                for ci in 0..g.c {
                    for j in 0..kk {
                        wf[(j * g.c_out + co) * g.c + ci] =
                            wts[(co * g.c + ci) * kk + (kk - 1 - j)];
                    }
                }
            }
            (
                wf,
                Geom::new(g.b, g.c_out, g.ho, g.wo, g.c, k, 1, k - 1 - g.pad),
            )
        });
        let wflip = match &full {
            Some((wf, _)) => Some(Tensor::from_slice(wf, (g.c_out * kk, g.c), &dev)?),
            None => None,
        };
        // [C_out, C, k, k] -> [C_out, k·k·C]
        let wmat = Tensor::from_vec(weight_rows(&g, wts), (g.c_out, g.patch()), &dev)?;
        let mut out = vec![0f32; nx + nw + g.c_out];
        let (dx, rest) = out.split_at_mut(nx);
        let (dw, db) = rest.split_at_mut(nw);
        let mut db64 = vec![0f64; g.c_out];
        let tb = g.tile_images();
        for b0 in (0..g.b).step_by(tb) {
            let nb = tb.min(g.b - b0);
            let n = nb * ohw;
            let xs = &x[b0 * g.in_size()..(b0 + nb) * g.in_size()];
            let dys = &dy[b0 * g.c_out * ohw..(b0 + nb) * g.c_out * ohw];
            let dxs = &mut dx[b0 * g.in_size()..(b0 + nb) * g.in_size()];
            // dy[b0.., C_out, Ho·Wo] -> [C_out, nb·Ho·Wo], summing db on the way
            let mut gt = vec![0f32; g.c_out * n];
            for (pl, src) in dys.chunks(ohw).enumerate() {
                let (bi, co) = (pl / g.c_out, pl % g.c_out);
                gt[co * n + bi * ohw..][..ohw].copy_from_slice(src);
                db64[co] += src.iter().map(|&v| v as f64).sum::<f64>();
            }
            let gt = Tensor::from_vec(gt, (g.c_out, n), &dev)?;
            // [nb, C, H, W] -> [n, k·k·C], recomputed rather than stored
            let rows = Tensor::from_vec(im2row(&g, xs), (n, g.patch()), &dev)?;
            // [C_out, n] @ [n, k·k·C] -> [C_out, k·k·C], added to dW as [C_out, C, k, k]
            let dw_tile = gt.matmul(&rows)?;
            drop(rows);
            with_f32(&dw_tile, |t| {
                for co in 0..g.c_out {
                    for ci in 0..g.c {
                        for j in 0..kk {
                            dw[(co * g.c + ci) * kk + j] += t[co * g.patch() + j * g.c + ci];
                        }
                    }
                }
            })?;
            match (&full, &wflip) {
                (Some((_, gf)), Some(wf)) => {
                    // [nb, C_out, Ho, Wo] -> [nb·H·W, k·k·C_out]
                    let rows =
                        Tensor::from_vec(im2row(gf, dys), (nb * g.h * g.w, g.c_out * kk), &dev)?;
                    // [nb·H·W, k·k·C_out] @ [k·k·C_out, C] -> [nb·H·W, C] -> dx as [nb, C, H·W]
                    let dxt = rows.matmul(wf)?;
                    with_f32(&dxt, |m| rows_to_nchw(m, g.c, g.h * g.w, None, dxs))?;
                }
                _ => {
                    // [C_out, n] -> [n, C_out] (strided view) @ [C_out, k·k·C] -> [n, k·k·C]
                    let drows = gt.t()?.matmul(&wmat)?;
                    with_f32(&drows, |m| row2im_add(&g, m, dxs))?;
                }
            }
        }
        for (d, v) in db.iter_mut().zip(&db64) {
            *d = *v as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(nx + nw + g.c_out)))
    }
}

/// A square-kernel 2-D convolution with bias (`groups = 1`, `dilation = 1`).
#[derive(Debug, Clone)]
pub struct Conv {
    inner: Conv2d,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    /// Parameters `weight` `[c_out, c_in, k, k]` and `bias` `[c_out]` under `vb`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if c_in == 0 || c_out == 0 || k == 0 || stride == 0 {
            candle_core::bail!(
                "conv: channels ({c_in} -> {c_out}), kernel ({k}) and stride ({stride}) must be positive"
            );
        }
        let cfg = Conv2dConfig {
            padding: pad,
            stride,
            // dilation 1, groups 1: the only case the fast kernels implement (and all we use).
            ..Default::default()
        };
        Ok(Self {
            inner: conv2d(c_in, c_out, k, cfg, vb)?,
            c_in,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, (H + 2p - k)/s + 1, (W + 2p - k)/s + 1]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.forward_reference(x);
        }
        let (b, c, h, w) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!("conv: input has {c} channels, expected {}", self.c_in);
        }
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k || b == 0 {
            candle_core::bail!(
                "conv: input {b}x{c}x{h}x{w} is empty or smaller than the {k}x{k} kernel",
                k = self.k
            );
        }
        let g = Geom::new(b, c, h, w, self.c_out, self.k, self.stride, self.pad);
        let bias = self.inner.bias().expect("candle_nn::conv2d creates a bias");
        x.contiguous()?
            .apply_op3(&self.inner.weight().contiguous()?, bias, ConvOp(g))
    }

    /// candle's own convolution with the same parameters (the reference the tests compare to).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.forward(x)
    }
}
