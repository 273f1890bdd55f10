//! 2-D convolution as im2col + one GEMM, with a fast backward.
//!
//! candle's own CPU `conv2d` backward runs the input gradient through a direct-loop
//! `conv_transpose2d` and the weight gradient through a batch-as-channels conv; both are
//! very slow. Here the forward is `im2col(x) @ w^T` and autograd differentiates the
//! matmul (fast, gemm) and our [`Im2Col`](crate::Im2Col) op, whose backward is the
//! [`Col2Im`](crate::Col2Im) scatter-add.

use candle_core::{bail, DType, Module, Result, Tensor};

use crate::fused::{ChannelBiasAdd, Conv2dOp};
use crate::im2col::{im2col, Geom};

/// Validates `conv2d` arguments; returns `(O, k)`.
fn check_args(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<(usize, usize)> {
    let (_, c, _, _) = x.dims4()?;
    let (o, cw, k, kw) = w.dims4()?;
    if cw != c {
        bail!(
            "conv2d: input has {c} channels but weight {:?} expects {cw}",
            w.dims()
        )
    }
    if k != kw {
        bail!("conv2d: only square kernels are supported, got {k}x{kw}")
    }
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        bail!(
            "conv2d: f32 only, got x {:?} and w {:?}",
            x.dtype(),
            w.dtype()
        )
    }
    if let Some(bias) = bias {
        let nb = bias.dims1()?;
        if nb != o {
            bail!("conv2d: bias has {nb} entries, expected {o}")
        }
    }
    Ok((o, k))
}

/// 2-D convolution, NCHW, f32, CPU: `x [B, C, H, W]`, `w [O, C, k, k]`, optional
/// `bias [O]`, `stride`, zero `padding`, dilation 1, groups 1.
///
/// Output `[B, O, Ho, Wo]` (contiguous) with `Ho = (H + 2p - k)/s + 1` (same for `Wo`).
/// Differentiable w.r.t. `x`, `w` and `bias` through candle's autograd (first order
/// only: differentiating the gradient again returns an error).
///
/// Runs the fused per-image im2col + GEMM kernels (see `fused.rs`); [`conv2d_im2col`]
/// is the same maths through a whole-batch [`Im2Col`](crate::Im2Col) and candle's matmul.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    check_args(x, w, bias)?;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    // [B, C, H, W], [O, C, k, k] -> [B, O, Ho, Wo]
    let y = x.apply_op2(&w, Conv2dOp { stride, padding })?;
    match bias {
        // [B, O, Ho, Wo] + [O] per channel.
        Some(bias) => y.apply_op2(&bias.contiguous()?, ChannelBiasAdd),
        None => Ok(y),
    }
}

/// [`conv2d`] through a whole-batch [`Im2Col`](crate::Im2Col) custom op and candle's
/// matmul (differentiable to any order). Same arguments and result; slower on CPU
/// because the `[B*Ho*Wo, C*k*k]` column matrix and its gradient are materialised.
pub fn conv2d_im2col(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (o, k) = check_args(x, w, bias)?;
    let (b, c, h, wd) = x.dims4()?;
    let g = Geom::new((b, c, h, wd), k, stride, padding)?;
    // [B*Ho*Wo, C*k*k]
    let cols = im2col(x, k, stride, padding)?;
    // [O, C, k, k] -> [O, C*k*k]; its transpose is a strided view gemm takes as is.
    let w2 = w.reshape((o, c * k * k))?;
    // [B*Ho*Wo, C*k*k] @ [C*k*k, O] -> [B*Ho*Wo, O]
    let mut y = cols.matmul(&w2.t()?)?;
    if let Some(bias) = bias {
        // [B*Ho*Wo, O] + [O] broadcast over rows.
        y = y.broadcast_add(bias)?;
    }
    // [B*Ho*Wo, O] -> [B, Ho, Wo, O] -> [B, O, Ho, Wo]
    y.reshape((b, g.ho, g.wo, o))?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// A drop-in replacement for `candle_nn::Conv2d` (dilation 1, groups 1) built on
/// [`conv2d`]. Parameters are named and initialised like `candle_nn::conv2d`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[O, C, k, k]`.
    pub weight: Tensor,
    /// `[O]`.
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// Creates (or loads) `"weight"` `[out_c, in_c, k, k]` with
    /// `candle_nn::init::DEFAULT_KAIMING_NORMAL` and `"bias"` `[out_c]` with
    /// `Uniform(-1/sqrt(in_c), 1/sqrt(in_c))`, exactly as `candle_nn::conv2d` 0.11.1
    /// does (note: candle's bound uses `in_c`, not the fan-in `in_c*k*k`).
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_c, in_c, k, k),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bound = 1. / (in_c as f64).sqrt();
        let bias = vb.get_with_hints(
            out_c,
            "bias",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self {
            weight,
            bias: Some(bias),
            stride,
            padding,
        })
    }

    /// Like [`Conv2d::new`] without the bias parameter.
    pub fn new_no_bias(
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_c, in_c, k, k),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok(Self {
            weight,
            bias: None,
            stride,
            padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
        )
    }
}
