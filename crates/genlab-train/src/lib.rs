//! genlab-train: the training loop shared by every model family.
//!
//! The [`trainer`] drives steps, logging, checkpoint cadence, exact resume and Ctrl-C; each
//! family contributes a [`TrainStep`] that owns its optimizer(s) and EMA; the [`registry`]
//! is the one list of trainable models (`--model NAME`).

pub mod ema;
pub mod lock;
pub mod optim;
pub mod registry;
pub mod run;
pub mod step;
pub mod steps;
pub mod trainer;

pub use lock::RunLock;
pub use registry::{find_model, load_classifier, load_model, model_names, LoadedModel, ModelEntry};
pub use run::{LrDecay, RunConfig, TrainConfig};
pub use step::TrainStep;
pub use trainer::{train, Observer, TrainOutcome};
