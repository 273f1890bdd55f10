//! N-way K-shot episodes with Q queries (Vinyals et al. 2016, "Matching Networks for One
//! Shot Learning", arXiv:1606.04080, section 4: the episodic protocol).
//!
//! An episode draws N classes of a split without replacement, then K + Q distinct examples
//! of each: the first K are the support set, the other Q the queries. Labels are the
//! episode's own `0..N` in the order the classes were drawn. Sampling uses only the [`Rng`]
//! passed in: episode `t` of a run comes from `Rng::derive(seed, "train/t")`, so the same
//! seed gives the same episodes, and a resumed run continues with the same ones.

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::ClassSet;

/// N, K and Q.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpisodeShape {
    pub ways: usize,
    pub shots: usize,
    pub queries: usize,
}

impl EpisodeShape {
    /// An error naming what does not fit: no ways or shots, more ways than `set` has classes,
    /// more shots + queries than a class has examples.
    pub fn check(&self, set: &ClassSet) -> Result<()> {
        if self.ways < 2 || self.shots == 0 || self.queries == 0 {
            return Err(Error::setting(
                "episode",
                format!(
                    "ways must be at least 2 and shots and queries at least 1, got {}-way \
                     {}-shot with {} queries",
                    self.ways, self.shots, self.queries
                ),
            ));
        }
        if self.ways > set.classes.len() {
            return Err(Error::setting(
                "ways",
                format!(
                    "is {} but the {} split has only {} classes (at most {} ways)",
                    self.ways,
                    set.name,
                    set.classes.len(),
                    set.classes.len()
                ),
            ));
        }
        let need = self.shots + self.queries;
        if let Some(c) = set.classes.iter().find(|c| c.examples.len() < need) {
            return Err(Error::setting(
                "shots",
                format!(
                    "is {} and queries {}: {need} examples per class, but class `{}` of the {} \
                     split has only {} (at most {} queries with {} shots)",
                    self.shots,
                    self.queries,
                    c.name,
                    set.name,
                    c.examples.len(),
                    c.examples.len().saturating_sub(self.shots),
                    self.shots
                ),
            ));
        }
        Ok(())
    }
}

/// One episode, as tensors.
#[derive(Clone, Debug)]
pub struct Episode {
    pub shape: EpisodeShape,
    /// `[N*K, C, H, W]`, class-major (the K shots of class 0, then class 1, ...).
    pub support: Tensor,
    /// `[N*K]` u32 labels `0..N`.
    pub support_labels: Tensor,
    /// `[N*Q, C, H, W]`, class-major.
    pub query: Tensor,
    /// `[N*Q]` u32.
    pub query_labels: Tensor,
    /// The split's class indices drawn, in label order.
    pub classes: Vec<usize>,
}

/// `k` distinct indices below `n` (a partial Fisher-Yates shuffle).
fn choose(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// Draws one episode of `shape` from `set`.
pub fn sample_episode(
    set: &ClassSet,
    shape: EpisodeShape,
    rng: &mut Rng,
    device: &Device,
) -> Result<Episode> {
    shape.check(set)?;
    let EpisodeShape {
        ways,
        shots,
        queries,
    } = shape;
    let d = set.dim();
    let classes = choose(set.classes.len(), ways, rng);
    let mut support = Vec::with_capacity(ways * shots * d);
    let mut query = Vec::with_capacity(ways * queries * d);
    for &c in &classes {
        let ex = &set.classes[c].examples;
        let picked = choose(ex.len(), shots + queries, rng);
        for (j, &p) in picked.iter().enumerate() {
            let x = set.example(ex[p]);
            if j < shots {
                support.extend_from_slice(x);
            } else {
                query.extend_from_slice(x);
            }
        }
    }
    let labels = |per: usize| -> Vec<u32> {
        (0..ways as u32)
            .flat_map(|l| std::iter::repeat_n(l, per))
            .collect()
    };
    let mut s_shape = vec![ways * shots];
    s_shape.extend(&set.shape);
    let mut q_shape = vec![ways * queries];
    q_shape.extend(&set.shape);
    Ok(Episode {
        shape,
        support: Tensor::from_vec(support, s_shape, device)?,
        support_labels: Tensor::from_vec(labels(shots), ways * shots, device)?,
        query: Tensor::from_vec(query, q_shape, device)?,
        query_labels: Tensor::from_vec(labels(queries), ways * queries, device)?,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::ClassInfo;

    /// 10 classes of 6 examples; example value = 100 * class + index.
    fn set() -> ClassSet {
        let mut data = Vec::new();
        let mut classes = Vec::new();
        for k in 0..10 {
            let ex: Vec<usize> = (0..6).map(|j| k * 6 + j).collect();
            for j in 0..6 {
                data.push((100 * k + j) as f32);
            }
            classes.push(ClassInfo {
                name: format!("c{k}"),
                group: "g".into(),
                examples: ex,
            });
        }
        ClassSet {
            name: "meta-test".into(),
            shape: vec![1, 1, 1],
            data: data.into(),
            classes,
        }
    }

    #[test]
    fn episodes_are_reproducible_distinct_and_well_labelled() {
        let s = set();
        let shape = EpisodeShape {
            ways: 4,
            shots: 2,
            queries: 3,
        };
        let a = sample_episode(&s, shape, &mut Rng::new(7), &Device::Cpu).unwrap();
        let b = sample_episode(&s, shape, &mut Rng::new(7), &Device::Cpu).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a.support), v(&b.support));
        assert_eq!(v(&a.query), v(&b.query));
        let sup = v(&a.support);
        let qry = v(&a.query);
        let sl = a.support_labels.to_vec1::<u32>().unwrap();
        let ql = a.query_labels.to_vec1::<u32>().unwrap();
        // Each example's class (value / 100) is the drawn class of its label.
        for (x, l) in sup.iter().zip(&sl).chain(qry.iter().zip(&ql)) {
            assert_eq!((*x as usize) / 100, a.classes[*l as usize]);
        }
        // No example is both a shot and a query, nor drawn twice.
        let mut all: Vec<i64> = sup.iter().chain(&qry).map(|&x| x as i64).collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 4 * (2 + 3));
        let c = sample_episode(&s, shape, &mut Rng::new(8), &Device::Cpu).unwrap();
        assert_ne!(v(&a.query), v(&c.query), "another seed, another episode");
    }

    #[test]
    fn too_many_ways_is_a_clear_error() {
        let e = EpisodeShape {
            ways: 11,
            shots: 1,
            queries: 1,
        }
        .check(&set())
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("is 11") && m.contains("only 10 classes"), "{m}");
    }

    #[test]
    fn too_many_shots_and_queries_is_a_clear_error() {
        let e = EpisodeShape {
            ways: 5,
            shots: 5,
            queries: 2,
        }
        .check(&set())
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("7 examples per class") && m.contains("has only 6"),
            "{m}"
        );
    }

    #[test]
    fn partial_shuffle_draws_uniformly() {
        // Brute force: over many draws of 1 of 4, each index comes up about a quarter of
        // the time (binomial std at 40000 draws: 0.0022; 5 sigma).
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 4];
        for _ in 0..40000 {
            counts[choose(4, 2, &mut rng)[1]] += 1;
        }
        for c in counts {
            assert!((c as f64 / 40000.0 - 0.25).abs() < 0.011, "{counts:?}");
        }
    }
}
