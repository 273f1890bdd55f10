//! Checks `genlab_kernels::attention` and `softmax_last_dim` (values and the gradients of
//! every input) against compositions of plain differentiable candle ops, against f64
//! brute-force loops, and against f64 central finite differences; plus shape errors,
//! strided inputs, thread counts and the f64 fallback.

use candle_core::{DType, Device, Result, Tensor};
use genlab_core::Rng;
use genlab_kernels::{attention, attention_composed, softmax_last_dim, softmax_last_dim_composed};

mod common;
use common::{
    assert_fallback_grads, assert_fd_grads, assert_matches_reference, err_msg, f64s, fd_grad,
    max_abs, rel_err, rel_err_vec, run_with_grads, to_f64, weighted_sum_grads, zeros, FD_TOL,
    FLOWING, TOL,
};

/// Attention problem size.
#[derive(Debug, Clone, Copy)]
struct Cfg {
    bh: usize,
    nq: usize,
    nk: usize,
    d: usize,
    dv: usize,
}

const fn cfg(bh: usize, nq: usize, nk: usize, d: usize, dv: usize) -> Cfg {
    Cfg { bh, nq, nk, d, dv }
}

type AttnFn = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>;

/// Output and the grads of `(q, k, v)` for loss = sum(f(q, k, v) * r).
fn run_attn(f: AttnFn, q: &Tensor, k: &Tensor, v: &Tensor, r: &Tensor, scale: f64) -> Vec<Tensor> {
    run_with_grads(&[q, k, v], r, |t| f(t[0], t[1], t[2], scale).unwrap())
}

/// Random inputs for `c` (q scaled up so the softmax is far from uniform).
fn inputs(c: Cfg, seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let q = (rng.normal_tensor(&[c.bh, c.nq, c.d], &dev).unwrap() * 1.5).unwrap();
    let k = rng.normal_tensor(&[c.bh, c.nk, c.d], &dev).unwrap();
    let v = rng.normal_tensor(&[c.bh, c.nk, c.dv], &dev).unwrap();
    let r = rng.normal_tensor(&[c.bh, c.nq, c.dv], &dev).unwrap();
    (q, k, v, r)
}

/// Ours against the candle composition: output and all three grads; the reference's grads
/// must flow.
fn check_attn(c: Cfg, seed: u64) {
    let (q, k, v, r) = inputs(c, seed);
    let scale = 1.0 / (c.d as f64).sqrt();
    let want = run_attn(attention_composed, &q, &k, &v, &r, scale);
    let got = run_attn(attention, &q, &k, &v, &r, scale);
    let names = ["out", "grad q", "grad k", "grad v"];
    // With one key the softmax is constant: q and k get no gradient.
    assert_matches_reference(&format!("{c:?}"), &names, &got, &want, |i| {
        i == 3 || (i > 0 && c.nk > 1)
    });
}

#[test]
fn cross_attention_odd_shapes() {
    check_attn(cfg(3, 5, 7, 3, 4), 1);
    check_attn(cfg(2, 7, 5, 3, 4), 2);
    check_attn(cfg(1, 1, 1, 1, 1), 3);
    check_attn(cfg(2, 1, 9, 5, 2), 4);
}

#[test]
fn self_attention() {
    check_attn(cfg(2, 6, 6, 5, 5), 5);
    check_attn(cfg(5, 49, 49, 32, 32), 6);
}

#[test]
fn text_keys_cross_attention() {
    // Image tokens attending to a few text tokens.
    check_attn(cfg(4, 64, 3, 16, 16), 7);
}

/// Batch-heads fewer than threads (parallel GEMMs), and more (parallel batch-heads), and
/// one thread: same results.
#[test]
fn any_thread_count() {
    for threads in [1, 3, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            check_attn(cfg(2, 37, 29, 8, 6), 8);
            check_attn(cfg(7, 11, 13, 4, 3), 9);
        });
    }
}

