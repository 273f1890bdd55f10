//! Helpers shared by the kernel tests: error measures against a reference, f64 copies,
//! gradients of a weighted sum, and central finite differences. (Each test binary uses a
//! subset.)
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor, Var};

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
    let t = t.to_dtype(DType::F32).unwrap();
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
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

/// The gradients of `vars`, in order, for loss = sum(out * r).
pub fn weighted_sum_grads(out: &Tensor, r: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let grads = (out * r).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| {
            grads
                .get(v.as_tensor())
                .expect("no gradient reached an input")
                .clone()
        })
        .collect()
}

/// `f` on `inputs` taken as fresh variables: `[out, grad of input 1, grad of input 2, ...]`
/// for loss = sum(out * r).
pub fn run_with_grads(
    inputs: &[&Tensor],
    r: &Tensor,
    f: impl FnOnce(&[&Tensor]) -> Tensor,
) -> Vec<Tensor> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let out = f(&vars.iter().map(Var::as_tensor).collect::<Vec<_>>());
    let grads = weighted_sum_grads(&out, r, &vars.iter().collect::<Vec<_>>());
    std::iter::once(out).chain(grads).collect()
}

/// Our gradients `got` against central finite differences `fd`, one per input (`names`):
/// each finite-difference gradient must flow and ours must match it within [`FD_TOL`].
pub fn assert_fd_grads(names: &[&str], got: &[Tensor], fd: &[Vec<f64>]) {
    assert!(names.len() == got.len() && got.len() == fd.len());
    for ((name, got), want) in names.iter().zip(got).zip(fd) {
        assert!(
            want.iter().any(|g| g.abs() > 1e-3),
            "fd grad {name} is zero"
        );
        let e = rel_err_vec(&to_f64(got), want);
        assert!(
            e <= FD_TOL,
            "grad {name} vs finite differences: {e} > {FD_TOL}"
        );
    }
}

/// Ours (`got`: the output, then the gradients) against the reference (`want`), entry by
/// entry (`names`), within [`TOL`]; where `must_flow(i)`, the reference entry must exceed
/// [`FLOWING`] (a gradient flows). `ctx` prefixes the messages.
pub fn assert_matches_reference(
    ctx: &str,
    names: &[&str],
    got: &[Tensor],
    want: &[Tensor],
    must_flow: impl Fn(usize) -> bool,
) {
    assert!(names.len() == got.len() && got.len() == want.len());
    for (i, name) in names.iter().enumerate() {
        if must_flow(i) {
            assert!(
                max_abs(&want[i]) > FLOWING,
                "{ctx}: reference {name} is zero: no gradient flows"
            );
        }
        let e = rel_err(&got[i], &want[i]);
        assert!(e <= TOL, "{ctx}: {name} rel err {e} > {TOL}");
    }
}

/// `t` converted to f64 (to run a kernel's fallback).
pub fn f64s(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

/// The gradients of an f64 fallback run (`got`: the output, then the gradients) flow and
/// match those of our f32 run (`ours`, same layout) within [`TOL`].
pub fn assert_fallback_grads(got: &[Tensor], ours: &[Tensor]) {
    assert_eq!(got.len(), ours.len());
    for i in 1..got.len() {
        assert!(max_abs(&got[i]) > FLOWING, "f64 fallback: grad {i} is zero");
        assert!(rel_err(&ours[i], &got[i]) <= TOL, "f64 fallback: grad {i}");
    }
}

/// A CPU f32 tensor of zeros of shape `s`.
pub fn zeros(s: &[usize]) -> Tensor {
    Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap()
}

/// The message of the error `r` must be.
pub fn err_msg(r: Result<Tensor>) -> String {
    format!("{}", r.expect_err("expected an error"))
}
