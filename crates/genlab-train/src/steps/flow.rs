//! Training step for normalizing flows: exact maximum likelihood (the mean NLL in nats per
//! example is the loss), AdamW, clipping and an EMA copy used for sampling.
//!
//! ActNorm's data-dependent initialisation (Kingma & Dhariwal 2018, Sec. 3.1) runs on the
//! first training batch, inside [`FlowStep::step`]: the initial values are written into the
//! live weights and the EMA copy, and the flag `actnorm_initialised` in the JSON state
//! keeps a resumed run from initialising again. [`TrainStep::loss_and_grads`] never
//! initialises (it must not change the step); on a fresh step it sees ActNorm at the
//! identity.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::flow::{Flow, FlowConfig};
use genlab_models::{DataSpace, Figure, Sample};

use super::weights::TrainedWeights;
use crate::optim::AdamWConfig;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::{LrDecay, TrainConfig};
use crate::step::TrainStep;

/// Held-out examples per evaluation batch.
const EVAL_BATCH: usize = 1000;
/// Held-out points that set the extent of the density picture.
const FIGURE_POINTS: usize = 5000;

/// Parses and validates a flow config (the registry's entry uses it).
pub fn flow_config(v: &serde_json::Value) -> Result<FlowConfig> {
    parse_config(v, "flow", FlowConfig::validate)
}

/// Flow preset: Adam at 1e-3 (RealNVP and Glow's rate); batch 512 points or 64 images.
pub fn flow_train(d: &DataSpace) -> TrainConfig {
    TrainConfig {
        steps: if d.images { 20_000 } else { 5000 },
        batch_size: if d.images { 64 } else { 512 },
        lr: 1e-3,
        warmup_steps: if d.images { 500 } else { 100 }, // Glow warms up its learning rate
        // Images: a cosine decay to 0 at the last step; the train curve keeps falling at a
        // constant rate, and the decay turns the last steps into fine-tuning (docs/flows.md).
        lr_decay: if d.images {
            LrDecay::Cosine
        } else {
            LrDecay::Constant
        },
        grad_clip: 50.0, // guards against rare large steps of the log-scales only
        ema_decay: if d.images { 0.999 } else { 0.995 },
        log_every: 50,
        ckpt_every: 1000,
        adamw: AdamWConfig::default(),
    }
}

/// Builds a flow for sampling from its config and (prefix-free) weights.
pub fn load_flow(
    v: &serde_json::Value,
    w: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<Box<dyn Sample>> {
    let cfg = flow_config(v)?;
    Ok(Box::new(load_weights(w, device, |vb| Flow::new(&cfg, vb))?))
}

pub struct FlowStep {
    w: TrainedWeights,
    model: Flow,
    ema_model: Flow,
    /// Whether ActNorm has been initialised from data (always true without ActNorm).
    initialised: bool,
}

impl FlowStep {
    pub fn new(cfg: &FlowConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        let (w, model, ema_model) =
            TrainedWeights::new(train, seed, device, |s| Flow::new(cfg, s.vb()))?;
        let initialised = !model.needs_data_init();
        Ok(Self {
            w,
            model,
            ema_model,
            initialised,
        })
    }

    /// Writes ActNorm's data-dependent initial values into the live and EMA weights.
    fn data_init(&mut self, x: &Tensor) -> Result<()> {
        let values = self.model.data_init(x)?;
        for store in [&self.w.store, &self.w.ema_store] {
            let vars: HashMap<String, Var> = store.vars().into_iter().collect();
            for (name, v) in &values {
                let var = vars.get(name).ok_or_else(|| {
                    Error::InvalidInput(format!("data init: no variable `{name}`"))
                })?;
                var.set(&v.to_dtype(var.dtype())?.to_device(var.device())?)?;
            }
        }
        self.initialised = true;
        Ok(())
    }
}

impl TrainStep for FlowStep {
    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        if !self.initialised {
            self.data_init(&batch.x)?;
        }
        let t = self.model.terms(&batch.x, rng)?;
        let norm = self.w.apply(&t.loss.backward()?, lr)?;
        Ok(vec![
            ("loss".into(), t.nll),
            ("bits_per_dim".into(), t.bpd),
            ("logdet".into(), t.logdet),
            ("grad_norm".into(), norm),
        ])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let t = self.model.terms(&batch.x, rng)?;
        Ok((t.nll, t.loss.backward()?))
    }

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.w.store.vars()
    }

    fn state_tensors(&self) -> HashMap<String, Tensor> {
        self.w.state_tensors()
    }

    fn state_json(&self) -> serde_json::Value {
        let mut j = self.w.state_json();
        j["actnorm_initialised"] = self.initialised.into();
        j
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, j: &serde_json::Value) -> Result<()> {
        self.w.load_state(t, j)?;
        self.initialised = j
            .get("actnorm_initialised")
            .and_then(|v| v.as_bool())
            .ok_or_else(|| {
                Error::Checkpoint(
                    "the flow checkpoint state has no `actnorm_initialised` flag".into(),
                )
            })?;
        Ok(())
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema_model)
    }

    /// Test NLL of the EMA model on the whole held-out set, in nats per example and bits
    /// per dimension (images: one fixed dequantisation draw, see `genlab_models::flow`).
    fn evaluate(&self, held: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let mut rng = Rng::new(0);
        let (mut sum, mut n) = (0.0, 0usize);
        let dev = self.w.device().clone();
        for start in (0..held.len()).step_by(EVAL_BATCH) {
            let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(held.len())).collect();
            let b = make_batch(held, &idx, &dev)?;
            let t = self.ema_model.terms(&b.x, &mut rng)?;
            sum += t.nll * idx.len() as f64;
            n += idx.len();
        }
        let nll = sum / n.max(1) as f64;
        let d: usize = self.ema_model.config().data.shape.iter().product();
        Ok(vec![
            ("test_nll_nats".into(), nll),
            (
                "test_bits_per_dim".into(),
                genlab_models::flow::bits_per_dim(nll, d),
            ),
        ])
    }

    fn figures(&self, held: &dyn Dataset) -> Result<Vec<Figure>> {
        let idx: Vec<usize> = (0..held.len().min(FIGURE_POINTS)).collect();
        let b = make_batch(held, &idx, self.w.device())?;
        self.ema_model.figures(&b.x)
    }

    fn device(&self) -> &Device {
        self.w.device()
    }

    fn num_params(&self) -> usize {
        self.w.num_params()
    }
}

