//! Training step for the digit classifier (genlab's own feature extractor for FID, KID,
//! IS... on digit data): mean cross-entropy, AdamW, an EMA copy of the weights (the one
//! evaluated and used for features).

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use genlab_core::{Error, Result, Rng};
use genlab_data::{Batch, Dataset};
use genlab_models::Sample;
use genlab_nn::classifier::cross_entropy;
use genlab_nn::{Classifier, ClassifierConfig};

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{parse_config, Capabilities, ModelEntry, NONE};
use crate::run::LrDecay;
use crate::run::TrainConfig;
use crate::step::TrainStep;

pub struct ClassifierStep {
    cfg: ClassifierConfig,
    w: TrainedWeights,
    net: Classifier,
    ema_net: Classifier,
}

impl ClassifierStep {
    /// A fresh step with its weights on `device`.
    pub fn new(
        cfg: &ClassifierConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let (w, net, ema_net) =
            TrainedWeights::new(train, seed, device, |s| Ok(Classifier::new(cfg, s.vb())?))?;
        Ok(Self {
            cfg: cfg.clone(),
            w,
            net,
            ema_net,
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

    /// Labels, logits and mean cross-entropy (tensor and value, checked finite) on `batch`.
    fn forward_loss<'a>(&self, batch: &'a Batch) -> Result<(&'a Tensor, Tensor, Tensor, f64)> {
        let labels = self.labels(batch)?;
        let logits = self.net.forward(&batch.x)?;
        let loss = cross_entropy(&logits, labels)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {loss_v}")));
        }
        Ok((labels, logits, loss, loss_v))
    }
}

/// Accuracy and mean cross-entropy of `net` (whose weights are on `device`) on every
/// example of `data`.
pub fn evaluate(net: &Classifier, data: &dyn Dataset, device: &Device) -> Result<(f64, f64)> {
    const BATCH: usize = 500;
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    let mut start = 0;
    while start < data.len() {
        let idx: Vec<usize> = (start..(start + BATCH).min(data.len())).collect();
        let b = genlab_data::make_batch(data, &idx, device)?;
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
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, _rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (labels, logits, loss, loss_v) = self.forward_loss(batch)?;
        let acc = logits
            .detach()
            .argmax(1)?
            .eq(labels)?
            .to_dtype(candle_core::DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        let norm = self.w.apply(&loss.backward()?, lr)?;
        Ok(vec![
            ("loss".into(), loss_v),
            ("accuracy".into(), acc),
            ("grad_norm".into(), norm),
        ])
    }

    fn loss_and_grads(&self, batch: &Batch, _rng: &mut Rng) -> Result<(f64, GradStore)> {
        let (_, _, loss, loss_v) = self.forward_loss(batch)?;
        Ok((loss_v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        None
    }

    fn evaluate(&self, held_out: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let (acc, loss) = evaluate(&self.ema_net, held_out, self.w.device())?;
        Ok(vec![("accuracy".into(), acc), ("loss".into(), loss)])
    }
}

/// Parses and checks a `classifier` model config.
pub fn classifier_config(v: &serde_json::Value) -> Result<ClassifierConfig> {
    parse_config(v, "classifier", ClassifierConfig::validate)
}

/// Classifier preset: 3000 steps of 64 (3.2 MNIST epochs) reach ~99% test accuracy.
fn classifier_train() -> TrainConfig {
    TrainConfig {
        steps: 3000,
        batch_size: 64,
        lr: 1e-3, // Adam's usual rate; the CNN is shallow
        warmup_steps: 100,
        lr_decay: LrDecay::Constant,
        grad_clip: 0.0,   // cross-entropy on a small CNN does not need clipping
        ema_decay: 0.999, // the averaged weights generalise slightly better
        log_every: 50,
        ckpt_every: 1000,
        adamw: AdamWConfig::default(),
    }
}

/// The `classifier` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "classifier",
    prepare: None,
    description: "CNN digit classifier: genlab's feature extractor for FID/KID/IS on digit data (not generative)",
    caps: Capabilities {
        trains_fresh: true,
        feature_extractor: true,
        ..NONE
    },
    default_config: |d| {
        if !d.images || d.shape.len() != 3 {
            return Err(Error::InvalidInput(format!(
                "the classifier needs image data, got examples of shape {:?}",
                d.shape
            )));
        }
        crate::registry::config_value(&ClassifierConfig {
            input: [d.shape[0], d.shape[1], d.shape[2]],
            ..Default::default()
        })
    },
    default_train: |_| classifier_train(),
    build_step: |v, t, seed, device| Ok(Box::new(ClassifierStep::new(&classifier_config(v)?, t, seed, device)?)),
    load: |_, _, _| {
        Err(Error::InvalidInput(
            "`classifier` checkpoints do not generate samples; they serve as the feature \
             extractor of the sample metrics"
                .into(),
        ))
    },
};
