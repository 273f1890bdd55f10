//! The resolved configuration of a training run: what is saved beside every checkpoint.
//!
//! As a tree it reads `{ model, data, seed, train: {...}, <model>: {...} }`, so overrides
//! are `--set train.lr=2e-4` or `--set ddpm.timesteps=500`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Error, Result};

use crate::optim::AdamWConfig;

/// How the learning rate falls after the warm-up.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LrDecay {
    /// The peak rate until the end (saved configs without the key load as this).
    #[default]
    Constant,
    /// Half a cosine from the peak to 0 at `train.steps` (Loshchilov & Hutter 2017,
    /// arXiv:1608.03983, Eq. 5 with one cycle and eta_min = 0).
    Cosine,
    /// A straight line from the peak to 0 at `train.steps`.
    Linear,
}

impl LrDecay {
    /// The fraction of the peak rate left after a fraction `p` of the decay (clamped to
    /// [0, 1]): 1 throughout for constant, `(1 + cos(pi p)) / 2` for cosine, `1 - p` for
    /// linear.
    pub fn factor(self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        match self {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            LrDecay::Linear => 1.0 - p,
        }
    }
}

/// Trainer settings shared by every family.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Total optimisation steps (a resumed run continues up to this number).
    pub steps: u64,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear learning-rate warm-up from 0 over this many steps.
    pub warmup_steps: u64,
    /// After the warm-up: constant, cosine or linear decay to 0 at `steps`. A decay ties
    /// the rate to `steps`, so resuming with a larger `--steps` stretches the rest of it.
    pub lr_decay: LrDecay,
    /// Clip the global gradient norm to this value (0 disables).
    pub grad_clip: f64,
    /// EMA decay of the weights used for sampling.
    pub ema_decay: f64,
    /// Write a JSONL log line (mean of the metrics since the last line) every N steps.
    pub log_every: u64,
    /// Save a checkpoint every N steps (and always at the end and on Ctrl-C).
    pub ckpt_every: u64,
    pub adamw: AdamWConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::for_points()
    }
}

impl TrainConfig {
    /// Preset for 2-D toy data: large batches are cheap, a high learning rate converges fast.
    pub fn for_points() -> Self {
        Self {
            steps: 3000,       // enough for eight gaussians (see the README's table)
            batch_size: 512,   // 2-D points are cheap; big batches lower the loss noise
            lr: 1e-3,          // MLPs on toy data train well at Adam's usual 1e-3
            warmup_steps: 100, // avoids early Adam steps with poor second-moment estimates
            lr_decay: LrDecay::Constant,
            grad_clip: 1.0,   // Ho et al. 2020 clip at 1 (App. B)
            ema_decay: 0.995, // short runs: a long EMA would lag the weights
            log_every: 10,
            ckpt_every: 1000,
            adamw: AdamWConfig::default(),
        }
    }

