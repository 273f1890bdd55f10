//! PackNet: Mallya & Lazebnik 2018, "PackNet: Adding Multiple Tasks to a Single Network by
//! Iterative Pruning", arXiv:1711.05769, Section 3 (parameter isolation, Task-IL only).
//!
//! Each task trains only the weights no earlier task owns; after it, the largest-magnitude
//! share of those weights becomes the task's (the rest are set to zero and left free for
//! later tasks) and the kept ones are retrained alone for `retrain_iters` iterations (the
//! paper's "prune then re-train"). Owned weights are frozen from then on. At test time task
//! `j` uses only the weights of tasks `1..=j` (the task label selects the mask), so earlier
//! tasks are never forgotten. As in the paper, biases are not pruned: the hidden layers'
//! biases are trained with the first task and then frozen; each head's output biases train
//! with their task only (frozen parameters are restored after each Adam step, whose momentum
//! would otherwise keep moving them). The share kept per task defaults to equal parts of the free weights:
//! `1 / (tasks left)` of them after each task, all of them after the last.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};
use genlab_rl::nn::Mlp;

use super::{
    add_cross_entropy, parse_config, setting_error, Ctx, MemoryItem, Method, MethodEntry, Spec,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::Learner;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fraction of the free weights a task keeps (null: equal shares, 1 / tasks left).
    pub keep: Option<f64>,
    /// Iterations of re-training after pruning (a quarter of the task's, as the paper's
    /// shorter re-training phase).
    pub retrain_iters: usize,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "packnet",
    paper: "Mallya & Lazebnik 2018, arXiv:1711.05769",
    description: "PackNet: prune after each task, freeze the kept weights, mask by task label; \
                  needs the task label at test time",
    scenarios: &[Scenario::Task],
    task_free: false,
    defaults,
    build,
};

