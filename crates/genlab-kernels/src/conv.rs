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

use candle_core::{bail, Result, Shape, Tensor};
use gemm::Parallelism;

use crate::gemm::{gemm_into, Mat};
use crate::im2col::{col2im_image, im2col_image, Geom, Scratch};
use crate::op::{apply, apply_no_bwd, f32s, require_f32_cpu, unpack, Arg, Grads, Kernel};
use crate::par::{num_threads, par_chunks_mut, par_ranges};

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

/// The contiguous f32 data of `(x, w (, bias))`, the optional bias checked to be `[n]`.
type Inputs<'a> = (&'a [f32], &'a [f32], Option<&'a [f32]>);

/// Reads `args` = `(x, w (, bias))` and checks the bias against `n` channels.
fn inputs<'a>(op: &str, args: &[Arg<'a>], n: usize) -> Result<Inputs<'a>> {
    let [x, w] = f32s(op, args)?;
    let Some(b) = args.get(2) else {
        return Ok((x, w, None));
    };
    if b.shape().dims1()? != n {
        bail!("{op}: bias {:?} for {n} channels", b.shape())
    }
    Ok((x, w, Some(b.f32(op)?)))
}

/// Which of the two ops a [`ConvOp`] is.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Convolution `(x [B, C, H, W], w [O, C, k, k] (, bias [O])) -> [B, O, Ho, Wo]`
    /// (kernel A).
    Conv,
    /// Transposed convolution `(x [B, C_in, H, W], w [C_in, C_out, k, k] (, bias [C_out]))
    /// -> [B, C_out, out_h, out_w]` (kernel B): the adjoint of the convolution of a
    /// `[B, C_out, out_h, out_w]` input by `w` as an `[O = C_in, C = C_out, k, k]` weight,
    /// whose output size must be `H x W`. `out_h` may exceed `(H-1)s - 2p + k` by up to
    /// `s - 1` (the rows no window reaches get zero), as a convolution's input gradient needs.
    Transposed { out_h: usize, out_w: usize },
}

/// A convolution or transposed convolution with `stride` and zero `padding`, applied to
/// `(x, w)` or `(x, w, bias)`. Backward: `dx` through the other direction (its adjoint,
/// itself differentiable), `dw` (and `db`) through [`ConvWeightGrad`] (kernel C).
#[derive(Debug, Clone, Copy)]
struct ConvOp {
    stride: usize,
    padding: usize,
    direction: Direction,
}

impl Kernel for ConvOp {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::Conv => "genlab-conv2d",
            Direction::Transposed { .. } => "genlab-conv-transpose2d",
        }
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let op = self.name();
        let (b, ci, h, wd) = args[0].shape().dims4()?;
        // The weight as kernel A's [O, C, k, k].
        let (o, c, k, _) = args[1].shape().dims4()?;
        match self.direction {
            Direction::Conv => {
                let g = Geom::new((b, ci, h, wd), k, self.stride, self.padding)?;
                if g.c != c {
                    bail!("{op}: input has {} channels, weight {c}", g.c)
                }
                let (x, w, bias) = inputs(op, args, o)?;
                let y = forward(x, w, bias, o, &g);
                Ok((y, Shape::from((g.b, o, g.ho, g.wo))))
            }
            Direction::Transposed { out_h, out_w } => {
                if o != ci {
                    bail!("{op}: input has {ci} channels, weight {o}")
                }
                let g = Geom::new((b, c, out_h, out_w), k, self.stride, self.padding)?;
                if (g.ho, g.wo) != (h, wd) {
                    bail!("{op}: a {out_h}x{out_w} output does not convolve back to the {h}x{wd} input")
                }
                let (x, w, bias) = inputs(op, args, c)?;
                let y = backward_input(x, w, bias, ci, &g);
                Ok((y, Shape::from((b, c, g.h, g.w))))
            }
        }
    }

    fn backward(&self, args: &[&Tensor], _res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let (x, w) = (args[0], args[1]);
        let (_, _, h, wd) = x.dims4()?;
        // conv2d: [B, O, Ho, Wo] -> [B, C, H, W]; conv_transpose2d: [B, C_out, out_h, out_w]
        // -> [B, C_in, H, W].
        let adjoint = ConvOp {
            direction: match self.direction {
                Direction::Conv => Direction::Transposed {
                    out_h: h,
                    out_w: wd,
                },
                Direction::Transposed { .. } => Direction::Conv,
            },
            ..*self
        };
        let dx = apply(adjoint, &[grad, w])?;
        // Kernel C on the convolution's input and output gradient: (x, g) for conv2d,
        // (g, x) for conv_transpose2d.
        let (input, out_grad, bias) = match self.direction {
            Direction::Conv => (x, grad, BiasFrom::OutputGrad),
            Direction::Transposed { .. } => (grad, x, BiasFrom::Input),
        };
        let bias = (args.len() == 3).then_some(bias);
        let (dw, db) = weight_grad(input, out_grad, w, self.stride, self.padding, bias)?;
        Ok(vec![Some(dx), Some(dw), db])
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

impl Kernel for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "genlab-conv-weight-grad"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (xshape, gshape) = (args[0].shape(), args[1].shape());
        let g = Geom::new(xshape.dims4()?, self.k, self.stride, self.padding)?;
        let (gb, o, gho, gwo) = gshape.dims4()?;
        if (gb, gho, gwo) != (g.b, g.ho, g.wo) {
            bail!(
                "{}: unexpected gradient shape {gshape:?} for input {xshape:?}",
                self.name()
            )
        }
        let [x, gy] = f32s(self.name(), args)?;
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
        Ok((dw, shape))
    }
}

