//! Test helpers: f64 parameters, brute-force Jacobians by autograd, and a log|det| by an
//! algorithm the flows do not use (modified Gram-Schmidt QR: |det A| = prod_k R_kk).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;

use genlab_core::{ParamStore, Rng};

use super::Transform;

/// Invertibility: x -> z -> x in f64 (the bound the brief asks for; f64 reaches ~1e-13).
pub const INV_TOL: f64 = 1e-5;
/// Log-det against the brute-force Jacobian, both in f64 (rounding of D x D products).
pub const LOGDET_TOL: f64 = 1e-8;

/// A seeded store whose variables are created in f64 (the layers fall back to candle's
/// f64 ops), and its builder.
pub fn vb64(seed: u64) -> (ParamStore, VarBuilder<'static>) {
    let ps = ParamStore::new(seed, &Device::Cpu);
    let vb = VarBuilder::from_backend(Box::new(ps.clone()), DType::F64, Device::Cpu);
    (ps, vb)
}

/// Standard normal f64 input of `shape` scaled by `scale`.
pub fn randn64(seed: u64, shape: &[usize], scale: f64) -> Tensor {
    Rng::new(seed)
        .normal_tensor(shape, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .affine(scale, 0.0)
        .unwrap()
}

/// `log |det A|` of a row-major `n x n` matrix by modified Gram-Schmidt on its columns.
pub fn logabsdet_qr(a: &[f64], n: usize) -> f64 {
    let mut cols: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..n).map(|i| a[i * n + j]).collect())
        .collect();
    let mut s = 0.0;
    for k in 0..n {
        let norm = cols[k].iter().map(|v| v * v).sum::<f64>().sqrt();
        s += norm.ln();
        let q: Vec<f64> = cols[k].iter().map(|v| v / norm).collect();
        for c in cols.iter_mut().skip(k + 1) {
            let dot: f64 = c.iter().zip(&q).map(|(a, b)| a * b).sum();
            for (ci, qi) in c.iter_mut().zip(&q) {
                *ci -= dot * qi;
            }
        }
    }
    s
}

/// The Jacobian dz/dx of every example, by autograd one output coordinate at a time
/// (each example's z depends only on its own x): `B` row-major `Dz x D` matrices.
pub fn jacobians(t: &dyn Transform, x: &Tensor) -> Vec<Vec<f64>> {
    let b = x.dim(0).unwrap();
    let d: usize = x.dims()[1..].iter().product();
    let xv = Var::from_tensor(x).unwrap();
    let (z, _) = t.forward(xv.as_tensor()).unwrap();
    let z = z.reshape((b, ())).unwrap(); // [B, Dz]
    let dz = z.dim(1).unwrap();
    let mut jac = vec![vec![0.0; dz * d]; b];
    for j in 0..dz {
        let g = z
            .narrow(1, j, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx: Vec<Vec<f64>> = g
            .get(&xv)
            .expect("z depends on x")
            .reshape((b, d))
            .unwrap()
            .to_vec2()
            .unwrap();
        for (e, row) in gx.iter().enumerate() {
            jac[e][j * d..(j + 1) * d].copy_from_slice(row);
        }
    }
    jac
}

/// Checks one transform on `x` (f64): returns (max |x - inverse(forward(x))|,
/// max |logdet - log|det J_bruteforce||), and asserts both within the module's tolerances.
pub fn check_transform(name: &str, t: &dyn Transform, x: &Tensor) -> (f64, f64) {
    let (z, ld) = t.forward(x).unwrap();
    let back = t.inverse(&z).unwrap();
    let inv_err = max_abs_diff(x, &back);
    let ld: Vec<f64> = ld.to_vec1().unwrap();
    let d: usize = x.dims()[1..].iter().product();
    let mut ld_err: f64 = 0.0;
    for (e, j) in jacobians(t, x).iter().enumerate() {
        ld_err = ld_err.max((ld[e] - logabsdet_qr(j, d)).abs());
    }
    eprintln!("{name}: inverse error {inv_err:.2e}, log-det error {ld_err:.2e}");
    assert!(inv_err < INV_TOL, "{name}: x -> z -> x error {inv_err}");
    assert!(ld_err < LOGDET_TOL, "{name}: log-det error {ld_err}");
    (inv_err, ld_err)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn qr_log_det_matches_a_closed_form() {
    // det [[2, 1], [1, 3]] = 5; det of a rotation times diag(2, 0.5) = 1.
    assert!((logabsdet_qr(&[2.0, 1.0, 1.0, 3.0], 2) - 5f64.ln()).abs() < 1e-14);
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let a = [2.0 * c, -0.5 * s, 2.0 * s, 0.5 * c];
    assert!(logabsdet_qr(&a, 2).abs() < 1e-14);
}

/// Sets every variable of `ps` to N(0, scale^2) draws: moves a freshly built (near-identity)
/// transform somewhere generic, so that the checks exercise every term.
pub fn perturb(ps: &ParamStore, seed: u64, scale: f64) {
    for (i, (_, v)) in ps.vars().into_iter().enumerate() {
        v.set(&randn64(seed + i as u64, v.dims(), scale)).unwrap();
    }
}
