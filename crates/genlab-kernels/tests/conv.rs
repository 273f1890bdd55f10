//! Checks `genlab_kernels::conv2d` against candle's own `Tensor::conv2d`, and
//! `genlab_kernels::conv_transpose2d` against `Tensor::conv_transpose2d` (each plus a
//! broadcast bias): values and the gradients of x, w and bias, on odd shapes, strides and
//! paddings, with and without a bias, on contiguous and strided inputs.

use candle_core::{DType, Device, Tensor, Var};
use genlab_core::Rng;
use genlab_kernels::{conv2d, conv_transpose2d};

mod common;
use common::{rel_err, weighted_sum_grads};

/// Max |ours - candle| allowed, relative to max(1, max |candle|), for conv2d values and
/// gradients (f32 sums in a different order).
const CONV_TOL: f32 = 1e-4;
/// The same for conv_transpose2d.
const CONV_T_TOL: f32 = 1e-4;

/// One configuration: input `[b, c, h, w]`, `o` output channels, kernel `k`, stride `s`,
/// padding `p`.
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

/// `cfg([b, c, h, w, o, k, s, p])`.
const fn cfg(v: [usize; 8]) -> Cfg {
    let [b, c, h, w, o, k, s, p] = v;
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

/// `[O]` -> `[1, O, 1, 1]`, added to `y`.
fn add_bias(y: Tensor, b: Option<&Tensor>) -> Tensor {
    match b {
        Some(b) => {
            let o = b.dims1().unwrap();
            y.broadcast_add(&b.reshape((1, o, 1, 1)).unwrap()).unwrap()
        }
        None => y,
    }
}

/// candle's conv2d (+ bias).
///
/// candle 0.11.1's conv2d backward derives the conv_transpose2d `output_padding` from the
/// height only, so it fails ("shape mismatch in add") when `(H + 2p - k) % s` differs from
/// `(W + 2p - k) % s`. In that case the reference pads explicitly and crops away the rows
/// and columns no window reaches (they get zero gradient), then convolves with padding 0.
fn reference_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, s: usize, p: usize) -> Tensor {
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
    add_bias(y, b)
}

/// Which operation a check runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Conv,
    ConvTranspose,
}

/// Builds the input from `base` through `view` (identity or a strided view), runs ours and
/// candle's op with loss = sum(out * r), and compares the outputs and the gradients of
/// base, w and (when `with_bias`) the bias.
fn check_with_view(
    op: Op,
    c: Cfg,
    with_bias: bool,
    seed: u64,
    base_shape: &[usize],
    view: impl Fn(&Tensor) -> Tensor,
) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let base = rng.normal_tensor(base_shape, &dev).unwrap();
    // conv2d: w [O, C, k, k], bias [O]; conv_transpose2d: w [C, O, k, k], bias [O].
    let w_shape = match op {
        Op::Conv => [c.o, c.c, c.k, c.k],
        Op::ConvTranspose => [c.c, c.o, c.k, c.k],
    };
    let w = rng.normal_tensor(&w_shape, &dev).unwrap();
    let b = rng.normal_tensor(&[c.o], &dev).unwrap();
    let tol = match op {
        Op::Conv => CONV_TOL,
        Op::ConvTranspose => CONV_T_TOL,
    };

    let run = |ours: bool| {
        let vx = Var::from_tensor(&base).unwrap();
        let vw = Var::from_tensor(&w).unwrap();
        let vb = Var::from_tensor(&b).unwrap();
        let x = view(vx.as_tensor());
        assert_eq!(
            x.dims(),
            &[c.b, c.c, c.h, c.w],
            "view gives the wrong shape"
        );
        let (w, b) = (vw.as_tensor(), with_bias.then_some(vb.as_tensor()));
        let out = match (op, ours) {
            (Op::Conv, true) => conv2d(&x, w, b, c.s, c.p).unwrap(),
            (Op::Conv, false) => reference_conv(&x, w, b, c.s, c.p),
            (Op::ConvTranspose, true) => conv_transpose2d(&x, w, b, c.s, c.p).unwrap(),
            (Op::ConvTranspose, false) => {
                add_bias(x.conv_transpose2d(w, c.p, 0, c.s, 1).unwrap(), b)
            }
        };
        let r = Rng::new(seed ^ 0x5eed)
            .normal_tensor(out.dims(), &Device::Cpu)
            .unwrap();
        let vars = [&vx, &vw, &vb];
        let mut grads = weighted_sum_grads(&out, &r, &vars[..2 + with_bias as usize]).into_iter();
        let (gx, gw, gb) = (grads.next().unwrap(), grads.next().unwrap(), grads.next());
        (out, gx, gw, gb)
    };
    let (y0, gx0, gw0, gb0) = run(false);
    let (y1, gx1, gw1, gb1) = run(true);
    let mut pairs = vec![("out", y1, y0), ("grad x", gx1, gx0), ("grad w", gw1, gw0)];
    if let (Some(g1), Some(g0)) = (gb1, gb0) {
        pairs.push(("grad bias", g1, g0));
    }
    for (name, got, want) in pairs {
        let e = rel_err(&got, &want);
        assert!(
            e <= tol,
            "{op:?} {c:?} bias={with_bias}: {name} rel err {e} > {tol}"
        );
    }
}

