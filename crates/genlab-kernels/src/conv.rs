//! 2-D convolution and transposed convolution as per-image im2col + GEMM, each with its
//! own backward pass.
//!
//! Algorithm: the im2col lowering of Chellapilla, Puri & Simard 2006, "High Performance
//! Convolutional Neural Networks for Document Processing" (inria-00112631), see
//! [`im2col`](crate::im2col) for the column layout; the matrix products run in the `gemm`
//! crate (the BLIS-style GEMM candle itself uses, Van Zee & van de Geijn 2015). The
//! transposed convolution is the adjoint of the convolution (Dumoulin & Visin 2016, "A guide
//! to convolution arithmetic for deep learning", arXiv:1603.07285, section 4), so the same
//! three kernels serve both:
//!
//! ```text
//! A  conv forward        y_b [O, Ho*Wo]   = W [O, C*k*k] @ im2col(x_b) [C*k*k, Ho*Wo]  (+ bias)
//! B  conv input grad     dx_b [C, H, W]   = col2im(Wᵀ [C*k*k, O] @ g_b [O, Ho*Wo])       (+ bias)
//! C  conv weight grad    dW [O, C*k*k]   += g_b [O, Ho*Wo] @ im2col(x_b)ᵀ [Ho*Wo, C*k*k]
//!
//! conv2d(x, W)            forward A, input grad B, weight grad C(x, g), bias grad Σ g
//! conv_transpose2d(x, W)  forward B, input grad A, weight grad C(g, x), bias grad Σ g
//! ```
//!
//! Layouts: all tensors NCHW, f32, contiguous. `conv2d`: `x [B, C, H, W]`, `w [O, C, k, k]`
//! (PyTorch's `Conv2d`), `bias [O]`, output `[B, O, Ho, Wo]` with `Ho = (H + 2p - k)/s + 1`.
//! `conv_transpose2d`: `x [B, C_in, H, W]`, `w [C_in, C_out, k, k]` (PyTorch's
//! `ConvTranspose2d`), `bias [C_out]`, output `[B, C_out, (H-1)s - 2p + k, (W-1)s - 2p + k]`:
//! it is the adjoint of a convolution with `O = C_in` output channels over a
//! `[B, C_out, Hout, Wout]` input, whose weight has exactly that `[C_in, C_out, k, k]` layout.
//!
//! Each image is lowered into a small, cache-resident column buffer (never the whole batch's
//! `[B*Ho*Wo, C*k*k]` matrix, 58 MB for 64x32x28x28 k3, whose fresh pages cost more than the
//! GEMMs). The bias is folded in: the forward output (A) or the transposed output (B) starts
//! from the bias instead of zero, and the bias gradient is summed next to the weight
//! gradient. Threads ([`crate::num_threads`]): images are split over them when there are at
//! least as many images as threads; otherwise images run in turn and each GEMM is split.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

use crate::gemm::{gemm_into, Mat};
use crate::im2col::{col2im_image, im2col_image, Geom, Scratch};
use crate::par::{contiguous_f32, num_threads, par_chunks_mut, par_ranges};

/// How `batch` images share the threads: the number of parts the image loop is split into,
/// and the parallelism inside each GEMM (images over threads when there are enough of
/// them, else one image at a time with a parallel GEMM).
fn plan(batch: usize) -> (usize, Parallelism) {
    let threads = num_threads();
    if threads == 1 {
        (1, Parallelism::None)
    } else if batch >= threads {
        (threads, Parallelism::None)
    } else {
        (1, Parallelism::Rayon(threads))
    }
}

/// Fills each `plane`-long run of `dst` (`[n, C, plane]`) with its channel's `bias` value.
fn fill_channels(dst: &mut [f32], bias: &[f32], plane: usize) {
    for (p, v) in dst.chunks_exact_mut(plane).zip(bias.iter().cycle()) {
        p.fill(*v);
    }
}

