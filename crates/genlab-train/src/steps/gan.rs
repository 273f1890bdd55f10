//! Training step for GANs: two players, two optimizers.
//!
//! One trainer step is one discriminator (critic) update on the step's real batch; every
//! `n_critic`-th step the generator is updated too (Arjovsky et al. 2017, Alg. 1; n_critic = 1
//! alternates as in Goodfellow et al. 2014, Alg. 1 with k = 1). The discriminator's learning
//! rate is `gan.d_lr` scaled by the trainer's warm-up; WGAN clips the critic's weights after
//! each update; the generator keeps an EMA copy that samples.
//!
//! Class-conditional GANs (`gan.num_classes > 0`) take the batch's labels: the discriminator
//! scores the real examples with their labels and the fakes with the same labels (the
//! generator draws one fake per real example, of its class), and so does the generator's
//! update (Miyato & Koyama 2018, arXiv:1802.05637: labels of fakes from the data's class
//! distribution).
//!
//! Checkpoint layout: the generator's weights as every single-network step writes them
//! (`model.gen.*`, `ema.gen.*`, `opt.*`), the discriminator's under `d.` (`d.model.disc.*`,
//! `d.opt.*`...), optimizer step counts under `g` and `d` in the JSON state.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use genlab_core::{Error, Result, Rng};
use genlab_data::Batch;
use genlab_models::gan::loss::{d_loss, g_loss, gradient_penalty, pull_away, r1_penalty};
use genlab_models::gan::{Discriminator, Gan, GanConfig};
use genlab_models::Sample;

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::LrDecay;
use crate::run::TrainConfig;
use crate::step::{strip_prefix, with_prefix, TrainStep};
use genlab_models::DataSpace;

pub struct GanStep {
    cfg: GanConfig,
    g: TrainedWeights,
    gen: Gan,
    gen_ema: Gan,
    d: TrainedWeights,
    disc: Discriminator,
    /// The trainer's peak rate, to scale `d_lr` by the same warm-up.
    base_lr: f64,
    /// The last generator loss (logged on the steps that only update the discriminator).
    last_g: f64,
}

/// Named scalar values of one discriminator evaluation.
struct DOut {
    loss: Tensor,
    metrics: Vec<(String, f64)>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_scalar::<f32>()? as f64)
}

fn finite(v: f64, what: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::Numeric(format!("the {what} is {v}")))
    }
}

impl GanStep {
    pub fn new(cfg: &GanConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (g, gen, gen_ema) =
            TrainedWeights::new(train, seed, device, |s| Gan::new(cfg, s.vb()))?;
        let d_seed = Rng::derive(seed, "discriminator").next_u64();
        let (d, disc, _) =
            TrainedWeights::new(train, d_seed, device, |s| Discriminator::new(cfg, s.vb()))?;
        Ok(Self {
            cfg: cfg.clone(),
            g,
            gen,
            gen_ema,
            d,
            disc,
            base_lr: train.lr,
            last_g: f64::NAN,
        })
    }

    fn d_forward(&self, x: &Tensor, y: Option<&Tensor>, rng: &mut Rng) -> Result<DOut> {
        let b = x.dim(0)?;
        let fake = self.gen.generate(&self.gen.noise(b, rng)?, y)?.detach();
        let c = &self.cfg;
        match &self.disc {
            Discriminator::Critic(critic) => {
                let (real, trace) = critic.forward_trace(&x.detach(), y)?;
                let fk = critic.forward(&fake, y)?;
                let mut loss = d_loss(c.loss, &real, &fk, c.lsgan_targets, c.margin())?;
                let mut metrics = vec![
                    ("d_real".into(), scalar(&real.mean_all()?)?),
                    ("d_fake".into(), scalar(&fk.mean_all()?)?),
                ];
                if let Some(gamma) = c.r1_weight {
                    let r1 = r1_penalty(&critic.input_grad(&trace)?)?;
                    metrics.push(("r1".into(), scalar(&r1)?));
                    loss = (loss + (r1 * (gamma / 2.0))?)?;
                }
                let lambda = c.gp_weight();
                if lambda > 0.0 {
                    let mut eshape = vec![1usize; x.rank()];
                    eshape[0] = b;
                    let e = rng.uniform_tensor(0.0, 1.0, &eshape, x.device())?;
                    let xhat = (x.broadcast_mul(&e)? + fake.broadcast_mul(&(1.0 - &e)?)?)?;
                    let (_, trace) = critic.forward_trace(&xhat.detach(), y)?;
                    let gp = gradient_penalty(&critic.input_grad(&trace)?)?;
                    metrics.push(("gp".into(), scalar(&gp)?));
                    loss = (loss + (gp * lambda)?)?;
                }
                Ok(DOut { loss, metrics })
            }
            Discriminator::Energy(net) => {
                let (er, _) = net.forward(x)?;
                let (ef, _) = net.forward(&fake)?;
                let loss = d_loss(c.loss, &er, &ef, c.lsgan_targets, c.margin())?;
                Ok(DOut {
                    loss,
                    metrics: vec![
                        ("d_real".into(), scalar(&er.mean_all()?)?),
                        ("d_fake".into(), scalar(&ef.mean_all()?)?),
                    ],
                })
            }
        }
    }