fn check(op: Op, c: Cfg, seed: u64) {
    for with_bias in [true, false] {
        check_with_view(op, c, with_bias, seed, &[c.b, c.c, c.h, c.w], |t| t.clone());
    }
}

#[test]
fn conv_k3_s1_p1_odd() {
    check(Op::Conv, cfg([3, 3, 7, 5, 5, 3, 1, 1]), 1);
}

#[test]
fn conv_k3_s2_p1_odd_batch1() {
    check(Op::Conv, cfg([1, 5, 9, 7, 3, 3, 2, 1]), 2);
}

#[test]
fn conv_k3_s2_p1_even() {
    check(Op::Conv, cfg([3, 2, 8, 8, 7, 3, 2, 1]), 3);
}

#[test]
fn conv_mnist_like_s2() {
    check(Op::Conv, cfg([3, 1, 28, 28, 5, 3, 2, 1]), 4);
}

#[test]
fn conv_k1_p0_odd() {
    check(Op::Conv, cfg([3, 6, 5, 7, 3, 1, 1, 0]), 5);
}

#[test]
fn conv_k1_s2_p0_odd() {
    check(Op::Conv, cfg([1, 5, 7, 9, 6, 1, 2, 0]), 6);
}

#[test]
fn conv_k4_s2_p1_even_kernel() {
    check(Op::Conv, cfg([3, 3, 10, 7, 2, 4, 2, 1]), 7);
}

#[test]
fn conv_k4_s2_p0_odd() {
    check(Op::Conv, cfg([1, 3, 9, 11, 5, 4, 2, 0]), 8);
}

#[test]
fn conv_k3_s1_p0_odd() {
    check(Op::Conv, cfg([3, 7, 9, 5, 3, 3, 1, 0]), 9);
}

#[test]
fn conv_k5_p2() {
    check(Op::Conv, cfg([2, 3, 9, 11, 4, 5, 1, 2]), 10);
}

#[test]
fn conv_non_square_s3_p0() {
    check(Op::Conv, cfg([2, 2, 13, 6, 3, 3, 3, 0]), 11);
}

#[test]
fn conv_padding_wider_than_needed() {
    check(Op::Conv, cfg([1, 2, 4, 5, 3, 3, 1, 2]), 12);
}

#[test]
fn conv_kernel_covers_input() {
    check(Op::Conv, cfg([3, 2, 3, 3, 2, 3, 1, 0]), 13);
}

#[test]
fn conv_batch_larger_than_threads_k5_s2() {
    check(Op::Conv, cfg([9, 4, 11, 12, 6, 5, 2, 2]), 14);
}

#[test]
fn conv_permuted_input() {
    let c = cfg([3, 3, 7, 5, 4, 3, 1, 1]);
    // base [B, H, W, C] -> permute to [B, C, H, W] (non-contiguous view).
    check_with_view(Op::Conv, c, true, 15, &[c.b, c.h, c.w, c.c], |t| {
        let v = t.permute((0, 3, 1, 2)).unwrap();
        assert!(!v.is_contiguous());
        v
    });
}

#[test]
fn conv_narrowed_input() {
    let c = cfg([3, 3, 7, 5, 4, 3, 2, 1]);
    // base [B, C+2, H, W+3] -> narrow channels 1..1+C and width 2..2+W.
    check_with_view(Op::Conv, c, true, 16, &[c.b, c.c + 2, c.h, c.w + 3], |t| {
        let v = t.narrow(1, 1, c.c).unwrap().narrow(3, 2, c.w).unwrap();
        assert!(!v.is_contiguous());
        v
    });
}

#[test]
fn conv_transpose_k3_s1_p1_odd() {
    check(Op::ConvTranspose, cfg([3, 5, 7, 5, 3, 3, 1, 1]), 21);
}

#[test]
fn conv_transpose_k3_s1_p0_odd() {
    check(Op::ConvTranspose, cfg([1, 3, 5, 9, 6, 3, 1, 0]), 22);
}

#[test]
fn conv_transpose_k3_s2_p1_odd() {
    check(Op::ConvTranspose, cfg([3, 6, 7, 9, 5, 3, 2, 1]), 23);
}

#[test]
fn conv_transpose_k3_s2_p0() {
    check(Op::ConvTranspose, cfg([1, 3, 6, 5, 7, 3, 2, 0]), 24);
}

#[test]
fn conv_transpose_k4_s2_p1_odd() {
    check(Op::ConvTranspose, cfg([3, 5, 7, 5, 3, 4, 2, 1]), 25);
}