/// Kernel A: `x [B, C, H, W]`, `w [O, C*k*k]` -> `y [B, O, Ho, Wo]`, plus `bias [O]`.
fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, o: usize, g: &Geom) -> Vec<f32> {
    let (taps, ohw, in_len) = (g.taps(), g.out_hw(), g.in_len());
    let mut y = vec![0f32; g.b * o * ohw];
    if y.is_empty() {
        return y;
    }
    let (parts, par) = plan(g.b);
    let w_mat = Mat::dense(w, o, taps);
    par_chunks_mut(
        &mut y,
        o * ohw,
        parts,
        || Scratch::for_conv(g),
        |b, y_b, scratch| {
            let x_b = &x[b * in_len..(b + 1) * in_len];
            let cols = if g.pointwise() {
                x_b
            } else {
                im2col_image(x_b, g, scratch);
                &scratch.cols
            };
            if let Some(bias) = bias {
                fill_channels(y_b, bias, ohw);
            }
            // [O, C*k*k] @ [C*k*k, Ho*Wo] -> [O, Ho*Wo] (+= onto the bias)
            let cols = Mat::dense(cols, taps, ohw);
            gemm_into(y_b, w_mat, cols, 1.0, bias.is_some(), par);
        },
    );
    y
}

/// Kernel B: `g [B, O, Ho, Wo]`, `w [O, C*k*k]` -> `dx [B, C, H, W]`, plus `bias [C]`.
fn backward_input(gy: &[f32], w: &[f32], bias: Option<&[f32]>, o: usize, g: &Geom) -> Vec<f32> {
    let (taps, ohw, in_len) = (g.taps(), g.out_hw(), g.in_len());
    let mut dx = vec![0f32; g.b * in_len];
    if dx.is_empty() {
        return dx;
    }
    let (parts, par) = plan(g.b);
    // Wᵀ [C*k*k, O] as a strided view of W.
    let wt = Mat::transposed(w, taps, o);
    par_chunks_mut(
        &mut dx,
        in_len,
        parts,
        || Scratch::for_conv(g),
        |b, dx_b, scratch| {
            if let Some(bias) = bias {
                fill_channels(dx_b, bias, g.h * g.w);
            }
            // [C*k*k, O] @ [O, Ho*Wo] -> [C*k*k, Ho*Wo], then scatter-added into dx_b.
            let g_mat = Mat::dense(&gy[b * o * ohw..(b + 1) * o * ohw], o, ohw);
            if g.pointwise() {
                // col2im is the identity: accumulate straight into dx_b (onto the bias).
                gemm_into(dx_b, wt, g_mat, 1.0, bias.is_some(), par);
                return;
            }
            gemm_into(&mut scratch.cols, wt, g_mat, 1.0, false, par);
            col2im_image(g, scratch, dx_b);
        },
    );
    dx
}

/// Kernel C: `x [B, C, H, W]`, `g [B, O, Ho, Wo]` -> `dW [O, C*k*k]`.
///
/// Accumulated as `dWᵀ [C*k*k, O] += im2col(x_b) @ g_bᵀ` and transposed at the end: the
/// same sums in the same order as `g_b @ im2col(x_b)ᵀ`, but 1.2-1.4x faster in `gemm` on
/// the U-Net's shapes (the long `C*k*k` side as the GEMM's rows).
fn backward_weight(x: &[f32], gy: &[f32], o: usize, g: &Geom) -> Vec<f32> {
    let (taps, ohw, in_len) = (g.taps(), g.out_hw(), g.in_len());
    let n = o * taps;
    let (parts, par) = plan(g.b);
    // One partial dWᵀ per part, summed in part order below.
    let partials = par_ranges(
        g.b,
        parts,
        || (vec![0f32; n], Scratch::for_conv(g)),
        |b, (dwt, scratch)| {
            let x_b = &x[b * in_len..(b + 1) * in_len];
            let cols = if g.pointwise() {
                x_b
            } else {
                im2col_image(x_b, g, scratch);
                &scratch.cols
            };
            let cols = Mat::dense(cols, taps, ohw);
            // g_bᵀ [Ho*Wo, O] as a strided view of g_b [O, Ho*Wo].
            let gt = Mat::transposed(&gy[b * o * ohw..(b + 1) * o * ohw], ohw, o);
            // [C*k*k, Ho*Wo] @ [Ho*Wo, O] -> [C*k*k, O], accumulated.
            gemm_into(dwt, cols, gt, 1.0, true, par);
        },
    );
    let mut partials = partials.into_iter().map(|(dwt, _)| dwt);
    let mut dwt = partials.next().unwrap_or_else(|| vec![0f32; n]);
    for p in partials {
        dwt.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
    }
    // [C*k*k, O] -> [O, C*k*k]
    let mut dw = vec![0f32; n];
    for (t, row) in dwt.chunks_exact(o.max(1)).enumerate() {
        for (oi, v) in row.iter().enumerate() {
            dw[oi * taps + t] = *v;
        }
    }
    dw
}

