//! Query by committee (Seung, Opper & Sompolinsky 1992, "Query by committee", COLT) with
//! the KL-to-the-mean disagreement of McCallum & Nigam 1998 ("Employing EM and pool-based
//! active learning for text classification", ICML; Settles 2009 survey, eq. 2.5):
//!
//! ```text
//! D[x] = (1/C) sum_c KL( p_c(.|x) || pbar(.|x) ),   pbar = (1/C) sum_c p_c
//! ```
//!
//! The committee is `committee` networks trained from different initialisations on
//! bootstrap resamples of the labelled set (query by bagging, Abe & Mamitsuka 1998).

use genlab_core::{Result, Rng};

use super::{select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "committee",
    paper: "Seung, Opper & Sompolinsky 1992 (COLT); McCallum & Nigam 1998 (ICML)",
    description: "mean KL divergence of committee members (bagged CNNs) from their consensus",
    needs: Needs::Committee,
    select,
};

/// Mean over members of `KL(p_c || pbar)`, per candidate (nats).
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n)
        .map(|i| {
            let m = p.mean(i);
            (0..p.t)
                .map(|c| {
                    p.row(c, i)
                        .iter()
                        .zip(&m)
                        .filter(|(&q, _)| q > 0.0)
                        .map(|(&q, &mb)| q as f64 * (q as f64 / mb).ln())
                        .sum::<f64>()
                })
                .sum::<f64>()
                / p.t as f64
        })
        .collect()
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    select_by_score(ENTRY.name, score, ev, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-6;

    #[test]
    fn kl_to_the_mean_by_hand() {
        // Members (0.9, 0.1) and (0.5, 0.5): mean (0.7, 0.3).
        let p = Probs {
            t: 2,
            n: 2,
            k: 2,
            p: vec![0.9, 0.1, 0.2, 0.8, 0.5, 0.5, 0.2, 0.8],
        };
        let kl = |a: f64, b: f64| a * (a / b).ln() + (1.0 - a) * ((1.0 - a) / (1.0 - b)).ln();
        let want = (kl(0.9, 0.7) + kl(0.5, 0.7)) / 2.0;
        let s = score(&p);
        assert!((s[0] - want).abs() < TOL, "{} vs {want}", s[0]);
        assert!(s[1].abs() < TOL, "agreeing members: {}", s[1]);
        let ev = Evidence {
            n: 2,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 1, &mut Rng::new(0)).unwrap(), vec![0]);
    }
}
