//! Diffusion models.
pub mod ddpm;
pub use ddpm::{Ddpm, DdpmConfig, NetConfig};
