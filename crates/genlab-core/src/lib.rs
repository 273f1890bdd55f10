//! genlab-core: the pieces every other genlab crate stands on.
//!
//! - [`Error`]: the typed error of every library crate (what was expected, what came);
//! - [`Rng`]: the project-owned seeded random generator (candle's CPU RNG cannot be seeded);
//! - [`ParamStore`]: trainable parameters created from a seed, saved and loaded as safetensors;
//! - [`config`]: dotted `key=value` overrides on serde configs, unknown keys rejected;
//! - [`io`]: atomic file writes, safetensors maps, `.npy` arrays;
//! - [`paths`]: the data and weights folders (`$GENLAB_DATA`);
//! - [`pth`]: PyTorch `.pth` state dicts (zip and legacy layouts), read without torch.

pub mod condition;
pub mod config;
pub mod error;
pub mod io;
pub mod params;
pub mod paths;
pub mod pth;
pub mod rng;

pub use condition::Condition;
pub use error::{Error, Result};
pub use params::ParamStore;
pub use rng::Rng;

/// Re-exported so that downstream crates name one candle version.
pub use candle_core as candle;
pub use candle_nn;
