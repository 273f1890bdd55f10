//! Sliced Wasserstein distance, and the exact 1-D Wasserstein distance it is built on.
//!
//! Rabin, Peyre, Delon & Bernot, "Wasserstein barycenter and its application to texture
//! mixing", SSVM 2011; Bonneel, Rabin, Peyre & Pfister, "Sliced and Radon Wasserstein
//! barycenters of measures", JMIV 51, 2015 (eq. 5):
//!
//! ```text
//! SW_p(mu, nu) = ( E_{theta ~ U(S^{d-1})} W_p^p(theta#mu, theta#nu) )^(1/p)
//! ```
//!
//! estimated with K directions drawn uniformly on the sphere (normalised standard normal
//! vectors from `Rng::new(seed)`): `( (1/K) sum_k W_p^p(theta_k . x, theta_k . y) )^(1/p)`,
//! the definition of POT's `ot.sliced_wasserstein_distance`. `SW_p <= W_p`.
//!
//! In 1-D, `W_p^p = int_0^1 |F^{-1}(t) - G^{-1}(t)|^p dt` (Peyre & Cuturi,
//! arXiv:1803.00567, section 2.6), evaluated exactly by merging the two sorted samples:
//! with weights 1/n and 1/m the quantile functions are step functions whose breakpoints
//! are multiples of 1/(n m), so the integral is a sum over at most n + m - 1 pieces with
//! integer lengths (no floating-point cumulative sums).

use crate::matrix::{check_pair, FeatureMatrix};
use genlab_core::{Error, Result, Rng};

/// `K` unit directions in R^d, K x d row-major: normalised standard normal vectors from
/// `Rng::new(seed)`, i.e. uniform on the sphere.
pub fn random_directions(d: usize, k: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut dirs = Vec::with_capacity(k * d);
    for _ in 0..k {
        loop {
            let theta: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            let norm = theta.iter().map(|t| t * t).sum::<f64>().sqrt();
            if norm > 0.0 {
                dirs.extend(theta.iter().map(|t| t / norm));
                break;
            }
        }
    }
    dirs
}

/// Sliced `SW_p` over the given directions (K x d row-major, used as given: not
/// re-normalised, as POT's `projections=` argument).
pub fn sliced_with_directions(
    real: &FeatureMatrix,
    fake: &FeatureMatrix,
    dirs: &[f64],
    p: u32,
) -> Result<f64> {
    check_pair(real, fake, 1)?;
    check_p(p)?;
    let d = real.cols();
    if dirs.is_empty() || !dirs.len().is_multiple_of(d) {
        return Err(Error::InvalidInput(format!(
            "sliced Wasserstein: {} direction values do not make K >= 1 directions of \
             dimension {d}",
            dirs.len()
        )));
    }
    if let Some(i) = dirs.iter().position(|t| !t.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "sliced Wasserstein: direction {} has a non-finite value {}",
            i / d,
            dirs[i]
        )));
    }
    let k = dirs.len() / d;
    let mut xs = vec![0.0; real.rows()];
    let mut ys = vec![0.0; fake.rows()];
    let mut total = 0.0;
    for theta in dirs.chunks_exact(d) {
        project(real, theta, &mut xs);
        project(fake, theta, &mut ys);
        xs.sort_unstable_by(f64::total_cmp);
        ys.sort_unstable_by(f64::total_cmp);
        total += wasserstein_1d_pow_sorted(&xs, &ys, p);
    }
    Ok(root(total / k as f64, p))
}

fn project(x: &FeatureMatrix, theta: &[f64], out: &mut [f64]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = x.row(i).iter().zip(theta).map(|(a, b)| a * b).sum();
    }
}

/// Exact 1-D `W_p` between the empirical measures of `u` and `v` (uniform weights, any
/// sizes >= 1, any order). Panics on empty input (use [`crate::wasserstein::wasserstein`]
/// for checked input).
pub fn wasserstein_1d(u: &[f64], v: &[f64], p: u32) -> f64 {
    let mut us = u.to_vec();
    let mut vs = v.to_vec();
    us.sort_unstable_by(f64::total_cmp);
    vs.sort_unstable_by(f64::total_cmp);
    root(wasserstein_1d_pow_sorted(&us, &vs, p), p)
}

/// `W_p^p` between sorted samples by the quantile merge: atom i of u covers
/// `[i m, (i+1) m)` and atom j of v covers `[j n, (j+1) n)` in units of 1/(n m).
pub fn wasserstein_1d_pow_sorted(u: &[f64], v: &[f64], p: u32) -> f64 {
    let (n, m) = (u.len(), v.len());
    assert!(n > 0 && m > 0, "wasserstein_1d needs non-empty samples");
    let (mut i, mut j) = (0usize, 0usize);
    let (mut ru, mut rv) = (m as u64, n as u64);
    let mut acc = 0.0f64;
    while i < n && j < m {
        let w = ru.min(rv);
        let d = (u[i] - v[j]).abs();
        acc += w as f64 * if p == 1 { d } else { d.powi(p as i32) };
        ru -= w;
        rv -= w;
        if ru == 0 {
            i += 1;
            ru = m as u64;
        }
        if rv == 0 {
            j += 1;
            rv = n as u64;
        }
    }
    acc / (n as f64 * m as f64)
}

fn check_p(p: u32) -> Result<()> {
    if p == 1 || p == 2 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "Wasserstein order p = {p} is not supported; expected 1 or 2"
        )))
    }
}

fn root(x: f64, p: u32) -> f64 {
    if p == 1 {
        x
    } else {
        x.max(0.0).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounding-level agreement.
    const TOL: f64 = 1e-12;

    /// Brute force: expand both samples to n*m equal atoms (each u atom m times, each v
    /// atom n times), sort, and match in order.
    fn brute_1d(u: &[f64], v: &[f64], p: u32) -> f64 {
        let (n, m) = (u.len(), v.len());
        let mut a: Vec<f64> = u.iter().flat_map(|&x| std::iter::repeat_n(x, m)).collect();
        let mut b: Vec<f64> = v.iter().flat_map(|&x| std::iter::repeat_n(x, n)).collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let s: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs().powi(p as i32))
            .sum();
        root(s / (n * m) as f64, p)
    }

    #[test]
    fn one_d_matches_replicated_sorting() {
        let mut rng = Rng::new(4);
        for &(n, m) in &[(1, 1), (1, 5), (5, 1), (3, 7), (10, 10), (12, 8), (31, 17)] {
            let u: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let v: Vec<f64> = (0..m).map(|_| 2.0 * rng.normal() + 0.3).collect();
            for p in [1, 2] {
                let a = wasserstein_1d(&u, &v, p);
                let b = brute_1d(&u, &v, p);
                assert!(
                    (a - b).abs() <= TOL * b.max(1.0),
                    "{n}x{m} p{p}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn directions_are_unit_and_seeded() {
        let d = random_directions(5, 7, 3);
        assert_eq!(d.len(), 35);
        for t in d.chunks_exact(5) {
            let norm: f64 = t.iter().map(|x| x * x).sum::<f64>();
            assert!((norm - 1.0).abs() < 1e-15);
        }
        assert_eq!(d, random_directions(5, 7, 3));
        assert_ne!(d, random_directions(5, 7, 4));
    }
}
