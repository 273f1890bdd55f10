//! One `TrainStep` per family.
pub mod classifier;
pub mod diffusion;
pub mod weights;
