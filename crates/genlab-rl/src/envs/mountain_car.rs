//! MountainCar-v0: drive an underpowered car up a hill by rocking it back and forth.
//!
//! Moore, "Efficient memory-based learning for robot control", PhD thesis, Cambridge 1990;
//! as in Gymnasium 1.2's `mountain_car.py`: velocity += (a - 1) * 0.001 - 0.0025 cos(3 x),
//! clipped to 0.07, position clipped to [-1.2, 0.6] (velocity zeroed at the left wall),
//! reward -1 per step, termination at x >= 0.5, 200-step limit. State in f64.

use genlab_core::{Result, Rng};

use crate::env::{check_state_len, Action, Env, Frame, Space, Transition};

pub(crate) const MIN_POSITION: f64 = -1.2;
pub(crate) const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.5;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;

#[derive(Clone, Debug, Default)]
pub struct MountainCar {
    /// position, velocity.
    pub s: [f64; 2],
}

impl Env for MountainCar {
    fn observation_space(&self) -> Space {
        Space::Box {
            low: vec![MIN_POSITION as f32, -MAX_SPEED as f32],
            high: vec![MAX_POSITION as f32, MAX_SPEED as f32],
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(3)
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        self.s = [-0.6 + 0.2 * rng.uniform(), 0.0];
        obs[0] = self.s[0] as f32;
        obs[1] = 0.0;
    }

    fn step(&mut self, action: Action, _rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let a = match action {
            Action::Discrete(a) => a.min(2),
            Action::Continuous(v) => (v[0].round().clamp(0.0, 2.0)) as usize,
        };
        let [mut position, mut velocity] = self.s;
        velocity += (a as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= 0.0;
        self.s = [position, velocity];
        obs[0] = position as f32;
        obs[1] = velocity as f32;
        Transition {
            reward: -1.0,
            terminated,
            truncated: false,
        }
    }

    fn state(&self) -> Vec<f64> {
        self.s.to_vec()
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len("mountain-car", state, 2)?;
        self.s.copy_from_slice(state);
        obs[0] = state[0] as f32;
        obs[1] = state[1] as f32;
        Ok(())
    }

    fn render(&self) -> Option<Frame> {
        Some(render_hill(self.s[0], GOAL_POSITION))
    }
}

/// The hill y = 0.45 sin(3x) + 0.55, the car at `position` and the flag at `goal`, 600 x 400.
pub(crate) fn render_hill(position: f64, goal: f64) -> Frame {
    use crate::render::Canvas;
    let (w, h) = (600.0, 400.0);
    let scale = w / (MAX_POSITION - MIN_POSITION);
    let height = |x: f64| (3.0 * x).sin() * 0.45 + 0.55;
    let to_px = |x: f64, y: f64| ((x - MIN_POSITION) * scale, h - y * scale);
    let mut c = Canvas::new(600, 400);
    let n = 100;
    for i in 0..n {
        let x0 = MIN_POSITION + (MAX_POSITION - MIN_POSITION) * i as f64 / n as f64;
        let x1 = MIN_POSITION + (MAX_POSITION - MIN_POSITION) * (i + 1) as f64 / n as f64;
        c.line(to_px(x0, height(x0)), to_px(x1, height(x1)), 2.0, [0, 0, 0]);
    }
    let (fx, fy) = to_px(goal, height(goal));
    c.line((fx, fy), (fx, fy - 50.0), 2.0, [0, 0, 0]);
    c.polygon(
        &[(fx, fy - 50.0), (fx, fy - 40.0), (fx + 25.0, fy - 45.0)],
        [204, 204, 0],
    );
    // The car leans with the slope, dy/dx = 1.35 cos(3x).
    let angle = (0.45 * 3.0 * (3.0 * position).cos()).atan();
    let (px, py) = to_px(position, height(position));
    let (ca, sa) = (angle.cos(), angle.sin());
    let corners = [(-20.0, 0.0), (20.0, 0.0), (20.0, 20.0), (-20.0, 20.0)];
    let pts: Vec<(f64, f64)> = corners
        .iter()
        .map(|&(x, y)| (px + x * ca - y * sa, py - (x * sa + y * ca) - 10.0))
        .collect();
    c.polygon(&pts, [0, 0, 0]);
    c.frame
}
