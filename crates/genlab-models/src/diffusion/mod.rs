//! Diffusion models.
pub mod ddpm;
pub mod distill;
pub use ddpm::{Ddpm, DdpmConfig, NetConfig, TimeSampling};
pub use distill::{DistillConfig, DistilledDdpm};
