//! The one list of trainable models. Adding a model: its file in genlab-models, its
//! `TrainStep`, and one entry in [`MODELS`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

use genlab_core::{Error, ParamStore, Result};
use genlab_models::diffusion::{Ddpm, DdpmConfig};
use genlab_models::gan::{Gan, GanConfig};
use genlab_models::vae::{Vae, VaeConfig};
use genlab_models::{DataSpace, Sample};

use crate::optim::AdamWConfig;
use genlab_nn::{Classifier, ClassifierConfig};

use crate::run::{LrDecay, RunConfig, TrainConfig};
use crate::step::{strip_prefix, TrainStep};

/// Builds a model for sampling from its config and weights, on a device.
pub type LoadFn = fn(&Value, &HashMap<String, Tensor>, &Device) -> Result<Box<dyn Sample>>;

/// Builds a fresh training step from a resolved config, trainer settings, seed and device.
pub type BuildStepFn = fn(&Value, &TrainConfig, u64, &Device) -> Result<Box<dyn TrainStep>>;

pub struct ModelEntry {
    pub name: &'static str,
    pub description: &'static str,
    /// The model's default config for this data (its preset).
    pub default_config: fn(&DataSpace) -> Result<Value>,
    /// Default trainer settings for this data.
    pub default_train: fn(&DataSpace) -> TrainConfig,
    /// Builds a fresh training step from a resolved config, seed and device.
    pub build_step: BuildStepFn,
    /// Builds the model for sampling from a config and weights (names without prefix), on
    /// a device.
    pub load: LoadFn,
}

pub(crate) fn ddpm_config(v: &Value) -> Result<DdpmConfig> {
    let cfg: DdpmConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid ddpm config: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

fn classifier_config(v: &Value) -> Result<ClassifierConfig> {
    let cfg: ClassifierConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid classifier config: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
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
        adamw: Default::default(),
    }
}

fn vae_config(v: &Value) -> Result<VaeConfig> {
    let cfg: VaeConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid vae config: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

fn gan_config(v: &Value) -> Result<GanConfig> {
    let cfg: GanConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid gan config: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
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

/// GAN preset: Adam with beta1 = 0.5 at 2e-4 (Radford et al. 2016, Sec. 4) for both players.
fn gan_train(d: &DataSpace) -> TrainConfig {
    TrainConfig {
        steps: 10_000,
        batch_size: if d.images { 64 } else { 256 },
        lr: 2e-4,
        warmup_steps: 0, // GAN recipes use a constant rate
        lr_decay: LrDecay::Constant,
        grad_clip: 0.0, // clipping would change the game (and WGAN clips weights instead)
        ema_decay: if d.images { 0.999 } else { 0.99 },
        log_every: 50,
        ckpt_every: 1000,
        adamw: AdamWConfig {
            beta1: 0.5, // Radford et al. 2016: 0.9 oscillates
            ..AdamWConfig::default()
        },
    }
}

pub const MODELS: &[ModelEntry] = &[ModelEntry {
    name: "ddpm",
    description: "denoising diffusion (Ho et al. 2020): MLP denoiser for points, U-Net for images",
    default_config: |d| Ok(serde_json::to_value(DdpmConfig::for_data(d)).expect("serialisable")),
    default_train: |d| {
        if d.images {
            TrainConfig::for_images()
        } else {
            TrainConfig::for_points()
        }
    },
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::diffusion::DiffusionStep::new(
            &ddpm_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: |v, w, device| {
        let ps = ParamStore::new(0, device);
        let m = Ddpm::new(&ddpm_config(v)?, ps.vb())?;
        ps.load(w)?;
        Ok(Box::new(m))
    },
}, ModelEntry {
    name: "distill",
    description: "a progressive-distillation round (Salimans & Ho 2022); made by `genlab distill --teacher RUN`",
    default_config: |_| {
        Err(Error::InvalidInput(
            "a distilled student needs a teacher: run `genlab distill --teacher RUN --out DIR`".into(),
        ))
    },
    default_train: |d| crate::steps::distill::distill_train(&if d.images {
        TrainConfig::for_images()
    } else {
        TrainConfig::for_points()
    }),
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::distill::DistillStep::new(
            &crate::steps::distill::distill_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: |v, w, device| {
        let cfg = crate::steps::distill::distill_config(v)?;
        let ps = ParamStore::new(0, device);
        let model = Ddpm::new(&cfg.ddpm, ps.vb())?;
        ps.load(w)?;
        Ok(Box::new(genlab_models::diffusion::DistilledDdpm {
            model,
            steps: cfg.student_steps,
        }))
    },
}, ModelEntry {
    name: "classifier",
    description: "CNN digit classifier: genlab's feature extractor for FID/KID/IS on digit data (not generative)",
    default_config: |d| {
        if !d.images || d.shape.len() != 3 {
            return Err(Error::InvalidInput(format!(
                "the classifier needs image data, got examples of shape {:?}",
                d.shape
            )));
        }
        let cfg = ClassifierConfig {
            input: [d.shape[0], d.shape[1], d.shape[2]],
            ..Default::default()
        };
        Ok(serde_json::to_value(cfg).expect("serialisable"))
    },
    default_train: |_| classifier_train(),
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::classifier::ClassifierStep::new(
            &classifier_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: |_, _, _| {
        Err(Error::InvalidInput(
            "`classifier` checkpoints do not generate samples; use them as the feature \
             extractor of `genlab eval --features CKPT`"
                .into(),
        ))
    },
}, ModelEntry {
    name: "vae",
    description: "variational autoencoder (Kingma & Welling 2014), IWAE likelihood bound; MLP or conv, optionally class-conditional",
    default_config: |d| Ok(serde_json::to_value(VaeConfig::for_data(d)).expect("serialisable")),
    default_train: vae_train,
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::vae::VaeStep::new(&vae_config(v)?, t, seed, device)?))
    },
    load: |v, w, device| {
        let ps = ParamStore::new(0, device);
        let m = Vae::new(&vae_config(v)?, ps.vb())?;
        ps.load(w)?;
        Ok(Box::new(m))
    },
}, ModelEntry {
    name: "gan",
    description: "GANs: gan.loss = minimax | non-saturating | lsgan | wgan | wgan-gp | ebgan; MLP or DCGAN nets",
    default_config: |d| Ok(serde_json::to_value(GanConfig::for_data(d)).expect("serialisable")),
    default_train: gan_train,
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::gan::GanStep::new(&gan_config(v)?, t, seed, device)?))
    },
    load: |v, w, device| {
        let ps = ParamStore::new(0, device);
        let m = Gan::new(&gan_config(v)?, ps.vb())?;
        ps.load(w)?;
        Ok(Box::new(m))
    },
}, ModelEntry {
    name: "flow",
    description: "normalizing flows: flow.coupling = affine (RealNVP/Glow) | additive (NICE) | spline | maf | iaf; multi-scale on images; exact likelihood",
    default_config: |d| Ok(serde_json::to_value(genlab_models::flow::FlowConfig::for_data(d)).expect("serialisable")),
    default_train: crate::steps::flow::flow_train,
    build_step: |v, t, seed, device| {
        Ok(Box::new(crate::steps::flow::FlowStep::new(
            &crate::steps::flow::flow_config(v)?,
            t,
            seed,
            device,
        )?))
    },
    load: crate::steps::flow::load_flow,
}];