/// f64 brute force: `[BH, Nq, dv]` of softmax(scale q k^T) v, plain loops.
fn brute_attn(q: &[f64], k: &[f64], v: &[f64], c: Cfg, scale: f64) -> Vec<f64> {
    let mut out = vec![0f64; c.bh * c.nq * c.dv];
    for b in 0..c.bh {
        for i in 0..c.nq {
            let s: Vec<f64> = (0..c.nk)
                .map(|j| {
                    scale
                        * (0..c.d)
                            .map(|t| q[(b * c.nq + i) * c.d + t] * k[(b * c.nk + j) * c.d + t])
                            .sum::<f64>()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for t in 0..c.dv {
                out[(b * c.nq + i) * c.dv + t] = (0..c.nk)
                    .map(|j| e[j] / z * v[(b * c.nk + j) * c.dv + t])
                    .sum::<f64>();
            }
        }
    }
    out
}

#[test]
fn output_rows_equal_brute_force_loops() {
    for (c, seed) in [(cfg(3, 5, 7, 3, 4), 10), (cfg(2, 40, 33, 16, 8), 11)] {
        let (q, k, v, _) = inputs(c, seed);
        let scale = 0.37;
        let got = to_f64(&attention(&q, &k, &v, scale).unwrap());
        let want = brute_attn(&to_f64(&q), &to_f64(&k), &to_f64(&v), c, scale);
        let e = rel_err_vec(&got, &want);
        assert!(e <= FD_TOL, "{c:?}: output vs brute force: {e}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    let c = cfg(2, 3, 4, 2, 3);
    let (q, k, v, r) = inputs(c, 12);
    let scale = 0.8;
    let got = run_attn(attention, &q, &k, &v, &r, scale);
    let (q64, k64, v64, r64) = (to_f64(&q), to_f64(&k), to_f64(&v), to_f64(&r));
    let dot = |o: Vec<f64>| o.iter().zip(&r64).map(|(a, b)| a * b).sum::<f64>();
    let fd = [
        fd_grad(&q64, |x| dot(brute_attn(x, &k64, &v64, c, scale))),
        fd_grad(&k64, |x| dot(brute_attn(&q64, x, &v64, c, scale))),
        fd_grad(&v64, |x| dot(brute_attn(&q64, &k64, x, c, scale))),
    ];
    assert_fd_grads(&["q", "k", "v"], &got[1..], &fd);
}

/// q, k, v narrowed out of one packed `[BH, N, 3d]` tensor, and k as a transposed view: the
/// kernel reads the strides in place; values and the packed tensor's grad match.
#[test]
fn strided_inputs() {
    let (bh, n, d) = (3, 9, 4);
    let dev = Device::Cpu;
    let mut rng = Rng::new(13);
    let qkv = rng.normal_tensor(&[bh, n, 3 * d], &dev).unwrap();
    let r = rng.normal_tensor(&[bh, n, d], &dev).unwrap();
    let run = |f: AttnFn| {
        run_with_grads(&[&qkv], &r, |t| {
            let (q, k, v) = (
                t[0].narrow(2, 0, d).unwrap(),
                t[0].narrow(2, d, d).unwrap(),
                t[0].narrow(2, 2 * d, d).unwrap(),
            );
            assert!(!q.is_contiguous());
            f(&q, &k, &v, 0.5).unwrap()
        })
    };
    let (want, got) = (run(attention_composed), run(attention));
    assert!(rel_err(&got[0], &want[0]) <= TOL, "packed qkv: output");
    assert!(rel_err(&got[1], &want[1]) <= TOL, "packed qkv: grad");

    // k stored as [BH, d, Nk], used transposed.
    let c = cfg(2, 5, 6, 3, 2);
    let (q, _, v, r) = inputs(c, 14);
    let kt = rng.normal_tensor(&[c.bh, c.d, c.nk], &dev).unwrap();
    let run = |f: AttnFn| {
        run_with_grads(&[&kt], &r, |t| {
            let k = t[0].transpose(1, 2).unwrap();
            assert!(!k.is_contiguous());
            f(&q, &k, &v, 0.9).unwrap()
        })
    };
    let (want, got) = (run(attention_composed), run(attention));
    assert!(rel_err(&got[0], &want[0]) <= TOL, "transposed k: output");
    assert!(rel_err(&got[1], &want[1]) <= TOL, "transposed k: grad");
}

/// Large logits (scale * q k^T in the hundreds) stay finite and match the reference.
#[test]
fn large_logits_are_stable() {
    let c = cfg(2, 6, 8, 4, 3);
    let (q, k, v, r) = inputs(c, 15);
    let q = (q * 100.0).unwrap();
    let got = run_attn(attention, &q, &k, &v, &r, 1.0);
    let want = run_attn(attention_composed, &q, &k, &v, &r, 1.0);
    for (g, w) in got.iter().zip(&want) {
        let vals = to_f64(g);
        assert!(vals.iter().all(|x| x.is_finite()), "non-finite values");
        assert!(rel_err(g, w) <= 1e-4, "large logits: {}", rel_err(g, w));
    }
}

/// Other dtypes run the differentiable composition: f64 values match brute force and the
/// gradients match ours in f32.
#[test]
fn f64_falls_back_with_gradients() {
    let c = cfg(2, 4, 5, 3, 2);
    let (q, k, v, r) = inputs(c, 16);
    let got = run_attn(attention, &f64s(&q), &f64s(&k), &f64s(&v), &f64s(&r), 0.6);
    assert_eq!(got[0].dtype(), DType::F64);
    let want = brute_attn(&to_f64(&q), &to_f64(&k), &to_f64(&v), c, 0.6);
    assert!(rel_err_vec(&to_f64(&got[0]), &want) < 1e-12);
    let ours = run_attn(attention, &q, &k, &v, &r, 0.6);
    assert_fallback_grads(&got, &ours);
}

#[test]
fn shape_errors_are_errors() {
    let dev = Device::Cpu;
    // q, k and v shapes, and the error they give.
    type Case = (
        &'static [usize],
        &'static [usize],
        &'static [usize],
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            &[2, 5, 3],
            &[2, 7, 4],
            &[2, 7, 4],
            "q and k feature sizes differ",
        ),
        (
            &[2, 5, 3],
            &[2, 7, 3],
            &[2, 6, 4],
            "k and v key counts differ",
        ),
        (
            &[2, 5, 3],
            &[3, 7, 3],
            &[3, 7, 4],
            "batch-head counts differ",
        ),
        (&[5, 3], &[7, 3], &[7, 4], "must be 3-D"),
        (&[2, 5, 3], &[2, 0, 3], &[2, 0, 4], "no keys"),
    ];
    for (q, k, v, want) in cases {
        let m = err_msg(attention(&zeros(q), &zeros(k), &zeros(v), 1.0));
        assert!(m.contains(want), "{m}");
    }
    let v64 = Tensor::zeros(&[2, 7, 4], DType::F64, &dev).unwrap();
    let m = err_msg(attention(&zeros(&[2, 5, 3]), &zeros(&[2, 7, 3]), &v64, 1.0));
    assert!(m.contains("dtype"), "{m}");
    // The composition checks shapes the same way.
    let m = err_msg(attention_composed(
        &zeros(&[2, 5, 3]),
        &zeros(&[2, 7, 4]),
        &zeros(&[2, 7, 4]),
        1.0,
    ));
    assert!(m.contains("q and k feature sizes differ"), "{m}");
    let m = err_msg(softmax_last_dim(&Tensor::new(1f32, &dev).unwrap()));
    assert!(m.contains("scalar"), "{m}");
}

// ---------------------------------------------------------------------------------------
// softmax_last_dim
// ---------------------------------------------------------------------------------------

type SoftmaxFn = fn(&Tensor) -> Result<Tensor>;

/// Output and grad of x for loss = sum(f(x) * r).
fn run_softmax(f: SoftmaxFn, x: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
    let [y, g]: [Tensor; 2] = run_with_grads(&[x], r, |t| f(t[0]).unwrap())
        .try_into()
        .unwrap();
    (y, g)
}

#[test]
fn softmax_matches_composition() {
    let dev = Device::Cpu;
    for (shape, seed) in [
        (&[2usize, 3, 7][..], 20),
        (&[5, 40][..], 21),
        (&[600, 33][..], 22),
        (&[3, 1][..], 23),
        (&[9][..], 24),
    ] {
        let mut rng = Rng::new(seed);
        let x = (rng.normal_tensor(shape, &dev).unwrap() * 3.0).unwrap();
        let r = rng.normal_tensor(shape, &dev).unwrap();
        let (y0, g0) = run_softmax(softmax_last_dim_composed, &x, &r);
        let (y1, g1) = run_softmax(softmax_last_dim, &x, &r);
        if shape.last() != Some(&1) {
            assert!(max_abs(&g0) > FLOWING, "{shape:?}: reference grad is zero");
        }
        assert!(rel_err(&y1, &y0) <= TOL, "{shape:?}: values");
        assert!(rel_err(&g1, &g0) <= TOL, "{shape:?}: grad");
        // Rows sum to 1.
        let n = *shape.last().unwrap();
        for row in to_f64(&y1).chunks(n) {
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "{shape:?}: row sums to {s}");
        }
    }
}

/// f64 brute-force softmax over rows of `n`.
fn brute_softmax(x: &[f64], n: usize) -> Vec<f64> {
    x.chunks(n)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
            row.iter().map(move |v| (v - m).exp() / z)
        })
        .collect()
}

