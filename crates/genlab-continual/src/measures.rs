//! Measures of a continual-learning run from its accuracy matrix.
//!
//! `R[i][j]` is the test accuracy on task `j` after training through task `i` (T tasks), and
//! `b[j]` the accuracy on task `j` of the network at initialisation.
//! - average accuracy `ACC = 1/T sum_j R[T-1][j]` (Lopez-Paz & Ranzato 2017, "Gradient
//!   Episodic Memory", arXiv:1706.08840, Section 5, Eq. 2);
//! - backward transfer `BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])` (ibid., Eq. 3);
//! - forward transfer `FWT = 1/(T-1) sum_{j>0} (R[j-1][j] - b[j])` (ibid., Eq. 4);
//! - forgetting `F = 1/(T-1) sum_{j<T-1} max_{l<T-1} (R[l][j] - R[T-1][j])` (Chaudhry et al.
//!   2018, "Riemannian Walk", arXiv:1801.10112, Eqs. 5-6), with `l` from `j` on.

use serde::{Deserialize, Serialize};

/// The summary measures, accuracies as fractions in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measures {
    pub average_accuracy: f64,
    pub backward_transfer: f64,
    pub forward_transfer: f64,
    pub forgetting: f64,
}

/// The measures of `r` (`T x T`) with initial accuracies `b` (`T`).
pub fn measures(r: &[Vec<f64>], b: &[f64]) -> Measures {
    let t = r.len();
    let last = &r[t - 1];
    let average_accuracy = last.iter().sum::<f64>() / t as f64;
    if t < 2 {
        return Measures {
            average_accuracy,
            backward_transfer: 0.0,
            forward_transfer: 0.0,
            forgetting: 0.0,
        };
    }
    let k = (t - 1) as f64;
    let backward_transfer = (0..t - 1).map(|j| last[j] - r[j][j]).sum::<f64>() / k;
    let forward_transfer = (1..t).map(|j| r[j - 1][j] - b[j]).sum::<f64>() / k;
    let forgetting = (0..t - 1)
        .map(|j| {
            (j..t - 1)
                .map(|l| r[l][j] - last[j])
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum::<f64>()
        / k;
    Measures {
        average_accuracy,
        backward_transfer,
        forward_transfer,
        forgetting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn measures_of_a_hand_computed_matrix() {
        // Three tasks; by hand:
        // ACC = (0.5 + 0.6 + 0.9) / 3; BWT = ((0.5 - 0.9) + (0.6 - 0.8)) / 2 = -0.3;
        // FWT = ((0.2 - 0.1) + (0.3 - 0.1)) / 2 = 0.15;
        // F = (max(0.9, 0.7) - 0.5 + 0.8 - 0.6) / 2 = 0.3.
        let r = vec![
            vec![0.9, 0.2, 0.1],
            vec![0.7, 0.8, 0.3],
            vec![0.5, 0.6, 0.9],
        ];
        let m = measures(&r, &[0.1, 0.1, 0.1]);
        assert!((m.average_accuracy - 2.0 / 3.0).abs() < TOL);
        assert!((m.backward_transfer + 0.3).abs() < TOL);
        assert!((m.forward_transfer - 0.15).abs() < TOL);
        assert!((m.forgetting - 0.3).abs() < TOL);
    }

    #[test]
    fn no_forgetting_gives_zero_bwt_and_forgetting() {
        let r = vec![vec![1.0, 0.5], vec![1.0, 1.0]];
        let m = measures(&r, &[0.5, 0.5]);
        assert_eq!(m.backward_transfer, 0.0);
        assert_eq!(m.forgetting, 0.0);
        assert_eq!(m.forward_transfer, 0.0);
    }
}
