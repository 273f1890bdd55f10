//! Learning without forgetting: Li & Hoiem 2017, "Learning without Forgetting",
//! arXiv:1606.09282, Section 3 (Eq. 2 and the loss of Algorithm 1): the current task's inputs
//! are also labelled by the model as it was after the previous task, and the network is
//! trained to keep those responses through knowledge distillation at temperature `T = 2`
//! (Hinton et al. 2015, arXiv:1503.02531). As in van de Ven & Tolias 2019 (arXiv:1904.07734),
//! the current loss is weighted `1/t` and the distillation `1 - 1/t` after `t` tasks, and in
//! Task-IL the inputs are distilled on every previous head.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};
use genlab_rl::nn::Mlp;

use super::{
    add_cross_entropy, add_replay_loss, parse_config, setting_error, Ctx, MemoryItem, Method,
    MethodEntry, Spec, ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::Learner;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Distillation temperature (the reference's 2).
    pub temperature: f64,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "lwf",
    paper: "Li & Hoiem 2017, arXiv:1606.09282",
    description: "learning without forgetting: distil the previous model on the current inputs",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config { temperature: 2.0 }).expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    if c.temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(setting_error(
            "temperature",
            format!("must be > 0, got {}", c.temperature),
        ));
    }
    Ok(Box::new(Lwf { cfg: c, prev: None }))
}

pub struct Lwf {
    cfg: Config,
    prev: Option<Mlp>,
}

impl Method for Lwf {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        learner.zero_grad();
        let rnt = ctx.rnt();
        let mut loss = add_cross_entropy(ctx, learner, batch, rnt) * rnt;
        if let Some(prev) = &self.prev {
            let t = Some(self.cfg.temperature);
            loss += add_replay_loss(ctx, learner, prev, &batch.x, batch.len(), t, 1.0 - rnt);
        }
        learner.step()?;
        Ok(loss)
    }

    fn end_task(&mut self, _: &Ctx, learner: &mut Learner, _: &mut Rng) -> Result<()> {
        self.prev = Some(learner.net.clone());
        Ok(())
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![MemoryItem {
            what: "previous model".into(),
            floats: self.prev.as_ref().map_or(0, |m| m.num_params()),
        }]
    }
}
