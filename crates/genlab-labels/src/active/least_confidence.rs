//! Least-confidence sampling (Lewis & Gale 1994, "A sequential algorithm for training text
//! classifiers", SIGIR; Settles 2009, "Active Learning Literature Survey", eq. 2.1): label
//! the candidates whose most likely class is least probable, score `1 - max_y p(y|x)`.

use genlab_core::{Result, Rng};

use super::{select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "least-confidence",
    paper: "Lewis & Gale 1994 (SIGIR); Settles 2009 survey, eq. 2.1",
    description: "1 - the probability of the predicted class (one deterministic pass)",
    needs: Needs::Probs,
    select,
};

/// `1 - max_y pbar(y)` per candidate, `pbar` the mean over passes.
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n)
        .map(|i| 1.0 - p.mean(i).into_iter().fold(f64::MIN, f64::max))
        .collect()
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    select_by_score(ENTRY.name, score, ev, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_one_minus_the_top_probability() {
        let p = Probs {
            t: 1,
            n: 2,
            k: 3,
            p: vec![0.7, 0.2, 0.1, 0.4, 0.35, 0.25],
        };
        let s = score(&p);
        assert!(
            (s[0] - 0.3).abs() < 1e-6 && (s[1] - 0.6).abs() < 1e-6,
            "{s:?}"
        );
        let ev = Evidence {
            n: 2,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 1, &mut Rng::new(0)).unwrap(), vec![1]);
    }
}