/// The `flow` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "flow",
    prepare: None,
    description: "normalizing flows: flow.coupling = affine (RealNVP/Glow) | additive (NICE) | spline | maf | iaf; multi-scale on images; exact likelihood",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        likelihood: true,
        ..NONE
    },
    default_config: |d| config_value(&FlowConfig::for_data(d)),
    default_train: flow_train,
    build_step: |v, t, seed, device| Ok(Box::new(FlowStep::new(&flow_config(v)?, t, seed, device)?)),
    load: load_flow,
};

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_data::{Toy2d, Toy2dKind};

    fn tiny_step(seed: u64) -> FlowStep {
        let space = DataSpace {
            shape: vec![2],
            images: false,
        };
        let mut cfg = FlowConfig::for_data(&space);
        cfg.layers = 4;
        cfg.hidden = vec![32, 32];
        let train = TrainConfig {
            batch_size: 256,
            ..flow_train(&space)
        };
        FlowStep::new(&cfg, &train, seed, &Device::Cpu).unwrap()
    }

    /// Trained for 300 steps, the test NLL must fall by at least this many nats from the
    /// first batch's (the ActNorm-initialised Gaussian fit, ~3.6 nats on eight gaussians;
    /// the data's own entropy is ~1.9).
    const MIN_IMPROVEMENT: f64 = 0.8;

    #[test]
    fn a_short_2d_training_run_lowers_the_nll_on_eight_gaussians() {
        let data = Toy2d::new(Toy2dKind::EightGaussians, 4096, 1);
        let held = Toy2d::new(Toy2dKind::EightGaussians, 2000, 2);
        let mut step = tiny_step(3);
        let mut rng = Rng::new(4);
        let mut first = None;
        let mut last = 0.0;
        for i in 0..300 {
            let idx: Vec<usize> = (0..256).map(|_| rng.below(4096) as usize).collect();
            let b = make_batch(&data, &idx, &Device::Cpu).unwrap();
            let m = step.step(&b, &mut rng, 2e-3).unwrap();
            if i == 0 {
                first = Some(m[0].1);
                assert!(step.initialised);
            }
            last = m[0].1;
        }
        let first = first.unwrap();
        let test = step.evaluate(&held).unwrap();
        eprintln!("first batch nll {first:.3}, last {last:.3}, test {test:?}");
        assert_eq!(test[0].0, "test_nll_nats");
        assert!(test[0].1 < first - MIN_IMPROVEMENT, "{first} -> {test:?}");
        let bpd = test[1].1;
        assert!((bpd - test[0].1 / (2.0 * std::f64::consts::LN_2)).abs() < 1e-12);
    }

    #[test]
    fn actnorm_is_initialised_on_the_first_batch_in_both_copies() {
        let data = Toy2d::new(Toy2dKind::EightGaussians, 512, 1);
        let mut step = tiny_step(3);
        assert!(!step.initialised);
        assert_eq!(step.state_json()["actnorm_initialised"], false);
        let idx: Vec<usize> = (0..512).collect();
        let b = make_batch(&data, &idx, &Device::Cpu).unwrap();
        // The first step's output of the first ActNorm is standardised: its `logs` is
        // -log(std of the data) per coordinate (eight gaussians: std ~ 1.45).
        step.step(&b, &mut Rng::new(0), 0.0).unwrap();
        assert_eq!(step.state_json()["actnorm_initialised"], true);
        let x: Vec<Vec<f32>> = b.x.to_vec2().unwrap();
        let sd = |j: usize| {
            let m = x.iter().map(|r| r[j] as f64).sum::<f64>() / 512.0;
            (x.iter().map(|r| (r[j] as f64 - m).powi(2)).sum::<f64>() / 512.0).sqrt()
        };
        for (store, name) in [(&step.w.store, "live"), (&step.w.ema_store, "ema")] {
            let t = store.tensors();
            let logs: Vec<f32> = t["flow.step0.actnorm.logs"].to_vec1().unwrap();
            for (j, l) in logs.iter().enumerate() {
                // lr 0: the AdamW step leaves the initial values (up to f32 rounding).
                assert!(
                    (*l as f64 + sd(j).ln()).abs() < 1e-4,
                    "{name} {j}: {l} vs {}",
                    sd(j)
                );
            }
        }
    }
}
