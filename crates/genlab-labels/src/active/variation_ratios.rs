//! Variation ratios (Freeman 1965, "Elementary Applied Statistics"), with Monte Carlo
//! dropout samples (Gal, Islam & Ghahramani 2017, arXiv:1703.02910, section 3):
//!
//! ```text
//! variation-ratio[x] = 1 - max_y (1/T) sum_t 1[argmax p_t = y]
//! ```
//!
//! the fraction of samples that do not vote for the modal class.

use genlab_core::{Result, Rng};

use super::{select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "variation-ratios",
    paper: "Freeman 1965; Gal, Islam & Ghahramani 2017, arXiv:1703.02910",
    description: "1 - the modal class's share of the MC-dropout samples' votes",
    needs: Needs::McDropout,
    select,
};

/// Per candidate, `1 - (votes of the modal class) / T` (argmax ties: the lowest class).
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n)
        .map(|i| {
            let mut votes = vec![0usize; p.k];
            for s in 0..p.t {
                let row = p.row(s, i);
                let mut best = 0;
                for (y, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = y;
                    }
                }
                votes[best] += 1;
            }
            1.0 - *votes.iter().max().unwrap_or(&0) as f64 / p.t as f64
        })
        .collect()
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    select_by_score(ENTRY.name, score, ev, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_votes_of_the_samples() {
        // 4 samples, 2 candidates, 3 classes. Candidate 0 votes 0,0,1,2 -> 1 - 2/4.
        // Candidate 1 votes 2,2,2,2 -> 0.
        let c0 = [
            [0.5, 0.3, 0.2],
            [0.6, 0.2, 0.2],
            [0.2, 0.7, 0.1],
            [0.1, 0.1, 0.8],
        ];
        let c1 = [[0.1, 0.1, 0.8]; 4];
        let mut v = Vec::new();
        for s in 0..4 {
            v.extend(c0[s].iter().map(|&x| x as f32));
            v.extend(c1[s].iter().map(|&x| x as f32));
        }
        let p = Probs {
            t: 4,
            n: 2,
            k: 3,
            p: v,
        };
        assert_eq!(score(&p), vec![0.5, 0.0]);
        let ev = Evidence {
            n: 2,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 1, &mut Rng::new(0)).unwrap(), vec![0]);
    }
}
