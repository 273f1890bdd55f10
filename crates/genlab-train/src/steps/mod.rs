//! One `TrainStep` per family.
pub mod autoencoder;
pub mod classifier;
pub mod clip;
pub mod diffusion;
pub mod distill;
pub mod flow;
pub mod gan;
pub mod ldm;
pub mod noisy_classifier;
pub mod vae;
pub mod video_classifier;
pub mod weights;