fn defaults(b: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config {
        keep: None,
        retrain_iters: b.iters / 4,
    })
    .expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    if let Some(k) = c.keep {
        if !(k > 0.0 && k <= 1.0) {
            return Err(setting_error("keep", format!("must be in (0, 1], got {k}")));
        }
    }
    let sizes = &spec.sizes;
    let layers = sizes.len() - 1;
    let mut kind = Vec::new();
    for l in 0..layers {
        kind.extend(std::iter::repeat_n(Param::Weight, sizes[l] * sizes[l + 1]));
        if l + 1 == layers {
            kind.extend((0..sizes[l + 1]).map(Param::OutputBias));
        } else {
            kind.extend(std::iter::repeat_n(Param::HiddenBias, sizes[l + 1]));
        }
    }
    Ok(Box::new(PackNet {
        cfg: c,
        owner: vec![0; kind.len()],
        kind,
        tasks: spec.bench.n_tasks(),
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Weight,
    HiddenBias,
    /// The bias of this output unit.
    OutputBias(usize),
}

pub struct PackNet {
    cfg: Config,
    kind: Vec<Param>,
    /// 0: free; `k`: owned by task `k - 1`.
    owner: Vec<u16>,
    tasks: usize,
}

impl PackNet {
    /// Whether parameter `i` may change while task `t` trains (`retrain`: only its own).
    fn trainable(&self, i: usize, t: usize, head: &Range<usize>, retrain: bool) -> bool {
        match self.kind[i] {
            Param::Weight if retrain => self.owner[i] as usize == t + 1,
            Param::Weight => self.owner[i] == 0,
            Param::HiddenBias => t == 0,
            Param::OutputBias(u) => head.contains(&u),
        }
    }

    /// One masked step: frozen parameters get no gradient and keep their values.
    fn step(
        &self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        retrain: bool,
    ) -> Result<f64> {
        learner.zero_grad();
        let loss = add_cross_entropy(ctx, learner, batch, 1.0);
        let before = learner.net.params.clone();
        learner.step()?;
        let head = ctx.bench.head(ctx.task);
        for (i, (p, b)) in learner.net.params.iter_mut().zip(&before).enumerate() {
            if !self.trainable(i, ctx.task, &head, retrain) {
                *p = *b;
            }
        }
        Ok(loss)
    }

    /// The network task `task` sees: weights of tasks `0..=task` only.
    pub fn masked(&self, net: &Mlp, task: usize) -> Mlp {
        let mut m = net.clone();
        for (i, p) in m.params.iter_mut().enumerate() {
            let o = self.owner[i] as usize;
            if self.kind[i] == Param::Weight && (o == 0 || o > task + 1) {
                *p = 0.0;
            }
        }
        m
    }
}

impl Method for PackNet {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        self.step(ctx, learner, batch, false)
    }

    fn end_task(&mut self, ctx: &Ctx, learner: &mut Learner, rng: &mut Rng) -> Result<()> {
        let t = ctx.task;
        let mut free: Vec<usize> = (0..self.owner.len())
            .filter(|&i| self.kind[i] == Param::Weight && self.owner[i] == 0)
            .collect();
        let share = self
            .cfg
            .keep
            .unwrap_or(1.0 / (self.tasks - t).max(1) as f64);
        let keep = ((free.len() as f64) * share).round() as usize;
        let p = &mut learner.net.params;
        free.sort_by(|&a, &b| p[b].abs().total_cmp(&p[a].abs()).then(a.cmp(&b)));
        for (r, &i) in free.iter().enumerate() {
            if r < keep {
                self.owner[i] = (t + 1) as u16;
            } else {
                p[i] = 0.0;
            }
        }
        // Re-train the kept weights alone on the task's data.
        let part = &ctx.bench.train[t];
        let mut order: Vec<usize> = Vec::new();
        let mut pos = usize::MAX;
        let batch = ctx.batch.min(part.len());
        for _ in 0..self.cfg.retrain_iters {
            if pos == usize::MAX || pos + batch > order.len() {
                order = (0..part.len()).collect();
                rng.shuffle(&mut order);
                pos = 0;
            }
            let ex = ctx
                .bench
                .train_examples(ctx.scenario, t, &order[pos..pos + batch]);
            pos += batch;
            self.step(ctx, learner, &ex, true)?;
        }
        Ok(())
    }

    fn predict(
        &self,
        learner: &Learner,
        x: &[f32],
        n: usize,
        task: usize,
        range: Range<usize>,
    ) -> Option<Vec<u32>> {
        let net = self.masked(&learner.net, task);
        let z = crate::mlp::logits(&net, x, n);
        let out = net.out_dim();
        Some(
            (0..n)
                .map(|r| {
                    let zr = &z[r * out + range.start..r * out + range.end];
                    (range.start + crate::mlp::argmax(zr)) as u32
                })
                .collect(),
        )
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![MemoryItem {
            what: "task masks (one 16-bit owner per parameter, in float equivalents)".into(),
            floats: self.owner.len().div_ceil(2),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmark::Benchmark;
    use crate::train::{run_on, Quiet, RunConfig};

    #[test]
    fn earlier_tasks_are_not_forgotten_and_masks_partition_the_weights() {
        let s = Scenario::Task;
        let bench = Benchmark::load("split-digits", None, None, s, 0).unwrap();
        let over: Vec<String> = ["iters=60", "batch=32", "hidden=[32,32]", "eval_every=0"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        let cfg = RunConfig::resolve("split-digits", s, "packnet", 0, &over).unwrap();
        let r = run_on(&bench, &cfg, &mut Quiet).unwrap();
        // Frozen weights and a mask per task: the accuracy on a task never changes after
        // it was learned (its weights, its hidden biases and its head are all untouched).
        for j in 0..5 {
            for i in j + 1..5 {
                assert_eq!(
                    r.accuracy[i][j], r.accuracy[j][j],
                    "task {j} after task {i}"
                );
            }
        }
        assert!(r.measures.average_accuracy > 0.8, "{:?}", r.measures);
        // Applies to Task-IL only.
        assert!(RunConfig::resolve("split-digits", Scenario::Class, "packnet", 0, &[]).is_err());
    }
}
