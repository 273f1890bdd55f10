//! The few-shot methods, one file each, behind one [`Method`] trait, and their registry.
//!
//! A method turns a meta-batch of tasks into a scalar meta-loss whose gradient the trainer
//! ([`crate::train`]) follows with AdamW, and scores a test task (query accuracy after
//! seeing the support set, or the MSE after K-shot adaptation). Adding a method is one new
//! file here (a type implementing [`Method`] and a `pub const ENTRY: MethodEntry`) plus one
//! line in [`METHODS`].

pub mod generative;
pub mod maml;
pub mod matching;
pub mod pretrain;
pub mod protonet;
pub mod relation;
pub mod reptile;
pub mod siamese;

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde_json::Value;

use genlab_core::{Error, ParamStore, Result};

use crate::episode::Episode;
use crate::sinusoid::RegressionTask;

/// One task of a meta-batch.
pub enum Task {
    /// An N-way K-shot classification episode.
    Classify(Episode),
    /// A K-shot regression task.
    Regress(RegressionTask),
}

/// What kind of tasks a method learns from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Classification,
    Regression,
}

/// The meta-loss of a meta-batch and what to log beside it.
pub struct MetaLoss {
    /// Scalar; the trainer backpropagates it.
    pub loss: Tensor,
    /// Mean query accuracy of the batch (classification), else `None`.
    pub accuracy: Option<f64>,
}

/// A few-shot learner.
pub trait Method {
    /// The meta-loss of `tasks` (one meta-training step's objective).
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss>;
    /// The score of one test task: query accuracy in [0, 1] (classification) or the query
    /// MSE after adapting to the support set (regression).
    fn evaluate(&self, task: &Task) -> Result<f64>;
    /// The trainable parameters (checkpointed, optimised by the trainer).
    fn params(&self) -> &ParamStore;
}

/// Everything a method is built from.
pub struct Spec<'a> {
    /// `[C, H, W]` of the images, or `[1]` for regression inputs.
    pub input: Vec<usize>,
    pub seed: u64,
    /// The resolved config (the method's own `Config`, as JSON).
    pub config: &'a Value,
    pub device: Device,
}

/// One registered method.
pub struct MethodEntry {
    /// `--method NAME`.
    pub name: &'static str,
    /// Authors, year and arXiv id of the paper it follows.
    pub paper: &'static str,
    pub description: &'static str,
    pub kind: TaskKind,
    /// Whether its meta-gradient differentiates through gradients (needs
    /// `CANDLE_GRAD_DO_NOT_DETACH` set before the first backward pass of the thread).
    pub double_backward: fn(&Value) -> bool,
    /// The default config.
    pub defaults: fn() -> Value,
    pub build: fn(&Spec) -> Result<Box<dyn Method>>,
}

/// Every method.
pub const METHODS: &[&MethodEntry] = &[
    &siamese::ENTRY,
    &protonet::ENTRY,
    &matching::ENTRY,
    &relation::ENTRY,
    &generative::ENTRY,
    &maml::ENTRY,
    &reptile::ENTRY,
    &pretrain::ENTRY,
];

/// The entry called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static MethodEntry> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::unknown("few-shot method", name, METHODS.iter().map(|m| m.name)))
}

/// Parses a method's config from the resolved JSON.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| Error::Config(format!("invalid value: {e}")))
}

/// What a front end shows about a method (`genlab fewshot list --json`).
#[derive(Clone, Debug, Serialize)]
pub struct MethodInfo {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub kind: TaskKind,
    pub defaults: Value,
}

impl MethodEntry {
    pub fn info(&self) -> MethodInfo {
        MethodInfo {
            name: self.name,
            paper: self.paper,
            description: self.description,
            kind: self.kind,
            defaults: (self.defaults)(),
        }
    }
}

/// Cross-entropy of `logits` `[B, N]` against u32 `labels` `[B]`, and the accuracy of
/// their argmax. (`candle_nn::loss::cross_entropy` uses the composed log-softmax, which
/// passes a gradient.)
pub(crate) fn cross_entropy_and_accuracy(
    logits: &Tensor,
    labels: &Tensor,
) -> Result<(Tensor, f64)> {
    let loss = candle_nn::loss::cross_entropy(logits, labels)?;
    let pred = logits.argmax(1)?;
    let correct = pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok((loss, correct as f64))
}

/// Accuracy of the argmax of `scores` `[B, N]` against u32 `labels` `[B]`.
pub(crate) fn accuracy(scores: &Tensor, labels: &Tensor) -> Result<f64> {
    let pred = scores.argmax(1)?;
    Ok(pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()? as f64)
}

/// The episode of a classification task, or the error of a method given another kind.
pub(crate) fn episode<'a>(task: &'a Task, method: &str) -> Result<&'a Episode> {
    match task {
        Task::Classify(ep) => Ok(ep),
        Task::Regress(_) => Err(wrong_task(method, TaskKind::Classification)),
    }
}

/// The regression task of `task`, or the error of a method given another kind.
pub(crate) fn regression<'a>(task: &'a Task, method: &str) -> Result<&'a RegressionTask> {
    match task {
        Task::Regress(t) => Ok(t),
        Task::Classify(_) => Err(wrong_task(method, TaskKind::Regression)),
    }
}

/// The meta-loss of a classification method: the mean over the batch's episodes of
/// `per_episode`'s loss, and the mean of its query accuracy.
pub(crate) fn mean_over_episodes(
    tasks: &[Task],
    method: &str,
    mut per_episode: impl FnMut(&Episode) -> Result<(Tensor, f64)>,
) -> Result<MetaLoss> {
    let mut losses = Vec::with_capacity(tasks.len());
    let mut acc = 0.0;
    for t in tasks {
        let (l, a) = per_episode(episode(t, method)?)?;
        losses.push(l);
        acc += a;
    }
    if losses.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{method}: an empty meta-batch"
        )));
    }
    let loss = Tensor::stack(&losses, 0)?.mean_all()?;
    Ok(MetaLoss {
        loss,
        accuracy: Some(acc / tasks.len() as f64),
    })
}

/// An error when a task of the wrong kind reaches a method.
pub(crate) fn wrong_task(method: &str, want: TaskKind) -> Error {
    Error::InvalidInput(
        format!("{method} learns from {want:?} tasks; it was given another kind").to_lowercase(),
    )
}
