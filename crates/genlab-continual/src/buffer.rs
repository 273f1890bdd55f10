//! Memories of past examples: a reservoir buffer (Vitter 1985, "Random sampling with a
//! reservoir", Algorithm R: after `n` examples seen each is held with probability
//! `capacity / n`), as experience replay uses it (Chaudhry et al. 2019, "On Tiny Episodic
//! Memories in Continual Learning", arXiv:1902.10486, Section 4), and uniform draws from it.

use genlab_core::Rng;

use crate::benchmark::Examples;

#[derive(Clone, Debug)]
pub struct Reservoir {
    pub capacity: usize,
    pub dim: usize,
    pub held: Examples,
    /// Examples offered so far.
    pub seen: u64,
}

impl Reservoir {
    pub fn new(capacity: usize, dim: usize) -> Self {
        Self {
            capacity,
            dim,
            held: Examples::default(),
            seen: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Offers every example of `ex`.
    pub fn add(&mut self, ex: &Examples, rng: &mut Rng) {
        let d = self.dim;
        for r in 0..ex.len() {
            self.seen += 1;
            let slot = if self.held.len() < self.capacity {
                self.held.x.extend_from_slice(&ex.x[r * d..(r + 1) * d]);
                self.held.y.push(ex.y[r]);
                self.held.task.push(ex.task[r]);
                continue;
            } else {
                rng.below(self.seen) as usize
            };
            if slot < self.capacity {
                self.held.x[slot * d..(slot + 1) * d].copy_from_slice(&ex.x[r * d..(r + 1) * d]);
                self.held.y[slot] = ex.y[r];
                self.held.task[slot] = ex.task[r];
            }
        }
    }

    /// `n` examples drawn uniformly with replacement (empty when the buffer is).
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Examples {
        if self.is_empty() {
            return Examples::default();
        }
        let ids: Vec<usize> = (0..n)
            .map(|_| rng.below(self.len() as u64) as usize)
            .collect();
        select(&self.held, &ids, self.dim)
    }
}

/// Rows `ids` of `ex`.
pub fn select(ex: &Examples, ids: &[usize], dim: usize) -> Examples {
    let mut out = Examples::default();
    for &i in ids {
        out.x.extend_from_slice(&ex.x[i * dim..(i + 1) * dim]);
        out.y.push(ex.y[i]);
        out.task.push(ex.task[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_holds_every_example_with_equal_probability() {
        // 200 examples through a buffer of 20, 3000 times: each held with p = 0.1; the
        // count over trials is Binomial(3000, 0.1), std 16.4: allow 5 std.
        let (n, cap, trials) = (200usize, 20usize, 3000usize);
        let ex = Examples {
            x: (0..n).map(|i| i as f32).collect(),
            y: (0..n as u32).collect(),
            task: vec![0; n],
        };
        let mut counts = vec![0usize; n];
        let mut rng = Rng::new(1);
        for _ in 0..trials {
            let mut r = Reservoir::new(cap, 1);
            r.add(&ex, &mut rng);
            assert_eq!(r.len(), cap);
            for (&y, &x) in r.held.y.iter().zip(&r.held.x) {
                assert_eq!(x, y as f32, "rows stay whole");
                counts[y as usize] += 1;
            }
        }
        let mean = trials as f64 * cap as f64 / n as f64;
        let sd = (mean * (1.0 - cap as f64 / n as f64)).sqrt();
        for (i, c) in counts.iter().enumerate() {
            assert!(
                (*c as f64 - mean).abs() < 5.0 * sd,
                "example {i}: {c} vs {mean}"
            );
        }
    }
}
