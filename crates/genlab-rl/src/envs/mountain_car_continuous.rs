//! MountainCarContinuous-v0: the mountain car with a continuous force in [-1, 1].
//!
//! Moore 1990 (see `mountain_car.rs`); as in Gymnasium 1.2's `continuous_mountain_car.py`:
//! velocity += 0.0015 f - 0.0025 cos(3 x), reward 100 on reaching x >= 0.45 minus
//! 0.1 f^2 per step, 999-step limit. Gymnasium keeps this state as float32 after the first
//! step and, under NumPy 2's scalar promotion rules (NEP 50), does part of the arithmetic in
//! float32; this port repeats those roundings so that observations agree to the last bit
//! rather than drifting by ~1e-7 per step.

use genlab_core::{Result, Rng};

use crate::env::{check_state_len, Action, Env, Frame, Space, Transition};
use crate::envs::mountain_car::{render_hill, MAX_POSITION, MIN_POSITION};

const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.45;
const POWER: f64 = 0.0015;

#[derive(Clone, Debug, Default)]
pub struct MountainCarContinuous {
    /// position, velocity.
    pub s: [f64; 2],
    /// Whether the state is float32 (true after the first step, as in Gymnasium).
    pub f32_state: bool,
}

impl Env for MountainCarContinuous {
    fn observation_space(&self) -> Space {
        Space::Box {
            low: vec![MIN_POSITION as f32, -MAX_SPEED as f32],
            high: vec![MAX_POSITION as f32, MAX_SPEED as f32],
        }
    }

    fn action_space(&self) -> Space {
        Space::uniform_box(1, -1.0, 1.0)
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        self.s = [-0.6 + 0.2 * rng.uniform(), 0.0];
        self.f32_state = false;
        obs[0] = self.s[0] as f32;
        obs[1] = 0.0;
    }

    fn step(&mut self, action: Action, _rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let a: f32 = match action {
            Action::Continuous(v) => v[0],
            Action::Discrete(a) => a as f32 - 1.0,
        };
        let [position, velocity] = self.s;
        let in_range = (-1.0..=1.0).contains(&a);
        // 0.0025 cos(3 x): the product 3 x is float32 when the state is.
        let three_x = if self.f32_state {
            (3.0f32 * position as f32) as f64
        } else {
            3.0 * position
        };
        let pull = 0.0025 * three_x.cos();
        // force * power - pull: float32 when force is the (float32) action itself, f64
        // when the action was clipped to a Python float.
        let (delta, delta_f32) = if in_range {
            let fp = a * POWER as f32;
            ((fp - pull as f32) as f64, true)
        } else {
            (a.clamp(-1.0, 1.0) as f64 * POWER - pull, false)
        };
        let mut velocity = if self.f32_state {
            (velocity as f32 + delta as f32) as f64
        } else {
            let _ = delta_f32;
            velocity + delta
        };
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        let mut position = if self.f32_state {
            (position as f32 + velocity as f32) as f64
        } else {
            position + velocity
        };
        let at_wall = position <= MIN_POSITION;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if at_wall && velocity < 0.0 {
            velocity = 0.0;
        }
        let (pos32, vel32) = (position as f32, velocity as f32);
        // NumPy 2 compares a float32 with a Python float in float32.
        let terminated = if self.f32_state {
            pos32 >= GOAL_POSITION as f32 && vel32 >= 0.0
        } else {
            position >= GOAL_POSITION && velocity >= 0.0
        };
        let mut reward = if terminated { 100.0 } else { 0.0 };
        reward -= (a as f64).powi(2) * 0.1;
        self.s = [pos32 as f64, vel32 as f64];
        self.f32_state = true;
        obs[0] = pos32;
        obs[1] = vel32;
        Transition {
            reward,
            terminated,
            truncated: false,
        }
    }

    /// position, velocity, and 1 when the state is float32.
    fn state(&self) -> Vec<f64> {
        vec![self.s[0], self.s[1], self.f32_state as u8 as f64]
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len("mountain-car-continuous", state, 3)?;
        self.s = [state[0], state[1]];
        self.f32_state = state[2] != 0.0;
        obs[0] = state[0] as f32;
        obs[1] = state[1] as f32;
        Ok(())
    }

    fn render(&self) -> Option<Frame> {
        Some(render_hill(self.s[0], GOAL_POSITION))
    }
}
