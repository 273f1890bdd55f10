//! The one list of trainable models, each with what it can do. Adding a model family: its
//! file in genlab-models, its file in `steps/` (its `TrainStep` and `pub const ENTRY:
//! ModelEntry`), and one line in [`MODELS`].
//!
//! Callers ask an entry's [`Capabilities`] (does it sample through the sampler zoo, have a
//! likelihood, take a condition, teach a distilled student?) instead of comparing names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use genlab_core::{Error, ParamStore, Result};
use genlab_models::{DataSpace, Sample};
use genlab_nn::Classifier;

use crate::run::{RunConfig, TrainConfig};
use crate::step::{strip_prefix, TrainStep};
use crate::steps;

/// Builds a model for sampling from its config and weights, on a device.
pub type LoadFn = fn(&Value, &HashMap<String, Tensor>, &Device) -> Result<Box<dyn Sample>>;

/// Fills the settings of a fresh run's model config that are measured on its training data
/// or read from another run (an LDM's latent space and scale factor), after the preset,
/// the config file and the `--set` overrides.
pub type PrepareFn = fn(&mut Value, &dyn genlab_data::Dataset) -> Result<()>;

/// Builds a fresh training step from a resolved config, trainer settings, seed and device.
pub type BuildStepFn = fn(&Value, &TrainConfig, u64, &Device) -> Result<Box<dyn TrainStep>>;

/// What a model family can do; the CLI and the library ask these instead of names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// `genlab train --model NAME` starts a fresh run (a distillation round is made by the
    /// distillation ladder instead).
    pub trains_fresh: bool,
    /// Draws samples (`genlab sample`, `genlab eval` on its run, preview pictures).
    pub generates: bool,
    /// Samples through the diffusion sampler zoo: the sampler, its steps, spacing and eta
    /// apply, and `genlab compare` can put samplers side by side.
    pub sampler_zoo: bool,
    /// Has a log-likelihood (exact, an ODE estimate or a bound): `--metrics nll`.
    pub likelihood: bool,
    /// Can take a condition (a class label) when sampling.
    pub conditional: bool,
    /// Can teach a few-step student by progressive distillation.
    pub distillable: bool,
    /// Its checkpoints serve as a feature extractor for the sample metrics.
    pub feature_extractor: bool,
    /// It trains on class labels: its `num_classes` comes from the data.
    pub needs_labels: bool,
    /// It takes video data `[T, C, H, W]` (as well as whatever else it takes).
    pub video: bool,
}

pub struct ModelEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub caps: Capabilities,
    /// The model's default config for this data (its preset).
    pub default_config: fn(&DataSpace) -> Result<Value>,
    /// Default trainer settings for this data.
    pub default_train: fn(&DataSpace) -> TrainConfig,
    /// Measures what the config needs from the data before a fresh run starts (`None`:
    /// nothing).
    pub prepare: Option<PrepareFn>,
    /// Builds a fresh training step from a resolved config, seed and device.
    pub build_step: BuildStepFn,
    /// Builds the model for sampling from a config and weights (names without prefix), on
    /// a device.
    pub load: LoadFn,
}

/// Parses a family's config out of a run's JSON and validates it; `family` names it in the
/// error.
pub fn parse_config<T: DeserializeOwned>(
    v: &Value,
    family: &str,
    validate: fn(&T) -> Result<()>,
) -> Result<T> {
    let cfg: T = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid {family} config: {e}")))?;
    validate(&cfg)?;
    Ok(cfg)
}

/// A model's JSON config, from its typed preset.
pub fn config_value(cfg: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(cfg).map_err(|e| Error::Config(format!("unserialisable config: {e}")))
}

/// Builds a network with `build` on a fresh store on `device` and loads `weights` into it.
pub fn load_weights<M>(
    weights: &HashMap<String, Tensor>,
    device: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> Result<M>,
) -> Result<M> {
    let ps = ParamStore::new(0, device);
    let m = build(ps.vb())?;
    ps.load(weights)?;
    Ok(m)
}

/// No capability: entries spell out what they can do on top of it.
pub const NONE: Capabilities = Capabilities {
    trains_fresh: false,
    generates: false,
    sampler_zoo: false,
    likelihood: false,
    conditional: false,
    distillable: false,
    feature_extractor: false,
    needs_labels: false,
    video: false,
};

