//! Training step for diffusion models (DDPM, L_simple), with AdamW, global-norm gradient
//! clipping and an EMA copy of the weights used for sampling (Ho et al. 2020, App. B).

use candle_core::backprop::GradStore;
use candle_core::Device;

use genlab_core::{Error, Result, Rng};
use genlab_data::Batch;
use genlab_models::{diffusion::Ddpm, diffusion::DdpmConfig, Sample};

use super::weights::TrainedWeights;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::TrainConfig;
use crate::step::TrainStep;

pub struct DiffusionStep {
    w: TrainedWeights,
    model: Ddpm,
    ema_model: Ddpm,
}

impl DiffusionStep {
    /// A fresh step with its weights on `device`.
    pub fn new(cfg: &DdpmConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        let (w, model, ema_model) =
            TrainedWeights::new(train, seed, device, |s| Ddpm::new(cfg, s.vb()))?;
        Ok(Self {
            w,
            model,
            ema_model,
        })
    }
}

impl TrainStep for DiffusionStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss_v, grads) = self.loss_and_grads(batch, rng)?;
        let norm = self.w.apply(&grads, lr)?;
        Ok(vec![("loss".into(), loss_v), ("grad_norm".into(), norm)])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let loss = self
            .model
            .loss_labeled(&batch.x, batch.labels.as_ref(), rng)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {loss_v}")));
        }
        Ok((loss_v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema_model)
    }
}

/// Parses and checks a `ddpm` model config.
pub fn ddpm_config(v: &serde_json::Value) -> Result<DdpmConfig> {
    parse_config(v, "ddpm", DdpmConfig::validate)
}

/// The `ddpm` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "ddpm",
    prepare: None,
    description: "denoising diffusion (Ho et al. 2020): MLP denoiser for points, U-Net (or DiT) for images, video DiT for clips",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        sampler_zoo: true,
        likelihood: true,
        conditional: true,
        distillable: true,
        video: true,
        ..NONE
    },
    default_config: |d| config_value(&DdpmConfig::for_data(d)),
    default_train: |d| {
        if d.images {
            TrainConfig::for_images()
        } else {
            TrainConfig::for_points()
        }
    },
    build_step: |v, t, seed, device| {
        Ok(Box::new(DiffusionStep::new(
            &ddpm_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: |v, w, device| {
        let cfg = ddpm_config(v)?;
        Ok(Box::new(load_weights(w, device, |vb| Ddpm::new(&cfg, vb))?))
    },
};
