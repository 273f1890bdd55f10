//! Acrobot-v1: swing a two-link pendulum's tip above a line by torquing the middle joint.
//!
//! Sutton, "Generalization in reinforcement learning: successful examples using sparse
//! coarse coding", NIPS 1996; dynamics from Sutton & Barto, *Reinforcement Learning: An
//! Introduction* (1998), as in Gymnasium 1.2's `acrobot.py` ("book" variant): one RK4 step
//! of dt = 0.2 s, angles wrapped to [-pi, pi], velocities clipped to 4 pi and 9 pi, torque
//! in {-1, 0, 1}, reward -1 per step and 0 on the terminal one, termination when
//! -cos(t1) - cos(t1 + t2) > 1, 500-step limit.

use std::f64::consts::PI;

use genlab_core::{Result, Rng};

use crate::env::{check_state_len, Action, Env, Frame, Space, Transition};
use crate::render::Canvas;

const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_LENGTH_2: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];

#[derive(Clone, Debug, Default)]
pub struct Acrobot {
    /// theta1, theta2, dtheta1, dtheta2.
    pub s: [f64; 4],
}

/// Gymnasium's `wrap`: shifts `x` by whole periods into [lo, hi].
fn wrap(mut x: f64, lo: f64, hi: f64) -> f64 {
    let diff = hi - lo;
    while x > hi {
        x -= diff;
    }
    while x < lo {
        x += diff;
    }
    x
}

/// The time derivative of (theta1, theta2, dtheta1, dtheta2) under torque `a`.
fn dsdt(s: [f64; 4], a: f64) -> [f64; 4] {
    let (m1, m2, l1, lc1, lc2) = (
        LINK_MASS_1,
        LINK_MASS_2,
        LINK_LENGTH_1,
        LINK_COM_POS_1,
        LINK_COM_POS_2,
    );
    let (i1, i2, g) = (LINK_MOI, LINK_MOI, 9.8);
    let [theta1, theta2, dtheta1, dtheta2] = s;
    let d1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * (lc2 * lc2 + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * dtheta2 * dtheta2 * theta2.sin()
        - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * g * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1 * dtheta1 * theta2.sin() - phi2)
        / (m2 * lc2 * lc2 + i2 - d2 * d2 / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

fn axpy(y: [f64; 4], a: f64, k: [f64; 4]) -> [f64; 4] {
    [
        y[0] + a * k[0],
        y[1] + a * k[1],
        y[2] + a * k[2],
        y[3] + a * k[3],
    ]
}

impl Acrobot {
    fn write_obs(&self, obs: &mut [f32]) {
        let s = self.s;
        let v = [s[0].cos(), s[0].sin(), s[1].cos(), s[1].sin(), s[2], s[3]];
        for (o, x) in obs.iter_mut().zip(v) {
            *o = x as f32;
        }
    }

    fn terminal(&self) -> bool {
        -self.s[0].cos() - (self.s[1] + self.s[0]).cos() > 1.0
    }
}

impl Env for Acrobot {
    fn observation_space(&self) -> Space {
        let h = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Space::Box {
            low: h.iter().map(|v| -v).collect(),
            high: h.to_vec(),
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(3)
    }

    fn reset(&mut self, rng: &mut Rng, obs: &mut [f32]) {
        // Gymnasium draws the start state as float32.
        for v in &mut self.s {
            *v = (-0.1 + 0.2 * rng.uniform()) as f32 as f64;
        }
        self.write_obs(obs);
    }

    fn step(&mut self, action: Action, _rng: &mut Rng, obs: &mut [f32]) -> Transition {
        let a = match action {
            Action::Discrete(a) => a.min(2),
            Action::Continuous(v) => (v[0].round().clamp(0.0, 2.0)) as usize,
        };
        let torque = AVAIL_TORQUE[a];
        // One classical Runge-Kutta step over [0, dt] (Gymnasium's `rk4`).
        let y0 = self.s;
        let (dt, dt2) = (DT, DT / 2.0);
        let k1 = dsdt(y0, torque);
        let k2 = dsdt(axpy(y0, dt2, k1), torque);
        let k3 = dsdt(axpy(y0, dt2, k2), torque);
        let k4 = dsdt(axpy(y0, dt, k3), torque);
        let mut ns = [0.0; 4];
        for i in 0..4 {
            ns[i] = y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
        ns[0] = wrap(ns[0], -PI, PI);
        ns[1] = wrap(ns[1], -PI, PI);
        ns[2] = ns[2].clamp(-MAX_VEL_1, MAX_VEL_1);
        ns[3] = ns[3].clamp(-MAX_VEL_2, MAX_VEL_2);
        self.s = ns;
        self.write_obs(obs);
        let terminated = self.terminal();
        Transition {
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated: false,
        }
    }

    fn state(&self) -> Vec<f64> {
        self.s.to_vec()
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        check_state_len("acrobot", state, 4)?;
        self.s.copy_from_slice(state);
        self.write_obs(obs);
        Ok(())
    }

    /// 500 x 500: both links from the fixed pivot, and the goal line at height 1.
    fn render(&self) -> Option<Frame> {
        let size = 500.0;
        let bound = LINK_LENGTH_1 + LINK_LENGTH_2 + 0.2;
        let scale = size / (bound * 2.0);
        let to_px = |x: f64, y: f64| (x * scale + size / 2.0, size / 2.0 - y * scale);
        let mut c = Canvas::new(500, 500);
        let (p0x, p0y) = (0.0, 0.0);
        let p1 = (
            LINK_LENGTH_1 * self.s[0].sin(),
            -LINK_LENGTH_1 * self.s[0].cos(),
        );
        let p2 = (
            p1.0 + LINK_LENGTH_2 * (self.s[0] + self.s[1]).sin(),
            p1.1 - LINK_LENGTH_2 * (self.s[0] + self.s[1]).cos(),
        );
        c.line(to_px(-2.2, 1.0), to_px(2.2, 1.0), 1.0, [0, 0, 0]);
        c.line(to_px(p0x, p0y), to_px(p1.0, p1.1), 10.0, [0, 204, 204]);
        c.line(to_px(p1.0, p1.1), to_px(p2.0, p2.1), 10.0, [0, 204, 204]);
        for p in [(p0x, p0y), p1] {
            let (x, y) = to_px(p.0, p.1);
            c.disc(x, y, 5.0, [204, 204, 0]);
        }
        Some(c.frame)
    }
}