    /// Preset for small images (8x8 digits, MNIST).
    pub fn for_images() -> Self {
        Self {
            steps: 10_000,     // a CPU budget; longer is better
            batch_size: 64,    // fits the 2-core CPU budget per step
            lr: 5e-4, // small U-Nets tolerate more than Ho et al.'s 2e-4 and converge sooner
            warmup_steps: 200, // stabilises the first Adam steps
            lr_decay: LrDecay::Constant,
            grad_clip: 1.0,   // Ho et al. 2020 clip at 1 (App. B)
            ema_decay: 0.999, // Ho et al. use 0.9999 over 800k steps; shorter runs need less
            log_every: 10,
            ckpt_every: 500,
            adamw: AdamWConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 {
            return bad("train.batch_size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("train.lr must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!(
                "train.ema_decay must be in [0, 1), got {}",
                self.ema_decay
            ));
        }
        if self.log_every == 0 || self.ckpt_every == 0 {
            return bad("train.log_every and train.ckpt_every must be at least 1".into());
        }
        if self.grad_clip < 0.0 {
            return bad(format!(
                "train.grad_clip must be >= 0 (0 disables), got {}",
                self.grad_clip
            ));
        }
        Ok(())
    }

    /// Learning rate at (0-based) step `step`: linear warm-up, then `lr_decay`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.lr
            * self
                .lr_decay
                .factor((step - self.warmup_steps) as f64 / span)
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub model: String,
    pub data: String,
    pub seed: u64,
    /// Image side the data were read at, for data that resize (image folders); `None`
    /// for data of a fixed size.
    pub image_size: Option<usize>,
    /// Channels the data were read with, for data that convert (image folders).
    pub channels: Option<usize>,
    pub train: TrainConfig,
    /// The model's own config, owned (and type-checked) by its registry entry.
    pub model_config: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Base {
    model: String,
    data: String,
    seed: u64,
    // Absent from runs on fixed-size data (and from runs made before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channels: Option<usize>,
    train: TrainConfig,
}

impl RunConfig {
    /// `{ model, data, seed, train, <model>: model_config }`.
    pub fn to_tree(&self) -> Value {
        let mut v = serde_json::to_value(Base {
            model: self.model.clone(),
            data: self.data.clone(),
            seed: self.seed,
            image_size: self.image_size,
            channels: self.channels,
            train: self.train.clone(),
        })
        .expect("plain data serialises");
        v.as_object_mut()
            .expect("object")
            .insert(self.model.clone(), self.model_config.clone());
        v
    }

    pub fn from_tree(tree: &Value) -> Result<Self> {
        let mut obj = tree
            .as_object()
            .cloned()
            .ok_or_else(|| Error::Config("a run config must be a table".into()))?;
        let model = obj
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config("the run config has no `model` name".into()))?
            .to_string();
        let model_config = obj.remove(&model).ok_or_else(|| {
            Error::Config(format!(
                "the run config has no `{model}` section for the model"
            ))
        })?;
        let base: Base = serde_json::from_value(Value::Object(obj))
            .map_err(|e| Error::Config(format!("invalid run config: {e}")))?;
        base.train.validate()?;
        Ok(Self {
            model,
            data: base.data,
            seed: base.seed,
            image_size: base.image_size,
            channels: base.channels,
            train: base.train,
            model_config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_roundtrip_and_unknown_section() {
        let r = RunConfig {
            model: "ddpm".into(),
            data: "rings".into(),
            seed: 4,
            image_size: None,
            channels: None,
            train: TrainConfig::for_points(),
            model_config: serde_json::json!({"timesteps": 10}),
        };
        let t = r.to_tree();
        assert_eq!(t["ddpm"]["timesteps"], 10);
        assert_eq!(RunConfig::from_tree(&t).unwrap(), r);
        let mut bad = t.clone();
        bad.as_object_mut()
            .unwrap()
            .insert("vae".into(), serde_json::json!({}));
        assert!(RunConfig::from_tree(&bad).is_err());
    }

    #[test]
    fn warmup_is_linear_then_constant() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 4,
            ..TrainConfig::for_points()
        };
        assert_eq!(
            [c.lr_at(0), c.lr_at(1), c.lr_at(3), c.lr_at(100)],
            [0.25, 0.5, 1.0, 1.0]
        );
    }

    #[test]
    fn decays_fall_from_the_peak_after_warm_up_to_zero_at_the_last_step() {
        let c = TrainConfig {
            lr: 2.0,
            warmup_steps: 4,
            steps: 104,
            lr_decay: LrDecay::Cosine,
            ..TrainConfig::for_points()
        };
        // Progress p = (step - 4) / 100: cos(0) = 1, cos(pi / 2) = 0, cos(pi) = -1.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(c.lr_at(3), 2.0) && close(c.lr_at(4), 2.0));
        assert!(close(c.lr_at(54), 1.0));
        assert!(close(c.lr_at(29), 1.0 + (std::f64::consts::PI / 4.0).cos()));
        assert!(close(c.lr_at(104), 0.0) && close(c.lr_at(500), 0.0));
        let l = TrainConfig {
            lr_decay: LrDecay::Linear,
            ..c.clone()
        };
        assert!(close(l.lr_at(29), 1.5) && close(l.lr_at(104), 0.0));
        // A saved config from before the key existed stays constant.
        let mut v = serde_json::to_value(&c).unwrap();
        v.as_object_mut().unwrap().remove("lr_decay");
        let old: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!(old.lr_decay, LrDecay::Constant);
        assert!(close(old.lr_at(100), 2.0));
    }

    #[test]
    fn invalid_train_settings_are_rejected() {
        for c in [
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            TrainConfig {
                lr: 0.0,
                ..Default::default()
            },
            TrainConfig {
                ema_decay: 1.0,
                ..Default::default()
            },
            TrainConfig {
                log_every: 0,
                ..Default::default()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
