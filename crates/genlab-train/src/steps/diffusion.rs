//! Training step for diffusion models (DDPM, L_simple), with AdamW, global-norm gradient
//! clipping and an EMA copy of the weights used for sampling (Ho et al. 2020, App. B).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_data::Batch;
use genlab_models::{diffusion::Ddpm, diffusion::DdpmConfig, Sample};

use crate::ema::Ema;
use crate::optim::AdamW;
use crate::run::TrainConfig;
use crate::step::{strip_prefix, with_prefix, TrainStep};

pub struct DiffusionStep {
    store: ParamStore,
    model: Ddpm,
    ema_store: ParamStore,
    ema_model: Ddpm,
    ema: Ema,
    opt: AdamW,
    grad_clip: f64,
}

impl DiffusionStep {
    pub fn new(cfg: &DdpmConfig, train: &TrainConfig, seed: u64) -> Result<Self> {
        let store = ParamStore::new(seed, &Device::Cpu);
        let model = Ddpm::new(cfg, store.vb())?;
        let ema_store = ParamStore::new(seed, &Device::Cpu);
        let ema_model = Ddpm::new(cfg, ema_store.vb())?;
        let ema = Ema::new(&ema_store, &store, train.ema_decay)?;
        let opt = AdamW::new(store.vars(), train.adamw.clone())?;
        Ok(Self {
            store,
            model,
            ema_store,
            ema_model,
            ema,
            opt,
            grad_clip: train.grad_clip,
        })
    }
}

impl TrainStep for DiffusionStep {
    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let loss = self.model.loss(&batch.x, rng)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {loss_v}")));
        }
        let grads = loss.backward()?;
        let norm = self.opt.grad_norm(&grads)?;
        if !norm.is_finite() {
            return Err(Error::Numeric(format!("the gradient norm is {norm}")));
        }
        let scale = if self.grad_clip > 0.0 && norm > self.grad_clip {
            self.grad_clip / norm
        } else {
            1.0
        };
        let n = self.opt.t;
        self.opt.step(&grads, lr, scale)?;
        self.ema.update(n)?;
        Ok(vec![("loss".into(), loss_v), ("grad_norm".into(), norm)])
    }

    fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut m = with_prefix(self.store.tensors(), "model");
        m.extend(with_prefix(self.ema_store.tensors(), "ema"));
        m.extend(with_prefix(self.opt.state(), "opt"));
        m
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "opt_t": self.opt.t })
    }

    fn load_state(
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

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema_model)
    }

    fn num_params(&self) -> usize {
        self.store.num_params()
    }
}