#[test]
fn softmax_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(25);
    let x = (rng.normal_tensor(&[3, 5], &dev).unwrap() * 2.0).unwrap();
    let r = rng.normal_tensor(&[3, 5], &dev).unwrap();
    let (y, g) = run_softmax(softmax_last_dim, &x, &r);
    let (x64, r64) = (to_f64(&x), to_f64(&r));
    let e = rel_err_vec(&to_f64(&y), &brute_softmax(&x64, 5));
    assert!(e <= FD_TOL, "softmax vs brute force: {e}");
    let fd = fd_grad(&x64, |x| {
        brute_softmax(x, 5)
            .iter()
            .zip(&r64)
            .map(|(a, b)| a * b)
            .sum()
    });
    let e = rel_err_vec(&to_f64(&g), &fd);
    assert!(e <= FD_TOL, "softmax grad vs finite differences: {e}");
}

#[test]
fn softmax_extremes() {
    let dev = Device::Cpu;
    // Huge and very negative logits: finite, rows sum to 1, the max dominates.
    let x = Tensor::new(&[[1000f32, 0.0, -1000.0], [-500.0, -500.0, -90.0]], &dev).unwrap();
    let y = to_f64(&softmax_last_dim(&x).unwrap());
    assert!(y.iter().all(|v| v.is_finite()));
    assert!((y[0] - 1.0).abs() < 1e-6 && y[1] < 1e-30 && y[2] < 1e-30);
    assert!((y[5] - 1.0).abs() < 1e-6);
    // A NaN input gives a NaN row (not a silently finite one).
    let x = Tensor::new(&[[1f32, f32::NAN, 2.0], [1.0, 2.0, 3.0]], &dev).unwrap();
    let y = to_f64(&softmax_last_dim(&x).unwrap());
    assert!(y[..3].iter().all(|v| v.is_nan()), "{y:?}");
    assert!(y[3..].iter().all(|v| v.is_finite()), "{y:?}");
    // A non-contiguous input.
    let mut rng = Rng::new(26);
    let base = rng.normal_tensor(&[6, 4], &dev).unwrap();
    let xt = base.t().unwrap();
    let e = rel_err(
        &softmax_last_dim(&xt).unwrap(),
        &softmax_last_dim_composed(&xt).unwrap(),
    );
    assert!(e <= TOL, "transposed input: {e}");
}

