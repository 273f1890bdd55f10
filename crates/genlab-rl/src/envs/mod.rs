//! The environments, one file each, and their registry.
//!
//! Adding an environment is one new file here (a type implementing [`Env`], or
//! [`MultiEnv`] for a multi-agent task) plus one [`EnvEntry`] line in [`ENVS`].

pub mod acrobot;
pub mod cartpole;
pub mod cliff_walking;
pub mod frozen_lake;
pub mod mountain_car;
pub mod mountain_car_continuous;
pub mod pendulum;
pub mod simple_spread;
pub mod tabular;
pub mod taxi;

use serde::Serialize;

use genlab_core::{Error, Result};

use crate::env::{Env, Space, TimeLimit};
pub use simple_spread::MultiEnv;

/// How an entry builds its task.
#[derive(Clone, Copy)]
pub enum Maker {
    /// A single-agent task (Gymnasium's `make` adds the time limit of the entry).
    Single(fn() -> Box<dyn Env>),
    /// A multi-agent task; the flag asks for continuous actions.
    Multi(fn(bool) -> Box<dyn MultiEnv>),
}

/// One registered environment.
#[derive(Clone, Copy)]
pub struct EnvEntry {
    /// genlab's name (`--env NAME`).
    pub name: &'static str,
    /// The upstream id whose dynamics it reproduces.
    pub upstream: &'static str,
    pub description: &'static str,
    /// Gymnasium's `max_episode_steps` (None: no limit).
    pub max_episode_steps: Option<usize>,
    pub make: Maker,
}

/// What a front end needs to know about an environment (`genlab list --json`).
#[derive(Clone, Debug, Serialize)]
pub struct EnvInfo {
    pub name: &'static str,
    pub upstream: &'static str,
    pub description: &'static str,
    pub observation: String,
    pub action: String,
    pub max_episode_steps: Option<usize>,
    pub multi_agent: bool,
    /// Observations are state indices (tabular methods apply).
    pub tabular: bool,
}

impl EnvEntry {
    /// A fresh copy with its time limit (single-agent entries only).
    pub fn make_single(&self) -> Result<TimeLimit> {
        match self.make {
            Maker::Single(f) => Ok(TimeLimit::new(f(), self.max_episode_steps)),
            Maker::Multi(_) => Err(Error::InvalidInput(format!(
                "`{}` is a multi-agent environment",
                self.name
            ))),
        }
    }

    pub fn is_multi(&self) -> bool {
        matches!(self.make, Maker::Multi(_))
    }

    pub fn info(&self) -> EnvInfo {
        let (obs, act) = match self.make {
            Maker::Single(f) => {
                let e = f();
                (e.observation_space(), e.action_space())
            }
            Maker::Multi(f) => {
                let e = f(true);
                (
                    Space::uniform_box(e.obs_dim(), f32::NEG_INFINITY, f32::INFINITY),
                    e.action_space(),
                )
            }
        };
        EnvInfo {
            name: self.name,
            upstream: self.upstream,
            description: self.description,
            tabular: obs.is_discrete(),
            observation: obs.describe(),
            action: act.describe(),
            max_episode_steps: self.max_episode_steps,
            multi_agent: self.is_multi(),
        }
    }
}

pub const ENVS: &[EnvEntry] = &[
    EnvEntry {
        name: "cartpole",
        upstream: "CartPole-v1",
        description: "balance a pole on a cart; 2 actions, reward 1 per step",
        max_episode_steps: Some(500),
        make: Maker::Single(|| Box::new(cartpole::CartPole::default())),
    },
    EnvEntry {
        name: "acrobot",
        upstream: "Acrobot-v1",
        description: "swing a two-link arm above a line; 3 torques, -1 per step",
        max_episode_steps: Some(500),
        make: Maker::Single(|| Box::new(acrobot::Acrobot::default())),
    },
    EnvEntry {
        name: "mountain-car",
        upstream: "MountainCar-v0",
        description: "drive an underpowered car up a hill; 3 actions, -1 per step",
        max_episode_steps: Some(200),
        make: Maker::Single(|| Box::new(mountain_car::MountainCar::default())),
    },
    EnvEntry {
        name: "mountain-car-continuous",
        upstream: "MountainCarContinuous-v0",
        description: "the mountain car with a force in [-1, 1]; +100 at the goal",
        max_episode_steps: Some(999),
        make: Maker::Single(|| Box::new(mountain_car_continuous::MountainCarContinuous::default())),
    },
    EnvEntry {
        name: "pendulum",
        upstream: "Pendulum-v1",
        description: "swing a pendulum up and hold it; torque in [-2, 2]",
        max_episode_steps: Some(200),
        make: Maker::Single(|| Box::new(pendulum::Pendulum::default())),
    },
    EnvEntry {
        name: "frozen-lake",
        upstream: "FrozenLake-v1 (4x4, slippery)",
        description: "cross slippery ice to the goal without falling in a hole; 16 states",
        max_episode_steps: Some(100),
        make: Maker::Single(|| Box::new(frozen_lake::FrozenLake::new(&frozen_lake::MAP_4X4, true))),
    },
    EnvEntry {
        name: "frozen-lake-8x8",
        upstream: "FrozenLake8x8-v1 (slippery)",
        description: "the 8x8 frozen lake; 64 states",
        max_episode_steps: Some(200),
        make: Maker::Single(|| Box::new(frozen_lake::FrozenLake::new(&frozen_lake::MAP_8X8, true))),
    },
    EnvEntry {
        name: "cliff-walking",
        upstream: "CliffWalking-v1",
        description: "walk along a cliff to the goal; 48 states, -100 for a fall",
        max_episode_steps: None,
        make: Maker::Single(|| Box::new(cliff_walking::CliffWalking::new())),
    },
    EnvEntry {
        name: "taxi",
        upstream: "Taxi-v3",
        description: "pick up and drop off a passenger; 500 states, 6 actions",
        max_episode_steps: Some(200),
        make: Maker::Single(|| Box::new(taxi::Taxi::new())),
    },
    EnvEntry {
        name: "simple-spread",
        upstream: "PettingZoo MPE simple_spread_v3 (N=3)",
        description: "3 agents cover 3 landmarks without colliding; cooperative, 25 steps",
        max_episode_steps: Some(simple_spread::MAX_CYCLES),
        make: Maker::Multi(|c| Box::new(simple_spread::SimpleSpread::new(c))),
    },
];

/// The entry called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static EnvEntry> {
    ENVS.iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::unknown("environment", name, ENVS.iter().map(|e| e.name)))
}
