//! genlab-models: the generative models, one folder or file per family.
//!
//! Every model implements [`Sample`] (n samples from a seeded RNG, images NCHW in [0, 1]),
//! so `genlab sample` and `genlab eval` treat all families alike; models with a likelihood
//! (or a bound on it) also implement [`LogLikelihood`].

pub mod autoencoder;
pub mod clip;
pub mod diffusion;
pub mod edit;
pub mod figure;
pub mod flow;
pub mod gan;
pub mod likelihood;
pub mod pretrained;
pub mod sample;
pub mod text;
pub mod vae;
pub mod video;

pub use edit::Edit;
pub use figure::Figure;
pub use flow::bits_per_dim;
pub use likelihood::{LikelihoodKind, LikelihoodOptions, LogLikelihood, LogLikelihoodResult};
pub use sample::{sample_in_batches, DataSpace, Sample, SampleRequest, SampleResult};
