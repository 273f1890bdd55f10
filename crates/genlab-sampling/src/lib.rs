//! genlab-sampling: noise schedules, the [`Denoiser`] interface every diffusion network
//! implements, and the samplers that turn noise into data. Each sampler is one file that
//! owns its loop; adding one is that file plus one line in [`registry`]. This crate never
//! imports a model: it sees networks only through [`Denoiser`].

pub mod ddim;
pub mod ddpm;
pub mod denoiser;
pub mod dpm_solver;
pub mod dpmpp_2m;
pub mod euler;
pub mod euler_ancestral;
pub mod euler_maruyama;
pub mod guidance;
pub mod heun;
pub mod inpaint;
pub mod ode_likelihood;
pub mod options;
pub mod pc;
pub mod registry;
pub mod rk45;
pub mod schedule;
pub mod scheduler_json;
pub mod sigmas;

pub use denoiser::{Denoiser, Prediction};
pub use options::SolverOptions;
pub use registry::{
    build_sampler, build_sampler_with, sampler_names, SampleOutput, Sampler, SamplerEntry,
    SamplerOptions, StepPair, SAMPLERS,
};
pub use schedule::{BetaSchedule, NoiseSchedule, Spacing};
pub use scheduler_json::SchedulerJson;
