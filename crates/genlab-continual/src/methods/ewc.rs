//! Elastic weight consolidation: Kirkpatrick et al. 2017, "Overcoming catastrophic
//! forgetting in neural networks", arXiv:1612.00796, Eq. 3: after task `k` the loss gains
//! `lambda / 2 * sum_i F_{k,i} (theta_i - theta*_{k,i})^2`, one quadratic term per finished
//! task, `F_k` the diagonal of the Fisher information at the task's solution `theta*_k`.
//!
//! Online EWC (`online-ewc`): Schwarz et al. 2018, "Progress & Compress", arXiv:1805.06370,
//! Eq. 8: one running term, `F <- gamma F + F_k` anchored at the latest solution. As in van de
//! Ven & Tolias's code (2019, arXiv:1904.07734, the reference of our targets) the penalty
//! uses `gamma F`.
//!
//! The Fisher is estimated on the whole training set of the task (`fisher_n` caps it), with
//! the model's predicted label (`empirical = true`: the true label) over the units the task
//! was trained on; [`crate::mlp::add_fisher`] computes the summed squared per-example
//! gradients in batched GEMMs. Hyperparameters: the reference's per-scenario values
//! (`param_values.py`, found by its grid search).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::{
    add_cross_entropy, parse_config, setting_error, Ctx, MemoryItem, Method, MethodEntry, Spec,
    ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Kind, Scenario};
use crate::learner::Learner;

/// Examples per batched Fisher pass.
const FISHER_BATCH: usize = 256;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Regularisation strength (the reference's grid-searched value for the scenario).
    pub lambda: f64,
    /// Online EWC's decay of the running Fisher (ignored by offline EWC).
    pub gamma: f64,
    /// Examples used to estimate the Fisher (null: all of the task, as the reference).
    pub fisher_n: Option<usize>,
    /// Use the true labels (the "empirical Fisher") instead of the model's predictions.
    pub empirical: bool,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "ewc",
    paper: "Kirkpatrick et al. 2017, arXiv:1612.00796",
    description: "elastic weight consolidation: a Fisher-weighted quadratic penalty per task",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults: offline_defaults,
    build: build_offline,
};

pub const ONLINE_ENTRY: MethodEntry = MethodEntry {
    name: "online-ewc",
    paper: "Schwarz et al. 2018, arXiv:1805.06370",
    description: "online EWC: one running Fisher-weighted penalty, older tasks decayed by gamma",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults: online_defaults,
    build: build_online,
};

/// van de Ven & Tolias's `param_values.py` (split MNIST / permuted MNIST).
fn offline_defaults(b: &BenchmarkEntry, s: Scenario) -> Value {
    let split = b.kind == Kind::Split;
    let lambda = match (split, s) {
        (true, Scenario::Task) => 1e7,
        (true, Scenario::Domain) => 1e6,
        (true, Scenario::Class) => 1e8,
        (false, Scenario::Class) => 1.0,
        (false, _) => 500.0,
    };
    serde_json::to_value(Config {
        lambda,
        gamma: 1.0,
        fisher_n: None,
        empirical: false,
    })
    .expect("serialisable")
}

fn online_defaults(b: &BenchmarkEntry, s: Scenario) -> Value {
    let split = b.kind == Kind::Split;
    let (lambda, gamma) = match (split, s) {
        (true, Scenario::Task) => (1e8, 0.8),
        (true, Scenario::Domain) => (1e8, 0.7),
        (true, Scenario::Class) => (1e9, 0.8),
        (false, Scenario::Task) => (500.0, 0.8),
        (false, Scenario::Domain) => (1000.0, 0.9),
        (false, Scenario::Class) => (5.0, 1.0),
    };
    serde_json::to_value(Config {
        lambda,
        gamma,
        fisher_n: None,
        empirical: false,
    })
    .expect("serialisable")
}

fn check(c: &Config) -> Result<()> {
    if !(c.lambda >= 0.0 && c.lambda.is_finite()) {
        return Err(setting_error(
            "lambda",
            format!("must be >= 0, got {}", c.lambda),
        ));
    }
    if !(0.0..=1.0).contains(&c.gamma) {
        return Err(setting_error(
            "gamma",
            format!("must be in [0, 1], got {}", c.gamma),
        ));
    }
    if c.fisher_n == Some(0) {
        return Err(setting_error(
            "fisher_n",
            "must be at least 1 (or null: all)",
        ));
    }
    Ok(())
}

fn build_offline(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    check(&c)?;
    Ok(Box::new(Ewc::new(c, false)))
}

