//! Helpers shared by the kernel tests: error measures against a reference, f64 copies, and
//! central finite differences. (Each test binary uses a subset.)
#![allow(dead_code)]

use candle_core::{DType, Tensor};

/// Max |ours - reference| allowed, relative to max(1, max |reference|), values and grads.
pub const TOL: f32 = 2e-5;
/// Same, for our f32 results against f64 brute-force loops / finite differences.
pub const FD_TOL: f64 = 1e-4;
/// Central finite-difference step (f64).
pub const FD_STEP: f64 = 1e-6;
/// A reference gradient counts as flowing when its max |.| exceeds this.
pub const FLOWING: f32 = 1e-3;

/// max |t| (as f32).
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Relative max-abs error of `got` against `want` (same shape): max |got - want| over
/// max(1, max |want|).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let got = got.to_dtype(DType::F32).unwrap();
    let want = want.to_dtype(DType::F32).unwrap();
    max_abs(&(&got - &want).unwrap()) / max_abs(&want).max(1.0)
}

/// The elements of `t` as f64, flattened.
pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Max |got - want| over max(1, max |want|).
pub fn rel_err_vec(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Central differences of `loss(x)` in f64, one input element at a time.
pub fn fd_grad(x: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + FD_STEP;
            let lp = loss(&x);
            x[i] = x0 - FD_STEP;
            let lm = loss(&x);
            x[i] = x0;
            (lp - lm) / (2.0 * FD_STEP)
        })
        .collect()
}
