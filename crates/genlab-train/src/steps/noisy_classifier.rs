//! Training step of the noisy classifier of classifier guidance
//! (`genlab_models::diffusion::noisy_classifier`): cross-entropy on x_t at a random timestep
//! per example, AdamW, and an EMA copy of the weights (the one that guides).

use std::path::Path;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::diffusion::{NoisyClassifierConfig, NoisyClassifierModel};
use genlab_models::Sample;

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::{LrDecay, TrainConfig};
use crate::step::TrainStep;

pub struct NoisyClassifierStep {
    w: TrainedWeights,
    model: NoisyClassifierModel,
    ema: NoisyClassifierModel,
}

impl NoisyClassifierStep {
    pub fn new(
        cfg: &NoisyClassifierConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let (w, model, ema) = TrainedWeights::new(train, seed, device, |s| {
            NoisyClassifierModel::new(cfg, s.vb())
        })?;
        Ok(Self { w, model, ema })
    }

    fn loss(&self, batch: &Batch, rng: &mut Rng) -> Result<(Tensor, f64)> {
        let labels = batch
            .labels
            .as_ref()
            .ok_or_else(|| Error::Data("the noisy classifier needs labelled data".into()))?;
        let loss = self.model.loss(&batch.x, labels, rng)?;
        let v = loss.to_scalar::<f32>()? as f64;
        if !v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {v}")));
        }
        Ok((loss, v))
    }
}

/// Held-out examples per evaluation, and the timesteps accuracy is reported at (clean,
/// a quarter, half and three quarters of the way to noise).
const EVAL_EXAMPLES: usize = 2000;
const EVAL_FRACTIONS: [f64; 4] = [0.0, 0.25, 0.5, 0.75];

impl TrainStep for NoisyClassifierStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss, v) = self.loss(batch, rng)?;
        let norm = self.w.apply(&loss.backward()?, lr)?;
        Ok(vec![("loss".into(), v), ("grad_norm".into(), norm)])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let (loss, v) = self.loss(batch, rng)?;
        Ok((v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        None
    }

    /// Accuracy of the EMA classifier on held-out examples noised to a few timesteps.
    fn evaluate(&self, held_out: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let idx: Vec<usize> = (0..EVAL_EXAMPLES.min(held_out.len())).collect();
        let b = make_batch(held_out, &idx, self.w.device())?;
        let labels = b
            .labels
            .ok_or_else(|| Error::Data("held-out data without labels".into()))?;
        let t_max = self.ema.config().timesteps - 1;
        let mut rng = Rng::new(0);
        EVAL_FRACTIONS
            .iter()
            .map(|&f| {
                let t = (f * t_max as f64).round() as usize;
                Ok((
                    format!("accuracy_t{t}"),
                    self.ema.accuracy_at(&b.x, &labels, t, &mut rng)?,
                ))
            })
            .collect()
    }
}

/// Parses and checks a `noisy-classifier` model config.
pub fn noisy_classifier_config(v: &serde_json::Value) -> Result<NoisyClassifierConfig> {
    parse_config(v, "noisy-classifier", NoisyClassifierConfig::validate)
}

/// A noisy classifier loaded to guide sampling, and the dataset it was trained on.
pub struct LoadedClassifier {
    pub model: Arc<NoisyClassifierModel>,
    /// The training data's name (`mnist`, `eight-gaussians`, ...).
    pub data: String,
}

impl LoadedClassifier {
    /// Errors unless the classifier was trained on the same dataset as a model trained on
    /// `model_data` (splits aside: `mnist` and `mnist:train` are the same data).
    pub fn check_data(&self, model_data: &str) -> Result<()> {
        let base = |d: &str| d.split(':').next().unwrap_or(d).to_string();
        let same = if self.data.starts_with("folder:") || model_data.starts_with("folder:") {
            self.data == model_data
        } else {
            base(&self.data) == base(model_data)
        };
        if same {
            Ok(())
        } else {
            Err(Error::setting(
                "classifier",
                format!(
                    "was trained on `{}`, the model on `{model_data}`; train the classifier on \
                     the model's data",
                    self.data
                ),
            ))
        }
    }
}

/// Loads a noisy-classifier run (EMA weights) on `device`, to guide sampling.
pub fn load_noisy_classifier(path: &Path, device: &Device) -> Result<LoadedClassifier> {
    let saved = crate::registry::read_run(path, &[ENTRY.name], "a noisy classifier")?;
    let run = &saved.run;
    let cfg = noisy_classifier_config(&run.model_config)?;
    let m = load_weights(&saved.ema_weights(), device, |vb| {
        NoisyClassifierModel::new(&cfg, vb)
    })?;
    Ok(LoadedClassifier {
        model: Arc::new(m),
        data: run.data.clone(),
    })
}

/// Preset: Adam at 1e-3 on batches of 128 (points 512); its accuracy at mid noise levels
/// matters more than at the clean end.
fn noisy_classifier_train(d: &genlab_models::DataSpace) -> TrainConfig {
    TrainConfig {
        steps: if d.images { 5000 } else { 3000 },
        batch_size: if d.images { 128 } else { 512 },
        lr: 1e-3, // Adam's usual rate for a small network
        warmup_steps: 100,
        lr_decay: LrDecay::Cosine,
        grad_clip: 1.0, // as the diffusion models it guides
        ema_decay: 0.999,
        log_every: 50,
        ckpt_every: 1000,
        adamw: AdamWConfig::default(),
    }
}

/// The `noisy-classifier` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "noisy-classifier",
    prepare: None,
    description: "time-conditional classifier of noisy x_t (Dhariwal & Nichol 2021) that guides a ddpm: genlab sample --classifier RUN",
    caps: Capabilities {
        trains_fresh: true,
        needs_labels: true,
        ..NONE
    },
    default_config: |d| config_value(&NoisyClassifierConfig::for_data(d)),
    default_train: noisy_classifier_train,
    build_step: |v, t, seed, device| Ok(Box::new(NoisyClassifierStep::new(&noisy_classifier_config(v)?, t, seed, device)?)),
    load: |_, _, _| {
        Err(Error::InvalidInput(
            "`noisy-classifier` checkpoints do not generate samples; they guide a diffusion \
             model's sampling"
                .into(),
        ))
    },
};
