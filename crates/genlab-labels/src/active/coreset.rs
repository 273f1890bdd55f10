//! Core-set selection by k-centre greedy (Sener & Savarese 2018, "Active Learning for
//! Convolutional Neural Networks: A Core-Set Approach", arXiv:1708.00489, Algorithm 1): in
//! the network's feature space, repeatedly label the candidate farthest from everything
//! labelled or chosen so far,
//!
//! ```text
//! u = argmax_{i in candidates} min_{j in labelled + chosen} ||f(x_i) - f(x_j)||
//! ```
//!
//! which covers the pool with small balls (a 2-approximation of the k-centre problem).
//! Features are the CNN's dense layer (the paper uses the last layer before the softmax).

use genlab_core::{Error, Result, Rng};

use super::{Evidence, Needs, StrategyEntry};

pub const ENTRY: StrategyEntry = StrategyEntry {
    name: "coreset",
    paper: "Sener & Savarese 2018, arXiv:1708.00489 (k-centre greedy)",
    description: "k-centre greedy cover of the candidates in the dense-layer feature space",
    needs: Needs::Features,
    select,
};

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum()
}

/// k-centre greedy over candidates `[n, dim]` given labelled centres `[m, dim]`.
pub fn k_centre_greedy(cand: &[f32], labelled: &[f32], dim: usize, k: usize) -> Vec<usize> {
    let n = cand.len() / dim.max(1);
    let row = |v: &[f32], i: usize| -> Vec<f32> { v[i * dim..(i + 1) * dim].to_vec() };
    let mut min_d = vec![f64::INFINITY; n];
    for j in 0..labelled.len() / dim.max(1) {
        let l = row(labelled, j);
        for (i, d) in min_d.iter_mut().enumerate() {
            *d = d.min(sq_dist(&cand[i * dim..(i + 1) * dim], &l));
        }
    }
    let mut chosen = Vec::with_capacity(k.min(n));
    let mut taken = vec![false; n];
    for _ in 0..k.min(n) {
        let mut best = None;
        for i in 0..n {
            if !taken[i] && best.is_none_or(|b: usize| min_d[i] > min_d[b]) {
                best = Some(i);
            }
        }
        let Some(u) = best else { break };
        taken[u] = true;
        chosen.push(u);
        let c = row(cand, u);
        for (i, d) in min_d.iter_mut().enumerate() {
            *d = d.min(sq_dist(&cand[i * dim..(i + 1) * dim], &c));
        }
    }
    chosen
}

fn select(ev: &Evidence, k: usize, _: &mut Rng) -> Result<Vec<usize>> {
    let f = ev.features.ok_or_else(|| {
        Error::InvalidInput("coreset selects in feature space; no features given".into())
    })?;
    Ok(k_centre_greedy(&f.candidates, &f.labelled, f.dim, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: at each step recompute every candidate's distance to every centre.
    fn brute(cand: &[[f32; 2]], lab: &[[f32; 2]], k: usize) -> Vec<usize> {
        let mut centres: Vec<[f32; 2]> = lab.to_vec();
        let mut out: Vec<usize> = Vec::new();
        for _ in 0..k {
            let mut best = (f64::MIN, 0);
            for (i, c) in cand.iter().enumerate() {
                if out.contains(&i) {
                    continue;
                }
                let d = centres
                    .iter()
                    .map(|z| sq_dist(c, z))
                    .fold(f64::INFINITY, f64::min);
                if d > best.0 {
                    best = (d, i);
                }
            }
            out.push(best.1);
            centres.push(cand[best.1]);
        }
        out
    }

    #[test]
    fn matches_a_brute_force_greedy_and_a_hand_case() {
        // On a line with a labelled point at 0: 10 is farthest, then 5; then 3 and 8 are both
        // 2 from a centre and the tie goes to the lower position (3).
        let cand: Vec<[f32; 2]> = [1.0, 3.0, 5.0, 8.0, 10.0]
            .iter()
            .map(|&x| [x, 0.0])
            .collect();
        let flat: Vec<f32> = cand.iter().flatten().copied().collect();
        assert_eq!(k_centre_greedy(&flat, &[0.0, 0.0], 2, 3), vec![4, 2, 1]);
        let mut rng = Rng::new(4);
        for _ in 0..20 {
            let c: Vec<[f32; 2]> = (0..30)
                .map(|_| [rng.normal() as f32, rng.normal() as f32])
                .collect();
            let l: Vec<[f32; 2]> = (0..4)
                .map(|_| [rng.normal() as f32, rng.normal() as f32])
                .collect();
            let cf: Vec<f32> = c.iter().flatten().copied().collect();
            let lf: Vec<f32> = l.iter().flatten().copied().collect();
            assert_eq!(k_centre_greedy(&cf, &lf, 2, 7), brute(&c, &l, 7));
        }
    }
}