/// The gradient of the weight `w [O, C, k, k]` (and with `bias`, of the bias) of the
/// convolution of `x [B, C, H, W]` with output gradient `g [B, O, Ho, Wo]`: applies
/// [`ConvWeightGrad`] and unpacks `(dW, bias gradient)`.
fn weight_grad(
    x: &Tensor,
    g: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    bias: Option<BiasFrom>,
) -> Result<(Tensor, Option<Tensor>)> {
    let (_, c, _, _) = x.dims4()?;
    let (_, o, _, _) = g.dims4()?;
    let (_, _, k, _) = w.dims4()?;
    let op = ConvWeightGrad {
        k,
        stride,
        padding,
        bias,
    };
    let out = apply_no_bwd(op, &[x, g])?;
    let Some(from) = bias else {
        return Ok((out, None));
    };
    let nb = match from {
        BiasFrom::OutputGrad => o,
        BiasFrom::Input => c,
    };
    // [O*C*k*k + nb] -> [O, C, k, k] and [nb]
    let [dw, db] = unpack(&out, [&Shape::from((o, c, k, k)), &Shape::from(nb)])?;
    Ok((dw, Some(db)))
}

/// Checks what the public functions share: f32, CPU, 4-D, square kernel, and the input's
/// channels and the bias against the weight's axes `w_in` and `w_out`.
fn check_args(
    what: &str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    (w_in, w_out): (usize, usize),
) -> Result<()> {
    require_f32_cpu(what, &[&[x, w][..], bias.as_slice()].concat())?;
    let (_, c, _, _) = x.dims4()?;
    let (_, _, k, kw) = w.dims4()?;
    if k != kw {
        bail!("{what}: only square kernels are supported, got {k}x{kw}")
    }
    let (wc, wo) = (w.dims()[w_in], w.dims()[w_out]);
    if wc != c {
        bail!(
            "{what}: input has {c} channels but weight {:?} expects {wc}",
            w.dims()
        )
    }
    if let Some(b) = bias {
        if b.dims1()? != wo {
            bail!("{what}: bias {:?} for {wo} output channels", b.dims())
        }
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
    // w [O, C, k, k]
    check_args("conv2d", x, w, bias, (1, 0))?;
    let op = ConvOp {
        stride,
        padding,
        direction: Direction::Conv,
    };
    apply(op, &[&[x, w][..], bias.as_slice()].concat())
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
    // w [C_in, C_out, k, k]
    check_args("conv_transpose2d", x, w, bias, (0, 1))?;
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, k, _) = w.dims4()?;
    if stride == 0 || k == 0 || h == 0 || wd == 0 {
        bail!("conv_transpose2d: stride ({stride}), kernel ({k}) and input {h}x{wd} must be non-empty")
    }
    let (full_h, full_w) = ((h - 1) * stride + k, (wd - 1) * stride + k);
    if full_h <= 2 * padding || full_w <= 2 * padding {
        bail!("conv_transpose2d: padding {padding} leaves no output for a {h}x{wd} input")
    }
    let op = ConvOp {
        stride,
        padding,
        direction: Direction::Transposed {
            out_h: full_h - 2 * padding,
            out_w: full_w - 2 * padding,
        },
    };
    apply(op, &[&[x, w][..], bias.as_slice()].concat())
}