#[test]
fn conv_transpose_k4_s2_p0() {
    check(Op::ConvTranspose, cfg([1, 2, 5, 6, 3, 4, 2, 0]), 26);
}

#[test]
fn conv_transpose_k4_s1_p1_odd() {
    check(Op::ConvTranspose, cfg([3, 3, 5, 7, 5, 4, 1, 1]), 27);
}

#[test]
fn conv_transpose_k4_s1_p0() {
    check(Op::ConvTranspose, cfg([1, 7, 3, 4, 2, 4, 1, 0]), 28);
}

/// 1x1, stride 1, padding 0: the pointwise path (no im2col / col2im) of both directions.
#[test]
fn conv_transpose_k1_s1_p0() {
    check(Op::ConvTranspose, cfg([3, 6, 5, 7, 4, 1, 1, 0]), 40);
}

#[test]
fn conv_pointwise_batch_larger_than_threads() {
    check(Op::Conv, cfg([9, 8, 7, 7, 16, 1, 1, 0]), 41);
}

/// Fewer taps (C k k = 9) than output channels (16), like a flow conditioner's first layer.
#[test]
fn conv_few_taps_many_outputs() {
    check(Op::Conv, cfg([3, 1, 6, 5, 16, 3, 1, 1]), 42);
}

#[test]
fn conv_transpose_batch_larger_than_threads() {
    check(Op::ConvTranspose, cfg([9, 6, 7, 7, 5, 4, 2, 1]), 29);
}

#[test]
fn conv_transpose_narrowed_input() {
    let c = cfg([3, 3, 5, 6, 4, 4, 2, 1]);
    check_with_view(
        Op::ConvTranspose,
        c,
        true,
        30,
        &[c.b, c.c + 1, c.h + 2, c.w],
        |t| {
            let v = t.narrow(1, 1, c.c).unwrap().narrow(2, 1, c.h).unwrap();
            assert!(!v.is_contiguous());
            v
        },
    );
}

/// `conv_transpose2d` is the adjoint of `conv2d`: <conv(x), y> = <x, conv_t(y)>.
#[test]
fn conv_transpose_is_adjoint_of_conv() {
    let dev = Device::Cpu;
    for (i, c) in [cfg([2, 3, 9, 7, 4, 3, 2, 1]), cfg([1, 5, 8, 8, 3, 4, 2, 1])]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let x = rng.normal_tensor(&[c.b, c.c, c.h, c.w], &dev).unwrap();
        let w = rng.normal_tensor(&[c.o, c.c, c.k, c.k], &dev).unwrap();
        let y = conv2d(&x, &w, None, c.s, c.p).unwrap();
        let r = rng.normal_tensor(y.dims(), &dev).unwrap();
        let back = conv_transpose2d(&r, &w, None, c.s, c.p).unwrap();
        // conv_transpose2d's output is the (H-1)s - 2p + k-sized one; compare on it.
        let (_, _, bh, bw) = back.dims4().unwrap();
        let xs = x.narrow(2, 0, bh).unwrap().narrow(3, 0, bw).unwrap();
        let dot = |a: &Tensor, b: &Tensor| {
            (a * b)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (lhs, rhs) = (dot(&y, &r), dot(&xs, &back));
        assert!(
            (lhs - rhs).abs() / lhs.abs().max(1.0) <= CONV_TOL,
            "{c:?}: <conv x, r> = {lhs}, <x, conv_t r> = {rhs}"
        );
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 3, 5, 5), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap();
    // Channel mismatch, non-square kernel, wrong bias length, f64, kernel too large.
    let w_bad_c = Tensor::zeros((4, 2, 3, 3), DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w_bad_c, None, 1, 1).is_err());
    let w_rect = Tensor::zeros((4, 3, 3, 2), DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w_rect, None, 1, 1).is_err());
    let b_bad = Tensor::zeros(5, DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w, Some(&b_bad), 1, 1).is_err());
    let x64 = x.to_dtype(DType::F64).unwrap();
    assert!(conv2d(&x64, &w, None, 1, 1).is_err());
    let w_big = Tensor::zeros((4, 3, 9, 9), DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w_big, None, 1, 1).is_err());
    assert!(conv2d(&x, &w, None, 0, 1).is_err());
    // conv_transpose2d: w [C_in = 4, C_out = 3] does not take a 3-channel input; padding
    // that leaves nothing.
    assert!(conv_transpose2d(&x, &w, None, 2, 1).is_err());
    let wt = Tensor::zeros((3, 2, 3, 3), DType::F32, &dev).unwrap();
    let x1 = Tensor::zeros((1, 3, 1, 1), DType::F32, &dev).unwrap();
    assert!(conv_transpose2d(&x1, &wt, None, 1, 2).is_err());
    assert_eq!(
        conv_transpose2d(&x, &wt, None, 2, 1).unwrap().dims(),
        &[1, 2, 9, 9]
    );
}
