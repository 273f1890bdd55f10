//! Dense f64 linear algebra used by the metrics, on top of faer (blocked, SIMD, parallel on
//! the global rayon pool, so `--threads` / `RAYON_NUM_THREADS` applies).

use crate::FeatureMatrix;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use genlab_core::{Error, Result};

/// The parallelism faer should use: the global rayon pool's size.
pub fn par() -> Par {
    let n = rayon_threads();
    if n <= 1 {
        Par::Seq
    } else {
        Par::rayon(n)
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `a * b^T` (rows of `a` against rows of `b`): the Gram / cross-product matrix.
pub fn gram(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.nrows());
    matmul(out.as_mut(), Accum::Replace, a, b.transpose(), 1.0, par());
    out
}

/// `a * b`.
pub fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    matmul(out.as_mut(), Accum::Replace, a, b, 1.0, par());
    out
}

/// Squared Euclidean norm of every row.
pub fn row_sq_norms(m: MatRef<'_, f64>) -> Vec<f64> {
    (0..m.nrows())
        .map(|i| (0..m.ncols()).map(|j| m[(i, j)] * m[(i, j)]).sum())
        .collect()
}

/// Column means and the unbiased (N - 1) covariance, as `numpy.cov(x, rowvar=False)`.
///
/// Centres first, then forms `Xc^T Xc` with a matrix multiply, so large feature means do
/// not cancel catastrophically.
pub fn mean_cov(x: &FeatureMatrix) -> Result<(Vec<f64>, Mat<f64>)> {
    let (n, d) = (x.rows(), x.cols());
    if n < 2 {
        return Err(Error::InvalidInput(format!(
            "a covariance needs at least 2 samples, got {n}"
        )));
    }
    let mut mean = vec![0.0; d];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(x.row(i)) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let xc = Mat::from_fn(n, d, |i, j| x.row(i)[j] - mean[j]);
    let mut cov = Mat::zeros(d, d);
    matmul(
        cov.as_mut(),
        Accum::Replace,
        xc.transpose(),
        xc.as_ref(),
        1.0 / (n as f64 - 1.0),
        par(),
    );
    symmetrize(&mut cov);
    Ok((mean, cov))
}

/// Replaces `m` by `(m + m^T) / 2` (removes rounding asymmetry).
pub fn symmetrize(m: &mut Mat<f64>) {
    let d = m.nrows();
    for i in 0..d {
        for j in 0..i {
            let v = 0.5 * (m[(i, j)] + m[(j, i)]);
            m[(i, j)] = v;
            m[(j, i)] = v;
        }
    }
}

/// Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.
pub fn sym_eig(m: MatRef<'_, f64>, what: &str) -> Result<(Vec<f64>, Mat<f64>)> {
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric(format!("eigendecomposition of {what} failed: {e:?}")))?;
    let s = evd.S().column_vector();
    let vals: Vec<f64> = (0..s.nrows()).map(|i| s[i]).collect();
    Ok((vals, evd.U().to_owned()))
}

/// Eigenvalues (ascending) of a symmetric matrix.
pub fn sym_eigvals(m: MatRef<'_, f64>, what: &str) -> Result<Vec<f64>> {
    m.self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Numeric(format!("eigenvalues of {what} failed: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_matches_the_two_pass_definition() {
        // Large offset: a one-pass sum-of-squares formula would lose digits here.
        let rows: Vec<Vec<f64>> = (0..7)
            .map(|i| {
                let t = i as f64;
                vec![1e6 + t, 1e6 - 2.0 * t + (t * t) * 0.1, (t * 1.3).sin()]
            })
            .collect();
        let x = FeatureMatrix::from_rows(&rows, "x").unwrap();
        let (mean, cov) = mean_cov(&x).unwrap();
        for a in 0..3 {
            let ma: f64 = rows.iter().map(|r| r[a]).sum::<f64>() / 7.0;
            assert!((mean[a] - ma).abs() < 1e-9);
            for b in 0..3 {
                let mb: f64 = rows.iter().map(|r| r[b]).sum::<f64>() / 7.0;
                let c: f64 = rows.iter().map(|r| (r[a] - ma) * (r[b] - mb)).sum::<f64>() / 6.0;
                assert!((cov[(a, b)] - c).abs() < 1e-9 * (1.0 + c.abs()), "{a}{b}");
            }
        }
        assert!(mean_cov(&x.head(1)).is_err());
    }

    #[test]
    fn eigendecomposition_reconstructs() {
        let a = Mat::from_fn(4, 4, |i, j| 1.0 / (1.0 + i as f64 + j as f64));
        let (vals, vecs) = sym_eig(a.as_ref(), "hilbert").unwrap();
        assert!(vals.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..4 {
            for j in 0..4 {
                let r: f64 = (0..4).map(|k| vecs[(i, k)] * vals[k] * vecs[(j, k)]).sum();
                assert!((r - a[(i, j)]).abs() < 1e-12);
            }
        }
    }
}
