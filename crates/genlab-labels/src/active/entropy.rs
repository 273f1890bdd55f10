//! Maximum-entropy sampling (Shannon 1948; Settles 2009 survey, eq. 2.3; "Max Entropy" in
//! Gal, Islam & Ghahramani 2017, arXiv:1703.02910, section 3): label the candidates whose
//! predictive distribution has the largest entropy `H[pbar] = -sum_y pbar(y) log pbar(y)`.
//! Here `pbar` is one deterministic pass; the MC-dropout predictive is BALD's first term.

use genlab_core::{Result, Rng};

use super::{entropy_of, select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "entropy",
    paper: "Settles 2009 survey, eq. 2.3; Gal, Islam & Ghahramani 2017, arXiv:1703.02910",
    description: "entropy of the predicted class distribution (one deterministic pass)",
    needs: Needs::Probs,
    select,
};

/// `H[mean over passes]` in nats, per candidate.
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n).map(|i| entropy_of(&p.mean(i))).collect()
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    select_by_score(ENTRY.name, score, ev, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_log_k_and_one_hot_is_zero() {
        let p = Probs {
            t: 1,
            n: 3,
            k: 4,
            p: vec![
                0.25, 0.25, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0,
            ],
        };
        let s = score(&p);
        assert!((s[0] - 4f64.ln()).abs() < 1e-6);
        assert!(s[1].abs() < 1e-12);
        assert!((s[2] - 2f64.ln()).abs() < 1e-6);
        let ev = Evidence {
            n: 3,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 2, &mut Rng::new(0)).unwrap(), vec![0, 2]);
    }
}
