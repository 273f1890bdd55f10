//! Margin sampling (Scheffer, Decomain & Wrobel 2001, "Active hidden Markov models for
//! information extraction", IDA; Settles 2009 survey, eq. 2.2): label the candidates whose
//! two most likely classes are closest, score `-(p(y1|x) - p(y2|x))`.

use genlab_core::{Result, Rng};

use super::{select_by_score, Evidence, Needs, StrategyEntry};
use crate::train::Probs;

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "margin",
    paper: "Scheffer, Decomain & Wrobel 2001 (IDA); Settles 2009 survey, eq. 2.2",
    description: "smallest gap between the two most probable classes (one deterministic pass)",
    needs: Needs::Probs,
    select,
};

/// `-(first - second)` of the mean probabilities, per candidate.
pub fn score(p: &Probs) -> Vec<f64> {
    (0..p.n)
        .map(|i| {
            let (mut a, mut b) = (f64::MIN, f64::MIN);
            for v in p.mean(i) {
                if v > a {
                    b = a;
                    a = v;
                } else if v > b {
                    b = v;
                }
            }
            -(a - b)
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
    fn scores_minus_the_gap_of_the_sorted_top_two() {
        let rows = [[0.1, 0.6, 0.3], [0.45, 0.1, 0.45], [0.2, 0.2, 0.6]];
        let p = Probs {
            t: 1,
            n: 3,
            k: 3,
            p: rows.concat().iter().map(|&v| v as f32).collect(),
        };
        let s = score(&p);
        for (r, got) in rows.iter().zip(&s) {
            // Brute force: sort descending.
            let mut v = r.to_vec();
            v.sort_by(|a, b| b.partial_cmp(a).unwrap());
            assert!((got + (v[0] - v[1])).abs() < 1e-6, "{got} for {r:?}");
        }
        let ev = Evidence {
            n: 3,
            probs: Some(&p),
            features: None,
        };
        assert_eq!(select(&ev, 2, &mut Rng::new(0)).unwrap(), vec![1, 0]);
    }
}
