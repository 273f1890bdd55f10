//! genlab-sampling: noise schedules, the [`Denoiser`] interface every diffusion network
//! implements, and the samplers that turn noise into data. Each sampler is one file that
//! owns its loop; adding one is that file plus one line in [`registry`]. This crate never
//! imports a model: it sees networks only through [`Denoiser`].

pub mod ddim;
pub mod ddpm;
pub mod denoiser;
pub mod registry;
pub mod schedule;

pub use denoiser::{Denoiser, Prediction};
pub use registry::{build_sampler, sampler_names, SampleOutput, Sampler, SamplerOptions};
pub use schedule::{BetaSchedule, NoiseSchedule};
