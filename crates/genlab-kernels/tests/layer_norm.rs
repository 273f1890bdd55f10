//! Checks `genlab_kernels::layer_norm` (values and the gradients of x, weight and bias)
//! against its composition of plain differentiable candle ops, against f64 brute-force
//! loops and f64 central finite differences; plus constant rows, rows far from zero,
//! thread counts, shape errors and the f64 fallback.

use candle_core::{DType, Device, Result, Tensor};
use genlab_core::Rng;
use genlab_kernels::{layer_norm, layer_norm_composed};

mod common;
use common::{
    assert_fallback_grads, assert_fd_grads, assert_matches_reference, err_msg, f64s, fd_grad,
    rel_err, rel_err_vec, run_with_grads, to_f64, zeros, FD_TOL, TOL,
};

const EPS: f64 = 1e-5;

type LnFn = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>;

/// Output and the grads of `(x, weight, bias)` for loss = sum(f(x, w, b) * r).
fn run(f: LnFn, x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor) -> Vec<Tensor> {
    run_with_grads(&[x, w, b], r, |t| f(t[0], t[1], t[2], EPS).unwrap())
}

/// Random x (offset and scaled), weight, bias and loss weights r.
fn inputs(shape: &[usize], seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let d = *shape.last().unwrap();
    let mut rng = Rng::new(seed);
    let x = ((rng.normal_tensor(shape, &dev).unwrap() * 2.0).unwrap() + 0.5).unwrap();
    let w = (rng.normal_tensor(&[d], &dev).unwrap() + 1.0).unwrap();
    let b = rng.normal_tensor(&[d], &dev).unwrap();
    let r = rng.normal_tensor(shape, &dev).unwrap();
    (x, w, b, r)
}

fn check(shape: &[usize], seed: u64) {
    let (x, w, b, r) = inputs(shape, seed);
    let want = run(layer_norm_composed, &x, &w, &b, &r);
    let got = run(layer_norm, &x, &w, &b, &r);
    let names = ["out", "grad x", "grad weight", "grad bias"];
    assert_matches_reference(&format!("{shape:?}"), &names, &got, &want, |i| {
        i > 0 && shape.last() != Some(&1)
    });
}

#[test]
fn matches_composition_odd_shapes() {
    check(&[2, 3, 5], 1);
    check(&[7, 33], 2);
    check(&[17], 3);
    check(&[4, 1], 4);
}

#[test]
fn matches_composition_many_rows() {
    // Several rayon tasks and several PARTIAL_ROWS blocks per task.
    check(&[700, 64], 5);
    check(&[3, 2, 300], 6);
}

#[test]
fn any_thread_count() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            check(&[513, 40], 7);
            check(&[2, 3, 5], 8);
        });
    }
}

/// f64 brute force over rows of `d`.
fn brute(x: &[f64], w: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + EPS).sqrt();
            row.iter()
                .zip(w)
                .zip(b)
                .map(move |((v, wi), bi)| (v - mean) * rstd * wi + bi)
        })
        .collect()
}

#[test]
fn gradients_match_finite_differences() {
    let d = 4;
    let (x, w, b, r) = inputs(&[3, d], 9);
    let got = run(layer_norm, &x, &w, &b, &r);
    let (x64, w64, b64, r64) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&r));
    let dot = |o: Vec<f64>| o.iter().zip(&r64).map(|(a, b)| a * b).sum::<f64>();
    let e = rel_err_vec(&to_f64(&got[0]), &brute(&x64, &w64, &b64, d));
    assert!(e <= FD_TOL, "values vs brute force: {e}");
    let fd = [
        fd_grad(&x64, |x| dot(brute(x, &w64, &b64, d))),
        fd_grad(&w64, |w| dot(brute(&x64, w, &b64, d))),
        fd_grad(&b64, |b| dot(brute(&x64, &w64, b, d))),
    ];
    assert_fd_grads(&["x", "weight", "bias"], &got[1..], &fd);
}

#[test]
fn constant_row_gives_bias() {
    let dev = Device::Cpu;
    let (_, w, b, _) = inputs(&[3, 6], 10);
    let x = Tensor::new(&[[2.5f32; 6], [-1e4; 6], [0.0; 6]], &dev).unwrap();
    let y = layer_norm(&x, &w, &b, EPS).unwrap();
    let bias = b.to_vec1::<f32>().unwrap();
    for row in y.to_vec2::<f32>().unwrap() {
        assert_eq!(row, bias, "a constant row must normalise to the bias");
    }
}

/// Rows with mean ~1e4 and std ~1: the shifted f64 statistics keep full accuracy (the
/// f32 composition loses about three digits here, so the reference is f64).
#[test]
fn rows_far_from_zero() {
    let d = 50;
    let (x, w, b, _) = inputs(&[6, d], 11);
    let x = (x + 1e4).unwrap();
    let got = to_f64(&layer_norm(&x, &w, &b, EPS).unwrap());
    let want = brute(&to_f64(&x), &to_f64(&w), &to_f64(&b), d);
    let e = rel_err_vec(&got, &want);
    assert!(e <= FD_TOL, "rows far from zero: {e}");
}

#[test]
fn non_contiguous_input() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(12);
    let base = rng.normal_tensor(&[9, 5], &dev).unwrap();
    let (_, w, b, r) = inputs(&[5, 9], 13);
    let run_t = |f: LnFn| {
        run_with_grads(&[&base], &r, |t| {
            f(&t[0].t().unwrap(), &w, &b, EPS).unwrap()
        })
    };
    let (want, got) = (run_t(layer_norm_composed), run_t(layer_norm));
    assert!(rel_err(&got[0], &want[0]) <= TOL);
    assert!(rel_err(&got[1], &want[1]) <= TOL);
}

