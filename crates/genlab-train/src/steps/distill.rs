//! Training step of one progressive-distillation round (Salimans & Ho 2022, Algorithm 2;
//! the loss is `genlab_models::diffusion::distill::distillation_loss`). The teacher is a
//! frozen copy of a `ddpm` run's or an earlier round's EMA weights; the student starts as
//! another copy and keeps its own AdamW and EMA like any diffusion model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use serde_json::Value;

use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_data::Batch;
use genlab_models::diffusion::distill::distillation_loss;
use genlab_models::diffusion::{Ddpm, DdpmConfig, DistillConfig, DistilledDdpm};
use genlab_models::Sample;

use super::weights::TrainedWeights;
use crate::registry::{load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::{RunConfig, TrainConfig};
use crate::step::{strip_prefix, TrainStep};

/// Parses and checks a `distill` model config.
pub fn distill_config(v: &Value) -> Result<DistillConfig> {
    parse_config(v, "distill", DistillConfig::validate)
}

/// A diffusion checkpoint that can teach: its run, its network config, its EMA weights, and
/// the sampling steps it was distilled for (`None` for a plain `ddpm` run).
pub struct Teacher {
    pub run: RunConfig,
    pub ddpm: DdpmConfig,
    pub steps: Option<usize>,
    pub weights: HashMap<String, Tensor>,
}

/// Reads a teacher from a run directory or checkpoint file: a `ddpm` run or a `distill`
/// round; anything else is an error that says so.
pub fn read_teacher(path: &Path) -> Result<Teacher> {
    let file = crate::registry::checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no teacher checkpoint at {} (expected the run directory of a `ddpm` model, or a \
             distillation round)",
            path.display()
        )));
    }
    let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (run, _) = crate::trainer::parse_metadata(&meta, &file)?;
    let (ddpm, steps) = match run.model.as_str() {
        "ddpm" => (super::diffusion::ddpm_config(&run.model_config)?, None),
        "distill" => {
            let d = distill_config(&run.model_config)?;
            (d.ddpm, Some(d.student_steps))
        }
        other => {
            return Err(Error::InvalidInput(format!(
                "{} holds a `{other}` model; distillation needs a diffusion model (`ddpm`) or \
                 a distilled student",
                file.display()
            )))
        }
    };
    Ok(Teacher {
        run,
        ddpm,
        steps,
        weights: strip_prefix(&tensors, "ema"),
    })
}

pub struct DistillStep {
    w: TrainedWeights,
    student: Ddpm,
    ema: DistilledDdpm,
    teacher: Ddpm,
    steps: usize,
}

impl DistillStep {
    /// A fresh round: the teacher named in `cfg` is read, and the student (live and EMA
    /// weights) starts as a copy of it.
    pub fn new(
        cfg: &DistillConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let t = read_teacher(Path::new(&cfg.teacher))?;
        if t.ddpm != cfg.ddpm {
            return Err(Error::Config(format!(
                "the teacher {} no longer has the network this round was started with",
                cfg.teacher
            )));
        }
        if let Some(k) = t.steps {
            if k != cfg.teacher_steps() {
                return Err(Error::Config(format!(
                    "the teacher {} is a student of {k} steps; a student of {} steps needs one of {}",
                    cfg.teacher,
                    cfg.student_steps,
                    cfg.teacher_steps()
                )));
            }
        }
        let teacher_store = ParamStore::new(0, device);
        let teacher = Ddpm::new(&cfg.ddpm, teacher_store.vb())?;
        teacher_store.load(&t.weights)?;
        let (w, student, ema_model) =
            TrainedWeights::new(train, seed, device, |s| Ddpm::new(&cfg.ddpm, s.vb()))?;
        w.store.load(&t.weights)?;
        w.ema_store.load(&t.weights)?;
        // The EMA starts at the teacher's averaged weights: keep it, instead of letting the
        // decay warm-up replace it with the first, noisiest student steps. (With the
        // warm-up, MNIST students after one round of 1000 steps at lr 5e-4 were visibly
        // noisier than their teacher.)
        let w = w.without_ema_warmup();
        Ok(Self {
            w,
            student,
            ema: DistilledDdpm {
                model: ema_model,
                steps: cfg.student_steps,
            },
            teacher,
            steps: cfg.student_steps,
        })
    }
}

impl TrainStep for DistillStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss_v, grads) = self.loss_and_grads(batch, rng)?;
        let norm = self.w.apply(&grads, lr)?;
        Ok(vec![("loss".into(), loss_v), ("grad_norm".into(), norm)])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let loss = distillation_loss(&self.student, &self.teacher, self.steps, &batch.x, rng)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the distillation loss is {loss_v}")));
        }
        Ok((loss_v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema)
    }
}

/// Trainer settings of one round: the teacher's batch and EMA, its learning rate halved
/// (the student starts at a good solution), no warm-up, and 2000 updates per round, so that
/// halving the steps 6 times (256 -> 4) stays within a CPU budget.
pub fn distill_train(teacher: &TrainConfig) -> TrainConfig {
    TrainConfig {
        steps: 2000,
        lr: teacher.lr * 0.5,
        warmup_steps: 0,
        ckpt_every: 500,
        ..teacher.clone()
    }
}

/// The `distill` registry entry: a round of the distillation ladder (`crate::ladder`).
pub const ENTRY: ModelEntry = ModelEntry {
    name: crate::ladder::ROUND_MODEL,
    prepare: None,
    description: "a progressive-distillation round (Salimans & Ho 2022); made by `genlab distill` from a ddpm run",
    caps: Capabilities {
        generates: true,
        sampler_zoo: true,
        likelihood: true,
        distillable: true,
        ..NONE
    },
    default_config: |_| {
        Err(Error::InvalidInput(
            "a distilled student is made from a teacher run by the distillation ladder \
             (`genlab distill`), not trained from scratch"
                .into(),
        ))
    },
    default_train: |d| {
        distill_train(&if d.images {
            TrainConfig::for_images()
        } else {
            TrainConfig::for_points()
        })
    },
    build_step: |v, t, seed, device| Ok(Box::new(DistillStep::new(&distill_config(v)?, t, seed, device)?)),
    load: |v, w, device| {
        let cfg = distill_config(v)?;
        let model = load_weights(w, device, |vb| Ddpm::new(&cfg.ddpm, vb))?;
        Ok(Box::new(DistilledDdpm {
            model,
            steps: cfg.student_steps,
        }))
    },
};
