//! Seeded epoch-wise shuffling with a four-number state.
//!
//! The order of epoch `e` is a Fisher-Yates permutation of `0..len` drawn from
//! `Rng::derive(seed, "epoch{e}")`, so it depends on nothing but `(seed, e, len)`. The
//! sampler's whole state is `(seed, epoch, pos, len)`: serialised into a checkpoint and
//! restored, it continues with exactly the batches an uninterrupted run would have drawn.
//!
//! Batches never straddle epochs: when fewer than `batch_size` indices remain in the current
//! epoch, the remainder is skipped and the batch is taken from the start of the next epoch
//! (the rollover happens lazily, in the call that needs it). A `batch_size` larger than
//! `len` is clamped to `len`, so each such call returns one whole epoch.

use genlab_core::{Error, Result, Rng};

/// Epoch-wise shuffling sampler; see the module documentation.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EpochSampler {
    /// Seed of every epoch's permutation.
    pub seed: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Position inside the current epoch's permutation.
    pub pos: usize,
    /// Number of examples in the dataset being sampled.
    pub len: usize,
}

impl EpochSampler {
    /// A sampler at the start of epoch 0.
    pub fn new(len: usize, seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            pos: 0,
            len,
        }
    }

    /// The permutation of `0..len` used in `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.len).collect();
        Rng::derive(self.seed, &format!("epoch{epoch}")).shuffle(&mut perm);
        perm
    }

    /// The next `batch_size` indices (clamped to `len`); empty when `len` or `batch_size`
    /// is 0. Advances the state.
    pub fn next_indices(&mut self, batch_size: usize) -> Vec<usize> {
        let bs = batch_size.min(self.len);
        if bs == 0 {
            return Vec::new();
        }
        if self.pos.saturating_add(bs) > self.len {
            self.epoch += 1;
            self.pos = 0;
        }
        let perm = self.permutation(self.epoch);
        let out = perm[self.pos..self.pos + bs].to_vec();
        self.pos += bs;
        out
    }

    /// Full batches per epoch at `batch_size` (the remainder of each epoch is skipped).
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        self.len.checked_div(batch_size.min(self.len)).unwrap_or(0)
    }

    /// Checks that a restored sampler belongs to a dataset of `len` examples.
    pub fn check_len(&self, len: usize) -> Result<()> {
        if self.len != len || self.pos > self.len {
            return Err(Error::Data(format!(
                "sampler state is for {} examples (position {}), but the dataset has {len}; \
                 was the checkpoint trained on another dataset?",
                self.len, self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once_without_straddling() {
        let mut s = EpochSampler::new(10, 3);
        let a = s.next_indices(4);
        let b = s.next_indices(4);
        assert_eq!(s.epoch, 0);
        let mut seen: Vec<usize> = a.iter().chain(&b).copied().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8, "no repeats inside an epoch");
        // Only 2 left: the next batch starts epoch 1.
        let c = s.next_indices(4);
        assert_eq!((s.epoch, s.pos), (1, 4));
        assert_eq!(c, s.permutation(1)[..4].to_vec());
        assert_ne!(s.permutation(0), s.permutation(1));
    }

    #[test]
    fn resumed_sampler_draws_the_same_batches() {
        let mut a = EpochSampler::new(37, 9);
        for _ in 0..5 {
            a.next_indices(8);
        }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: EpochSampler = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
        for _ in 0..20 {
            assert_eq!(a.next_indices(8), b.next_indices(8));
        }
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        assert!(EpochSampler::new(0, 1).next_indices(4).is_empty());
        assert!(EpochSampler::new(5, 1).next_indices(0).is_empty());
        let mut s = EpochSampler::new(3, 1);
        let mut v = s.next_indices(10);
        v.sort();
        assert_eq!(v, vec![0, 1, 2]);
        assert_eq!(s.next_indices(10).len(), 3);
        assert_eq!(s.epoch, 1);
        assert!(s.check_len(3).is_ok());
        assert!(s.check_len(4).is_err());
    }
}
