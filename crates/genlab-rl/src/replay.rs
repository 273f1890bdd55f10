//! Experience replay (Lin 1992, "Self-improving reactive agents based on reinforcement
//! learning, planning and teaching"; as used by DQN, Mnih et al. 2015): a ring buffer of
//! transitions sampled uniformly. Transitions are stored in flat `f32` arrays so a batch is
//! gathered without allocation and the whole buffer is saved in checkpoints.
//!
//! `done` stores `terminated` only: a transition cut by the time limit still bootstraps
//! (SB3's `handle_timeout_termination`).

use genlab_core::{Error, Result, Rng};

use crate::saved::Saved;

pub struct Replay {
    pub capacity: usize,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub obs: Vec<f32>,
    pub next_obs: Vec<f32>,
    pub act: Vec<f32>,
    pub rew: Vec<f32>,
    pub done: Vec<f32>,
    /// Next slot to write.
    pub pos: usize,
    pub len: usize,
}

/// A sampled batch, reused across calls.
#[derive(Default)]
pub struct Batch {
    pub n: usize,
    pub obs: Vec<f32>,
    pub next_obs: Vec<f32>,
    pub act: Vec<f32>,
    pub rew: Vec<f32>,
    pub done: Vec<f32>,
}

impl Replay {
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            capacity,
            obs_dim,
            act_dim,
            obs: vec![0.0; capacity * obs_dim],
            next_obs: vec![0.0; capacity * obs_dim],
            act: vec![0.0; capacity * act_dim],
            rew: vec![0.0; capacity],
            done: vec![0.0; capacity],
            pos: 0,
            len: 0,
        }
    }

    pub fn push(&mut self, obs: &[f32], act: &[f32], rew: f32, next_obs: &[f32], done: bool) {
        let (i, d, a) = (self.pos, self.obs_dim, self.act_dim);
        self.obs[i * d..(i + 1) * d].copy_from_slice(obs);
        self.next_obs[i * d..(i + 1) * d].copy_from_slice(next_obs);
        self.act[i * a..(i + 1) * a].copy_from_slice(act);
        self.rew[i] = rew;
        self.done[i] = done as u8 as f32;
        self.pos = (self.pos + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// `n` transitions drawn uniformly with replacement.
    pub fn sample(&self, n: usize, rng: &mut Rng, b: &mut Batch) {
        let (d, a) = (self.obs_dim, self.act_dim);
        b.n = n;
        for v in [&mut b.obs, &mut b.next_obs] {
            v.clear();
        }
        b.act.clear();
        b.rew.clear();
        b.done.clear();
        for _ in 0..n {
            let i = rng.below(self.len as u64) as usize;
            b.obs.extend_from_slice(&self.obs[i * d..(i + 1) * d]);
            b.next_obs
                .extend_from_slice(&self.next_obs[i * d..(i + 1) * d]);
            b.act.extend_from_slice(&self.act[i * a..(i + 1) * a]);
            b.rew.push(self.rew[i]);
            b.done.push(self.done[i]);
        }
    }

    /// Saves the filled part (in slot order) and the write position.
    pub fn save(&self, s: &mut Saved, name: &str) {
        let (d, a, n) = (self.obs_dim, self.act_dim, self.len);
        s.put(format!("{name}.obs"), &self.obs[..n * d]);
        s.put(format!("{name}.next_obs"), &self.next_obs[..n * d]);
        s.put(format!("{name}.act"), &self.act[..n * a]);
        s.put(format!("{name}.rew"), &self.rew[..n]);
        s.put(format!("{name}.done"), &self.done[..n]);
        s.put_json(&format!("{name}.pos"), self.pos);
    }

    pub fn load(&mut self, s: &mut Saved, name: &str) -> Result<()> {
        let rew = s.take(&format!("{name}.rew"))?;
        let n = rew.len();
        if n > self.capacity {
            return Err(Error::Checkpoint(format!(
                "the checkpoint's replay buffer holds {n} transitions, more than its capacity {}",
                self.capacity
            )));
        }
        let (d, a) = (self.obs_dim, self.act_dim);
        let mut fill = |dst: &mut Vec<f32>, key: &str, w: usize| -> Result<()> {
            let v = s.take(&format!("{name}.{key}"))?;
            if v.len() != n * w {
                return Err(Error::Checkpoint(format!(
                    "replay `{key}` has the wrong size"
                )));
            }
            dst[..n * w].copy_from_slice(&v);
            Ok(())
        };
        fill(&mut self.obs, "obs", d)?;
        fill(&mut self.next_obs, "next_obs", d)?;
        fill(&mut self.act, "act", a)?;
        fill(&mut self.done, "done", 1)?;
        self.rew[..n].copy_from_slice(&rew);
        self.len = n;
        self.pos = s.get_json(&format!("{name}.pos"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_overwrites_the_oldest_and_round_trips() {
        let mut r = Replay::new(3, 1, 1);
        for i in 0..5 {
            r.push(&[i as f32], &[0.0], i as f32, &[i as f32 + 1.0], i == 4);
        }
        assert_eq!(r.len, 3);
        assert_eq!(r.rew, vec![3.0, 4.0, 2.0]);
        let mut s = Saved::default();
        r.save(&mut s, "rb");
        let mut back = Replay::new(3, 1, 1);
        back.load(&mut s, "rb").unwrap();
        assert_eq!(
            (back.rew.clone(), back.pos, back.done.clone()),
            (r.rew.clone(), r.pos, r.done.clone())
        );
        let mut b = Batch::default();
        back.sample(50, &mut Rng::new(0), &mut b);
        assert!(b.obs.iter().all(|o| [2.0, 3.0, 4.0].contains(o)));
        assert!(b.obs.iter().zip(&b.next_obs).all(|(o, n)| n - o == 1.0));
    }
}
