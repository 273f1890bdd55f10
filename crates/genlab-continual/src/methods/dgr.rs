//! Deep generative replay: Shin, Lee, Kim & Kim 2017, "Continual Learning with Deep
//! Generative Replay", arXiv:1705.08690, Section 3 (Eq. 1-2): a generator is trained
//! alongside the classifier ("scholar"); while task `t` is learned, inputs sampled from the
//! generator copied after task `t - 1` are labelled by the classifier copied then and mixed
//! into training, and the new generator learns both the current inputs and the replayed ones.
//!
//! As in van de Ven & Tolias 2019 (arXiv:1904.07734, Sections 3-4, the reference of our
//! targets): the generator is a VAE ([`crate::vae`]) trained for as many iterations as the
//! classifier with the same batch and learning rate; each iteration replays one batch; the
//! current loss is weighted `1/t` and the replay `1 - 1/t` after `t` tasks (for classifier and
//! generator alike); replayed inputs get the previous model's hard labels (`dgr`) or its soft
//! targets at temperature 2 with the distillation loss (`dgr-distill`, "DGR+distill"); in
//! Task-IL they are scored on every previous head and the losses averaged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};
use genlab_rl::nn::Mlp;

use super::{
    add_cross_entropy, add_replay_loss, parse_config, setting_error, Ctx, MemoryItem, Method,
    MethodEntry, Spec, ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::Learner;
use crate::vae::Vae;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Soft targets with distillation (DGR+distill) instead of hard labels.
    pub distill: bool,
    /// Distillation temperature (the reference's 2).
    pub temperature: f64,
    /// The VAE's hidden widths (the reference: the classifier's, 2 x 400 on split MNIST).
    pub hidden: Vec<usize>,
    /// Latent size (the reference's 100).
    pub z_dim: usize,
    /// The generator's learning rate (null: the classifier's, as the reference).
    pub lr: Option<f64>,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "dgr",
    paper: "Shin et al. 2017, arXiv:1705.08690",
    description:
        "deep generative replay: a VAE replays past inputs, labelled by the previous model",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults: hard_defaults,
    build,
};

pub const DISTILL_ENTRY: MethodEntry = MethodEntry {
    name: "dgr-distill",
    paper: "Shin et al. 2017, arXiv:1705.08690; distillation: van de Ven & Tolias 2018, arXiv:1809.10635",
    description: "deep generative replay with the previous model's soft targets (distillation)",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults: soft_defaults,
    build,
};

fn defaults(b: &BenchmarkEntry, distill: bool) -> Value {
    serde_json::to_value(Config {
        distill,
        temperature: 2.0,
        hidden: vec![b.hidden; 2],
        z_dim: 100,
        lr: None,
    })
    .expect("serialisable")
}

fn hard_defaults(b: &BenchmarkEntry, _: Scenario) -> Value {
    defaults(b, false)
}

fn soft_defaults(b: &BenchmarkEntry, _: Scenario) -> Value {
    defaults(b, true)
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    if c.z_dim == 0 {
        return Err(setting_error("z_dim", "must be at least 1"));
    }
    if c.hidden.contains(&0) {
        return Err(setting_error("hidden", "widths must be at least 1"));
    }
    if c.temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(setting_error(
            "temperature",
            format!("must be > 0, got {}", c.temperature),
        ));
    }
    let mut rng = Rng::derive(spec.seed, "generator");
    let vae = Vae::new(
        spec.bench.dim(),
        &c.hidden,
        c.z_dim,
        c.lr.unwrap_or(spec.lr),
        &mut rng,
    );
    Ok(Box::new(Dgr {
        cfg: c,
        vae,
        prev: None,
    }))
}

pub struct Dgr {
    cfg: Config,
    vae: Vae,
    /// The classifier and the generator's decoder as they were after the previous task.
    prev: Option<(Mlp, Mlp)>,
}

impl Method for Dgr {
    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        rng: &mut Rng,
    ) -> Result<f64> {
        let rnt = ctx.rnt();
        let n = batch.len();
        learner.zero_grad();
        let mut loss = add_cross_entropy(ctx, learner, batch, rnt) * rnt;
        let replayed = self.prev.as_ref().map(|(model, dec)| {
            let x = crate::vae::decode(dec, &rng.normal_vec(n * self.vae.z_dim), n);
            let soft = self.cfg.distill.then_some(self.cfg.temperature);
            loss += add_replay_loss(ctx, learner, model, &x, n, soft, 1.0 - rnt);
            x
        });
        learner.step()?;
        // The generator learns the current inputs and the replayed ones.
        self.vae.zero_grad();
        let eps = rng.normal_vec(n * self.vae.z_dim);
        let w = if replayed.is_some() { rnt } else { 1.0 };
        self.vae.add_loss(&batch.x, n, &eps, w);
        if let Some(x) = &replayed {
            let eps = rng.normal_vec(n * self.vae.z_dim);
            self.vae.add_loss(x, n, &eps, 1.0 - rnt);
        }
        self.vae.step()?;
        Ok(loss)
    }

    fn end_task(&mut self, _: &Ctx, learner: &mut Learner, _: &mut Rng) -> Result<()> {
        self.prev = Some((learner.net.clone(), self.vae.dec.clone()));
        Ok(())
    }

    fn memory(&self) -> Vec<MemoryItem> {
        let mut m = vec![MemoryItem {
            what: "generator (VAE)".into(),
            floats: self.vae.num_params(),
        }];
        if let Some((model, dec)) = &self.prev {
            m.push(MemoryItem {
                what: "previous model and decoder".into(),
                floats: model.num_params() + dec.num_params(),
            });
        }
        m
    }
}
