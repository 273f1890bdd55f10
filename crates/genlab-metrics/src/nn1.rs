//! 1-nearest-neighbour two-sample test (Lopez-Paz & Oquab 2017, "Revisiting Classifier
//! Two-Sample Tests"; used for generative models by Xu et al. 2018, "An empirical study on
//! evaluation metrics of generative adversarial networks").
//!
//! Real samples are labelled 1, generated ones 0; every point of the union is classified by
//! its nearest *other* point (leave-one-out, Euclidean distance). Accuracy 0.5 means the
//! two sets are indistinguishable, 1.0 that they are disjoint; an accuracy well below 0.5
//! on the fake side means the generator copies training points. Equidistant neighbours are
//! broken towards the lower index of the union (real before fake).
//!
//! Distances come from |a|^2 + |b|^2 - 2 a.b with the dot products as blocked matrix
//! multiplies, so 20,000 points of dimension 2,048 take one pass of GEMMs.

use crate::linalg::{gram, row_sq_norms};
use crate::suite::{Computed, Inputs};
use crate::{check_pair, FeatureMatrix};
use faer::Mat;
use genlab_core::Result;
use serde::Serialize;

/// Rows of the union per distance block (block memory: rows x N x 8 bytes).
const BLOCK_ROWS: usize = 512;

/// Leave-one-out 1-NN accuracies.
#[derive(Debug, Clone, Serialize)]
pub struct OneNnResult {
    pub accuracy: f64,
    /// Fraction of real points whose nearest neighbour is real.
    pub real_accuracy: f64,
    /// Fraction of generated points whose nearest neighbour is generated.
    pub fake_accuracy: f64,
    pub n_real: usize,
    pub n_fake: usize,
}

/// Index of every point's nearest other point in `z` (ties go to the lower index).
///
/// Distances are symmetric, so only the block upper triangle (columns from the block's first
/// row on) is computed, and each distance updates both of its rows: half the GEMM work of a
/// full distance matrix.
pub fn nearest_other(z: &Mat<f64>) -> Vec<usize> {
    let n = z.nrows();
    let sq = row_sq_norms(z.as_ref());
    let mut best = vec![(f64::INFINITY, usize::MAX); n];
    let better = |d: f64, j: usize, b: (f64, usize)| d < b.0 || (d == b.0 && j < b.1);
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK_ROWS).min(n);
        // Rows start..end against columns start..n.
        let g = gram(
            z.as_ref().subrows(start, end - start),
            z.as_ref().subrows(start, n - start),
        );
        for i in 0..end - start {
            let gi = start + i;
            let mut bi = best[gi];
            for c in (i + 1)..(n - start) {
                let gj = start + c;
                let d = sq[gi] + sq[gj] - 2.0 * g[(i, c)];
                if better(d, gj, bi) {
                    bi = (d, gj);
                }
                if better(d, gi, best[gj]) {
                    best[gj] = (d, gi);
                }
            }
            best[gi] = bi;
        }
        start = end;
    }
    best.into_iter().map(|b| b.1).collect()
}

/// The 1-NN two-sample test between `real` and `fake` (at least 1 point each, 3 in all).
pub fn one_nn(real: &FeatureMatrix, fake: &FeatureMatrix) -> Result<OneNnResult> {
    check_pair(real, fake, 1)?;
    let (n, m) = (real.rows(), fake.rows());
    let d = real.cols();
    let z = Mat::from_fn(n + m, d, |i, j| {
        if i < n {
            real.row(i)[j]
        } else {
            fake.row(i - n)[j]
        }
    });
    let nn = nearest_other(&z);
    let real_ok = (0..n).filter(|&i| nn[i] < n).count();
    let fake_ok = (n..n + m).filter(|&i| nn[i] >= n).count();
    Ok(OneNnResult {
        accuracy: (real_ok + fake_ok) as f64 / (n + m) as f64,
        real_accuracy: real_ok as f64 / n as f64,
        fake_accuracy: fake_ok as f64 / m as f64,
        n_real: n,
        n_fake: m,
    })
}

/// `genlab eval`'s 1-NN two-sample accuracy.
pub fn compute(x: &Inputs) -> Result<Computed> {
    let (a, b) = x.features("1nn")?;
    let r = one_nn(a, b)?;
    Ok(Computed::new(r.accuracy, None, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbours_match_brute_force() {
        let rows: Vec<Vec<f64>> = (0..37)
            .map(|i| {
                (0..5)
                    .map(|j| ((i * 13 + j * 5) as f64 * 0.77).sin())
                    .collect()
            })
            .collect();
        let x = FeatureMatrix::from_rows(&rows, "x").unwrap();
        let nn = nearest_other(&x.to_faer());
        for i in 0..37 {
            let mut best = (f64::INFINITY, 0);
            for j in 0..37 {
                let d: f64 = rows[i]
                    .iter()
                    .zip(&rows[j])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                if j != i && d < best.0 {
                    best = (d, j);
                }
            }
            assert_eq!(nn[i], best.1, "row {i}");
        }
    }

    #[test]
    fn disjoint_sets_are_perfectly_separated() {
        let real: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64 * 0.01, 0.0]).collect();
        let fake: Vec<Vec<f64>> = (0..15)
            .map(|i| vec![100.0 + i as f64 * 0.01, 0.0])
            .collect();
        let r = one_nn(
            &FeatureMatrix::from_rows(&real, "r").unwrap(),
            &FeatureMatrix::from_rows(&fake, "f").unwrap(),
        )
        .unwrap();
        assert_eq!(
            (r.accuracy, r.real_accuracy, r.fake_accuracy),
            (1.0, 1.0, 1.0)
        );
    }

    /// Interleaved points (each fake sits between two reals): every neighbour is of the
    /// other kind, accuracy 0 (a memorising generator looks like this).
    #[test]
    fn interleaved_sets_score_zero() {
        let real: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64 * 2.0]).collect();
        let fake: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64 * 2.0 + 0.9]).collect();
        let r = one_nn(
            &FeatureMatrix::from_rows(&real, "r").unwrap(),
            &FeatureMatrix::from_rows(&fake, "f").unwrap(),
        )
        .unwrap();
        assert_eq!(r.accuracy, 0.0, "{r:?}");
    }
}
