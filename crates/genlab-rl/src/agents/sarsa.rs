//! SARSA: on-policy temporal-difference control.
//!
//! Rummery & Niranjan, "On-line Q-learning using connectionist systems", Cambridge
//! CUED/F-INFENG/TR 166, 1994 (named SARSA by Sutton 1996): after each step,
//! Q(s, a) <- Q(s, a) + alpha (r + gamma Q(s', a') - Q(s, a)) where a' is the
//! epsilon-greedy action the agent then takes in s' (Sutton & Barto 2018, eq. 6.7). The
//! table engine is Q-learning's (`q_learning.rs`) with this bootstrap.

use crate::agents::q_learning::{preset, Rule, TableAgent};
use crate::agents::{AlgoEntry, Supports};

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "sarsa",
    paper: "Rummery & Niranjan 1994",
    description: "tabular SARSA: on-policy TD control with epsilon-greedy exploration",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: false,
        tabular: true,
        multi_agent: false,
    },
    defaults: |env| serde_json::to_value(preset(env)).expect("config serialises"),
    build: |spec| Ok(Box::new(TableAgent::new(spec, Rule::Sarsa)?)),
};
