//! The environment interface: one [`Env`] trait for every single-agent task, the
//! [`TimeLimit`] wrapper that truncates episodes as Gymnasium's `make` does, and
//! [`VecEnv`], N independent copies stepped together with automatic reset.
//!
//! Conventions follow Gymnasium (Towers et al. 2024, arXiv:2407.17032): `step` returns the
//! reward and two flags, `terminated` (the task reached a terminal state: no bootstrapping
//! past it) and `truncated` (the time limit cut the episode: bootstrapping continues).
//! Observations are written into a caller's `f32` buffer, so stepping allocates nothing.
//! Randomness is passed in: an environment holds no generator of its own, so a run's whole
//! state (physics plus generators) is saved in checkpoints and restored exactly.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

/// An observation or action space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Space {
    /// `n` choices `0..n` (an observation in such a space is written as one `f32`, the index).
    Discrete(usize),
    /// A box of `f32` vectors with elementwise bounds (infinite bounds allowed).
    Box { low: Vec<f32>, high: Vec<f32> },
}

impl Space {
    /// A box with the same bounds in every one of `n` coordinates.
    pub fn uniform_box(n: usize, low: f32, high: f32) -> Self {
        Space::Box {
            low: vec![low; n],
            high: vec![high; n],
        }
    }

    /// Length of the `f32` buffer that holds one element (1 for a discrete space).
    pub fn flat_len(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::Box { low, .. } => low.len(),
        }
    }

    /// Width of a network input or output for this space: `n` (one-hot / one logit per
    /// choice) for `Discrete(n)`, the dimension for a box.
    pub fn net_width(&self) -> usize {
        match self {
            Space::Discrete(n) => *n,
            Space::Box { low, .. } => low.len(),
        }
    }

    pub fn is_discrete(&self) -> bool {
        matches!(self, Space::Discrete(_))
    }

    /// "discrete(2)" or "box(3)", for messages.
    pub fn describe(&self) -> String {
        match self {
            Space::Discrete(n) => format!("discrete({n})"),
            Space::Box { low, .. } => format!("box({})", low.len()),
        }
    }
}

/// An action: an index for a discrete space, a vector for a box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    Discrete(usize),
    Continuous(&'a [f32]),
}

/// What one step returned besides the observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    pub reward: f64,
    /// A terminal state was reached (the value of what follows is 0).
    pub terminated: bool,
    /// The episode was cut (time limit); the state is not terminal.
    pub truncated: bool,
}

/// An RGB frame, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// One single-agent task. Implementations keep Gymnasium's equations and constants, and say
/// in their header which version they follow.
pub trait Env: Send {
    fn observation_space(&self) -> Space;
    fn action_space(&self) -> Space;
    /// Draws a start state from `rng` and writes its observation into `obs`
    /// (`observation_space().flat_len()` values).
    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]);
    /// Applies `action`; writes the next observation into `obs`. `truncated` is always false
    /// here: time limits are [`TimeLimit`]'s. `rng` serves stochastic transitions.
    fn step(&mut self, action: Action, rng: &mut Rng, obs: &mut [f32]) -> Transition;
    /// The full physical state (Gymnasium's `env.unwrapped.state`, or the discrete state's
    /// index), for checkpoints and parity tests.
    fn state(&self) -> Vec<f64>;
    /// Sets the state (as [`Env::state`] returns it) and writes its observation.
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()>;
    /// A picture of the current state, for the tasks that have one.
    fn render(&self) -> Option<Frame> {
        None
    }
}

/// Checks a state vector's length in `set_state`.
pub(crate) fn check_state_len(env: &str, state: &[f64], want: usize) -> Result<()> {
    if state.len() != want {
        return Err(Error::InvalidInput(format!(
            "{env} state has {want} values, got {}",
            state.len()
        )));
    }
    Ok(())
}

/// Gymnasium's `TimeLimit` wrapper: truncates an episode after `max_steps` steps (unless it
/// terminated at that same step).
pub struct TimeLimit {
    pub env: Box<dyn Env>,
    pub max_steps: Option<usize>,
    /// Steps since the last reset.
    pub elapsed: usize,
}

impl TimeLimit {
    pub fn new(env: Box<dyn Env>, max_steps: Option<usize>) -> Self {
        Self {
            env,
            max_steps,
            elapsed: 0,
        }
    }

    pub fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        self.elapsed = 0;
        self.env.reset(rng, obs);
    }

    pub fn step(&mut self, action: Action, rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let mut t = self.env.step(action, rng, obs);
        self.elapsed += 1;
        if self.max_steps.is_some_and(|m| self.elapsed >= m) {
            t.truncated = true;
        }
        t
    }
}

