//! Continual-learning methods, one file each, behind one [`Method`] trait, and their
//! registry. Adding a method is one new file here (a type implementing [`Method`] and
//! `pub const ENTRY: MethodEntry`) plus its line in [`METHODS`].
//!
//! The training loop ([`crate::train`]) owns the task sequence, the batches and the
//! evaluation; a method decides what each iteration's gradient is (its losses, penalties,
//! replay and projections), what happens between tasks (Fisher information, exemplars, a
//! copy of the model) and, optionally, how test examples are classified (iCaRL's
//! nearest-mean-of-exemplars rule).

use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

use genlab_core::{Error, Result, Rng};

use crate::benchmark::{Benchmark, BenchmarkEntry, Examples, Scenario};
use crate::learner::{cross_entropy, Learner};

pub mod agem;
pub mod dgr;
pub mod ewc;
pub mod finetune;
pub mod icarl;
pub mod joint;
pub mod lwf;
pub mod packnet;
pub mod replay;
pub mod si;

/// Every method, in the order of the tables.
pub const METHODS: &[&MethodEntry] = &[
    &finetune::ENTRY,
    &joint::ENTRY,
    &ewc::ENTRY,
    &ewc::ONLINE_ENTRY,
    &si::ENTRY,
    &lwf::ENTRY,
    &replay::ENTRY,
    &agem::ENTRY,
    &dgr::ENTRY,
    &dgr::DISTILL_ENTRY,
    &icarl::ENTRY,
    &packnet::ENTRY,
];

/// Where a run stands, as a method sees it.
pub struct Ctx<'a> {
    pub bench: &'a Benchmark,
    pub scenario: Scenario,
    /// The task being trained (0-based).
    pub task: usize,
    pub batch: usize,
    pub iters: usize,
}

impl Ctx<'_> {
    /// The output units each example competes among while the current task is trained.
    pub fn ranges(&self, ex: &Examples) -> Vec<Range<usize>> {
        ex.task
            .iter()
            .map(|&t| self.bench.train_range(self.scenario, t, self.task))
            .collect()
    }

    /// The weight of the current task's loss against replay: `1 / (tasks so far)` (van de
    /// Ven & Tolias 2019, Section 4: "weighted according to the number of tasks").
    pub fn rnt(&self) -> f64 {
        1.0 / (self.task + 1) as f64
    }

    /// The units a previous model's predictions span in Domain- and Class-IL replay: the
    /// shared outputs, or the classes of the tasks before the current one.
    pub fn previous_units(&self) -> Range<usize> {
        match self.scenario {
            Scenario::Domain => 0..self.bench.classes_per_task(),
            _ => 0..self.task * self.bench.classes_per_task(),
        }
    }
}

/// What a task's batches are drawn from: examples of the benchmark's training parts (by
/// task and index) and examples held by the method (exemplars).
#[derive(Clone, Debug, Default)]
pub struct TrainingSet {
    pub parts: Vec<(usize, Vec<usize>)>,
    pub extra: Examples,
}

/// One entry of what a method keeps in memory besides the classifier (in floats).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryItem {
    pub what: String,
    pub floats: usize,
}

/// A continual-learning method.
pub trait Method {
    /// The data of the current task's batches (default: the task's training set).
    fn training_set(&self, ctx: &Ctx) -> Option<TrainingSet> {
        let _ = ctx;
        None
    }

    /// Before the first iteration of a task.
    fn begin_task(&mut self, ctx: &Ctx, learner: &mut Learner, rng: &mut Rng) -> Result<()> {
        let _ = (ctx, learner, rng);
        Ok(())
    }

    /// One iteration on `batch`: the gradient and the optimizer step. Returns the loss.
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        rng: &mut Rng,
    ) -> Result<f64>;

    /// After the last iteration of a task.
    fn end_task(&mut self, ctx: &Ctx, learner: &mut Learner, rng: &mut Rng) -> Result<()> {
        let _ = (ctx, learner, rng);
        Ok(())
    }

    /// Predicted output units of `x` `[n, dim]` (examples of task `task`, a label only
    /// Task-IL methods may use) among `range`, when the method classifies by another rule
    /// than the network's largest logit.
    fn predict(
        &self,
        learner: &Learner,
        x: &[f32],
        n: usize,
        task: usize,
        range: Range<usize>,
    ) -> Option<Vec<u32>> {
        let _ = (learner, x, n, task, range);
        None
    }

    /// What the method keeps besides the classifier (buffers, generator, Fisher terms).
    fn memory(&self) -> Vec<MemoryItem> {
        Vec::new()
    }
}

/// What `build` gets.
pub struct Spec<'a> {
    pub bench: &'a Benchmark,
    pub scenario: Scenario,
    pub config: &'a Value,
    pub seed: u64,
    /// The classifier's layer widths (input first).
    pub sizes: Vec<usize>,
    pub lr: f64,
}