/// The packed-qkv op equals the composed reference on reshaped views (values and the
/// gradient of the packed input), for one and several heads.
#[test]
fn packed_qkv_matches_composed_reference() {
    use candle_core::{Device, Var};
    /// Different summation orders in f32.
    const QKV_TOL: f32 = 2e-5;
    let dev = Device::Cpu;
    for &(b, heads, d, n) in &[(2usize, 1usize, 3usize, 5usize), (3, 2, 4, 7), (1, 3, 1, 1)] {
        let c = heads * d;
        let data: Vec<f32> = (0..b * 3 * c * n)
            .map(|i| ((i as f32) * 0.731).sin() * 1.5)
            .collect();
        let qkv = Var::from_vec(data, (b, 3 * c, n), &dev).unwrap();
        let r: Vec<f32> = (0..b * c * n).map(|i| ((i as f32) * 0.37).cos()).collect();
        let r = candle_core::Tensor::from_vec(r, (b, c, n), &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let ours = genlab_kernels::attention_qkv(qkv.as_tensor(), heads, scale).unwrap();
        // Reference: narrow q, k, v out of [B, 3, H, d, N] and run the composed attention.
        let t = qkv.as_tensor().reshape((b, 3, heads, d, n)).unwrap();
        let part = |p: usize| {
            t.narrow(1, p, 1)
                .unwrap()
                .reshape((b * heads, d, n))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        };
        let theirs = genlab_kernels::attention_composed(&part(0), &part(1), &part(2), scale)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, c, n))
            .unwrap();
        // Max absolute difference.
        let diff = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap());
        assert!(diff(&ours, &theirs) < QKV_TOL, "values {b} {heads} {d} {n}");
        let g1 = weighted_sum_grads(&ours, &r, &[&qkv]);
        let g2 = weighted_sum_grads(&theirs, &r, &[&qkv]);
        assert!(diff(&g1[0], &g2[0]) < QKV_TOL, "grad {b} {heads} {d} {n}");
    }
    let bad = candle_core::Tensor::zeros((2, 7, 4), candle_core::DType::F32, &dev).unwrap();
    assert!(genlab_kernels::attention_qkv(&bad, 2, 1.0).is_err());
}

