//! One `TrainStep` per family.
pub mod diffusion;
