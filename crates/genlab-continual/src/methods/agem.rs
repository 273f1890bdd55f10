//! Averaged gradient episodic memory: Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019,
//! "Efficient Lifelong Learning with A-GEM", arXiv:1812.00420, Section 4, Eq. 11: with `g`
//! the current batch's gradient and `g_ref` the gradient on a batch drawn from the episodic
//! memory of previous tasks, the step uses `g - (g.g_ref / g_ref.g_ref) g_ref` when
//! `g.g_ref < 0`, else `g`. The memory holds random examples of each finished task, the
//! budget split equally between tasks (as the reference code's exemplar sets, budget 2000).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::replay::check_budget;
use super::{
    add_cross_entropy, parse_config, Ctx, MemoryItem, Method, MethodEntry, Spec, ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::buffer::select;
use crate::learner::Learner;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Examples the episodic memory holds over all tasks (the reference's 2000).
    pub budget: usize,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "agem",
    paper: "Chaudhry et al. 2019, arXiv:1812.00420",
    description: "A-GEM: project the gradient so the loss on a memory batch does not rise",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config { budget: 2000 }).expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    let tasks = spec.bench.n_tasks();
    check_budget(c.budget, tasks, "it must hold an example of every task")?;
    Ok(Box::new(Agem {
        budget: c.budget,
        dim: spec.bench.dim(),
        memory: Vec::new(),
    }))
}

/// Eq. 11: projects `g` in place when it conflicts with `g_ref`; returns whether it did.
pub fn project(g: &mut [f32], g_ref: &[f32]) -> bool {
    let dot: f64 = g
        .iter()
        .zip(g_ref)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let rr: f64 = g_ref.iter().map(|b| *b as f64 * *b as f64).sum();
    if dot >= 0.0 || rr == 0.0 {
        return false;
    }
    let k = (dot / rr) as f32;
    for (a, b) in g.iter_mut().zip(g_ref) {
        *a -= k * b;
    }
    true
}

pub struct Agem {
    budget: usize,
    dim: usize,
    /// Examples of each finished task.
    memory: Vec<Examples>,
}

impl Method for Agem {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        rng: &mut Rng,
    ) -> Result<f64> {
        let mut g_ref = None;
        if !self.memory.is_empty() {
            // A batch from the whole memory: uniform over its examples.
            let total: usize = self.memory.iter().map(Examples::len).sum();
            let mut ids: Vec<(usize, usize)> = Vec::new();
            for _ in 0..batch.len() {
                let mut k = rng.below(total as u64) as usize;
                let mut m = 0;
                while k >= self.memory[m].len() {
                    k -= self.memory[m].len();
                    m += 1;
                }
                ids.push((m, k));
            }
            let mut old = Examples::default();
            for (m, k) in ids {
                let e = select(&self.memory[m], &[k], self.dim);
                old.x.extend(e.x);
                old.y.extend(e.y);
                old.task.extend(e.task);
            }
            learner.zero_grad();
            add_cross_entropy(ctx, learner, &old, 1.0);
            g_ref = Some(learner.grad.clone());
        }
        learner.zero_grad();
        let loss = add_cross_entropy(ctx, learner, batch, 1.0);
        if let Some(r) = g_ref {
            project(&mut learner.grad, &r);
        }
        learner.step()?;
        Ok(loss)
    }

    fn end_task(&mut self, ctx: &Ctx, _: &mut Learner, rng: &mut Rng) -> Result<()> {
        let per_task = self.budget / (ctx.task + 1);
        for m in &mut self.memory {
            let keep: Vec<usize> = (0..per_task.min(m.len())).collect();
            *m = select(m, &keep, self.dim);
        }
        let part = &ctx.bench.train[ctx.task];
        let mut ids: Vec<usize> = (0..part.len()).collect();
        rng.shuffle(&mut ids);
        ids.truncate(per_task);
        self.memory
            .push(ctx.bench.train_examples(ctx.scenario, ctx.task, &ids));
        Ok(())
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![MemoryItem {
            what: "episodic memory".into(),
            floats: self.memory.iter().map(|m| m.x.len()).sum(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_removes_the_conflicting_component_only() {
        // g = (1, -2), g_ref = (0, 1): g.g_ref = -2 < 0 -> (1, 0).
        let mut g = [1.0f32, -2.0];
        assert!(project(&mut g, &[0.0, 1.0]));
        assert_eq!(g, [1.0, 0.0]);
        // No conflict: unchanged.
        let mut g = [1.0f32, 2.0];
        assert!(!project(&mut g, &[0.0, 1.0]));
        assert_eq!(g, [1.0, 2.0]);
        // A general case: the projected gradient is orthogonal to g_ref.
        let mut g = [3.0f32, -1.0, 0.5];
        let r = [-1.0f32, 2.0, 1.0];
        assert!(project(&mut g, &r));
        let dot: f32 = g.iter().zip(&r).map(|(a, b)| a * b).sum();
        assert!(dot.abs() < 1e-5);
    }
}
