//! TD3: twin delayed deep deterministic policy gradient.
//!
//! Fujimoto, van Hoof & Meger, "Addressing function approximation error in actor-critic
//! methods", ICML 2018, arXiv:1802.09477, Algorithm 1: DDPG (`ddpg.rs`, whose engine this
//! configures) with three changes: clipped double-Q learning, the target
//! y = r + gamma min_{i=1,2} Q'_i(s', a~) (eq. 10); delayed policy and target updates,
//! every `policy_delay` = 2 critic updates (section 5.2); target policy smoothing,
//! a~ = clip(mu'(s') + clip(N(0, 0.2), -0.5, 0.5), -1, 1) (eq. 14-15). Defaults: SB3's TD3
//! with the zoo's Pendulum-v1 settings.

use crate::agents::ddpg::{Config, Engine};
use crate::agents::{AlgoEntry, Supports};

/// TD3's settings of the engine.
pub fn config() -> Config {
    Config {
        n_critics: 2,
        policy_delay: 2,
        target_noise: 0.2,
        target_noise_clip: 0.5,
        ..Config::default()
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "td3",
    paper: "Fujimoto et al. 2018 (arXiv:1802.09477)",
    description:
        "twin delayed DDPG: clipped double-Q targets, delayed actor updates, target smoothing",
    supports: Supports {
        discrete_actions: false,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |_| serde_json::to_value(config()).expect("config serialises"),
    build: |spec| Ok(Box::new(Engine::new(spec, "td3")?)),
};
