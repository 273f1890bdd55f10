//! simple_spread: three agents cover three landmarks while avoiding each other, from the
//! multi-agent particle environments (Lowe et al., "Multi-agent actor-critic for mixed
//! cooperative-competitive environments", NeurIPS 2017, arXiv:1706.02275; Mordatch & Abbeel
//! 2018, arXiv:1703.04908).
//!
//! PettingZoo MPE's `simple_spread_v3` dynamics (now the `mpe2` package, version 1.1):
//! agents of size 0.15 and mass 1 in a damped world (dt 0.1, damping 0.25); the action
//! force (sensitivity 5) plus soft contact forces between agents,
//! f = 100 * d / |d| * k * log(1 + exp(-(|d| - 0.3) / k)) with k = 1e-3; positions move
//! with the old velocity before it is damped and pushed. Each agent's reward is
//! 0.5 * (-sum over landmarks of the nearest agent's distance) + 0.5 * (-1 per other agent
//! it collides with). Observation per agent (18): own velocity, own position, landmarks
//! relative to it, the other agents relative to it, their (silent) communication, zeros.
//! Episodes are truncated after 25 steps. Actions per agent: discrete (no-op, left, right,
//! down, up) or, with `continuous`, five values in [0, 1] whose differences give the force.

use genlab_core::{Error, Result, Rng};

use crate::env::{Frame, Space};
use crate::render::Canvas;

pub const N: usize = 3;
const DT: f64 = 0.1;
const DAMPING: f64 = 0.25;
const CONTACT_FORCE: f64 = 1e2;
const CONTACT_MARGIN: f64 = 1e-3;
const AGENT_SIZE: f64 = 0.15;
const SENSITIVITY: f64 = 5.0;
const LOCAL_RATIO: f64 = 0.5;
pub const MAX_CYCLES: usize = 25;
pub const OBS_DIM: usize = 4 + 2 * N + 2 * (N - 1) + 2 * (N - 1);
/// Continuous action width per agent.
pub const ACT_DIM: usize = 5;

/// A cooperative multi-agent task: every agent acts at once, each gets its own
/// observation and reward.
pub trait MultiEnv: Send {
    fn n_agents(&self) -> usize;
    /// Observation width of one agent.
    fn obs_dim(&self) -> usize;
    /// Action space of one agent.
    fn action_space(&self) -> Space;
    /// Episode length (truncation), in steps.
    fn max_cycles(&self) -> usize;
    /// Resets; writes `[n_agents, obs_dim]` observations.
    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]);
    /// One step with `[n_agents, flat action]` actions (a discrete action as its index);
    /// writes observations and per-agent rewards; returns (terminated, truncated).
    fn step(&mut self, actions: &[f32], obs: &mut [f32], rewards: &mut [f64]) -> (bool, bool);
    fn state(&self) -> Vec<f64>;
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()>;
    fn render(&self) -> Option<Frame> {
        None
    }
}

#[derive(Clone, Debug)]
pub struct SimpleSpread {
    pub continuous: bool,
    pub agent_pos: [[f64; 2]; N],
    pub agent_vel: [[f64; 2]; N],
    pub landmark_pos: [[f64; 2]; N],
    pub steps: usize,
}

impl SimpleSpread {
    pub fn new(continuous: bool) -> Self {
        Self {
            continuous,
            agent_pos: [[0.0; 2]; N],
            agent_vel: [[0.0; 2]; N],
            landmark_pos: [[0.0; 2]; N],
            steps: 0,
        }
    }

    fn write_obs(&self, obs: &mut [f32]) {
        for i in 0..N {
            let o = &mut obs[i * OBS_DIM..(i + 1) * OBS_DIM];
            let p = self.agent_pos[i];
            let mut k = 0;
            let mut push = |v: f64| {
                o[k] = v as f32;
                k += 1;
            };
            push(self.agent_vel[i][0]);
            push(self.agent_vel[i][1]);
            push(p[0]);
            push(p[1]);
            for l in &self.landmark_pos {
                push(l[0] - p[0]);
                push(l[1] - p[1]);
            }
            for j in (0..N).filter(|&j| j != i) {
                push(self.agent_pos[j][0] - p[0]);
                push(self.agent_pos[j][1] - p[1]);
            }
            for _ in 0..2 * (N - 1) {
                push(0.0);
            }
        }
    }

    fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    }

    /// -sum over landmarks of the distance to the nearest agent.
    fn global_reward(&self) -> f64 {
        let mut rew = 0.0;
        for l in &self.landmark_pos {
            let m = self
                .agent_pos
                .iter()
                .map(|&a| Self::dist(a, *l))
                .fold(f64::INFINITY, f64::min);
            rew -= m;
        }
        rew
    }
}

/// log(exp(0) + exp(y)), stably (NumPy's `logaddexp(0, y)`).
fn logaddexp0(y: f64) -> f64 {
    y.max(0.0) + (-y.abs()).exp().ln_1p()
}

impl MultiEnv for SimpleSpread {
    fn n_agents(&self) -> usize {
        N
    }

