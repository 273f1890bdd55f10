//! Model-Agnostic Meta-Learning: Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning
//! for Fast Adaptation of Deep Networks", arXiv:1703.03400 (Algorithm 2, supervised
//! regression), with its first-order approximation (section 5.2).
//!
//! Inner loop, per task `T_i`: `θ'_i = θ - α ∇θ L_Ti(fθ)` on the K support points (eq. 1,
//! `inner_steps` times). Outer loop: `θ ← θ - β ∇θ Σ_i L_Ti(fθ'_i)` on the task's query
//! points (eq. 2; here the mean over the meta-batch, followed with Adam as in the paper).
//! The full meta-gradient contains `∂θ'/∂θ = I - α ∇²L`: the inner gradients are kept in
//! the graph (candle's `CANDLE_GRAD_DO_NOT_DETACH`), and the outer backward differentiates
//! through them ("double backward"). First order (`first_order = true`) treats the inner
//! gradients as constants, so `∂θ'/∂θ = I`.
//!
//! The learner is the paper's regression network: a ReLU MLP 1 -> 40 -> 40 -> 1. (MAML on
//! image episodes needs a conv net whose backward is itself differentiable; genlab's conv
//! kernels are not, so this entry learns regression tasks.)

use serde::{Deserialize, Serialize};

use genlab_core::{Error, ParamStore, Result};

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::sinusoid::{adapted_query_mse, mlp_forward, mse, regression_mlp, sgd_adapt};

/// Settings of [`Maml`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// α, the inner-loop step size.
    pub inner_lr: f64,
    /// Inner gradient steps during meta-training.
    pub inner_steps: usize,
    /// Gradient steps at test time (on the K shots).
    pub eval_steps: usize,
    /// Drop the second-order terms (the inner gradients are constants).
    pub first_order: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // [40, 40]: the paper's regression network.
            hidden: vec![40, 40],
            // 0.01: the paper's α for sinusoids.
            inner_lr: 0.01,
            // 1: the paper meta-trains with one inner step.
            inner_steps: 1,
            // 1: the paper's headline figure is the MSE after one step.
            eval_steps: 1,
            // false: full MAML; true is the paper's first-order approximation.
            first_order: false,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        if !(self.inner_lr > 0.0 && self.inner_lr.is_finite()) {
            return Err(Error::setting(
                "inner_lr",
                format!(
                    "MAML's inner learning rate must be a positive number, got {}",
                    self.inner_lr
                ),
            ));
        }
        if self.inner_steps == 0 || self.hidden.contains(&0) {
            return Err(Error::setting(
                "inner_steps",
                format!("MAML needs at least one inner step and non-zero hidden widths, got {} steps, hidden {:?}", self.inner_steps, self.hidden),
            ));
        }
        Ok(())
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "maml",
    paper: "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, arXiv:1703.03400",
    description: "an initialisation that one gradient step adapts to a task; second order by double backward, or first order",
    kind: TaskKind::Regression,
    double_backward: |v| !parse_config::<Config>(v).map(|c| c.first_order).unwrap_or(false),
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Maml::new(spec)?)),
};

/// See the module documentation.
pub struct Maml {
    cfg: Config,
    store: ParamStore,
    params: Vec<candle_core::Tensor>,
}

impl Maml {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        cfg.validate()?;
        let (store, params) = regression_mlp(&spec.input, &cfg.hidden, spec.seed, &spec.device)?;
        Ok(Self { cfg, store, params })
    }
}

impl Method for Maml {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        let mut total: Option<candle_core::Tensor> = None;
        for t in tasks {
            let task = super::regression(t, "maml")?;
            // Eq. 1, keeping the inner gradients in the graph unless first order.
            let fast = sgd_adapt(
                &self.params,
                &task.x_support,
                &task.y_support,
                self.cfg.inner_lr,
                self.cfg.inner_steps,
                !self.cfg.first_order,
            )?;
            // Eq. 2's summand: the adapted network's loss on the task's query points.
            let l = mse(&mlp_forward(&fast, &task.x_query)?, &task.y_query)?;
            total = Some(match total {
                None => l,
                Some(s) => (s + l)?,
            });
        }
        let loss = total.ok_or_else(|| Error::InvalidInput("maml: an empty meta-batch".into()))?;
        Ok(MetaLoss {
            loss: loss.affine(1.0 / tasks.len() as f64, 0.0)?,
            accuracy: None,
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let task = super::regression(task, "maml")?;
        adapted_query_mse(&self.params, task, self.cfg.inner_lr, self.cfg.eval_steps)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}
