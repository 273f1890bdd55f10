//! Training step for the first-stage autoencoder of latent diffusion (Rombach et al. 2022,
//! arXiv:2112.10752): the reconstruction + KL loss of `genlab_models::autoencoder`, AdamW,
//! clipping and an EMA copy (the one evaluated, reconstructed with and encoded by LDMs).

use candle_core::backprop::GradStore;
use candle_core::Device;

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::autoencoder::{Autoencoder, AutoencoderConfig};
use genlab_models::{DataSpace, Figure, Sample};

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{config_value, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::{LrDecay, TrainConfig};
use crate::step::TrainStep;

/// Held-out examples per evaluation batch.
const EVAL_BATCH: usize = 500;
/// Held-out examples the end-of-training PSNR is measured on (`genlab eval` does all).
const EVAL_EXAMPLES: usize = 2000;

pub struct AutoencoderStep {
    w: TrainedWeights,
    model: Autoencoder,
    ema_model: Autoencoder,
}

impl AutoencoderStep {
    pub fn new(
        cfg: &AutoencoderConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let (w, model, ema_model) =
            TrainedWeights::new(train, seed, device, |s| Autoencoder::new(cfg, s.vb()))?;
        Ok(Self {
            w,
            model,
            ema_model,
        })
    }
}

impl TrainStep for AutoencoderStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let l = self.model.loss(&batch.x, rng)?;
        let loss = l.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Err(Error::Numeric(format!("the autoencoder loss is {loss}")));
        }
        let norm = self.w.apply(&l.loss.backward()?, lr)?;
        let mut m = vec![
            ("loss".into(), loss),
            ("rec".into(), l.rec),
            ("kl".into(), l.kl),
            ("grad_norm".into(), norm),
        ];
        if let (Some(vq), Some(q)) = (&l.vq, self.model.quantizer()) {
            // The codebook follows its EMA after the optimiser step (not in gradient mode).
            if q.config().ema {
                let s = q.ema_update(&vq.z, &vq.indices, rng)?;
                m.push(("codes_restarted".into(), s.restarted as f64));
            }
            m.push(("code_perplexity".into(), vq.perplexity));
            m.push(("code_usage".into(), vq.usage));
        }
        Ok(m)
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let l = self.model.loss(&batch.x, rng)?;
        Ok((l.loss.to_scalar::<f32>()? as f64, l.loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        None
    }

    /// PSNR (dB, peak 1) of the EMA model's reconstructions of the first held-out examples.
    fn evaluate(&self, held: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let n = held.len().min(EVAL_EXAMPLES);
        let (mut sum, dev) = (0.0, self.w.device().clone());
        let q = self.ema_model.quantizer();
        let mut usage = q.map(|q| genlab_nn::CodebookUsage::new(q.config().codebook_size));
        for start in (0..n).step_by(EVAL_BATCH) {
            let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(n)).collect();
            let b = make_batch(held, &idx, &dev)?;
            let rec = self.ema_model.reconstruct(&b.x)?.detach();
            let a: Vec<f32> = b.x.flatten_all()?.to_vec1()?;
            let r: Vec<f32> = rec.flatten_all()?.to_vec1()?;
            sum += genlab_metrics::psnr::psnr(&a, &r, idx.len(), 1.0)? * idx.len() as f64;
            if let (Some(q), Some(u)) = (q, usage.as_mut()) {
                let z = self.ema_model.encode(&b.x)?.mean.detach();
                u.add(&q.forward(&z)?.indices)?;
            }
        }
        let mut m = vec![(format!("test_psnr_db_first{n}"), sum / n.max(1) as f64)];
        if let Some(u) = usage {
            m.push(("test_codebook_used_fraction".into(), u.used_fraction()));
            m.push(("test_code_perplexity".into(), u.perplexity()));
        }
        Ok(m)
    }

    fn figures(&self, held: &dyn Dataset) -> Result<Vec<Figure>> {
        let idx: Vec<usize> = (0..held.len().min(32)).collect();
        let b = make_batch(held, &idx, self.w.device())?;
        self.ema_model.figures(&b.x)
    }
}

/// Parses and checks an `autoencoder` model config.
pub fn autoencoder_config(v: &serde_json::Value) -> Result<AutoencoderConfig> {
    parse_config(v, "autoencoder", AutoencoderConfig::validate)
}

/// Autoencoder preset: batch 32, AdamW at 5e-4 with a cosine decay; the sum-over-pixels
/// loss makes gradient norms in the hundreds, so clipping only guards against blow-ups.
fn autoencoder_train(_: &DataSpace) -> TrainConfig {
    TrainConfig {
        steps: 4000,
        batch_size: 32,
        lr: 5e-4,
        warmup_steps: 200,
        lr_decay: LrDecay::Cosine,
        grad_clip: 1e4,
        ema_decay: 0.999,
        log_every: 20,
        ckpt_every: 250,
        adamw: AdamWConfig::default(),
    }
}

/// The `autoencoder` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "autoencoder",
    prepare: None,
    description: "first-stage autoencoder of latent diffusion (Rombach et al. 2022): KL-regularised, f = 2^(levels-1)",
    caps: Capabilities {
        trains_fresh: true,
        ..NONE
    },
    default_config: |d| {
        let c = AutoencoderConfig::for_data(d);
        c.validate()?;
        config_value(&c)
    },
    default_train: autoencoder_train,
    build_step: |v, t, seed, device| {
        Ok(Box::new(AutoencoderStep::new(
            &autoencoder_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: |_, _, _| {
        Err(Error::InvalidInput(
            "`autoencoder` checkpoints do not generate samples; use `genlab reconstruct \
             --autoencoder RUN`, `genlab eval --ckpt RUN --metrics psnr,ssim,rfid`, or train a \
             latent diffusion model on them (`genlab train --model ldm --set ldm.autoencoder=RUN`)"
                .into(),
        ))
    },
};

/// Loads an `autoencoder` run (EMA weights) onto `device`, with its run config.
pub fn load_autoencoder(
    path: &std::path::Path,
    device: &Device,
) -> Result<(Autoencoder, crate::RunConfig)> {
    let saved = crate::registry::read_run(path, &[ENTRY.name], "an autoencoder")?;
    let cfg = autoencoder_config(&saved.run.model_config)?;
    let ae = crate::registry::load_weights(&saved.ema_weights(), device, |vb| {
        Autoencoder::new(&cfg, vb)
    })?;
    Ok((ae, saved.run))
}
