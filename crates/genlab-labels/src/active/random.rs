//! Random acquisition: the baseline every strategy is measured against (Gal, Islam &
//! Ghahramani 2017, arXiv:1703.02910, section 5.1: "uniform").

use genlab_core::{Result, Rng};

use super::{Evidence, Needs, StrategyEntry};

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "random",
    paper: "Gal, Islam & Ghahramani 2017, arXiv:1703.02910 (baseline)",
    description: "uniformly random candidates",
    needs: Needs::Nothing,
    select,
};

/// `k` distinct positions drawn uniformly from `0..n` (a partial Fisher-Yates shuffle).
fn select(ev: &Evidence, k: usize, rng: &mut Rng) -> Result<Vec<usize>> {
    let mut idx: Vec<usize> = (0..ev.n).collect();
    let k = k.min(ev.n);
    for i in 0..k {
        let j = i + rng.below((ev.n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_distinct_positions_and_every_position_about_equally_often() {
        let ev = Evidence {
            n: 10,
            probs: None,
            features: None,
        };
        let mut rng = Rng::new(0);
        let mut counts = [0usize; 10];
        for _ in 0..2000 {
            let s = select(&ev, 3, &mut rng).unwrap();
            let mut u = s.clone();
            u.sort();
            u.dedup();
            assert_eq!(u.len(), 3);
            for i in s {
                counts[i] += 1;
            }
        }
        // Expected 600 each; 5 standard deviations of a binomial(2000, 0.3) is ~100.
        assert!(
            counts.iter().all(|&c| (500..700).contains(&c)),
            "{counts:?}"
        );
    }
}