/// A registry entry.
pub struct MethodEntry {
    pub name: &'static str,
    /// Authors, year, arXiv id.
    pub paper: &'static str,
    pub description: &'static str,
    /// The scenarios the method applies to.
    pub scenarios: &'static [Scenario],
    /// Whether it works without task boundaries (the stream mode calls neither
    /// `begin_task` nor `end_task`).
    pub task_free: bool,
    /// The method's config for a benchmark and scenario (the reference's hyperparameters).
    pub defaults: fn(&BenchmarkEntry, Scenario) -> Value,
    pub build: fn(&Spec) -> Result<Box<dyn Method>>,
}

/// What a front end shows about a method.
#[derive(Clone, Debug, Serialize)]
pub struct MethodInfo {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub scenarios: Vec<&'static str>,
    pub task_free: bool,
}

impl MethodEntry {
    pub fn info(&self) -> MethodInfo {
        MethodInfo {
            name: self.name,
            paper: self.paper,
            description: self.description,
            scenarios: self.scenarios.iter().map(|s| s.name()).collect(),
            task_free: self.task_free,
        }
    }

    /// An error unless the method applies to `scenario`.
    pub fn check_scenario(&self, scenario: Scenario) -> Result<()> {
        if self.scenarios.contains(&scenario) {
            return Ok(());
        }
        let ok: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
        Err(Error::Setting {
            setting: "scenario".into(),
            problem: format!(
                "`{}` does not apply to method `{}`, which needs {} ({})",
                scenario.name(),
                self.name,
                ok.join(" or "),
                self.description
            ),
        })
    }
}

/// Every scenario.
pub const ALL_SCENARIOS: &[Scenario] = &Scenario::ALL;

/// Finds a method by name.
pub fn find(name: &str) -> Result<&'static MethodEntry> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
            Error::Setting {
                setting: "method".into(),
                problem: format!("`{name}` is unknown; expected one of {}", names.join(", ")),
            }
        })
}

/// Parses a method's config from the resolved JSON.
pub fn parse_config<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid method setting: {e}")))
}

/// An invalid method setting (`method.KEY` for the CLI's `--set`).
pub fn setting_error(key: &str, problem: impl Into<String>) -> Error {
    Error::Setting {
        setting: format!("method.{key}"),
        problem: problem.into(),
    }
}

/// Adds `weight x` the cross-entropy of `ex` (each example on its own range) to the
/// learner's gradient; returns the loss.
pub fn add_cross_entropy(ctx: &Ctx, learner: &mut Learner, ex: &Examples, weight: f64) -> f64 {
    let out = learner.outputs();
    let ranges = ctx.ranges(ex);
    learner.accumulate(&ex.x, ex.len(), |z, d| {
        cross_entropy(z, out, &ex.y, &ranges, weight, d)
    })
}

/// A previous model's logits on `x` over `units`, `[n, units.len()]`.
pub fn scores(net: &genlab_rl::nn::Mlp, x: &[f32], n: usize, units: Range<usize>) -> Vec<f32> {
    let all = crate::mlp::logits(net, x, n);
    let out = net.out_dim();
    let mut s = Vec::with_capacity(n * units.len());
    for r in 0..n {
        s.extend_from_slice(&all[r * out + units.start..r * out + units.end]);
    }
    s
}

/// Adds the loss of inputs `x` `[n, dim]` labelled by a previous model `prev` (van de Ven &
/// Tolias 2019, Section 3: replay with the previous model's hard labels, or with its soft
/// targets at temperature `soft`), weighted by `weight`, to the learner's gradient. In
/// Task-IL the inputs are scored on every previous task's head and the losses averaged; in
/// Domain- and Class-IL on the units of the previous tasks, the loss taken over the units
/// of the current training range. Returns the weighted loss.
pub fn add_replay_loss(
    ctx: &Ctx,
    learner: &mut Learner,
    prev: &genlab_rl::nn::Mlp,
    x: &[f32],
    n: usize,
    soft: Option<f64>,
    weight: f64,
) -> f64 {
    let out = learner.outputs();
    let all = crate::mlp::logits(prev, x, n);
    // (units labelled by the previous model, units the loss is over)
    let groups: Vec<(Range<usize>, Range<usize>)> = match ctx.scenario {
        Scenario::Task => (0..ctx.task)
            .map(|s| (ctx.bench.head(s), ctx.bench.head(s)))
            .collect(),
        _ => vec![(
            ctx.previous_units(),
            ctx.bench.train_range(ctx.scenario, ctx.task, ctx.task),
        )],
    };
    let w = weight / groups.len() as f64;
    learner.accumulate(x, n, |z, d| {
        let mut loss = 0.0;
        for (units, range) in &groups {
            let ranges = vec![range.clone(); n];
            let k = units.len();
            let mut targets = Vec::with_capacity(n * k);
            for r in 0..n {
                targets.extend_from_slice(&all[r * out + units.start..r * out + units.end]);
            }
            loss += w * match soft {
                Some(t) => crate::learner::distill(z, out, &ranges, &targets, k, t, w, d),
                None => {
                    let labels: Vec<u32> = targets
                        .chunks_exact(k)
                        .map(|s| (units.start + crate::mlp::argmax(s)) as u32)
                        .collect();
                    cross_entropy(z, out, &labels, &ranges, w, d)
                }
            };
        }
        loss
    })
}
