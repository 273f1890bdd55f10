//! Frechet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
//! Rule Converge to a Local Nash Equilibrium").
//!
//! FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2}).
//!
//! The trace of the matrix square root is computed from symmetric eigendecompositions only:
//! with S1 = U L U^T and C = U L^{1/2}, the matrix C^T S2 C is similar to S1^{1/2} S2 S1^{1/2},
//! symmetric and positive semi-definite, so tr sqrt = sum of sqrt of its eigenvalues. No
//! complex arithmetic (scipy's `sqrtm(S1 S2)` on a non-symmetric product can return complex
//! leftovers), and it stays defined when N < D or a covariance is singular. Eigenvalues that
//! rounding pushed below zero are clamped to 0; how many, and the most negative one, are
//! reported so a badly conditioned result is visible rather than silent.

use crate::linalg::{mean_cov, mul, sym_eig, sym_eigvals};
use crate::stats::GaussianStats;
use crate::suite::{Computed, Inputs};
use crate::{check_pair, FeatureMatrix};
use faer::Mat;
use genlab_core::{Error, Result};
use serde::Serialize;

/// Relative size (to the largest eigenvalue) below which a negative eigenvalue is treated as
/// rounding noise rather than a sign that the input was not a covariance.
pub const NEGATIVE_EIG_TOLERANCE: f64 = 1e-8;

/// FID and its parts.
#[derive(Debug, Clone, Serialize)]
pub struct FidResult {
    pub fid: f64,
    /// |mu1 - mu2|^2.
    pub mean_term: f64,
    /// tr(S1) + tr(S2) - 2 tr sqrt(S1^{1/2} S2 S1^{1/2}).
    pub cov_term: f64,
    pub n_real: usize,
    pub n_fake: usize,
    /// Eigenvalues clamped from negative to 0 (S1's and the product's), and the most negative.
    pub clamped_eigenvalues: usize,
    pub most_negative_eigenvalue: f64,
}

/// FID between two feature sets (fits mean and unbiased covariance to each).
pub fn fid(real: &FeatureMatrix, fake: &FeatureMatrix) -> Result<FidResult> {
    check_pair(real, fake, 2)?;
    let (m1, s1) = mean_cov(real)?;
    let (m2, s2) = mean_cov(fake)?;
    let mut r = frechet_distance(&m1, &s1, &m2, &s2)?;
    r.n_real = real.rows();
    r.n_fake = fake.rows();
    Ok(r)
}

/// FID between two fitted Gaussians (e.g. cached reference statistics).
pub fn fid_from_stats(real: &GaussianStats, fake: &GaussianStats) -> Result<FidResult> {
    if real.dim() != fake.dim() {
        return Err(Error::InvalidInput(format!(
            "statistics have different dimensions: {} vs {}",
            real.dim(),
            fake.dim()
        )));
    }
    let mut r = frechet_distance(&real.mean, &real.cov, &fake.mean, &fake.cov)?;
    r.n_real = real.n;
    r.n_fake = fake.n;
    Ok(r)
}

/// Frechet distance between N(m1, s1) and N(m2, s2).
pub fn frechet_distance(m1: &[f64], s1: &Mat<f64>, m2: &[f64], s2: &Mat<f64>) -> Result<FidResult> {
    let d = m1.len();
    if m2.len() != d || s1.nrows() != d || s1.ncols() != d || s2.nrows() != d || s2.ncols() != d {
        return Err(Error::InvalidInput(format!(
            "Gaussian parameters have inconsistent sizes: means {} and {}, covariances {}x{} and {}x{}",
            d,
            m2.len(),
            s1.nrows(),
            s1.ncols(),
            s2.nrows(),
            s2.ncols()
        )));
    }
    let mean_term: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr1: f64 = (0..d).map(|i| s1[(i, i)]).sum();
    let tr2: f64 = (0..d).map(|i| s2[(i, i)]).sum();

    let mut clamped = 0;
    let mut most_negative = 0.0f64;
    let mut clamp = |vals: &[f64], what: &str| -> Result<Vec<f64>> {
        let max = vals.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
        // Eigenvalues below the decomposition's rounding floor are zero in exact arithmetic;
        // their square roots (~1e-8 relative) would otherwise add up to visible noise.
        let floor = vals.len() as f64 * f64::EPSILON * max;
        let mut out = Vec::with_capacity(vals.len());
        for &v in vals {
            if !v.is_finite() {
                return Err(Error::Numeric(format!(
                    "{what} has a non-finite eigenvalue"
                )));
            }
            if v.abs() <= floor {
                out.push(0.0);
            } else if v < 0.0 {
                if v < -NEGATIVE_EIG_TOLERANCE * max.max(f64::MIN_POSITIVE) {
                    most_negative = most_negative.min(v);
                }
                clamped += 1;
                out.push(0.0);
            } else {
                out.push(v);
            }
        }
        Ok(out)
    };

    let (l1, u1) = sym_eig(s1.as_ref(), "the real covariance")?;
    let l1 = clamp(&l1, "the real covariance")?;
    // C = U1 diag(sqrt(l1)); C^T S2 C is similar to S1^{1/2} S2 S1^{1/2}.
    let c = Mat::from_fn(d, d, |i, j| u1[(i, j)] * l1[j].sqrt());
    let s2c = mul(s2.as_ref(), c.as_ref());
    let mut m = mul(c.transpose(), s2c.as_ref());
    crate::linalg::symmetrize(&mut m);
    let lm = sym_eigvals(m.as_ref(), "S1^1/2 S2 S1^1/2")?;
    let lm = clamp(&lm, "S1^1/2 S2 S1^1/2")?;
    let tr_sqrt: f64 = lm.iter().map(|v| v.sqrt()).sum();

    let cov_term = tr1 + tr2 - 2.0 * tr_sqrt;
    let fid = mean_term + cov_term;
    if !fid.is_finite() {
        return Err(Error::Numeric(format!("FID is not finite ({fid})")));
    }
    Ok(FidResult {
        fid,
        mean_term,
        cov_term,
        n_real: 0,
        n_fake: 0,
        clamped_eigenvalues: clamped,
        most_negative_eigenvalue: most_negative,
    })
}

