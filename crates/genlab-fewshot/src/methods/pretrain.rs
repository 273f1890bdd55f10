//! The pretrained-and-fine-tuned baseline of MAML's regression experiment (Finn, Abbeel &
//! Levine 2017, arXiv:1703.03400, section 5.1: "pretraining on all of the tasks, which
//! entails training a network to regress to random sinusoid functions and then, at
//! test-time, fine-tuning with gradient descent on the K provided points").
//!
//! Meta-training here is plain regression: the loss is the MSE of the network on all the
//! points (support and query) of the batch's tasks, each task a different wave, so the
//! network learns their average, close to zero everywhere. At test time the same gradient
//! steps as MAML's (`finetune_lr`, `finetune_steps`) adapt it to the K shots.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, ParamStore, Result};

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::sinusoid::{adapted_query_mse, mlp_forward, mse, regression_mlp};

/// Settings of [`Pretrain`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Step size of the test-time fine-tuning.
    pub finetune_lr: f64,
    /// Fine-tuning gradient steps at test time.
    pub finetune_steps: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // [40, 40]: MAML's network, so the comparison is of the training only.
            hidden: vec![40, 40],
            // 0.01: MAML's α (the paper fine-tunes the baseline with the same step).
            finetune_lr: 0.01,
            // 1: compared with MAML after one step.
            finetune_steps: 1,
        }
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "pretrain",
    paper: "baseline of Finn, Abbeel & Levine 2017, arXiv:1703.03400, section 5.1",
    description: "regression on all training tasks' points, fine-tuned by gradient steps on the K shots at test time",
    kind: TaskKind::Regression,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Pretrain::new(spec)?)),
};

/// See the module documentation.
pub struct Pretrain {
    cfg: Config,
    store: ParamStore,
    params: Vec<candle_core::Tensor>,
}

impl Pretrain {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if !(cfg.finetune_lr > 0.0 && cfg.finetune_lr.is_finite()) {
            return Err(Error::setting(
                "finetune_lr",
                format!("must be a positive number, got {}", cfg.finetune_lr),
            ));
        }
        let (store, params) = regression_mlp(&spec.input, &cfg.hidden, spec.seed, &spec.device)?;
        Ok(Self { cfg, store, params })
    }
}

impl Method for Pretrain {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        let mut losses = Vec::new();
        for t in tasks {
            let task = super::regression(t, "pretrain")?;
            let x = candle_core::Tensor::cat(&[&task.x_support, &task.x_query], 0)?;
            let y = candle_core::Tensor::cat(&[&task.y_support, &task.y_query], 0)?;
            losses.push(mse(&mlp_forward(&self.params, &x)?, &y)?);
        }
        let loss = candle_core::Tensor::stack(&losses, 0)?.mean_all()?;
        Ok(MetaLoss {
            loss,
            accuracy: None,
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let task = super::regression(task, "pretrain")?;
        adapted_query_mse(
            &self.params,
            task,
            self.cfg.finetune_lr,
            self.cfg.finetune_steps,
        )
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}
