//! genlab-rl: deep reinforcement learning on genlab's core.
//!
//! - [`env`](mod@env): the [`env::Env`] trait (Gymnasium's reset/step with `terminated` and
//!   `truncated`), the time-limit wrapper and vectorised copies;
//! - [`envs`]: CartPole, Acrobot, MountainCar (discrete and continuous), Pendulum,
//!   FrozenLake, CliffWalking, Taxi and the multi-agent simple_spread, with Gymnasium's and
//!   PettingZoo's exact equations (checked step by step against fixtures recorded from them),
//!   and their registry;
//! - [`render`]: pictures of the classic-control tasks and animated GIFs;
//! - [`nn`] and [`optim`]: small MLPs with a hand-written backward pass on flat parameter
//!   vectors, Adam, RMSprop; [`replay`], [`policy`] (actor-critic, rollouts, GAE), [`dist`];
//! - [`agents`]: the algorithms, one file each, behind one [`agents::Agent`] trait, and
//!   their registry with what each supports;
//! - [`train`]: the training loop (checkpoints, exact resume, JSONL log, learning curve,
//!   run lock), evaluation and rollouts; [`report`]: curves with bands across seeds.

pub mod env;
pub mod envs;
pub mod render;

pub use env::{Action, Env, Space, Transition};
pub use envs::{find as find_env, EnvEntry, ENVS};
pub mod agents;
pub mod dist;
pub mod nn;
pub mod optim;
pub mod policy;
pub mod replay;
pub mod report;
pub mod saved;
pub mod train;
