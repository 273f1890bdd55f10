//! The per-family training step.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use genlab_core::{Result, Rng};
use genlab_data::{Batch, Dataset};
use genlab_models::{Figure, Sample};

/// One family's optimisation step. It owns its optimizer(s) and EMA weights, and can write
/// all of its state into a checkpoint and read it back exactly.
pub trait TrainStep {
    /// One update on `batch` at learning rate `lr`; returns named scalar metrics, the first
    /// of which is the loss.
    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>>;
    /// The loss on `batch` and its gradients, exactly as [`TrainStep::step`] computes them
    /// (same forward, same draws from `rng`), without touching the weights, the optimizer or
    /// the EMA. For tests and diagnostics (e.g. `tests/gradients.rs` checks that every
    /// variable of [`TrainStep::trainable_vars`] gets a gradient).
    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)>;
    /// Every variable the optimizer updates (the live weights, not the EMA copy), by name.
    fn trainable_vars(&self) -> Vec<(String, Var)>;
    /// Every tensor needed to continue exactly (weights, EMA, optimizer moments), on the
    /// step's device (checkpoint writing copies them to the host).
    fn state_tensors(&self) -> HashMap<String, Tensor>;
    /// Small non-tensor state (optimizer step counts...), as JSON.
    fn state_json(&self) -> serde_json::Value;
    /// Restores what [`TrainStep::state_tensors`] and [`TrainStep::state_json`] saved (the
    /// tensors may be on any device; they are copied to the step's).
    fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> Result<()>;
    /// The model to draw preview samples from (EMA weights where the family keeps them);
    /// `None` for models that do not generate (the classifier).
    fn sampler(&self) -> Option<&dyn Sample>;
    /// Metrics on a held-out set after training (e.g. test accuracy); none by default.
    fn evaluate(&self, _held_out: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
    /// Pictures of the trained model drawn from held-out data (reconstructions, latent
    /// spaces...), saved by the CLI beside the checkpoint; none by default.
    fn figures(&self, _held_out: &dyn Dataset) -> Result<Vec<Figure>> {
        Ok(Vec::new())
    }
    /// The device of the weights: the trainer builds every batch there.
    fn device(&self) -> &Device;
    /// Number of trainable parameters.
    fn num_params(&self) -> usize;
}

/// Keeps the entries of `map` whose key starts with `prefix.`, with the prefix removed.
pub fn strip_prefix(map: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let p = format!("{prefix}.");
    map.iter()
        .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Adds `prefix.` to every key.
pub fn with_prefix(map: HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    map.into_iter()
        .map(|(k, v)| (format!("{prefix}.{k}"), v))
        .collect()
}
