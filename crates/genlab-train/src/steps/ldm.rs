//! Training step for latent diffusion (Rombach et al. 2022, arXiv:2112.10752): the DDPM's
//! L_simple on `s * E(x)` of a frozen autoencoder run, AdamW, clipping, EMA; previews and
//! samples are decoded images. See `genlab_models::diffusion::ldm`.

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::Device;

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::diffusion::ldm::{latent_scale, Ldm, LdmConfig};
use genlab_models::diffusion::{Ddpm, DdpmConfig, NetConfig};
use genlab_models::{DataSpace, Sample};
use genlab_nn::UNetConfig;

use super::autoencoder::load_autoencoder;
use super::weights::TrainedWeights;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::TrainConfig;
use crate::step::TrainStep;

/// Training images the latent scale factor is measured on (LDM uses one batch).
const SCALE_EXAMPLES: usize = 5000;
/// Images per encoder call while measuring it.
const SCALE_BATCH: usize = 500;

pub struct LdmStep {
    w: TrainedWeights,
    model: Ldm,
    ema_model: Ldm,
}

impl LdmStep {
    pub fn new(cfg: &LdmConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        let (ae, _) = load_autoencoder(Path::new(&cfg.autoencoder), device)?;
        let (w, ddpm, ema_ddpm) =
            TrainedWeights::new(train, seed, device, |s| Ddpm::new(&cfg.ddpm, s.vb()))?;
        Ok(Self {
            w,
            model: Ldm::new(cfg, ddpm, ae.clone())?,
            ema_model: Ldm::new(cfg, ema_ddpm, ae)?,
        })
    }
}

impl TrainStep for LdmStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss_v, grads) = self.loss_and_grads(batch, rng)?;
        let norm = self.w.apply(&grads, lr)?;
        Ok(vec![("loss".into(), loss_v), ("grad_norm".into(), norm)])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let loss = self.model.loss(&batch.x, batch.labels.as_ref(), rng)?;
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

/// Parses and checks an `ldm` model config.
pub fn ldm_config(v: &serde_json::Value) -> Result<LdmConfig> {
    parse_config(v, "ldm", LdmConfig::validate)
}

/// The preset: the DDPM of images with a U-Net sized for small latents (7x7 for MNIST at
/// f = 4): base 64 channels, levels [1, 2] (7 -> 4), two blocks per level, attention at
/// the lowest level. Its `data` is the image space until the run is prepared.
fn default_config(d: &DataSpace) -> Result<serde_json::Value> {
    let mut ddpm = DdpmConfig::for_data(d);
    ddpm.net = NetConfig::Unet(UNetConfig {
        // 64: at 7x7 a wide network is still cheap (49 positions).
        base_channels: 64,
        // [1, 2]: 7 -> 4; a third level would be 2x2.
        channel_mult: vec![1, 2],
        // 2: DDPM's count per level.
        num_res_blocks: 2,
        attention_at_lowest: true,
        // 4 heads of 32 channels at the lowest level.
        heads: 4,
        groups: 8,
    });
    config_value(&LdmConfig {
        autoencoder: String::new(),
        scale_factor: None,
        ddpm,
        data: d.clone(),
    })
}

/// Reads the autoencoder run, checks it was trained on these images, sets the DDPM's data
/// space to its latents and measures the scale factor on the training data (unless set).
fn prepare(v: &mut serde_json::Value, data: &dyn Dataset) -> Result<()> {
    let mut cfg: LdmConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid ldm config: {e}")))?;
    if cfg.autoencoder.trim().is_empty() {
        return Err(Error::setting(
            "ldm.autoencoder",
            "is required: the run directory of a trained autoencoder, e.g. --set \
             ldm.autoencoder=runs/ae-mnist (train one with `genlab train --model autoencoder`)",
        ));
    }
    let (ae, ae_run) = load_autoencoder(Path::new(&cfg.autoencoder), &Device::Cpu)?;
    if ae.config().data != cfg.data {
        return Err(Error::Config(format!(
            "the autoencoder {} was trained on `{}` images of shape {:?}; this run's data `{}` \
             are {:?}",
            cfg.autoencoder,
            ae_run.data,
            ae.config().data.shape,
            data.name(),
            cfg.data.shape
        )));
    }
    cfg.ddpm.data = DataSpace {
        shape: ae.config().latent_shape(),
        images: false,
    };
    if cfg.scale_factor.is_none() {
        let n = data.len().min(SCALE_EXAMPLES);
        let mut rng = Rng::derive(0, "ldm-scale");
        let mut z = Vec::new();
        for start in (0..n).step_by(SCALE_BATCH) {
            let idx: Vec<usize> = (start..(start + SCALE_BATCH).min(n)).collect();
            let b = make_batch(data, &idx, &Device::Cpu)?;
            let s = ae.encode(&b.x)?.sample(&mut rng)?.detach();
            z.extend(s.flatten_all()?.to_vec1::<f32>()?);
        }
        cfg.scale_factor = Some(latent_scale(&z)?);
    }
    cfg.validate()?;
    *v = config_value(&cfg)?;
    Ok(())
}

/// The `ldm` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "ldm",
    prepare: Some(prepare),
    description: "latent diffusion (Rombach et al. 2022): a DDPM on a trained autoencoder's latents, decoded at the end",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        sampler_zoo: true,
        conditional: true,
        ..NONE
    },
    default_config,
    default_train: |_| TrainConfig::for_images(),
    build_step: |v, t, seed, device| Ok(Box::new(LdmStep::new(&ldm_config(v)?, t, seed, device)?)),
    load: |v, w, device| {
        let cfg = ldm_config(v)?;
        let (ae, _) = load_autoencoder(Path::new(&cfg.autoencoder), device)?;
        let ddpm = load_weights(w, device, |vb| Ddpm::new(&cfg.ddpm, vb))?;
        Ok(Box::new(Ldm::new(&cfg, ddpm, ae)?))
    },
};