/// FID warns when a side has fewer than this many samples per feature dimension: its
/// covariance estimate, and so FID's upward bias (which shrinks like 1/N), is then large.
pub const FID_SAMPLES_PER_DIM: usize = 5;

/// `genlab eval`'s FID: features or cached statistics on each side, with warnings when the
/// sample is small for the feature dimension or the covariances are badly conditioned.
pub fn compute(x: &Inputs) -> Result<Computed> {
    let (real, fake) = (x.real, x.fake);
    let r = match (&real.features, &real.stats, &fake.features, &fake.stats) {
        (Some(a), _, Some(b), _) => fid(a, b)?,
        (_, Some(sa), Some(b), _) => fid_from_stats(sa, &GaussianStats::of(b)?)?,
        (Some(a), _, _, Some(sb)) => fid_from_stats(&GaussianStats::of(a)?, sb)?,
        (_, Some(sa), _, Some(sb)) => fid_from_stats(sa, sb)?,
        _ => {
            return Err(Error::InvalidInput(
                "fid needs features or statistics on both sides".into(),
            ))
        }
    };
    let d = real
        .features
        .as_ref()
        .map(|f| f.cols())
        .or(real.stats.as_ref().map(|s| s.dim()))
        .unwrap_or(0);
    let few = r.n_real.min(r.n_fake);
    Ok(Computed::new(r.fid, None, &r)
        .warn_if(few < FID_SAMPLES_PER_DIM * d, || {
            format!(
                "fid: {few} samples on the smaller side for {d}-dimensional features (fewer \
                 than {FID_SAMPLES_PER_DIM} per dimension); FID is biased upwards at small N \
                 (the bias shrinks like 1/N), so compare FIDs only at equal N; KID is unbiased"
            )
        })
        .warn_if(r.most_negative_eigenvalue < 0.0, || {
            format!(
                "fid: an eigenvalue of {:.3e} was clamped to 0; the covariances are badly \
                 conditioned, treat the value with care",
                r.most_negative_eigenvalue
            )
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(v: &[f64]) -> Mat<f64> {
        Mat::from_fn(v.len(), v.len(), |i, j| if i == j { v[i] } else { 0.0 })
    }

    /// For commuting (diagonal) covariances the Frechet distance has the closed form
    /// |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    #[test]
    fn diagonal_gaussians_match_the_closed_form() {
        let a = [1.0, 4.0, 0.25, 9.0];
        let b = [2.0, 1.0, 0.25, 0.0];
        let m1 = [0.0, 1.0, 2.0, 3.0];
        let m2 = [1.0, 1.0, 0.0, 3.0];
        let r = frechet_distance(&m1, &diag(&a), &m2, &diag(&b)).unwrap();
        let expect: f64 = 1.0
            + 4.0
            + a.iter()
                .zip(&b)
                .map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        assert!(
            (r.fid - expect).abs() < 1e-12 * expect,
            "{} vs {expect}",
            r.fid
        );
    }

    /// A rotated covariance: FID(N(0, R A R^T), N(0, R B R^T)) equals the diagonal value.
    #[test]
    fn rotation_invariant() {
        let (c, s) = (0.6f64, 0.8f64);
        let r = Mat::from_fn(2, 2, |i, j| match (i, j) {
            (0, 0) | (1, 1) => c,
            (0, 1) => -s,
            _ => s,
        });
        let rot = |d: &Mat<f64>| mul(mul(r.as_ref(), d.as_ref()).as_ref(), r.transpose());
        let (a, b) = (diag(&[3.0, 0.5]), diag(&[1.0, 2.0]));
        let direct = frechet_distance(&[0.0; 2], &a, &[0.0; 2], &b).unwrap().fid;
        let rotated = frechet_distance(&[0.0; 2], &rot(&a), &[0.0; 2], &rot(&b))
            .unwrap()
            .fid;
        let expect = (3f64.sqrt() - 1.0).powi(2) + (0.5f64.sqrt() - 2f64.sqrt()).powi(2);
        assert!((direct - expect).abs() < 1e-12);
        assert!((rotated - expect).abs() < 1e-10, "{rotated} vs {expect}");
    }

    /// N < D: both covariances are singular; FID of a set with itself is 0 (up to rounding).
    #[test]
    fn singular_covariances_stay_finite() {
        let rows: Vec<Vec<f64>> = (0..5)
            .map(|i| (0..12).map(|j| ((i * 7 + j * 3) as f64).sin()).collect())
            .collect();
        let x = FeatureMatrix::from_rows(&rows, "x").unwrap();
        let r = fid(&x, &x).unwrap();
        assert!(r.fid.abs() < 1e-9, "{r:?}");
        assert_eq!(r.most_negative_eigenvalue, 0.0, "{r:?}");
    }
}