/// Sum of `v`, in 16 f32 lanes (vectorised) then f64.
fn sum(v: &[f32]) -> f64 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += *x;
        }
    }
    tail + lanes.iter().map(|&l| l as f64).sum::<f64>()
}

/// Per-channel sums of `t [B, C, plane]` -> `[C]` (the bias gradient).
fn channel_sums(t: &[f32], c: usize, plane: usize) -> Vec<f32> {
    let mut acc = vec![0f64; c];
    if plane > 0 {
        for (i, p) in t.chunks_exact(plane).enumerate() {
            acc[i % c] += sum(p);
        }
    }
    acc.into_iter().map(|v| v as f32).collect()
}

/// The optional third storage of a [`CustomOp3`] (the bias) next to the two others.
type Bias<'a> = Option<(&'a CpuStorage, &'a Layout)>;

/// Reads and checks an optional `[n]` bias.
fn bias_slice<'a>(op: &str, bias: Bias<'a>, n: usize) -> Result<Option<&'a [f32]>> {
    let Some((s, l)) = bias else { return Ok(None) };
    if l.shape().dims1()? != n {
        bail!("{op}: bias {:?} for {n} channels", l.shape())
    }
    Ok(Some(contiguous_f32(s, l, op)?))
}

/// Convolution `(x [B, C, H, W], w [O, C, k, k] (, bias [O])) -> [B, O, Ho, Wo]`
/// (kernel A). Backward: `dx` through [`ConvTranspose2dOp`] (kernel B, itself
/// differentiable), `dw` (and `db`) through [`ConvWeightGrad`] (kernel C).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dOp {
    const NAME: &'static str = "genlab-conv2d";

    fn cpu(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        (ws, wl): (&CpuStorage, &Layout),
        bias: Bias,
    ) -> Result<(CpuStorage, Shape)> {
        let (o, c, k, _) = wl.shape().dims4()?;
        let g = Geom::new(xl.shape().dims4()?, k, self.stride, self.padding)?;
        if g.c != c {
            bail!("{}: input has {} channels, weight {c}", Self::NAME, g.c)
        }
        let x = contiguous_f32(xs, xl, Self::NAME)?;
        let w = contiguous_f32(ws, wl, Self::NAME)?;
        let bias = bias_slice(Self::NAME, bias, o)?;
        let y = forward(x, w, bias, o, &g);
        Ok((CpuStorage::F32(y), Shape::from((g.b, o, g.ho, g.wo))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        with_bias: bool,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, k, _) = w.dims4()?;
        let transposed = ConvTranspose2dOp {
            stride: self.stride,
            padding: self.padding,
            out_h: h,
            out_w: wd,
        };
        // [B, O, Ho, Wo] -> [B, C, H, W]
        let dx = grad.apply_op2(w, transposed)?;
        let (dw, db) = weight_grad(
            x,
            &grad,
            ConvWeightGrad {
                k,
                stride: self.stride,
                padding: self.padding,
                bias: with_bias.then_some(BiasFrom::OutputGrad),
            },
        )?;
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, false, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.grads(x, w, true, grad)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// Transposed convolution `(x [B, C_in, H, W], w [C_in, C_out, k, k] (, bias [C_out])) ->
/// [B, C_out, out_h, out_w]` (kernel B): the adjoint of the convolution of a
/// `[B, C_out, out_h, out_w]` input by `w` as an `[O = C_in, C = C_out, k, k]` weight, whose
/// output size must be `H x W`. `out_h` may exceed `(H-1)s - 2p + k` by up to `s - 1`
/// (the rows no window reaches get zero), as a convolution's input gradient needs.
/// Backward: `dx` through [`Conv2dOp`], `dw` (and `db`) through [`ConvWeightGrad`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvTranspose2dOp {
    pub stride: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvTranspose2dOp {
    const NAME: &'static str = "genlab-conv-transpose2d";

    fn cpu(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        (ws, wl): (&CpuStorage, &Layout),
        bias: Bias,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, ci, h, wd) = xl.shape().dims4()?;
        let (wci, co, k, _) = wl.shape().dims4()?;
        if wci != ci {
            bail!("{}: input has {ci} channels, weight {wci}", Self::NAME)
        }
        let g = Geom::new(
            (b, co, self.out_h, self.out_w),
            k,
            self.stride,
            self.padding,
        )?;
        if (g.ho, g.wo) != (h, wd) {
            bail!(
                "{}: a {}x{} output does not convolve back to the {h}x{wd} input",
                Self::NAME,
                self.out_h,
                self.out_w
            )
        }
        let x = contiguous_f32(xs, xl, Self::NAME)?;
        let w = contiguous_f32(ws, wl, Self::NAME)?;
        let bias = bias_slice(Self::NAME, bias, co)?;
        let y = backward_input(x, w, bias, ci, &g);
        Ok((CpuStorage::F32(y), Shape::from((b, co, g.h, g.w))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        with_bias: bool,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, k, _) = w.dims4()?;
        let conv = Conv2dOp {
            stride: self.stride,
            padding: self.padding,
        };
        // [B, C_out, out_h, out_w] -> [B, C_in, H, W]
        let dx = grad.apply_op2(w, conv)?;
        // The convolution's input is `grad`, its output gradient `x`.
        let (dw, db) = weight_grad(
            &grad,
            x,
            ConvWeightGrad {
                k,
                stride: self.stride,
                padding: self.padding,
                bias: with_bias.then_some(BiasFrom::Input),
            },
        )?;
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, false, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.grads(x, w, true, grad)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// Which tensor the bias gradient is the channel sum of.
#[derive(Debug, Clone, Copy)]
enum BiasFrom {
    /// The convolution's output gradient (`conv2d`'s bias, `[O]`).
    OutputGrad,
    /// The convolution's input (`conv_transpose2d`'s bias, `[C]`: that input is the
    /// transposed convolution's output gradient).
    Input,
}

/// `(x [B, C, H, W], g [B, O, Ho, Wo]) -> dW [O, C, k, k]` (kernel C), or with a bias the
/// flat `[O*C*k*k + n]` of `dW` then the bias gradient. A gradient only: it has no backward
/// of its own (applied without one; candle's backward detaches gradients anyway).
#[derive(Debug, Clone, Copy)]
struct ConvWeightGrad {
    k: usize,
    stride: usize,
    padding: usize,
    bias: Option<BiasFrom>,
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "genlab-conv-weight-grad"
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
                "{}: unexpected gradient shape {:?} for input {:?}",
                self.name(),
                l2.shape(),
                l1.shape()
            )
        }
        let x = contiguous_f32(s1, l1, self.name())?;
        let gy = contiguous_f32(s2, l2, self.name())?;
        let mut dw = backward_weight(x, gy, o, &g);
        let shape = match self.bias {
            None => Shape::from((o, g.c, self.k, self.k)),
            Some(from) => {
                dw.extend(match from {
                    BiasFrom::OutputGrad => channel_sums(gy, o, g.out_hw()),
                    BiasFrom::Input => channel_sums(x, g.c, g.h * g.w),
                });
                Shape::from(dw.len())
            }
        };
        Ok((CpuStorage::F32(dw), shape))
    }
}

/// Applies [`ConvWeightGrad`] to `(x, g)` and unpacks `(dW [O, C, k, k], bias gradient)`.
fn weight_grad(x: &Tensor, g: &Tensor, op: ConvWeightGrad) -> Result<(Tensor, Option<Tensor>)> {
    let (_, c, _, _) = x.dims4()?;
    let (_, o, _, _) = g.dims4()?;
    let out = x.apply_op2_no_bwd(g, &op)?;
    let Some(from) = op.bias else {
        return Ok((out, None));
    };
    let (k, nw) = (op.k, o * c * op.k * op.k);
    let nb = match from {
        BiasFrom::OutputGrad => o,
        BiasFrom::Input => c,
    };
    // [O*C*k*k + nb] -> [O, C, k, k] and [nb]
    let dw = out.narrow(0, 0, nw)?.reshape((o, c, k, k))?;
    let db = out.narrow(0, nw, nb)?;
    Ok((dw, Some(db)))
}

/// Checks what the public functions share: f32, CPU, 4-D, square kernel.
fn check_common(what: &str, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<()> {
    for t in [Some(x), Some(w), bias].into_iter().flatten() {
        if t.dtype() != DType::F32 || !t.device().is_cpu() {
            bail!(
                "{what}: CPU f32 tensors only, got {:?} on {:?}",
                t.dtype(),
                t.device().location()
            )
        }
    }
    x.dims4()?;
    let (_, _, k, kw) = w.dims4()?;
    if k != kw {
        bail!("{what}: only square kernels are supported, got {k}x{kw}")
    }
    Ok(())
}

/// 2-D convolution, NCHW, f32, CPU: `x [B, C, H, W]`, `w [O, C, k, k]`, optional
/// `bias [O]`, `stride`, zero `padding`, dilation 1, groups 1 (PyTorch's `conv2d`).
///
/// Output `[B, O, Ho, Wo]` (contiguous) with `Ho = (H + 2p - k)/s + 1` (same for `Wo`).
/// Differentiable w.r.t. `x`, `w` and `bias` through candle's autograd; the input gradient
/// is [`conv_transpose2d`]'s kernel, itself differentiable.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    check_common("conv2d", x, w, bias)?;
    let (_, c, _, _) = x.dims4()?;
    let (o, cw, _, _) = w.dims4()?;
    if cw != c {
        bail!(
            "conv2d: input has {c} channels but weight {:?} expects {cw}",
            w.dims()
        )
    }
    if let Some(b) = bias {
        if b.dims1()? != o {
            bail!("conv2d: bias {:?} for {o} output channels", b.dims())
        }
    }
    let op = Conv2dOp { stride, padding };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// 2-D transposed convolution, NCHW, f32, CPU (PyTorch's `conv_transpose2d` with
/// `output_padding` 0, dilation 1, groups 1): `x [B, C_in, H, W]`, `w [C_in, C_out, k, k]`,
/// optional `bias [C_out]` -> `[B, C_out, (H-1)s - 2p + k, (W-1)s - 2p + k]`.
///
/// The adjoint of [`conv2d`] with the same `w`, `stride` and `padding`. Differentiable
/// w.r.t. `x`, `w` and `bias`; the input gradient is [`conv2d`]'s kernel.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    check_common("conv_transpose2d", x, w, bias)?;
    let (_, ci, h, wd) = x.dims4()?;
    let (wci, co, k, _) = w.dims4()?;
    if wci != ci {
        bail!(
            "conv_transpose2d: input has {ci} channels but weight {:?} expects {wci}",
            w.dims()
        )
    }
    if let Some(b) = bias {
        if b.dims1()? != co {
            bail!(
                "conv_transpose2d: bias {:?} for {co} output channels",
                b.dims()
            )
        }
    }
    if stride == 0 || k == 0 || h == 0 || wd == 0 {
        bail!("conv_transpose2d: stride ({stride}), kernel ({k}) and input {h}x{wd} must be non-empty")
    }
    let (full_h, full_w) = ((h - 1) * stride + k, (wd - 1) * stride + k);
    if full_h <= 2 * padding || full_w <= 2 * padding {
        bail!("conv_transpose2d: padding {padding} leaves no output for a {h}x{wd} input")
    }
    let op = ConvTranspose2dOp {
        stride,
        padding,
        out_h: full_h - 2 * padding,
        out_w: full_w - 2 * padding,
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}
