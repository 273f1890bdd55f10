//! Checks `genlab_kernels::conv2d` against candle's own `Tensor::conv2d` (values and
//! gradients of x, w and bias) on odd shapes, strides and paddings, plus the adjointness
//! of im2col/col2im and the `Conv2d` layer's parameter names and init.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use genlab_core::Rng;
use genlab_kernels::{col2im, conv2d, conv2d_im2col, im2col, Conv2d};

/// Max |ours - candle| allowed, relative to max(1, max |candle|), for values and gradients.
const CONV_TOL: f32 = 1e-4;
/// Relative tolerance of the adjoint identity <im2col(x), y> = <x, col2im(y)> (f32 sums).
const ADJ_TOL: f32 = 1e-4;

/// One convolution configuration.
#[derive(Debug, Clone, Copy)]
struct Cfg {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
}

#[allow(clippy::too_many_arguments)]
const fn cfg(
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Cfg {
    Cfg {
        b,
        c,
        h,
        w,
        o,
        k,
        s,
        p,
    }
}

/// Relative max-abs error of `got` against `want` (same shape).
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = want
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    diff / scale
}

/// candle's reference: conv2d + bias broadcast over [B, O, Ho, Wo].
///
/// candle 0.11.1's conv2d backward derives the conv_transpose2d `output_padding` from the
/// height only, so it fails ("shape mismatch in add") when `(H + 2p - k) % s` differs from
/// `(W + 2p - k) % s`. In that case the reference pads explicitly and crops away the rows
/// and columns no window reaches (they get zero gradient), then convolves with padding 0.
fn reference(x: &Tensor, w: &Tensor, b: &Tensor, s: usize, p: usize) -> Tensor {
    let o = b.dims1().unwrap();
    let (_, _, h, wd) = x.dims4().unwrap();
    let k = w.dim(2).unwrap();
    let y = if (h + 2 * p - k) % s == (wd + 2 * p - k) % s {
        x.conv2d(w, p, s, 1, 1).unwrap()
    } else {
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
        // [B, C, H, W] -> [B, C, H+2p, W+2p] -> [B, C, (Ho-1)s+k, (Wo-1)s+k]
        let xp = x
            .pad_with_zeros(2, p, p)
            .unwrap()
            .pad_with_zeros(3, p, p)
            .unwrap()
            .narrow(2, 0, (ho - 1) * s + k)
            .unwrap()
            .narrow(3, 0, (wo - 1) * s + k)
            .unwrap();
        xp.conv2d(w, 0, s, 1, 1).unwrap()
    };
    // [O] -> [1, O, 1, 1]
    y.broadcast_add(&b.reshape((1, o, 1, 1)).unwrap()).unwrap()
}

/// Which implementation a run uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Impl {
    Candle,
    Fused,
    Im2Col,
}

/// Builds the input from `base` through `view` (identity or a strided view), runs both of
/// ours and candle's conv with loss = sum(out * r), and compares outputs and the grads of
/// base, w and b against candle's.
fn check_with_view(c: Cfg, seed: u64, base_shape: &[usize], view: impl Fn(&Tensor) -> Tensor) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let base = rng.normal_tensor(base_shape, &dev).unwrap();
    let w = rng.normal_tensor(&[c.o, c.c, c.k, c.k], &dev).unwrap();
    let b = rng.normal_tensor(&[c.o], &dev).unwrap();

    let run = |which: Impl| {
        let vx = Var::from_tensor(&base).unwrap();
        let vw = Var::from_tensor(&w).unwrap();
        let vb = Var::from_tensor(&b).unwrap();
        let x = view(vx.as_tensor());
        assert_eq!(
            x.dims(),
            &[c.b, c.c, c.h, c.w],
            "view gives the wrong shape"
        );
        let (w, b) = (vw.as_tensor(), vb.as_tensor());
        let out = match which {
            Impl::Candle => reference(&x, w, b, c.s, c.p),
            Impl::Fused => conv2d(&x, w, Some(b), c.s, c.p).unwrap(),
            Impl::Im2Col => conv2d_im2col(&x, w, Some(b), c.s, c.p).unwrap(),
        };
        let mut rng_r = Rng::new(seed ^ 0x5eed);
        let r = rng_r.normal_tensor(out.dims(), &Device::Cpu).unwrap();
        let loss = (&out * &r).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gx = grads.get(vx.as_tensor()).unwrap().clone();
        let gw = grads.get(vw.as_tensor()).unwrap().clone();
        let gb = grads.get(vb.as_tensor()).unwrap().clone();
        (out, gx, gw, gb)
    };
    let (y0, gx0, gw0, gb0) = run(Impl::Candle);
    for which in [Impl::Fused, Impl::Im2Col] {
        let (y1, gx1, gw1, gb1) = run(which);
        for (name, got, want) in [
            ("out", &y1, &y0),
            ("grad x", &gx1, &gx0),
            ("grad w", &gw1, &gw0),
            ("grad b", &gb1, &gb0),
        ] {
            let e = rel_err(got, want);
            assert!(
                e <= CONV_TOL,
                "{which:?} {c:?}: {name} rel err {e} > {CONV_TOL}"
            );
        }
    }
}

fn check(c: Cfg, seed: u64) {
    check_with_view(c, seed, &[c.b, c.c, c.h, c.w], |t| t.clone());
}

#[test]
fn matches_candle_k3_s1_p1_odd() {
    check(cfg(2, 3, 7, 5, 4, 3, 1, 1), 1);
}

#[test]
fn matches_candle_k3_s2_p1() {
    check(cfg(1, 2, 8, 8, 3, 3, 2, 1), 2);
}

