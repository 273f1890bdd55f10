//! Fine-tuning: the network is trained on each task in turn with nothing against forgetting,
//! the lower bound of van de Ven & Tolias 2019 ("Three scenarios for continual learning",
//! arXiv:1904.07734, Table 2, "None"). Loss: cross-entropy on the current task's batch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::{add_cross_entropy, parse_config, Ctx, Method, MethodEntry, Spec, ALL_SCENARIOS};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::Learner;

/// Fine-tuning has no settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "finetune",
    paper: "lower bound: van de Ven & Tolias 2019, arXiv:1904.07734 (\"None\")",
    description: "train on each task in turn, nothing against forgetting (lower bound)",
    scenarios: ALL_SCENARIOS,
    task_free: true,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config::default()).expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let _: Config = parse_config(spec.config)?;
    Ok(Box::new(FineTune))
}

pub struct FineTune;

impl Method for FineTune {
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
