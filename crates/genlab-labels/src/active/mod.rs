//! Pool-based active learning: acquisition strategies, one file each, behind one
//! [`StrategyEntry`] registry, and the acquisition loop ([`run`]).
//!
//! A strategy sees the evidence it asks for ([`Needs`]) about the round's candidates (class
//! probabilities from one pass, from Monte Carlo dropout or from a committee; or features
//! of the candidates and of the labelled set) and returns the positions of the candidates
//! to label. The scoring functions are pure functions of that evidence, tested against
//! brute-force computations. Adding a strategy is one new file here (a `pub const ENTRY:
//! StrategyEntry`) plus one line in [`STRATEGIES`].

pub mod bald;
pub mod committee;
pub mod coreset;
pub mod entropy;
pub mod least_confidence;
pub mod margin;
pub mod random;
pub mod run;
pub mod variation_ratios;

use genlab_core::{Error, Result, Rng};
use serde::Serialize;

use crate::train::Probs;

/// Every strategy.
pub const STRATEGIES: &[&StrategyEntry] = &[
    &random::ENTRY,
    &least_confidence::ENTRY,
    &margin::ENTRY,
    &entropy::ENTRY,
    &bald::ENTRY,
    &variation_ratios::ENTRY,
    &coreset::ENTRY,
    &committee::ENTRY,
];

/// What a strategy scores the candidates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Nothing (random).
    Nothing,
    /// One deterministic pass: `Probs` with `t = 1`.
    Probs,
    /// Monte Carlo dropout samples (`t = mc_samples`); the model must have dropout.
    McDropout,
    /// One deterministic pass of each committee member (`t = committee`).
    Committee,
    /// Features of the candidates and of the labelled set.
    Features,
}

/// Features of the candidates and of the labelled set, row-major `[n, dim]` and `[m, dim]`.
pub struct Features {
    pub candidates: Vec<f32>,
    pub labelled: Vec<f32>,
    pub dim: usize,
}

/// What the loop hands a strategy about `n` candidates.
pub struct Evidence<'a> {
    pub n: usize,
    pub probs: Option<&'a Probs>,
    pub features: Option<&'a Features>,
}

impl Evidence<'_> {
    fn probs(&self, who: &str) -> Result<&Probs> {
        self.probs.ok_or_else(|| {
            Error::InvalidInput(format!("{who} scores class probabilities; none given"))
        })
    }
}

/// One registered strategy.
pub struct StrategyEntry {
    /// `--strategy NAME`.
    pub name: &'static str,
    /// Authors, year and arXiv id (or venue).
    pub paper: &'static str,
    pub description: &'static str,
    pub needs: Needs,
    /// Picks `k` of the `evidence.n` candidates (positions, distinct).
    pub select: fn(&Evidence, usize, &mut Rng) -> Result<Vec<usize>>,
}

/// What a front end shows about a strategy.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyInfo {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub needs: Needs,
}

impl StrategyEntry {
    pub fn info(&self) -> StrategyInfo {
        StrategyInfo {
            name: self.name,
            paper: self.paper,
            description: self.description,
            needs: self.needs,
        }
    }
}

/// The strategy called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static StrategyEntry> {
    crate::registry::find_named(STRATEGIES, name, "strategy", |s| s.name)
}

/// The positions of the `k` largest scores, largest first (ties: lower position first).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Entropy in nats of a distribution (0 log 0 = 0).
pub fn entropy_of(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v * v.ln())
        .sum::<f64>()
}

/// The `select` of a strategy that ranks the candidates by a score of their probabilities.
pub(crate) fn select_by_score(
    who: &str,
    score: fn(&Probs) -> Vec<f64>,
    ev: &Evidence,
    k: usize,
) -> Result<Vec<usize>> {
    Ok(top_k(&score(ev.probs(who)?), k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_takes_the_largest_with_stable_ties() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
    }

    #[test]
    fn names_are_unique_and_unknown_names_list_the_known_ones() {
        let mut names: Vec<_> = STRATEGIES.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STRATEGIES.len());
        let e = find("nope").err().unwrap().to_string();
        assert!(e.contains("bald") && e.contains("coreset"), "{e}");
    }
}
