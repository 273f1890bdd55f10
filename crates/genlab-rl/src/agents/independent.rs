//! Independent learners: one DDPG agent per particle, each treating the others as part of
//! its environment.
//!
//! Tan, "Multi-agent reinforcement learning: independent vs. cooperative agents", ICML 1993
//! (independent Q-learners); with DDPG learners (Lillicrap et al. 2016, arXiv:1509.02971)
//! this is the "DDPG" baseline of Lowe et al. 2017 (arXiv:1706.02275, section 6): every
//! critic sees only its own agent's observation and action, Q_i(o_i, a_i). The engine is
//! MADDPG's (`maddpg.rs`) with `centralised = false`, so both train with the same
//! networks, budget and schedule and differ only in what the critics see.

use crate::agents::maddpg::{Config, MultiDdpg};
use crate::agents::{AlgoEntry, Supports};

pub fn config() -> Config {
    Config {
        centralised: false,
        ..Config::default()
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "independent",
    paper: "Tan 1993; DDPG learners as in Lowe et al. 2017 (arXiv:1706.02275)",
    description: "independent DDPG learners: each critic sees only its own agent",
    supports: Supports {
        discrete_actions: false,
        continuous_actions: true,
        tabular: false,
        multi_agent: true,
    },
    defaults: |_| serde_json::to_value(config()).expect("config serialises"),
    build: |spec| Ok(Box::new(MultiDdpg::new(spec)?)),
};