/// The token-major packed-qkv op equals the composed reference on reshaped views (values
/// and the gradient of the packed input), plain and causal, for one and several heads; the
/// causal reference itself equals an f64 brute-force loop.
#[test]
fn token_major_qkv_matches_composed_reference() {
    use candle_core::Var;
    use genlab_kernels::{attention_qkv_tokens, causal_attention_composed};
    /// Different summation orders in f32.
    const QKV_TOL: f32 = 2e-5;
    let dev = Device::Cpu;
    for &(b, heads, d, n) in &[
        (2usize, 1usize, 3usize, 5usize),
        (3, 2, 4, 7),
        (1, 3, 1, 1),
        (2, 4, 8, 40),
    ] {
        let c = heads * d;
        let data: Vec<f32> = (0..b * n * 3 * c)
            .map(|i| ((i as f32) * 0.731).sin() * 1.5)
            .collect();
        let qkv = Var::from_vec(data, (b, n, 3 * c), &dev).unwrap();
        let r: Vec<f32> = (0..b * n * c).map(|i| ((i as f32) * 0.37).cos()).collect();
        let r = Tensor::from_vec(r, (b, n, c), &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        // Reference: q, k, v narrowed out of [B, N, 3, H, d] into [BH, N, d].
        let t = qkv.as_tensor().reshape((b, n, 3, heads, d)).unwrap();
        let part = |p: usize| {
            t.narrow(2, p, 1)
                .unwrap()
                .squeeze(2)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((b * heads, n, d))
                .unwrap()
        };
        let (q, k, v) = (part(0), part(1), part(2));
        for causal in [false, true] {
            let ours = attention_qkv_tokens(qkv.as_tensor(), heads, scale, causal).unwrap();
            let o = if causal {
                causal_attention_composed(&q, &k, &v, scale).unwrap()
            } else {
                attention_composed(&q, &k, &v, scale).unwrap()
            };
            let theirs = o
                .reshape((b, heads, n, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((b, n, c))
                .unwrap();
            let diff = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap());
            let what = format!("b {b} heads {heads} d {d} n {n} causal {causal}");
            assert!(diff(&ours, &theirs) < QKV_TOL, "values, {what}");
            let g1 = weighted_sum_grads(&ours, &r, &[&qkv]);
            let g2 = weighted_sum_grads(&theirs, &r, &[&qkv]);
            assert!(diff(&g1[0], &g2[0]) < QKV_TOL, "grad, {what}");
            if causal {
                // Brute force in f64: query i attends keys 0..=i.
                let (qv, kv, vv) = (to_f64(&q), to_f64(&k), to_f64(&v));
                let ov = to_f64(&o);
                let mut worst = 0f64;
                for bh in 0..b * heads {
                    for i in 0..n {
                        let at = |x: &[f64], row: usize| -> Vec<f64> {
                            x[(bh * n + row) * d..(bh * n + row + 1) * d].to_vec()
                        };
                        let qi = at(&qv, i);
                        let s: Vec<f64> = (0..=i)
                            .map(|j| {
                                scale * qi.iter().zip(at(&kv, j)).map(|(a, b)| a * b).sum::<f64>()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                        for t in 0..d {
                            let want: f64 =
                                (0..=i).map(|j| (s[j] - m).exp() / z * at(&vv, j)[t]).sum();
                            worst = worst.max((want - ov[(bh * n + i) * d + t]).abs());
                        }
                    }
                }
                assert!(
                    worst < QKV_TOL as f64,
                    "causal reference vs brute force: {worst}, {what}"
                );
            }
        }
    }
    let bad = Tensor::zeros((2, 4, 7), DType::F32, &dev).unwrap();
    assert!(attention_qkv_tokens(&bad, 2, 1.0, false).is_err());
    let (q, k, v, _) = inputs(cfg(2, 3, 4, 2, 2), 5);
    assert!(
        causal_attention_composed(&q, &k, &v, 1.0).is_err(),
        "causal needs Nq = Nk"
    );
}