    fn g_forward(&self, b: usize, y: Option<&Tensor>, rng: &mut Rng) -> Result<Tensor> {
        let fake = self.gen.generate(&self.gen.noise(b, rng)?, y)?;
        let c = &self.cfg;
        match &self.disc {
            Discriminator::Critic(critic) => {
                g_loss(c.loss, &critic.forward(&fake, y)?, c.lsgan_targets)
            }
            Discriminator::Energy(net) => {
                let (ef, code) = net.forward(&fake)?;
                let l = g_loss(c.loss, &ef, c.lsgan_targets)?;
                Ok((l + (pull_away(&code)? * c.pt_weight())?)?)
            }
        }
    }

    fn clip_critic(&self) -> Result<()> {
        if let Some(c) = self.cfg.clip() {
            for (_, v) in self.d.store.vars() {
                v.set(&v.as_tensor().clamp(-c as f32, c as f32)?)?;
            }
        }
        Ok(())
    }
}

impl TrainStep for GanStep {
    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let x = self.gen.to_model_space(&batch.x)?;
        let y = self.gen.labels(batch.labels.as_ref(), x.dim(0)?)?;
        let d = self.d_forward(&x, y.as_ref(), rng)?;
        let dl = finite(scalar(&d.loss)?, "discriminator loss")?;
        let d_lr = lr * self.cfg.d_lr.unwrap_or(self.base_lr) / self.base_lr;
        self.d.apply(&d.loss.backward()?, d_lr)?;
        self.clip_critic()?;
        // `is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
        #[allow(clippy::manual_is_multiple_of)]
        if self.d.opt_steps() % self.cfg.n_critic() as u64 == 0 {
            let gl = self.g_forward(x.dim(0)?, y.as_ref(), rng)?;
            self.last_g = finite(scalar(&gl)?, "generator loss")?;
            self.g.apply(&gl.backward()?, lr)?;
        }
        let mut m = vec![("d_loss".to_string(), dl), ("g_loss".into(), self.last_g)];
        m.extend(d.metrics);
        Ok(m)
    }

    /// The discriminator's loss; the gradients of each player's loss for its own variables.
    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let x = self.gen.to_model_space(&batch.x)?;
        let y = self.gen.labels(batch.labels.as_ref(), x.dim(0)?)?;
        let d = self.d_forward(&x, y.as_ref(), rng)?;
        let d_grads = d.loss.backward()?;
        let mut grads = self.g_forward(x.dim(0)?, y.as_ref(), rng)?.backward()?;
        for (_, v) in self.d.store.vars() {
            grads.remove(v.as_tensor());
            if let Some(g) = d_grads.get(v.as_tensor()) {
                grads.insert(v.as_tensor(), g.clone());
            }
        }
        Ok((scalar(&d.loss)?, grads))
    }

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.g.store.vars();
        v.extend(self.d.store.vars());
        v
    }

    fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut m = self.g.state_tensors();
        m.extend(with_prefix(self.d.state_tensors(), "d"));
        m
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "g": self.g.state_json(), "d": self.d.state_json() })
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, j: &serde_json::Value) -> Result<()> {
        let g: HashMap<String, Tensor> = t
            .iter()
            .filter(|(k, _)| !k.starts_with("d."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.g.load_state(&g, &j["g"])?;
        self.d.load_state(&strip_prefix(t, "d"), &j["d"])
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.gen_ema)
    }

    fn device(&self) -> &Device {
        self.g.device()
    }

    fn num_params(&self) -> usize {
        self.g.num_params() + self.d.num_params()
    }
}

/// Parses and checks a `gan` model config.
pub fn gan_config(v: &serde_json::Value) -> Result<GanConfig> {
    parse_config(v, "gan", GanConfig::validate)
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

/// The `gan` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "gan",
    prepare: None,
    description: "GANs: gan.loss = minimax | non-saturating | lsgan | wgan | wgan-gp | ebgan; MLP or DCGAN nets; optionally class-conditional (projection discriminator)",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        conditional: true,
        ..NONE
    },
    default_config: |d| config_value(&GanConfig::for_data(d)),
    default_train: gan_train,
    build_step: |v, t, seed, device| Ok(Box::new(GanStep::new(&gan_config(v)?, t, seed, device)?)),
    load: |v, w, device| {
        let cfg = gan_config(v)?;
        Ok(Box::new(load_weights(w, device, |vb| Gan::new(&cfg, vb))?))
    },
};
