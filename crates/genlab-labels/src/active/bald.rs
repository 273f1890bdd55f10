//! BALD, Bayesian Active Learning by Disagreement (Houlsby, Huszár, Ghahramani & Lengyel
//! 2011, arXiv:1112.5745, eq. 3), with Monte Carlo dropout as the approximate posterior
//! (Gal, Islam & Ghahramani 2017, arXiv:1703.02910, section 3, the "BALD" estimator):
//!
//! ```text
//! I[y; w | x] ~= H[ (1/T) sum_t p_t ] - (1/T) sum_t H[p_t]
//! ```
//!
//! the mutual information between the label and the weights: high where the samples are
//! each confident but disagree.

use genlab_core::{Result, Rng};

use super::{entropy_of, select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "bald",
    paper: "Houlsby et al. 2011, arXiv:1112.5745; Gal, Islam & Ghahramani 2017, arXiv:1703.02910",
    description: "mutual information between label and weights under MC dropout",
    needs: Needs::McDropout,
    select,
};

/// Entropy of the mean minus the mean of the entropies, per candidate (nats).
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n)
        .map(|i| {
            let mean_h: f64 = (0..p.t)
                .map(|s| {
                    let row: Vec<f64> = p.row(s, i).iter().map(|&v| v as f64).collect();
                    entropy_of(&row)
                })
                .sum::<f64>()
                / p.t as f64;
            entropy_of(&p.mean(i)) - mean_h
        })
        .collect()
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    select_by_score(ENTRY.name, score, ev, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 probabilities, f64 arithmetic.
    const TOL: f64 = 1e-6;

    #[test]
    fn matches_the_closed_form_on_hand_made_samples() {
        // Candidate 0: two confident samples that disagree -> I = ln 2.
        // Candidate 1: two identical samples -> I = 0.
        // Candidate 2: samples (0.8, 0.2) and (0.4, 0.6), computed by hand below.
        let p = Probs {
            t: 2,
            n: 3,
            k: 2,
            p: vec![
                1.0, 0.0, 0.3, 0.7, 0.8, 0.2, /* sample 2 */ 0.0, 1.0, 0.3, 0.7, 0.4, 0.6,
            ],
        };
        let s = score(&p);
        let h = |a: f64| -(a * a.ln() + (1.0 - a) * (1.0 - a).ln());
        assert!((s[0] - 2f64.ln()).abs() < TOL, "{}", s[0]);
        assert!(s[1].abs() < TOL, "{}", s[1]);
        let want = h(0.6) - (h(0.8) + h(0.4)) / 2.0;
        assert!((s[2] - want).abs() < TOL, "{} vs {want}", s[2]);
        let ev = Evidence {
            n: 3,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 2, &mut Rng::new(0)).unwrap(), vec![0, 2]);
    }
}