pub fn model_names() -> Vec<(&'static str, &'static str)> {
    MODELS.iter().map(|m| (m.name, m.description)).collect()
}

pub fn find_model(name: &str) -> Result<&'static ModelEntry> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        Error::InvalidInput(format!(
            "unknown model `{name}` (known: {})",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The checkpoint file of a run directory (or the file itself).
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(crate::trainer::CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// A model restored from a checkpoint, ready to sample.
pub struct LoadedModel {
    pub run: RunConfig,
    pub step: u64,
    pub model: Box<dyn Sample>,
}

/// Loads a run directory or checkpoint file onto `device` (whatever device it was trained
/// on); `ema` picks the EMA weights (the default for sampling) over the raw ones.
pub fn load_model(path: &Path, ema: bool, device: &Device) -> Result<LoadedModel> {
    let file = checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no checkpoint at {} (expected a run directory written by `genlab train --out`, \
             or its {} file)",
            path.display(),
            crate::trainer::CHECKPOINT_FILE
        )));
    }
    // Read on the host: only the half of the tensors picked below goes to `device`.
    let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (run, state) = crate::trainer::parse_metadata(&meta, &file)?;
    let entry = find_model(&run.model)?;
    let weights = strip_prefix(&tensors, if ema { "ema" } else { "model" });
    let model = (entry.load)(&run.model_config, &weights, device)?;
    Ok(LoadedModel {
        run,
        step: state.step,
        model,
    })
}

/// Loads a classifier run (EMA weights) as a network, with its run config.
pub fn load_classifier(path: &Path) -> Result<(Classifier, RunConfig)> {
    let file = checkpoint_path(path);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no classifier checkpoint at {} (train one with `genlab train --model classifier \
             --data mnist --out DIR`)",
            path.display()
        )));
    }
    let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (run, _) = crate::trainer::parse_metadata(&meta, &file)?;
    if run.model != "classifier" {
        return Err(Error::Checkpoint(format!(
            "{} holds a `{}` model, not a classifier",
            file.display(),
            run.model
        )));
    }
    let cfg = classifier_config(&run.model_config)?;
    let ps = ParamStore::new(0, &Device::Cpu);
    let net = Classifier::new(&cfg, ps.vb())?;
    ps.load(&strip_prefix(&tensors, "ema"))?;
    Ok((net, run))
}
