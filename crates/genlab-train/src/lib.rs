//! genlab-train: the training loop shared by every model family.
//!
//! The [`trainer`] drives steps, logging, checkpoint cadence, exact resume and Ctrl-C; each
//! family contributes a [`TrainStep`] that owns its optimizer(s) and EMA; the [`registry`]
//! is the one list of trainable models (`--model NAME`) with their capabilities.
//!
//! Around the loop, the run orchestration every front end shares: [`resolve`] (a run's
//! config from defaults, a file, overrides and request fields), [`session`] (train, then
//! loss curves, preview pictures, held-out evaluation), [`ladder`] (progressive
//! distillation round by round), [`nll`] (likelihood summaries), [`extractors`] (feature
//! extractors by name or classifier run) and [`outputs`] (sample files and pictures).

pub mod bench;
pub mod clip_eval;
pub mod clip_score;
pub mod edit;
pub mod ema;
pub mod extractors;
pub mod fetch;
pub mod hf_clip_eval;
pub mod ladder;
pub mod lock;
pub mod nll;
pub mod optim;
pub mod outputs;
pub mod pairs_eval;
pub mod recon_eval;
pub mod registry;
pub mod resolve;
pub mod run;
pub mod session;
pub mod step;
pub mod steps;
pub mod text_encoders;
pub mod trainer;
pub mod txt2img;
pub mod video_eval;

pub use extractors::{extractor_input, extractor_names, open_extractor};
pub use ladder::{distill_ladder, LadderOutcome, LadderRequest, RoundEvent};
pub use lock::RunLock;
pub use nll::{evaluate_nll, NllOptions, NllSummary};
pub use registry::{
    find_model, load_classifier, load_model, model_names, Capabilities, LoadedModel, ModelEntry,
    MODELS,
};
pub use resolve::{open_data, open_run_data, resolve_run, ResolvedRun, RunRequest};
pub use run::{LrDecay, RunConfig, TrainConfig};
pub use session::{train_run, HeldOut, Preview, RunOptions, Trained};
pub use step::TrainStep;
pub use trainer::{train, Observer, TrainOutcome};
