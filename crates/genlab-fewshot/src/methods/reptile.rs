//! Reptile: Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms",
//! arXiv:1803.02999.
//!
//! For each task of the meta-batch, `k` steps of SGD from θ on the task's K points give
//! `W_i = U^k_τi(θ)`; the meta-update moves θ towards their mean,
//! `θ ← θ + ε (1/n Σ_i W_i - θ)` (Algorithm 2, the batched version). Here the direction
//! `θ - W̄` is handed to the trainer as the gradient of the surrogate
//! `½‖θ - stopgrad(W̄)‖²`, so the outer step is the trainer's Adam on the Reptile
//! direction rather than plain SGD with step ε (the paper anneals ε linearly). No second
//! derivatives are needed. The learner is MAML's regression MLP ([`crate::sinusoid`]).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, ParamStore, Result};

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::sinusoid::{adapted_query_mse, regression_mlp, sgd_adapt};

/// Settings of [`Reptile`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Step size of the inner SGD (and of test-time adaptation).
    pub inner_lr: f64,
    /// k, inner SGD steps per task during meta-training.
    pub inner_steps: usize,
    /// Gradient steps at test time.
    pub eval_steps: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // [40, 40]: MAML's network, for the comparison.
            hidden: vec![40, 40],
            // 0.01: MAML's α, so test-time adaptation is the same for both.
            inner_lr: 0.01,
            // 5: several steps are what make Reptile's update differ from joint training
            // (with k = 1 it is the pretrain baseline's gradient).
            inner_steps: 5,
            // 1: compared with MAML after one step.
            eval_steps: 1,
        }
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "reptile",
    paper:
        "Nichol, Achiam & Schulman 2018, On First-Order Meta-Learning Algorithms, arXiv:1803.02999",
    description:
        "moves the initialisation towards the weights k SGD steps reach on each task (first order)",
    kind: TaskKind::Regression,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Reptile::new(spec)?)),
};

/// See the module documentation.
pub struct Reptile {
    cfg: Config,
    store: ParamStore,
    params: Vec<Tensor>,
}

impl Reptile {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if !(cfg.inner_lr > 0.0 && cfg.inner_lr.is_finite()) || cfg.inner_steps == 0 {
            return Err(Error::setting(
                "inner_lr",
                format!("Reptile needs a positive inner learning rate and at least one inner step, got {} and {}", cfg.inner_lr, cfg.inner_steps),
            ));
        }
        let (store, params) = regression_mlp(&spec.input, &cfg.hidden, spec.seed, &spec.device)?;
        Ok(Self { cfg, store, params })
    }
}

impl Method for Reptile {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        // W̄: the mean of the task-adapted weights (detached: constants of the surrogate).
        let mut mean: Option<Vec<Tensor>> = None;
        for t in tasks {
            let task = super::regression(t, "reptile")?;
            let w = sgd_adapt(
                &self.params,
                &task.x_support,
                &task.y_support,
                self.cfg.inner_lr,
                self.cfg.inner_steps,
                false,
            )?;
            let w: Vec<Tensor> = w.iter().map(|t| t.detach()).collect();
            mean = Some(match mean {
                None => w,
                Some(m) => m
                    .iter()
                    .zip(&w)
                    .map(|(a, b)| a + b)
                    .collect::<candle_core::Result<_>>()?,
            });
        }
        let mean =
            mean.ok_or_else(|| Error::InvalidInput("reptile: an empty meta-batch".into()))?;
        let n = tasks.len() as f64;
        // ½‖θ - W̄‖²: its gradient is θ - W̄, minus the Reptile direction.
        let mut loss: Option<Tensor> = None;
        for (p, m) in self.params.iter().zip(&mean) {
            let d = p
                .sub(&m.affine(1.0 / n, 0.0)?)?
                .sqr()?
                .sum_all()?
                .affine(0.5, 0.0)?;
            loss = Some(match loss {
                None => d,
                Some(l) => (l + d)?,
            });
        }
        Ok(MetaLoss {
            loss: loss.expect("an MLP has parameters"),
            accuracy: None,
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let task = super::regression(task, "reptile")?;
        adapted_query_mse(&self.params, task, self.cfg.inner_lr, self.cfg.eval_steps)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}
