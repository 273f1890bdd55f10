//! Joint training: at each task the network trains on the data of every task so far, the
//! upper bound of van de Ven & Tolias 2019 ("Three scenarios for continual learning",
//! arXiv:1904.07734, Table 2, "Offline"). Batches are drawn uniformly from the union; each
//! example competes among its own task's units (its head in Task-IL), so in Task-IL this is
//! the reference's per-task replay of all data averaged over tasks, in expectation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::{
    add_cross_entropy, parse_config, Ctx, Method, MethodEntry, Spec, TrainingSet, ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::Learner;

/// Joint training has no settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "joint",
    paper: "upper bound: van de Ven & Tolias 2019, arXiv:1904.07734 (\"Offline\")",
    description: "train on all data of the tasks so far (upper bound; not continual)",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config::default()).expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let _: Config = parse_config(spec.config)?;
    Ok(Box::new(Joint))
}

pub struct Joint;

impl Method for Joint {
    fn training_set(&self, ctx: &Ctx) -> Option<TrainingSet> {
        Some(TrainingSet {
            parts: (0..=ctx.task)
                .map(|t| (t, (0..ctx.bench.train[t].len()).collect()))
                .collect(),
            extra: Examples::default(),
        })
    }

    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        learner.zero_grad();
        let loss = add_cross_entropy(ctx, learner, batch, 1.0);
        learner.step()?;
        Ok(loss)
    }
}
