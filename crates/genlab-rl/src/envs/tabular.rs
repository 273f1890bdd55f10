//! The shared model of the toy-text tasks: a table of transitions, as Gymnasium's
//! `toy_text` environments hold it (`P[s][a]` = list of (probability, next state, reward,
//! terminated)) plus an initial-state distribution. Sampling follows Gymnasium's
//! `categorical_sample`: the first outcome whose cumulative probability exceeds a uniform
//! draw. No paper.

use genlab_core::{Error, Result, Rng};

use crate::env::{check_state_len, Action, Space, Transition};

/// One possible outcome of an action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub prob: f64,
    pub next: usize,
    pub reward: f64,
    pub terminated: bool,
}

/// A finite Markov decision process given by its transition table.
#[derive(Clone, Debug)]
pub struct Table {
    /// `p[s][a]`: the outcomes of action `a` in state `s`.
    pub p: Vec<Vec<Vec<Outcome>>>,
    pub initial: Vec<f64>,
    pub n_actions: usize,
    /// The current state.
    pub s: usize,
}

/// Index of the first cumulative probability above a uniform draw.
pub(crate) fn categorical(probs: impl Iterator<Item = f64>, rng: &mut Rng) -> usize {
    let u = rng.uniform();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, p) in probs.enumerate() {
        acc += p;
        last = i;
        if acc > u {
            return i;
        }
    }
    last
}

impl Table {
    pub fn new(n_states: usize, n_actions: usize) -> Self {
        Self {
            p: vec![vec![Vec::new(); n_actions]; n_states],
            initial: vec![0.0; n_states],
            n_actions,
            s: 0,
        }
    }

    pub fn n_states(&self) -> usize {
        self.p.len()
    }

    pub fn observation_space(&self) -> Space {
        Space::Discrete(self.n_states())
    }

    pub fn action_space(&self) -> Space {
        Space::Discrete(self.n_actions)
    }

    pub fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        self.s = categorical(self.initial.iter().copied(), rng);
        obs[0] = self.s as f32;
    }

    pub fn step(&mut self, action: Action, rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let a = match action {
            Action::Discrete(a) => a.min(self.n_actions - 1),
            Action::Continuous(v) => (v[0].max(0.0) as usize).min(self.n_actions - 1),
        };
        let outs = &self.p[self.s][a];
        let o = outs[categorical(outs.iter().map(|o| o.prob), rng)];
        self.s = o.next;
        obs[0] = self.s as f32;
        Transition {
            reward: o.reward,
            terminated: o.terminated,
            truncated: false,
        }
    }

    pub fn state(&self) -> Vec<f64> {
        vec![self.s as f64]
    }

    pub fn set_state(&mut self, name: &str, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len(name, state, 1)?;
        let s = state[0];
        if s < 0.0 || s.fract() != 0.0 || s as usize >= self.n_states() {
            return Err(Error::InvalidInput(format!(
                "{name} state must be an integer in 0..{}, got {s}",
                self.n_states()
            )));
        }
        self.s = s as usize;
        obs[0] = self.s as f32;
        Ok(())
    }
}

/// Implements [`crate::env::Env`] for a struct with a `table: Table` field.
macro_rules! tabular_env {
    ($ty:ty, $name:expr) => {
        impl $crate::env::Env for $ty {
            fn observation_space(&self) -> $crate::env::Space {
                self.table.observation_space()
            }
            fn action_space(&self) -> $crate::env::Space {
                self.table.action_space()
            }
            fn reset(&mut self, rng: &mut genlab_core::Rng, obs: &mut [f32]) {
                self.table.reset(rng, obs)
            }
            fn step(
                &mut self,
                action: $crate::env::Action,
                rng: &mut genlab_core::Rng,
                obs: &mut [f32],
            ) -> $crate::env::Transition {
                self.table.step(action, rng, obs)
            }
            fn state(&self) -> Vec<f64> {
                self.table.state()
            }
            fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> genlab_core::Result<()> {
                self.table.set_state($name, state, obs)
            }
        }
    };
}
pub(crate) use tabular_env;