/// Saved state of one environment copy: physics, step count, generator and the episode's
/// running return and length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvCopyState {
    pub state: Vec<f64>,
    pub elapsed: usize,
    pub rng: [u64; 4],
    pub ep_return: f64,
    pub ep_len: usize,
}

/// A finished episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    pub ret: f64,
    pub len: usize,
}

/// `n` copies of one environment, stepped in lockstep, each with its own generator and
/// reset automatically at the end of an episode (SB3's `DummyVecEnv` semantics: the
/// observation returned for a finished copy is the first of its next episode, and the
/// last observation of the finished episode is kept in [`VecEnv::final_obs`] for
/// bootstrapping through truncation).
pub struct VecEnv {
    pub copies: Vec<TimeLimit>,
    pub rngs: Vec<Rng>,
    pub obs_len: usize,
    /// `[n, obs_len]`: the current observation of every copy.
    pub obs: Vec<f32>,
    /// `[n, obs_len]`: for a copy whose episode ended on the last step, its final
    /// observation (before the automatic reset); stale otherwise.
    pub final_obs: Vec<f32>,
    pub ep_return: Vec<f64>,
    pub ep_len: Vec<usize>,
}

impl VecEnv {
    /// `n` copies made by `make`, copy `i` seeded with `Rng::derive(seed, "env-i")`, all reset.
    pub fn new(make: impl Fn() -> TimeLimit, n: usize, seed: u64) -> Self {
        let copies: Vec<TimeLimit> = (0..n).map(|_| make()).collect();
        let obs_len = copies[0].env.observation_space().flat_len();
        let mut v = Self {
            rngs: (0..n)
                .map(|i| Rng::derive(seed, &format!("env-{i}")))
                .collect(),
            copies,
            obs_len,
            obs: vec![0.0; n * obs_len],
            final_obs: vec![0.0; n * obs_len],
            ep_return: vec![0.0; n],
            ep_len: vec![0; n],
        };
        for i in 0..n {
            let (c, r) = (&mut v.copies[i], &mut v.rngs[i]);
            c.reset(r, &mut v.obs[i * obs_len..(i + 1) * obs_len]);
        }
        v
    }

    pub fn len(&self) -> usize {
        self.copies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    pub fn obs_of(&self, i: usize) -> &[f32] {
        &self.obs[i * self.obs_len..(i + 1) * self.obs_len]
    }

    /// Steps copy `i`; on the end of its episode, resets it and returns the episode.
    pub fn step_one(&mut self, i: usize, action: Action) -> (Transition, Option<Episode>) {
        let l = self.obs_len;
        let obs = &mut self.obs[i * l..(i + 1) * l];
        let t = self.copies[i].step(action, &mut self.rngs[i], obs);
        self.ep_return[i] += t.reward;
        self.ep_len[i] += 1;
        if t.terminated || t.truncated {
            self.final_obs[i * l..(i + 1) * l].copy_from_slice(obs);
            let ep = Episode {
                ret: self.ep_return[i],
                len: self.ep_len[i],
            };
            self.ep_return[i] = 0.0;
            self.ep_len[i] = 0;
            self.copies[i].reset(&mut self.rngs[i], obs);
            (t, Some(ep))
        } else {
            (t, None)
        }
    }

    pub fn save(&self) -> Vec<EnvCopyState> {
        (0..self.len())
            .map(|i| EnvCopyState {
                state: self.copies[i].env.state(),
                elapsed: self.copies[i].elapsed,
                rng: self.rngs[i].state(),
                ep_return: self.ep_return[i],
                ep_len: self.ep_len[i],
            })
            .collect()
    }

    pub fn load(&mut self, saved: &[EnvCopyState]) -> Result<()> {
        if saved.len() != self.len() {
            return Err(Error::Checkpoint(format!(
                "checkpoint holds {} environment copies, the run has {}",
                saved.len(),
                self.len()
            )));
        }
        let l = self.obs_len;
        for (i, s) in saved.iter().enumerate() {
            self.copies[i]
                .env
                .set_state(&s.state, &mut self.obs[i * l..(i + 1) * l])?;
            self.copies[i].elapsed = s.elapsed;
            self.rngs[i] = Rng::from_state(s.rng);
            self.ep_return[i] = s.ep_return;
            self.ep_len[i] = s.ep_len;
        }
        Ok(())
    }
}
