//! CartPole-v1: balance a pole on a cart by pushing it left or right.
//!
//! Barto, Sutton & Anderson, "Neuronlike adaptive elements that can solve difficult learning
//! control problems", IEEE SMC 1983; the equations of motion are Florian's corrected form
//! ("Correct equations for the dynamics of the cart-pole system", 2007, eq. 23-24), as in
//! Gymnasium 1.2's `cartpole.py`: explicit Euler with tau = 0.02 s, reward 1 on every step
//! (including the one that ends the episode), termination when |x| > 2.4 or
//! |theta| > 12 degrees, 500-step limit (registered by `make`). State in f64, observation
//! rounded to f32 as Gymnasium does.

use genlab_core::{Result, Rng};

use crate::env::{check_state_len, Action, Env, Frame, Space, Transition};
use crate::render::Canvas;

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASS_POLE + MASS_CART;
/// Half the pole's length.
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASS_POLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
const X_THRESHOLD: f64 = 2.4;

#[derive(Clone, Debug, Default)]
pub struct CartPole {
    /// x, x_dot, theta, theta_dot.
    pub s: [f64; 4],
}

impl CartPole {
    fn write_obs(&self, obs: &mut [f32]) {
        for (o, s) in obs.iter_mut().zip(self.s) {
            *o = s as f32;
        }
    }
}

impl Env for CartPole {
    fn observation_space(&self) -> Space {
        let h = [
            X_THRESHOLD as f32 * 2.0,
            f32::MAX,
            THETA_THRESHOLD as f32 * 2.0,
            f32::MAX,
        ];
        Space::Box {
            low: h.iter().map(|v| -v).collect(),
            high: h.to_vec(),
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(2)
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        for v in &mut self.s {
            *v = -0.05 + 0.1 * rng.uniform();
        }
        self.write_obs(obs);
    }

    fn step(&mut self, action: Action, _rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let a = match action {
            Action::Discrete(a) => a,
            Action::Continuous(v) => (v[0] > 0.5) as usize,
        };
        let [x, x_dot, theta, theta_dot] = self.s;
        let force = if a == 1 { FORCE_MAG } else { -FORCE_MAG };
        let (costheta, sintheta) = (theta.cos(), theta.sin());
        let temp = (force + POLEMASS_LENGTH * theta_dot * theta_dot * sintheta) / TOTAL_MASS;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASS_POLE * costheta * costheta / TOTAL_MASS));
        let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
        self.s = [
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
        ];
        self.write_obs(obs);
        let [x, _, theta, _] = self.s;
        let terminated = !(-X_THRESHOLD..=X_THRESHOLD).contains(&x)
            || !(-THETA_THRESHOLD..=THETA_THRESHOLD).contains(&theta);
        Transition {
            reward: 1.0,
            terminated,
            truncated: false,
        }
    }

    fn state(&self) -> Vec<f64> {
        self.s.to_vec()
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len("cartpole", state, 4)?;
        self.s.copy_from_slice(state);
        self.write_obs(obs);
        Ok(())
    }

    /// Gymnasium's picture: 600 x 400, the cart on a track, the pole at its angle.
    fn render(&self) -> Option<Frame> {
        let (w, h) = (600.0, 400.0);
        let scale = w / (X_THRESHOLD * 2.0);
        let mut c = Canvas::new(600, 400);
        let track_y = h - 100.0;
        c.line((0.0, track_y), (w, track_y), 1.0, [0, 0, 0]);
        let cx = self.s[0] * scale + w / 2.0;
        let (cw, ch) = (50.0, 30.0);
        c.rect(
            cx - cw / 2.0,
            track_y - ch / 2.0 - 10.0,
            cx + cw / 2.0,
            track_y + ch / 2.0 - 10.0,
            [0, 0, 0],
        );
        let pole_len = scale * 2.0 * LENGTH;
        let axle = (cx, track_y - 10.0 - ch / 4.0);
        let th = self.s[2];
        let tip = (axle.0 + pole_len * th.sin(), axle.1 - pole_len * th.cos());
        c.line(axle, tip, 10.0, [202, 152, 101]);
        c.disc(axle.0, axle.1, 5.0, [129, 132, 203]);
        Some(c.frame)
    }
}