fn build_online(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    check(&c)?;
    Ok(Box::new(Ewc::new(c, true)))
}

pub struct Ewc {
    cfg: Config,
    online: bool,
    /// `(theta*, F)` per quadratic term.
    terms: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Ewc {
    pub fn new(cfg: Config, online: bool) -> Self {
        Self {
            cfg,
            online,
            terms: Vec::new(),
        }
    }

    /// The penalty `lambda / 2 sum F (theta - theta*)^2` at `params`; adds its gradient
    /// `lambda F (theta - theta*)` to `grad`.
    pub fn penalty(&self, params: &[f32], grad: &mut [f32]) -> f64 {
        let scale = if self.online { self.cfg.gamma } else { 1.0 };
        let lam = self.cfg.lambda * scale;
        let mut loss = 0.0;
        for (mean, fisher) in &self.terms {
            for i in 0..params.len() {
                let d = (params[i] - mean[i]) as f64;
                let f = fisher[i] as f64;
                loss += 0.5 * lam * f * d * d;
                grad[i] += (lam * f * d) as f32;
            }
        }
        loss
    }

    /// The mean Fisher diagonal over the task's training examples.
    pub fn estimate_fisher(&self, ctx: &Ctx, learner: &Learner) -> Vec<f32> {
        let part = &ctx.bench.train[ctx.task];
        let n = self.cfg.fisher_n.unwrap_or(usize::MAX).min(part.len());
        let range = ctx.bench.train_range(ctx.scenario, ctx.task, ctx.task);
        let mut fisher = vec![0f32; learner.net.num_params()];
        let ids: Vec<usize> = (0..n).collect();
        for chunk in ids.chunks(FISHER_BATCH) {
            let ex = ctx.bench.train_examples(ctx.scenario, ctx.task, chunk);
            let labels = self.cfg.empirical.then_some(ex.y.as_slice());
            crate::mlp::add_fisher(
                &learner.net,
                &ex.x,
                chunk.len(),
                range.clone(),
                labels,
                &mut fisher,
            );
        }
        fisher.iter_mut().for_each(|f| *f /= n.max(1) as f32);
        fisher
    }
}

impl Method for Ewc {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        learner.zero_grad();
        let mut loss = add_cross_entropy(ctx, learner, batch, 1.0);
        let params = learner.net.params.clone();
        loss += self.penalty(&params, &mut learner.grad);
        learner.step()?;
        Ok(loss)
    }

    fn end_task(&mut self, ctx: &Ctx, learner: &mut Learner, _: &mut Rng) -> Result<()> {
        let mut fisher = self.estimate_fisher(ctx, learner);
        let mean = learner.net.params.clone();
        if self.online {
            if let Some((_, old)) = self.terms.pop() {
                for (f, o) in fisher.iter_mut().zip(&old) {
                    *f += (self.cfg.gamma as f32) * o;
                }
            }
        }
        self.terms.push((mean, fisher));
        Ok(())
    }

    fn memory(&self) -> Vec<MemoryItem> {
        let floats = self.terms.iter().map(|(m, f)| m.len() + f.len()).sum();
        vec![MemoryItem {
            what: "fisher diagonals and anchors".into(),
            floats,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 sums of f32 terms.
    const TOL: f64 = 1e-9;

    #[test]
    fn penalty_and_gradient_match_the_quadratic_by_hand() {
        let cfg = Config {
            lambda: 4.0,
            gamma: 0.5,
            fisher_n: None,
            empirical: false,
        };
        let mut e = Ewc::new(cfg.clone(), false);
        e.terms.push((vec![1.0, 2.0], vec![0.5, 2.0]));
        e.terms.push((vec![0.0, 0.0], vec![1.0, 0.0]));
        let mut g = vec![0f32; 2];
        let l = e.penalty(&[2.0, 1.0], &mut g);
        // 4/2 * (0.5 * 1 + 2 * 1) + 4/2 * (1 * 4 + 0) = 5 + 8
        assert!((l - 13.0).abs() < TOL);
        // 4 * (0.5 * 1 + 1 * 2) = 10; 4 * (2 * -1) = -8
        assert!((g[0] as f64 - 10.0).abs() < TOL && (g[1] as f64 + 8.0).abs() < TOL);
        // Online: gamma scales the one running term.
        let mut o = Ewc::new(cfg, true);
        o.terms.push((vec![1.0, 2.0], vec![0.5, 2.0]));
        let mut g = vec![0f32; 2];
        assert!((o.penalty(&[2.0, 1.0], &mut g) - 2.5).abs() < TOL);
    }
}
