//! Diffusion models.
pub mod ddpm;
pub mod distill;
pub mod image_map;
pub mod noisy_classifier;
pub use ddpm::{Ddpm, DdpmConfig, NetConfig, TimeSampling};
pub use distill::{DistillConfig, DistilledDdpm};
pub use image_map::ImageMap;
pub use noisy_classifier::{NoisyClassifierConfig, NoisyClassifierModel};
pub mod ldm;
pub use ldm::{Ldm, LdmConfig};
