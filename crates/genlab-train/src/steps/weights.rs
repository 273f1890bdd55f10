//! What every single-network `TrainStep` shares: the live weights, their EMA copy, AdamW,
//! gradient clipping, and how all of that goes into a checkpoint and comes back.
//!
//! Checkpoint layout: `model.*` (weights), `ema.*` (EMA weights), `opt.*` (AdamW moments),
//! and the optimizer's step count `opt_t` in the JSON state.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use genlab_core::{Error, ParamStore, Result};

use crate::ema::Ema;
use crate::optim::AdamW;
use crate::run::TrainConfig;
use crate::step::{strip_prefix, with_prefix};

pub struct TrainedWeights {
    pub store: ParamStore,
    pub ema_store: ParamStore,
    ema: Ema,
    opt: AdamW,
    grad_clip: f64,
}

impl TrainedWeights {
    /// Builds the network twice from `seed` (live and EMA copy) on `device` with `build`,
    /// which creates its variables in the store it is given; returns the two networks.
    /// The initial values are drawn on the host: the same seed gives the same weights on
    /// every device.
    pub fn new<N>(
        train: &TrainConfig,
        seed: u64,
        device: &Device,
        build: impl Fn(&ParamStore) -> Result<N>,
    ) -> Result<(Self, N, N)> {
        let store = ParamStore::new(seed, device);
        let net = build(&store)?;
        let ema_store = ParamStore::new(seed, device);
        let ema_net = build(&ema_store)?;
        let ema = Ema::new(&ema_store, &store, train.ema_decay)?;
        let opt = AdamW::new(store.vars(), train.adamw.clone())?;
        Ok((
            Self {
                store,
                ema_store,
                ema,
                opt,
                grad_clip: train.grad_clip,
            },
            net,
            ema_net,
        ))
    }

    /// Clips by global norm, takes an AdamW step at `lr`, updates the EMA; returns the
    /// gradient norm before clipping.
    pub fn apply(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let norm = self.opt.grad_norm(grads)?;
        if !norm.is_finite() {
            return Err(Error::Numeric(format!("the gradient norm is {norm}")));
        }
        let scale = if self.grad_clip > 0.0 && norm > self.grad_clip {
            self.grad_clip / norm
        } else {
            1.0
        };
        let n = self.opt.t;
        self.opt.step(grads, lr, scale)?;
        self.ema.update(n)?;
        Ok(norm)
    }

    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut m = with_prefix(self.store.tensors(), "model");
        m.extend(with_prefix(self.ema_store.tensors(), "ema"));
        m.extend(with_prefix(self.opt.state(), "opt"));
        m
    }

    pub fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "opt_t": self.opt.t })
    }

    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> Result<()> {
        self.store.load(&strip_prefix(tensors, "model"))?;
        self.ema_store.load(&strip_prefix(tensors, "ema"))?;
        let t = json.get("opt_t").and_then(|v| v.as_u64()).ok_or_else(|| {
            Error::Checkpoint("the checkpoint state has no optimizer step count `opt_t`".into())
        })?;
        self.opt.load_state(&strip_prefix(tensors, "opt"), t)
    }

    /// Turns the EMA's decay warm-up off: for weights that start from a trained average
    /// (the teacher of a distillation round), which the warm-up would discard.
    pub fn without_ema_warmup(mut self) -> Self {
        self.ema.warmup = false;
        self
    }

    /// Optimizer updates taken so far.
    pub fn opt_steps(&self) -> u64 {
        self.opt.t
    }

    /// The device of the weights (and of the batches the step expects).
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    pub fn num_params(&self) -> usize {
        self.store.num_params()
    }
}

/// The six [`TrainStep`](crate::TrainStep) methods of a step that keeps its weights in a
/// [`TrainedWeights`] field `w`, delegated to it: `trainable_vars`, `state_tensors`,
/// `state_json`, `load_state`, `device`, `num_params`. Write it inside the
/// `impl TrainStep for ...` block.
macro_rules! delegate_to_weights {
    () => {
        fn trainable_vars(&self) -> Vec<(String, candle_core::Var)> {
            self.w.store.vars()
        }

        fn state_tensors(&self) -> std::collections::HashMap<String, candle_core::Tensor> {
            self.w.state_tensors()
        }

        fn state_json(&self) -> serde_json::Value {
            self.w.state_json()
        }

        fn load_state(
            &mut self,
            tensors: &std::collections::HashMap<String, candle_core::Tensor>,
            json: &serde_json::Value,
        ) -> genlab_core::Result<()> {
            self.w.load_state(tensors, json)
        }

        fn device(&self) -> &candle_core::Device {
            self.w.device()
        }

        fn num_params(&self) -> usize {
            self.w.num_params()
        }
    };
}
pub(crate) use delegate_to_weights;
