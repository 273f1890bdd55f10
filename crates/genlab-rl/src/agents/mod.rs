//! The learning algorithms, one file each, behind one [`Agent`] trait, and their registry.
//!
//! An agent owns its environment copies and its loop, as a sampler owns its loop elsewhere
//! in genlab: the trainer ([`crate::train`]) only asks it to train one unit at a time (one
//! vectorised environment step and its updates for the off-policy methods, one rollout and
//! its update for the on-policy ones), and to save and load its whole state. Adding an
//! algorithm is one new file here (a type implementing [`Agent`] and a `pub const ENTRY:
//! AlgoEntry`) plus one line in [`ALGOS`].

pub mod a2c;
pub mod a3c;
pub mod ddpg;
pub mod dqn;
pub mod independent;
pub mod maddpg;
pub mod ppo;
pub mod q_learning;
pub mod reinforce;
pub mod sarsa;
pub mod td3;

use serde::Serialize;
use serde_json::Value;

use genlab_core::{Error, Result};

use crate::env::{Episode, Space};
use crate::envs::{EnvEntry, Maker};
use crate::saved::Saved;

/// What one unit of training produced.
#[derive(Default, Debug)]
pub struct Report {
    /// Episodes that ended during the unit (training episodes, with exploration).
    pub episodes: Vec<Episode>,
    /// Losses and other numbers of the unit's updates (name, value), if any.
    pub metrics: Vec<(&'static str, f64)>,
}

/// A learning agent with its environments.
pub trait Agent: Send {
    /// Environment steps taken so far (all copies together; for a multi-agent task, joint
    /// steps).
    fn env_steps(&self) -> u64;
    /// Trains one unit; pushes the episodes that ended. A NaN or infinite loss is an
    /// [`Error::Numeric`].
    fn train_unit(&mut self, report: &mut Report) -> Result<()>;
    /// The deterministic (greedy or mean) action for one observation, written as `f32`s:
    /// one index for a discrete space, the vector for a box. Multi-agent: all agents'
    /// observations in, all agents' actions out.
    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>);
    /// Everything needed to continue exactly: networks, optimizer moments, buffers,
    /// generators, environment states.
    fn save(&self) -> Saved;
    fn load(&mut self, saved: Saved) -> Result<()>;
}

/// What an algorithm can train on.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Supports {
    pub discrete_actions: bool,
    pub continuous_actions: bool,
    /// Needs observations that are state indices (a table of values).
    pub tabular: bool,
    pub multi_agent: bool,
}

/// Everything an algorithm is built from.
pub struct Spec<'a> {
    pub env: &'static EnvEntry,
    pub seed: u64,
    /// The run's total environment steps (for schedules that decay over the run).
    pub total_steps: u64,
    /// The resolved config (the algorithm's own `Config`, as JSON).
    pub config: &'a Value,
}

/// One registered algorithm.
pub struct AlgoEntry {
    /// `--algo NAME`.
    pub name: &'static str,
    /// Authors, year and arXiv id of the paper it follows.
    pub paper: &'static str,
    pub description: &'static str,
    pub supports: Supports,
    /// The default config for an environment (tuned presets where the zoo has them).
    pub defaults: fn(env: &str) -> Value,
    pub build: fn(&Spec) -> Result<Box<dyn Agent>>,
}

/// Every algorithm.
pub const ALGOS: &[&AlgoEntry] = &[
    &q_learning::ENTRY,
    &sarsa::ENTRY,
    &dqn::ENTRY,
    &reinforce::ENTRY,
    &a2c::ENTRY,
    &a3c::ENTRY,
    &ppo::ENTRY,
    &ddpg::ENTRY,
    &td3::ENTRY,
    &independent::ENTRY,
    &maddpg::ENTRY,
];

/// The entry called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static AlgoEntry> {
    ALGOS
        .iter()
        .copied()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::unknown("algorithm", name, ALGOS.iter().map(|a| a.name)))
}

/// Whether `algo` can train on `env`; the reason when it cannot.
pub fn fit_problem(algo: &AlgoEntry, env: &EnvEntry) -> Option<String> {
    let s = algo.supports;
    let (obs, act) = match env.make {
        Maker::Single(f) => {
            let e = f();
            (e.observation_space(), e.action_space())
        }
        Maker::Multi(_) => {
            return (!s.multi_agent)
                .then(|| format!("is multi-agent; `{}` trains one agent", algo.name));
        }
    };
    if s.multi_agent {
        return Some(format!(
            "has one agent; `{}` is a multi-agent algorithm",
            algo.name
        ));
    }
    if s.tabular != obs.is_discrete() {
        return Some(if s.tabular {
            format!(
                "has {} observations; `{}` needs state indices (a tabular task)",
                obs.describe(),
                algo.name
            )
        } else {
            format!(
                "has state-index observations; `{}` needs vector observations",
                algo.name
            )
        });
    }
    match act {
        Space::Discrete(_) if !s.discrete_actions => Some(format!(
            "has {} actions; `{}` needs continuous (box) actions",
            act.describe(),
            algo.name
        )),
        Space::Box { .. } if !s.continuous_actions => Some(format!(
            "has {} (continuous) actions; `{}` needs discrete actions",
            act.describe(),
            algo.name
        )),
        _ => None,
    }
}

/// Checks that `algo` fits `env`, naming the algorithms that do when it does not.
pub fn check_fit(algo: &AlgoEntry, env: &EnvEntry) -> Result<()> {
    match fit_problem(algo, env) {
        None => Ok(()),
        Some(why) => {
            let fits: Vec<&str> = ALGOS
                .iter()
                .filter(|a| fit_problem(a, env).is_none())
                .map(|a| a.name)
                .collect();
            Err(Error::setting(
                "algo",
                format!(
                    "`{}` does not fit environment `{}`: it {why} (algorithms for `{}`: {})",
                    algo.name,
                    env.name,
                    env.name,
                    fits.join(", ")
                ),
            ))
        }
    }
}

/// Parses an algorithm's config from the resolved JSON.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| Error::Config(format!("invalid value: {e}")))
}

/// An invalid value of the algorithm's config (a `--set` key for the CLI): `config: KEY
/// PROBLEM`.
pub(crate) fn config_error(key: impl AsRef<str>, problem: impl AsRef<str>) -> Error {
    Error::Config(format!("{} {}", key.as_ref(), problem.as_ref()))
}

/// An error when a loss is not finite.
pub(crate) fn check_finite(name: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::Numeric(format!("{name} is {v}")))
    }
}

/// What a front end shows about an algorithm (`genlab list --json`).
#[derive(Clone, Debug, Serialize)]
pub struct AlgoInfo {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub supports: Supports,
}

impl AlgoEntry {
    pub fn info(&self) -> AlgoInfo {
        AlgoInfo {
            name: self.name,
            paper: self.paper,
            description: self.description,
            supports: self.supports,
        }
    }
}
