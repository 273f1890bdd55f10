//! Tabular Q-learning.
//!
//! Watkins, "Learning from delayed rewards", PhD thesis, Cambridge 1989; Watkins & Dayan,
//! "Q-learning", Machine Learning 8, 1992: after each step,
//! Q(s, a) <- Q(s, a) + alpha (r + gamma (1 - terminated) max_a' Q(s', a') - Q(s, a))
//! (Sutton & Barto 2018, eq. 6.8), acting epsilon-greedily with epsilon decaying linearly
//! over a fraction of the run. This file also holds the table engine that SARSA
//! (`sarsa.rs`) configures: the only difference is the bootstrap action.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::agents::{config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports};
use crate::dist::argmax;
use crate::env::{Action, EnvCopyState, VecEnv};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Step size alpha.
    pub lr: f64,
    pub gamma: f64,
    pub eps_start: f64,
    pub eps_end: f64,
    /// Fraction of the run over which epsilon decays.
    pub exploration_fraction: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lr: 0.1,
            gamma: 0.99,
            eps_start: 1.0,
            eps_end: 0.05,
            exploration_fraction: 0.5,
        }
    }
}

/// Which bootstrap the table engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// max_a' Q(s', a') (off-policy).
    QLearning,
    /// Q(s', a') for the action a' the agent takes next (on-policy).
    Sarsa,
}

/// Slower step size on the slippery lake, where single transitions are noisy.
pub fn preset(env: &str) -> Config {
    match env {
        "frozen-lake" | "frozen-lake-8x8" => Config {
            lr: 0.02,
            ..Config::default()
        },
        _ => Config::default(),
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "q-learning",
    paper: "Watkins 1989; Watkins & Dayan 1992",
    description: "tabular Q-learning with epsilon-greedy exploration",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: false,
        tabular: true,
        multi_agent: false,
    },
    defaults: |env| serde_json::to_value(preset(env)).expect("config serialises"),
    build: |spec| Ok(Box::new(TableAgent::new(spec, Rule::QLearning)?)),
};

/// A table of action values learned by temporal differences.
pub struct TableAgent {
    cfg: Config,
    rule: Rule,
    envs: VecEnv,
    n_actions: usize,
    /// `[n_states, n_actions]`.
    pub q: Vec<f32>,
    rng: Rng,
    steps: u64,
    total_steps: u64,
    /// SARSA: the action chosen for the current state, taken at the next step.
    next_action: Option<usize>,
}

impl TableAgent {
    pub fn new(spec: &Spec, rule: Rule) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if !(cfg.lr > 0.0 && cfg.lr <= 1.0) {
            return Err(config_error(
                "lr",
                format!("must be in (0, 1], got {}", cfg.lr),
            ));
        }
        let entry = spec.env;
        let envs = VecEnv::new(|| entry.make_single().expect("single"), 1, spec.seed);
        let n_states = envs.copies[0].env.observation_space().net_width();
        let n_actions = envs.copies[0].env.action_space().net_width();
        Ok(Self {
            cfg,
            rule,
            envs,
            n_actions,
            q: vec![0.0; n_states * n_actions],
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            total_steps: spec.total_steps,
            next_action: None,
        })
    }

    fn epsilon(&self) -> f64 {
        let frac = self.steps as f64 / (self.cfg.exploration_fraction * self.total_steps as f64);
        let c = &self.cfg;
        c.eps_start + frac.min(1.0) * (c.eps_end - c.eps_start)
    }

    fn row(&self, s: usize) -> &[f32] {
        &self.q[s * self.n_actions..(s + 1) * self.n_actions]
    }

    fn eps_greedy(&mut self, s: usize, eps: f64) -> usize {
        if self.rng.uniform() < eps {
            self.rng.below(self.n_actions as u64) as usize
        } else {
            argmax(self.row(s))
        }
    }
}

impl Agent for TableAgent {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let eps = self.epsilon();
        let s = self.envs.obs[0] as usize;
        let a = match self.next_action.take() {
            Some(a) => a,
            None => self.eps_greedy(s, eps),
        };
        let (t, ep) = self.envs.step_one(0, Action::Discrete(a));
        let s2 = if ep.is_some() {
            self.envs.final_obs[0] as usize
        } else {
            self.envs.obs[0] as usize
        };
        let bootstrap = if t.terminated {
            0.0
        } else {
            match self.rule {
                Rule::QLearning => self
                    .row(s2)
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
                Rule::Sarsa => {
                    let a2 = self.eps_greedy(s2, eps);
                    if ep.is_none() {
                        self.next_action = Some(a2);
                    }
                    self.q[s2 * self.n_actions + a2]
                }
            }
        };
        let target = t.reward as f32 + self.cfg.gamma as f32 * bootstrap;
        let i = s * self.n_actions + a;
        self.q[i] += self.cfg.lr as f32 * (target - self.q[i]);
        self.steps += 1;
        report.episodes.extend(ep);
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        action.clear();
        action.push(argmax(self.row(obs[0] as usize)) as f32);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        s.put("q", &self.q);
        s.put_json("envs", self.envs.save());
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s.put_json("next_action", self.next_action);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        let q = s.take("q")?;
        if q.len() != self.q.len() {
            return Err(Error::Checkpoint("the Q table has another size".into()));
        }
        self.q = q;
        let envs: Vec<EnvCopyState> = s.get_json("envs")?;
        self.envs.load(&envs)?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        self.next_action = s.get_json("next_action")?;
        Ok(())
    }
}