    fn obs_dim(&self) -> usize {
        OBS_DIM
    }

    fn action_space(&self) -> Space {
        if self.continuous {
            Space::uniform_box(ACT_DIM, 0.0, 1.0)
        } else {
            Space::Discrete(5)
        }
    }

    fn max_cycles(&self) -> usize {
        MAX_CYCLES
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        let mut u = || -1.0 + 2.0 * rng.uniform();
        for i in 0..N {
            self.agent_pos[i] = [u(), u()];
            self.agent_vel[i] = [0.0; 2];
        }
        for i in 0..N {
            self.landmark_pos[i] = [u(), u()];
        }
        self.steps = 0;
        self.write_obs(obs);
    }

    fn step(&mut self, actions: &[f32], obs: &mut [f32], rewards: &mut [f64]) -> (bool, bool) {
        let w = if self.continuous { ACT_DIM } else { 1 };
        // Action forces.
        let mut force = [[0.0f64; 2]; N];
        for (i, f) in force.iter_mut().enumerate() {
            let a = &actions[i * w..(i + 1) * w];
            let mut u = [0.0f64; 2];
            if self.continuous {
                // float32 differences, added to a float64 zero vector.
                u[0] += (a[2] - a[1]) as f64;
                u[1] += (a[4] - a[3]) as f64;
            } else {
                match a[0] as usize {
                    1 => u[0] = -1.0,
                    2 => u[0] = 1.0,
                    3 => u[1] = -1.0,
                    4 => u[1] = 1.0,
                    _ => {}
                }
            }
            *f = [u[0] * SENSITIVITY, u[1] * SENSITIVITY];
        }
        // Contact forces between agent pairs (landmarks do not collide).
        for a in 0..N {
            for b in a + 1..N {
                let d = [
                    self.agent_pos[a][0] - self.agent_pos[b][0],
                    self.agent_pos[a][1] - self.agent_pos[b][1],
                ];
                let dist = (d[0] * d[0] + d[1] * d[1]).sqrt();
                let dist_min = 2.0 * AGENT_SIZE;
                let k = CONTACT_MARGIN;
                let penetration = logaddexp0(-(dist - dist_min) / k) * k;
                for c in 0..2 {
                    let f = CONTACT_FORCE * d[c] / dist * penetration;
                    force[a][c] += f;
                    force[b][c] += -f;
                }
            }
        }
        // Integration: position with the old velocity, then damping and force (mass 1).
        for ((pos, vel), f) in self
            .agent_pos
            .iter_mut()
            .zip(&mut self.agent_vel)
            .zip(&force)
        {
            for c in 0..2 {
                pos[c] += vel[c] * DT;
                vel[c] *= 1.0 - DAMPING;
                vel[c] += f[c] / 1.0 * DT;
            }
        }
        let g = self.global_reward();
        for (i, r) in rewards.iter_mut().enumerate().take(N) {
            let mut own = 0.0;
            for j in 0..N {
                if j != i && Self::dist(self.agent_pos[i], self.agent_pos[j]) < 2.0 * AGENT_SIZE {
                    own -= 1.0;
                }
            }
            *r = g * (1.0 - LOCAL_RATIO) + own * LOCAL_RATIO;
        }
        self.steps += 1;
        self.write_obs(obs);
        (false, self.steps >= MAX_CYCLES)
    }

    /// Agent positions and velocities, landmark positions (2 values each), step count.
    fn state(&self) -> Vec<f64> {
        let mut s = Vec::with_capacity(6 * N + 1);
        for i in 0..N {
            s.extend(self.agent_pos[i]);
            s.extend(self.agent_vel[i]);
        }
        for l in &self.landmark_pos {
            s.extend(l);
        }
        s.push(self.steps as f64);
        s
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        if state.len() != 6 * N + 1 {
            return Err(Error::InvalidInput(format!(
                "simple-spread state has {} values, got {}",
                6 * N + 1,
                state.len()
            )));
        }
        for i in 0..N {
            self.agent_pos[i] = [state[4 * i], state[4 * i + 1]];
            self.agent_vel[i] = [state[4 * i + 2], state[4 * i + 3]];
        }
        for i in 0..N {
            self.landmark_pos[i] = [state[4 * N + 2 * i], state[4 * N + 2 * i + 1]];
        }
        self.steps = state[6 * N] as usize;
        self.write_obs(obs);
        Ok(())
    }

    /// 400 x 400 over [-2, 2]^2: landmarks grey, agents blue.
    fn render(&self) -> Option<Frame> {
        let mut c = Canvas::new(400, 400);
        let px = |p: [f64; 2]| (200.0 + p[0] * 100.0, 200.0 - p[1] * 100.0);
        for l in &self.landmark_pos {
            let (x, y) = px(*l);
            c.disc(x, y, 5.0, [64, 64, 64]);
        }
        for a in &self.agent_pos {
            let (x, y) = px(*a);
            c.disc(x, y, AGENT_SIZE * 100.0, [89, 89, 217]);
        }
        Some(c.frame)
    }
}
