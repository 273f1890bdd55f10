//! genlab as a library: train, sample and evaluate generative models from Rust, with the
//! same code the `genlab` command runs.
//!
//! The toolkit is a workspace of crates with one role each (see the README's layout
//! table); this crate is the one entry point over them. Its top level has what most
//! programs need:
//!
//! - [`train`]: resolve a [`RunRequest`] (model, data, steps, seed, `key=value`
//!   overrides, a TOML file, exactly as `genlab train` takes them) and train it in its run
//!   directory: checkpoint, log, loss curves, preview pictures;
//! - [`load`]: a trained run (or checkpoint file) as a model that draws samples
//!   ([`Sample`]) and, where the family has one, evaluates its likelihood;
//! - the registries, to ask what exists and what it can do: [`MODELS`] (with their
//!   [`Capabilities`]), [`SAMPLERS`], [`DATASETS`], [`METRICS`], [`EXTRACTORS`];
//! - [`metrics`], [`data`], [`sampling`], ...: every crate, re-exported whole.
//!
//! # Train a DDPM on eight gaussians and sample it
//!
//! ```
//! use genlab::{load, train, Rng, RunRequest, SampleRequest, SamplerOptions};
//!
//! # fn main() -> genlab::Result<()> {
//! let dir = tempfile::tempdir().unwrap(); // the run directory
//! let request = RunRequest::new("ddpm", "eight-gaussians", dir.path())
//!     .steps(200)
//!     .seed(0)
//!     .set("train.batch_size=128");
//! let trained = train(&request)?; // checkpoint, log, loss.svg, samples.png
//! assert_eq!(trained.outcome.step, 200);
//!
//! let run = load(dir.path())?; // its EMA weights, on the CPU
//! let request = SampleRequest {
//!     n: 1000,
//!     sampler: "ddim".into(),
//!     options: SamplerOptions { steps: 20, ..Default::default() },
//!     batch_size: 500,
//!     ..Default::default() // no condition, no guidance
//! };
//! let samples = run.model.sample(&request, &mut Rng::new(1), &mut |_, _| {})?;
//! assert_eq!(samples.x.dims(), &[1000, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! More: `examples/` has one program per model family (`cargo run --release -p genlab
//! --example vae_digits`).

use std::path::Path;
use std::sync::atomic::AtomicBool;

pub use candle_core::{Device, Tensor};
pub use genlab_core::{Error, Result, Rng};
pub use genlab_data::{DatasetInfo, DATASETS};
pub use genlab_metrics::features::EXTRACTORS;
pub use genlab_metrics::suite::METRICS;
pub use genlab_models::{LogLikelihood, Sample, SampleRequest, SampleResult};
pub use genlab_sampling::{SamplerOptions, SAMPLERS};
pub use genlab_train::trainer::{Observer, Quiet};
pub use genlab_train::{
    Capabilities, LoadedModel, RunConfig, RunOptions, RunRequest, Trained, MODELS,
};

/// Errors, RNG, parameters, checkpoint and config I/O.
pub use genlab_core as core;
/// Datasets, their registry, fetching.
pub use genlab_data as data;
/// The CPU kernels.
pub use genlab_kernels as kernels;
/// Sample-quality metrics and feature extractors.
pub use genlab_metrics as metrics;
/// The model families behind `Sample` and `LogLikelihood`.
pub use genlab_models as models;
/// Network blocks and layers.
pub use genlab_nn as nn;
/// Pictures and HTML pages.
pub use genlab_report as report;
/// Noise schedules and the sampler zoo.
pub use genlab_sampling as sampling;
/// The trainer, run orchestration, registries of models, workloads and fetchable data.
pub use genlab_train as training;

/// Resolves `request` (as `genlab train` does: the model's preset for the data, then the
/// file, the overrides and the request's fields) and trains it on the CPU, quietly, in
/// `request.out`; preview pictures are drawn as the command draws them.
pub fn train(request: &RunRequest) -> Result<Trained> {
    train_on(request, &Device::Cpu, &RunOptions::default(), &mut Quiet)
}

/// [`train`] on `device`, with its options and an observer of the training loop (a
/// progress display).
pub fn train_on(
    request: &RunRequest,
    device: &Device,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Trained> {
    let resolved = genlab_train::resolve_run(request)?;
    let options = RunOptions {
        resume: request.resume,
        ..options.clone()
    };
    genlab_train::train_run(
        &request.out,
        resolved.run,
        resolved.data.as_ref(),
        device,
        &options,
        observer,
        &AtomicBool::new(false),
    )
}

/// Loads a run directory (or checkpoint file) on the CPU with its EMA weights, ready to
/// sample.
pub fn load(run: &Path) -> Result<LoadedModel> {
    genlab_train::load_model(run, true, &Device::Cpu)
}
