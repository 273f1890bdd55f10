//! Pendulum-v1: swing a pendulum up and hold it upright with a bounded torque.
//!
//! The classic inverted-pendulum swing-up (e.g. Doya, "Reinforcement learning in continuous
//! time and space", Neural Computation 2000); as in Gymnasium 1.2's `pendulum.py`:
//! g = 10, m = l = 1, dt = 0.05, torque clipped to [-2, 2], angular velocity to [-8, 8],
//! cost th^2 + 0.1 thdot^2 + 0.001 u^2 (th normalised to [-pi, pi)), no termination,
//! 200-step limit. The torque terms are float32 products in Gymnasium (the action is a
//! float32 array); this port rounds them the same way.

use std::f64::consts::PI;

use genlab_core::{Result, Rng};

use crate::env::{check_state_len, Action, Env, Frame, Space, Transition};
use crate::render::Canvas;

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f64 = 2.0;
const DT: f64 = 0.05;
const G: f64 = 10.0;
const M: f64 = 1.0;
const L: f64 = 1.0;

#[derive(Clone, Debug, Default)]
pub struct Pendulum {
    /// theta, theta_dot.
    pub s: [f64; 2],
}

/// ((x + pi) mod 2 pi) - pi with a floored modulo, as NumPy's `%`.
fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

impl Pendulum {
    fn write_obs(&self, obs: &mut [f32]) {
        obs[0] = self.s[0].cos() as f32;
        obs[1] = self.s[0].sin() as f32;
        obs[2] = self.s[1] as f32;
    }
}

impl Env for Pendulum {
    fn observation_space(&self) -> Space {
        Space::Box {
            low: vec![-1.0, -1.0, -MAX_SPEED as f32],
            high: vec![1.0, 1.0, MAX_SPEED as f32],
        }
    }

    fn action_space(&self) -> Space {
        Space::uniform_box(1, -MAX_TORQUE as f32, MAX_TORQUE as f32)
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        self.s = [PI * (2.0 * rng.uniform() - 1.0), 2.0 * rng.uniform() - 1.0];
        self.write_obs(obs);
    }

    fn step(&mut self, action: Action, _rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let u: f32 = match action {
            Action::Continuous(v) => v[0],
            Action::Discrete(a) => a as f32 - 1.0,
        }
        .clamp(-MAX_TORQUE as f32, MAX_TORQUE as f32);
        let [th, thdot] = self.s;
        let u_cost = (0.001f32 * (u * u)) as f64;
        let costs = angle_normalize(th).powi(2) + 0.1 * thdot * thdot + u_cost;
        // 3 / (m l^2) * u: a float32 product in Gymnasium (m = l = 1).
        let u_term = ((3.0 / (M * L * L)) as f32 * u) as f64;
        let newthdot = thdot + (3.0 * G / (2.0 * L) * th.sin() + u_term) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.s = [newth, newthdot];
        self.write_obs(obs);
        Transition {
            reward: -costs,
            terminated: false,
            truncated: false,
        }
    }

    fn state(&self) -> Vec<f64> {
        self.s.to_vec()
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len("pendulum", state, 2)?;
        self.s.copy_from_slice(state);
        self.write_obs(obs);
        Ok(())
    }

    /// 500 x 500: the rod from the pivot at angle theta (0 = upright).
    fn render(&self) -> Option<Frame> {
        let mut c = Canvas::new(500, 500);
        let (cx, cy, r) = (250.0, 250.0, 200.0);
        let th = self.s[0];
        let tip = (cx + r * th.sin(), cy - r * th.cos());
        c.line((cx, cy), tip, 40.0, [204, 77, 77]);
        c.disc(tip.0, tip.1, 20.0, [204, 77, 77]);
        c.disc(cx, cy, 20.0, [204, 77, 77]);
        c.disc(cx, cy, 5.0, [0, 0, 0]);
        Some(c.frame)
    }
}