/// Every trainable model family, in the order `genlab list` shows them.
pub const MODELS: &[ModelEntry] = &[
    steps::diffusion::ENTRY,
    steps::distill::ENTRY,
    steps::classifier::ENTRY,
    steps::vae::ENTRY,
    steps::gan::ENTRY,
    steps::flow::ENTRY,
    steps::noisy_classifier::ENTRY,
    steps::clip::ENTRY,
    steps::autoencoder::ENTRY,
    steps::ldm::ENTRY,
    steps::video_classifier::ENTRY,
];

pub fn model_names() -> Vec<(&'static str, &'static str)> {
    MODELS.iter().map(|m| (m.name, m.description)).collect()
}

pub fn find_model(name: &str) -> Result<&'static ModelEntry> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::unknown("model", name, MODELS.iter().map(|m| m.name)))
}

/// The checkpoint file of a run directory (or the file itself).
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(crate::trainer::CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// A model restored from a checkpoint, ready to sample.
pub struct LoadedModel {
    pub run: RunConfig,
    pub step: u64,
    pub model: Box<dyn Sample>,
}

/// Loads a run directory or checkpoint file onto `device` (whatever device it was trained
/// on); `ema` picks the EMA weights (the default for sampling) over the raw ones.
pub fn load_model(path: &Path, ema: bool, device: &Device) -> Result<LoadedModel> {
    let file = checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no checkpoint at {} (expected a training run directory, or its {} file)",
            path.display(),
            crate::trainer::CHECKPOINT_FILE
        )));
    }
    // Read on the host: only the half of the tensors picked below goes to `device`.
    let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (run, state) = crate::trainer::parse_metadata(&meta, &file)?;
    let entry = find_model(&run.model)?;
    let weights = strip_prefix(&tensors, if ema { "ema" } else { "model" });
    let model = (entry.load)(&run.model_config, &weights, device)?;
    Ok(LoadedModel {
        run,
        step: state.step,
        model,
    })
}

/// The model family (`RunConfig::model`) a run directory or checkpoint file holds.
pub fn run_model(path: &Path) -> Result<String> {
    let file = checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no checkpoint at {} (expected a training run directory, or its {} file)",
            path.display(),
            crate::trainer::CHECKPOINT_FILE
        )));
    }
    let (_, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    Ok(crate::trainer::parse_metadata(&meta, &file)?.0.model)
}

/// A run's checkpoint as read from disk (tensors on the host).
pub struct SavedRun {
    pub run: RunConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// Every tensor, prefixed (`model.*`, `ema.*`, `opt.*`).
    pub tensors: HashMap<String, Tensor>,
    pub file: PathBuf,
}

impl SavedRun {
    /// The EMA weights, without their prefix.
    pub fn ema_weights(&self) -> HashMap<String, Tensor> {
        strip_prefix(&self.tensors, "ema")
    }
}

/// Reads the checkpoint of a run directory (or the file itself) that must hold one of the
/// model families `families`; `what` names the expected model in the messages ("a
/// classifier", "an autoencoder").
pub fn read_run(path: &Path, families: &[&str], what: &str) -> Result<SavedRun> {
    let file = checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no checkpoint at {} (expected the run directory of {what}: `genlab train --model {}`)",
            path.display(),
            families.join("|")
        )));
    }
    let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (run, state) = crate::trainer::parse_metadata(&meta, &file)?;
    if !families.contains(&run.model.as_str()) {
        return Err(Error::Checkpoint(format!(
            "{} holds a `{}` model, not {what}",
            file.display(),
            run.model
        )));
    }
    Ok(SavedRun {
        run,
        step: state.step,
        tensors,
        file,
    })
}

/// Loads a classifier run (EMA weights) as a network, with its run config.
pub fn load_classifier(path: &Path) -> Result<(Classifier, RunConfig)> {
    let saved = read_run(path, &["classifier"], "a classifier")?;
    let cfg = steps::classifier::classifier_config(&saved.run.model_config)?;
    let net = load_weights(&saved.ema_weights(), &Device::Cpu, |vb| {
        Ok(Classifier::new(&cfg, vb)?)
    })?;
    Ok((net, saved.run))
}