#[test]
fn f64_falls_back_with_gradients() {
    let (x, w, b, r) = inputs(&[4, 7], 14);
    let got = run(layer_norm, &f64s(&x), &f64s(&w), &f64s(&b), &f64s(&r));
    assert_eq!(got[0].dtype(), DType::F64);
    let want = brute(&to_f64(&x), &to_f64(&w), &to_f64(&b), 7);
    assert!(rel_err_vec(&to_f64(&got[0]), &want) < 1e-12);
    let ours = run(layer_norm, &x, &w, &b, &r);
    assert_fallback_grads(&got, &ours);
}

#[test]
fn shape_errors_are_errors() {
    let dev = Device::Cpu;
    let m = err_msg(layer_norm(&zeros(&[2, 5]), &zeros(&[4]), &zeros(&[5]), EPS));
    assert!(
        m.contains("weight has shape") && m.contains("expected [5]"),
        "{m}"
    );
    let m = err_msg(layer_norm(
        &zeros(&[2, 5]),
        &zeros(&[5]),
        &zeros(&[5, 1]),
        EPS,
    ));
    assert!(m.contains("bias has shape"), "{m}");
    let m = err_msg(layer_norm(
        &Tensor::new(1f32, &dev).unwrap(),
        &zeros(&[1]),
        &zeros(&[1]),
        EPS,
    ));
    assert!(m.contains("at least one dimension"), "{m}");
    let w64 = Tensor::zeros(5, DType::F64, &dev).unwrap();
    let m = err_msg(layer_norm(&zeros(&[2, 5]), &w64, &zeros(&[5]), EPS));
    assert!(m.contains("dtype"), "{m}");
    let m = err_msg(layer_norm_composed(
        &zeros(&[2, 5]),
        &zeros(&[4]),
        &zeros(&[5]),
        EPS,
    ));
    assert!(m.contains("weight has shape"), "{m}");
}

/// Per-group affine (`weight`, `bias` `[G, D]` for `x [G, ..., D]`): random inputs.
fn grouped_inputs(shape: &[usize], seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
    let (x, _, _, r) = inputs(shape, seed);
    let (g, d) = (shape[0], *shape.last().unwrap());
    let mut rng = Rng::new(seed + 100);
    let w = (rng.normal_tensor(&[g, d], &Device::Cpu).unwrap() + 1.0).unwrap();
    let b = rng.normal_tensor(&[g, d], &Device::Cpu).unwrap();
    (x, w, b, r)
}

#[test]
fn per_group_affine_matches_composition_and_brute_force() {
    for (shape, seed) in [
        (vec![3, 4, 5], 15),
        (vec![2, 7], 16),
        (vec![5, 2, 3, 33], 17),
    ] {
        let (x, w, b, r) = grouped_inputs(&shape, seed);
        let want = run(layer_norm_composed, &x, &w, &b, &r);
        let got = run(layer_norm, &x, &w, &b, &r);
        let names = ["out", "grad x", "grad weight", "grad bias"];
        assert_matches_reference(&format!("{shape:?} grouped"), &names, &got, &want, |i| {
            i > 0
        });
    }
    // f64 brute force and finite differences: group g's rows use row g of the affine.
    let (g, n, d) = (3, 2, 4);
    let (x, w, b, r) = grouped_inputs(&[g, n, d], 18);
    let got = run(layer_norm, &x, &w, &b, &r);
    let (x64, w64, b64, r64) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&r));
    let brute_g = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
        (0..g)
            .flat_map(|i| {
                let rows = &x[i * n * d..(i + 1) * n * d];
                brute(rows, &w[i * d..(i + 1) * d], &b[i * d..(i + 1) * d], d)
            })
            .collect()
    };
    let dot = |o: Vec<f64>| o.iter().zip(&r64).map(|(a, b)| a * b).sum::<f64>();
    let e = rel_err_vec(&to_f64(&got[0]), &brute_g(&x64, &w64, &b64));
    assert!(e <= FD_TOL, "values vs brute force: {e}");
    let fd = [
        fd_grad(&x64, |x| dot(brute_g(x, &w64, &b64))),
        fd_grad(&w64, |w| dot(brute_g(&x64, w, &b64))),
        fd_grad(&b64, |b| dot(brute_g(&x64, &w64, b))),
    ];
    assert_fd_grads(&["x", "weight", "bias"], &got[1..], &fd);
    // Any thread count gives the same result.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let again = pool.install(|| run(layer_norm, &x, &w, &b, &r));
    for (a, b) in again.iter().zip(&got) {
        assert_eq!(to_f64(a), to_f64(b));
    }
}

#[test]
fn per_group_shape_errors_are_errors() {
    let m = err_msg(layer_norm(
        &zeros(&[2, 3, 5]),
        &zeros(&[3, 5]),
        &zeros(&[3, 5]),
        EPS,
    ));
    assert!(
        m.contains("weight has shape") && m.contains("[2, 5]"),
        "{m}"
    );
    let m = err_msg(layer_norm(
        &zeros(&[2, 3, 5]),
        &zeros(&[2, 5]),
        &zeros(&[5]),
        EPS,
    ));
    assert!(m.contains("bias has shape"), "{m}");
    let m = err_msg(layer_norm(
        &zeros(&[5]),
        &zeros(&[1, 5]),
        &zeros(&[1, 5]),
        EPS,
    ));
    assert!(m.contains("weight has shape"), "{m}");
}
