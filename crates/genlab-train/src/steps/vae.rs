//! Training step for the VAE: one reparameterised sample per example, the negative
//! (beta-)ELBO as the loss, AdamW, clipping and an EMA copy used for sampling.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::vae::{Vae, VaeConfig};
use genlab_models::{Figure, Sample};

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::LrDecay;
use crate::run::TrainConfig;
use crate::step::TrainStep;
use genlab_models::DataSpace;

/// Held-out examples per evaluation batch.
const EVAL_BATCH: usize = 1000;
/// Held-out examples the figures are drawn from (the latent scatter shows all of them).
const FIGURE_EXAMPLES: usize = 2000;

pub struct VaeStep {
    w: TrainedWeights,
    model: Vae,
    ema_model: Vae,
}

impl VaeStep {
    pub fn new(cfg: &VaeConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        let (w, model, ema_model) =
            TrainedWeights::new(train, seed, device, |s| Vae::new(cfg, s.vb()))?;
        Ok(Self {
            w,
            model,
            ema_model,
        })
    }
}

impl TrainStep for VaeStep {
    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let t = self.model.elbo(&batch.x, batch.labels.as_ref(), rng)?;
        let loss = t.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Err(Error::Numeric(format!("the VAE loss is {loss}")));
        }
        let norm = self.w.apply(&t.loss.backward()?, lr)?;
        Ok(vec![
            ("loss".into(), loss),
            ("elbo".into(), t.elbo),
            ("rec".into(), t.rec),
            ("kl".into(), t.kl),
            ("grad_norm".into(), norm),
        ])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let t = self.model.elbo(&batch.x, batch.labels.as_ref(), rng)?;
        Ok((t.loss.to_scalar::<f32>()? as f64, t.loss.backward()?))
    }

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.w.store.vars()
    }

    fn state_tensors(&self) -> HashMap<String, Tensor> {
        self.w.state_tensors()
    }

    fn state_json(&self) -> serde_json::Value {
        self.w.state_json()
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, j: &serde_json::Value) -> Result<()> {
        self.w.load_state(t, j)
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema_model)
    }

    /// The single-sample ELBO of the EMA model on the whole held-out set (nats per example;
    /// `genlab eval --metrics nll` gives the tighter IWAE bound).
    fn evaluate(&self, held: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let mut rng = Rng::new(0);
        let (mut sum, mut n) = (0.0, 0usize);
        let dev = self.w.device().clone();
        for start in (0..held.len()).step_by(EVAL_BATCH) {
            let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(held.len())).collect();
            let b = make_batch(held, &idx, &dev)?;
            let t = self.ema_model.elbo(&b.x, b.labels.as_ref(), &mut rng)?;
            sum += t.elbo * idx.len() as f64;
            n += idx.len();
        }
        Ok(vec![("test_elbo_nats".into(), sum / n.max(1) as f64)])
    }

    fn figures(&self, held: &dyn Dataset) -> Result<Vec<Figure>> {
        let m = held.len().min(FIGURE_EXAMPLES);
        let idx: Vec<usize> = (0..m).collect();
        let b = make_batch(held, &idx, self.w.device())?;
        self.ema_model.figures(&b.x, b.labels.as_ref())
    }

    fn device(&self) -> &Device {
        self.w.device()
    }

    fn num_params(&self) -> usize {
        self.w.num_params()
    }
}

/// Parses and checks a `vae` model config.
pub fn vae_config(v: &serde_json::Value) -> Result<VaeConfig> {
    parse_config(v, "vae", VaeConfig::validate)
}

/// VAE preset: Adam at 1e-3 (Kingma & Welling's experiments use Adagrad/Adam at this
/// scale); batch 128; for MNIST 30k steps = 64 epochs.
fn vae_train(d: &DataSpace) -> TrainConfig {
    TrainConfig {
        steps: if d.images { 30_000 } else { 5000 },
        batch_size: if d.images { 128 } else { 512 },
        lr: 1e-3,
        warmup_steps: 100,
        lr_decay: LrDecay::Constant,
        grad_clip: 100.0, // only guards against rare blow-ups of the Gaussian decoder
        ema_decay: 0.999,
        log_every: 50,
        ckpt_every: 2000,
        adamw: AdamWConfig::default(),
    }
}

/// The `vae` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "vae",
    prepare: None,
    description: "variational autoencoder (Kingma & Welling 2014), IWAE likelihood bound; MLP or conv, optionally class-conditional",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        likelihood: true,
        conditional: true,
        ..NONE
    },
    default_config: |d| config_value(&VaeConfig::for_data(d)),
    default_train: vae_train,
    build_step: |v, t, seed, device| Ok(Box::new(VaeStep::new(&vae_config(v)?, t, seed, device)?)),
    load: |v, w, device| {
        let cfg = vae_config(v)?;
        Ok(Box::new(load_weights(w, device, |vb| Vae::new(&cfg, vb))?))
    },
};
