//! Training step for the digit classifier (genlab's own feature extractor for FID, KID,
//! IS... on digit data): mean cross-entropy, AdamW, an EMA copy of the weights (the one
//! evaluated and used for features).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_data::{Batch, Dataset};
use genlab_models::Sample;
use genlab_nn::classifier::cross_entropy;
use genlab_nn::{Classifier, ClassifierConfig};

use crate::ema::Ema;
use crate::optim::AdamW;
use crate::run::TrainConfig;
use crate::step::{strip_prefix, with_prefix, TrainStep};

pub struct ClassifierStep {
    cfg: ClassifierConfig,
    store: ParamStore,
    net: Classifier,
    ema_store: ParamStore,
    ema_net: Classifier,
    ema: Ema,
    opt: AdamW,
    grad_clip: f64,
}

impl ClassifierStep {
    pub fn new(cfg: &ClassifierConfig, train: &TrainConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let store = ParamStore::new(seed, &Device::Cpu);
        let net = Classifier::new(cfg, store.vb())?;
        let ema_store = ParamStore::new(seed, &Device::Cpu);
        let ema_net = Classifier::new(cfg, ema_store.vb())?;
        let ema = Ema::new(&ema_store, &store, train.ema_decay)?;
        let opt = AdamW::new(store.vars(), train.adamw.clone())?;
        Ok(Self {
            cfg: cfg.clone(),
            store,
            net,
            ema_store,
            ema_net,
            ema,
            opt,
            grad_clip: train.grad_clip,
        })
    }

    fn labels<'a>(&self, batch: &'a Batch) -> Result<&'a Tensor> {
        let labels = batch.labels.as_ref().ok_or_else(|| {
            Error::Data("the classifier needs a labelled dataset (digits, mnist, a class-per-folder image folder)".into())
        })?;
        let max = labels.max_all()?.to_scalar::<u32>()? as usize;
        if max >= self.cfg.num_classes {
            return Err(Error::Data(format!(
                "label {max} is out of range for a {}-class classifier (set classifier.num_classes)",
                self.cfg.num_classes
            )));
        }
        Ok(labels)
    }
}

/// Accuracy and mean cross-entropy of `net` on every example of `data`.
pub fn evaluate(net: &Classifier, data: &dyn Dataset) -> Result<(f64, f64)> {
    const BATCH: usize = 500;
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    let mut start = 0;
    while start < data.len() {
        let idx: Vec<usize> = (start..(start + BATCH).min(data.len())).collect();
        let b = genlab_data::make_batch(data, &idx, &Device::Cpu)?;
        let labels = b.labels.ok_or_else(|| {
            Error::Data(format!("`{}` has no labels to evaluate on", data.name()))
        })?;
        let logits = net.forward(&b.x)?.detach();
        let pred = logits.argmax(1)?;
        correct += pred
            .eq(&labels)?
            .to_dtype(candle_core::DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        loss_sum += cross_entropy(&logits, &labels)?.to_scalar::<f32>()? as f64 * idx.len() as f64;
        start += BATCH;
    }
    Ok((
        correct as f64 / data.len() as f64,
        loss_sum / data.len() as f64,
    ))
}

impl TrainStep for ClassifierStep {
    fn step(&mut self, batch: &Batch, _rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let labels = self.labels(batch)?;
        let logits = self.net.forward(&batch.x)?;
        let loss = cross_entropy(&logits, labels)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {loss_v}")));
        }
        let acc = logits
            .detach()
            .argmax(1)?
            .eq(labels)?
            .to_dtype(candle_core::DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
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
        Ok(vec![
            ("loss".into(), loss_v),
            ("accuracy".into(), acc),
            ("grad_norm".into(), norm),
        ])
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
        None
    }

    fn evaluate(&self, held_out: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let (acc, loss) = evaluate(&self.ema_net, held_out)?;
        Ok(vec![("accuracy".into(), acc), ("loss".into(), loss)])
    }

    fn num_params(&self) -> usize {
        self.store.num_params()
    }
}
