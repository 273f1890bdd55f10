//! 2-D convolution as im2col + one matrix product, with a fast backward pass.
//!
//! The lowering of Chellapilla, Puri & Simard 2006, "High Performance Convolutional Neural
//! Networks for Document Processing" (inria-00112631): the input patches are unfolded into a
//! matrix (im2col) so that the convolution is one GEMM. candle 0.11.1's CPU `conv2d` is
//! correct but slow on the backward pass (its input gradient is a naive transposed
//! convolution, its kernel gradient a convolution with an image-sized kernel); here the
//! forward is `W[C_out, C·k·k] @ cols[C·k·k, B·Ho·Wo]`, so autograd runs two GEMMs through
//! candle's `matmul`, and the only hand-written backward is col2im (the adjoint of im2col).
//!
//! The parameters are created by `candle_nn::conv2d` (names `weight` and `bias`, PyTorch's
//! initialisation). On a non-CPU device or a non-f32 input the layer falls back to candle's
//! own convolution, which computes the same function.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};

use crate::cpu::{contiguous_f32, par_chunks_mut};

/// Geometry of one convolution: input `[b, c, h, w]`, square kernel `k`, output `[ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    /// Rows of the patch matrix: one per (channel, ky, kx).
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Columns of the patch matrix: one per (batch, output position).
    fn cols(&self) -> usize {
        self.b * self.ho * self.wo
    }
    /// The input row `iy` read by output row `oy` at kernel offset `ky`, if inside the image.
    fn in_y(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&iy| iy < self.h)
    }
    /// For kernel offset `kx`: the output columns `[lo, hi)` that read inside the image.
    fn valid_x(&self, kx: usize) -> (usize, usize) {
        // ix = ox·s + kx - pad must lie in [0, w).
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride);
        let hi = (self.w + self.pad)
            .saturating_sub(kx)
            .div_ceil(self.stride)
            .min(self.wo);
        (lo.min(hi), hi)
    }
}

/// Unfolds `[B, C, H, W]` into the patch matrix `[C·k·k, B·Ho·Wo]`.
struct Im2Col(Geom);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "genlab-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s, l, "im2col")?;
        let (n, hw, k) = (g.cols(), g.h * g.w, g.k);
        let mut out = vec![0f32; g.rows() * n];
        par_chunks_mut(
            &mut out,
            n,
            || (),
            |r, row, _| {
                // row r = (ci·k + ky)·k + kx
                let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
                let (lo, hi) = g.valid_x(kx);
                for bi in 0..g.b {
                    let plane = &x[(bi * g.c + ci) * hw..][..hw];
                    for oy in 0..g.ho {
                        let dst = &mut row[(bi * g.ho + oy) * g.wo..][..g.wo];
                        let Some(iy) = g.in_y(oy, ky) else { continue };
                        let src = &plane[iy * g.w..][..g.w];
                        for (ox, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[(lo + ox) * g.stride + kx - g.pad];
                        }
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((g.rows(), n))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

/// The adjoint of [`Im2Col`]: sums the patch matrix `[C·k·k, B·Ho·Wo]` back into
/// `[B, C, H, W]`.
struct Col2Im(Geom);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "genlab-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = contiguous_f32(s, l, "col2im")?;
        let (n, hw, k) = (g.cols(), g.h * g.w, g.k);
        let mut out = vec![0f32; g.b * g.c * hw];
        // One chunk per batch element: threads write disjoint images.
        par_chunks_mut(
            &mut out,
            g.c * hw,
            || (),
            |bi, img, _| {
                for ci in 0..g.c {
                    let plane = &mut img[ci * hw..][..hw];
                    for ky in 0..k {
                        for kx in 0..k {
                            let row = &cols[((ci * k + ky) * k + kx) * n..][..n];
                            let (lo, hi) = g.valid_x(kx);
                            for oy in 0..g.ho {
                                let Some(iy) = g.in_y(oy, ky) else { continue };
                                let src = &row[(bi * g.ho + oy) * g.wo..][..g.wo];
                                let dst = &mut plane[iy * g.w..][..g.w];
                                for (ox, v) in src[lo..hi].iter().enumerate() {
                                    dst[(lo + ox) * g.stride + kx - g.pad] += v;
                                }
                            }
                        }
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.c, g.h, g.w))))
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
        let cfg = Conv2dConfig {
            padding: pad,
            stride,
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
            return self.inner.forward(x);
        }
        let (b, c, h, w) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!("conv: input has {c} channels, expected {}", self.c_in);
        }
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k {
            candle_core::bail!(
                "conv: input {h}x{w} is smaller than the {k}x{k} kernel",
                k = self.k
            );
        }
        let g = Geom {
            b,
            c,
            h,
            w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            ho: (h + 2 * self.pad - self.k) / self.stride + 1,
            wo: (w + 2 * self.pad - self.k) / self.stride + 1,
        };
        // [B, C, H, W] -> [C·k·k, B·Ho·Wo]
        let cols = x.contiguous()?.apply_op1(Im2Col(g))?;
        // [C_out, C, k, k] -> [C_out, C·k·k]
        let wmat = self.inner.weight().reshape((self.c_out, g.rows()))?;
        // [C_out, C·k·k] @ [C·k·k, B·Ho·Wo] -> [C_out, B·Ho·Wo]
        let mut y = wmat.matmul(&cols)?;
        if let Some(bias) = self.inner.bias() {
            // [C_out] -> [C_out, 1], broadcast over the columns
            y = y.broadcast_add(&bias.reshape((self.c_out, 1))?)?;
        }
        // [C_out, B·Ho·Wo] -> [C_out, B, Ho·Wo] -> [B, C_out, Ho·Wo] -> [B, C_out, Ho, Wo]
        y.reshape((self.c_out, b, g.ho * g.wo))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((b, self.c_out, g.ho, g.wo))
    }

    /// candle's own convolution with the same parameters (the reference the tests compare to).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.forward(x)
    }
}
