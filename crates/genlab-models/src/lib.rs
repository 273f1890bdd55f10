//! genlab-models: the generative models, one folder per family.
//!
//! Every model implements [`Sample`] (n samples from a seeded RNG, images NCHW in [0, 1]),
//! so `genlab sample` and `genlab eval` treat all families alike.

pub mod diffusion;
pub mod sample;

pub use sample::{DataSpace, Sample, SampleRequest, SampleResult};