#[test]
fn matches_candle_mnist_like_s2() {
    check(cfg(3, 1, 28, 28, 5, 3, 2, 1), 3);
}

#[test]
fn matches_candle_k1_p0() {
    check(cfg(2, 6, 5, 4, 3, 1, 1, 0), 4);
}

#[test]
fn matches_candle_k5_p2() {
    check(cfg(2, 3, 9, 11, 4, 5, 1, 2), 5);
}

#[test]
fn matches_candle_non_square_s3_p0() {
    check(cfg(2, 2, 13, 6, 3, 3, 3, 0), 6);
}

#[test]
fn matches_candle_k4_s2_p1_even_kernel() {
    check(cfg(2, 3, 10, 7, 2, 4, 2, 1), 7);
}

#[test]
fn matches_candle_padding_wider_than_needed() {
    check(cfg(1, 2, 4, 5, 3, 3, 1, 2), 8);
}

#[test]
fn matches_candle_kernel_covers_input() {
    check(cfg(2, 2, 3, 3, 2, 3, 1, 0), 9);
}

#[test]
fn matches_candle_batch_larger_than_threads_k5_s2() {
    check(cfg(9, 4, 11, 12, 6, 5, 2, 2), 12);
}

#[test]
fn matches_candle_permuted_input() {
    let c = cfg(2, 3, 6, 5, 4, 3, 1, 1);
    // base [B, H, W, C] -> permute to [B, C, H, W] (non-contiguous view).
    check_with_view(c, 10, &[c.b, c.h, c.w, c.c], |t| {
        let v = t.permute((0, 3, 1, 2)).unwrap();
        assert!(!v.is_contiguous());
        v
    });
}

#[test]
fn matches_candle_narrowed_input() {
    let c = cfg(2, 3, 6, 5, 4, 3, 2, 1);
    // base [B, C+2, H, W+3] -> narrow channels 1..1+C and width 2..2+W.
    check_with_view(c, 11, &[c.b, c.c + 2, c.h, c.w + 3], |t| {
        let v = t.narrow(1, 1, c.c).unwrap().narrow(3, 2, c.w).unwrap();
        assert!(!v.is_contiguous());
        v
    });
}

/// <im2col(x), y> == <x, col2im(y)> for random x, y.
#[test]
fn col2im_is_adjoint_of_im2col() {
    let dev = Device::Cpu;
    for (i, c) in [
        cfg(2, 3, 7, 5, 1, 3, 1, 1),
        cfg(1, 2, 9, 8, 1, 3, 2, 1),
        cfg(2, 1, 10, 7, 1, 5, 3, 2),
        cfg(1, 4, 5, 6, 1, 1, 1, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng::new(100 + i as u64);
        let x = rng.normal_tensor(&[c.b, c.c, c.h, c.w], &dev).unwrap();
        let cols = im2col(&x, c.k, c.s, c.p).unwrap();
        let y = rng.normal_tensor(cols.dims(), &dev).unwrap();
        let back = col2im(&y, (c.b, c.c, c.h, c.w), c.k, c.s, c.p).unwrap();
        let lhs = (&cols * &y)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let rhs = (&x * &back)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = lhs.abs().max(rhs.abs()).max(1.0);
        assert!(
            (lhs - rhs).abs() / scale <= ADJ_TOL,
            "{c:?}: <im2col x, y> = {lhs} but <x, col2im y> = {rhs}"
        );
    }
}

/// col2im's own backward is im2col: d/dy sum(col2im(y) * r) = im2col(r).
#[test]
fn col2im_backward_is_im2col() {
    let dev = Device::Cpu;
    let c = cfg(2, 3, 7, 6, 1, 3, 2, 1);
    let mut rng = Rng::new(200);
    let r = rng.normal_tensor(&[c.b, c.c, c.h, c.w], &dev).unwrap();
    let cols_r = im2col(&r, c.k, c.s, c.p).unwrap();
    let y = Var::from_tensor(&rng.normal_tensor(cols_r.dims(), &dev).unwrap()).unwrap();
    let back = col2im(y.as_tensor(), (c.b, c.c, c.h, c.w), c.k, c.s, c.p).unwrap();
    let loss = (&back * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let gy = grads.get(y.as_tensor()).unwrap();
    let e = rel_err(gy, &cols_r);
    assert!(e <= CONV_TOL, "col2im backward rel err {e}");
}

/// The layer creates "weight"/"bias" like candle_nn::conv2d and computes the same forward.
#[test]
fn layer_matches_candle_nn_conv2d() {
    let dev = Device::Cpu;
    let (in_c, out_c, k, s, p) = (3, 8, 3, 2, 1);
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev);
    let ours = Conv2d::new(in_c, out_c, k, s, p, vb.pp("conv")).unwrap();
    let data = vm.data().lock().unwrap();
    assert_eq!(data["conv.weight"].dims(), &[out_c, in_c, k, k]);
    assert_eq!(data["conv.bias"].dims(), &[out_c]);
    let bound = 1.0 / (in_c as f32).sqrt();
    let bmax = data["conv.bias"]
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        bmax <= bound,
        "bias {bmax} outside candle_nn's bound {bound}"
    );
    drop(data);

    let cfg = candle_nn::Conv2dConfig {
        padding: p,
        stride: s,
        ..Default::default()
    };
    let theirs = candle_nn::Conv2d::new(ours.weight.clone(), ours.bias.clone(), cfg);
    let mut rng = Rng::new(300);
    let x = rng.normal_tensor(&[2, in_c, 9, 10], &dev).unwrap();
    let e = rel_err(&ours.forward(&x).unwrap(), &theirs.forward(&x).unwrap());
    assert!(e <= CONV_TOL, "layer forward rel err {e}");
}
