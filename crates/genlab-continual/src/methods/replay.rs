//! Experience replay with a reservoir buffer: Chaudhry et al. 2019, "On Tiny Episodic
//! Memories in Continual Learning", arXiv:1902.10486, Section 4 (ER-reservoir): every batch
//! seen is offered to a fixed-size reservoir ([`crate::buffer`]) and, from the second task on,
//! each iteration adds the loss of a batch drawn from it. As in van de Ven & Tolias's code
//! (arXiv:1904.07734), the current loss is weighted `1/t` and the replayed `1 - 1/t`; each
//! replayed example competes among its own task's units in Task-IL.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::{
    add_cross_entropy, parse_config, setting_error, Ctx, MemoryItem, Method, MethodEntry, Spec,
    ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::buffer::Reservoir;
use crate::learner::Learner;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Examples the buffer holds (the reference's ER budget, 2000).
    pub budget: usize,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "replay",
    paper: "Chaudhry et al. 2019, arXiv:1902.10486",
    description: "experience replay from a reservoir buffer of past examples",
    scenarios: ALL_SCENARIOS,
    task_free: true,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config { budget: 2000 }).expect("serialisable")
}

/// The buffer must hold at least one example (`budget > 0`).
pub fn check_budget(budget: usize, min: usize, why: &str) -> Result<()> {
    if budget < min.max(1) {
        return Err(setting_error(
            "budget",
            format!(
                "is {budget}: the replay buffer would be too small ({why}); expected at least {}",
                min.max(1)
            ),
        ));
    }
    Ok(())
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    check_budget(c.budget, 1, "it must hold examples to replay")?;
    Ok(Box::new(Replay {
        buffer: Reservoir::new(c.budget, spec.bench.dim()),
    }))
}

pub struct Replay {
    buffer: Reservoir,
}

impl Method for Replay {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        rng: &mut Rng,
    ) -> Result<f64> {
        learner.zero_grad();
        let rnt = if ctx.task == 0 { 1.0 } else { ctx.rnt() };
        let mut loss = add_cross_entropy(ctx, learner, batch, rnt) * rnt;
        if ctx.task > 0 {
            let old = self.buffer.sample(batch.len(), rng);
            loss += add_cross_entropy(ctx, learner, &old, 1.0 - rnt) * (1.0 - rnt);
        }
        learner.step()?;
        self.buffer.add(batch, rng);
        Ok(loss)
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![MemoryItem {
            what: "replay buffer".into(),
            floats: self.buffer.held.x.len(),
        }]
    }
}
