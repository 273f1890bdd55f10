//! Unsupervised domain adaptation: a labelled *source* (MNIST) and an unlabelled *target*
//! (the 8x8 digits upsampled to 28x28, `digits28`), scored by accuracy on the target's test
//! set. Methods one file each behind one [`MethodEntry`] registry ([`METHODS`]); adding one is
//! a new file here (a `pub const ENTRY: MethodEntry`) plus one line in [`METHODS`].
//!
//! The run ([`run`]) is shared. Every step draws `batch` labelled images (the source's, or
//! the target's for the `target-only` upper bound) and, for the adapting methods, `batch`
//! target images whose labels are never read; both go through Gal et al.'s CNN
//! ([`crate::net::Net`], dropout on) in one pass. The loss is the cross-entropy on the
//! labelled half plus the method's [`Adaptation::loss`] on the two halves' dense features
//! (`[batch, hidden]`, after ReLU and dropout) and logits, at training progress
//! `p = step / steps`. Every method starts from the same initial weights and sees the same
//! labelled batches for a seed. At the end the deterministic network is tested on both test
//! sets; the target test accuracy in the log is for watching only (no model is picked by
//! it: there are no target labels in this setting).
//!
//! Differences from the papers shared by every method: Adam at a constant rate (Ganin et
//! al. and Long et al. use SGD with momentum and an annealed rate), the Gal et al. CNN, no
//! augmentation.

pub mod dann;
pub mod grl;
pub mod mmd;
pub mod source_only;
pub mod target_only;

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::cross_entropy;
use genlab_train::optim::{AdamW, AdamWConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use crate::registry::parse_config;
pub use crate::registry::MethodInfo;

use crate::data::{gather, Data, Part};
use crate::net::{Net, NetConfig};
use crate::train::accuracy;

/// Every method.
pub const METHODS: &[&MethodEntry] = &[
    &source_only::ENTRY,
    &target_only::ENTRY,
    &dann::ENTRY,
    &mmd::ENTRY,
];

/// A domain-adaptation run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaConfig {
    /// `genlab da list`.
    pub method: String,
    /// The labelled domain (a [`crate::data::SOURCES`] name).
    pub source: String,
    /// The unlabelled domain: same image shape and classes as the source.
    pub target: String,
    pub seed: u64,
    pub model: NetConfig,
    /// Optimizer steps.
    pub steps: usize,
    /// Images per domain per step (64: half of Ganin et al.'s 128-image batch each).
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Steps between log lines.
    pub log_every: usize,
    /// Steps between target test accuracies in the log (0: only at the end).
    pub eval_every: usize,
    /// Examples per forward pass when testing.
    pub eval_batch: usize,
    /// The method's own settings (`method.KEY`); `null`: its defaults.
    pub method_config: Value,
}

impl Default for DaConfig {
    fn default() -> Self {
        Self {
            method: "dann".into(),
            source: "mnist".into(),
            target: "digits28".into(),
            seed: 0,
            model: NetConfig::default(),
            // 1,500 steps of 64: 1.6 passes over MNIST (the measured runs of docs/labels.md).
            steps: 1500,
            batch: 64,
            lr: 1e-3,
            log_every: 100,
            eval_every: 500,
            eval_batch: 500,
            method_config: Value::Null,
        }
    }
}

/// Which domain's labels train the classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// The usual setting: source labels only.
    Source,
    /// The upper bound: the target's own labels.
    Target,
}

/// One step's network outputs on the labelled and the target images.
pub struct Outputs<'a> {
    /// Features of the source images `[B, F]`.
    pub source_features: &'a Tensor,
    /// Features of the target images `[B, F]`.
    pub target_features: &'a Tensor,
    /// Logits of the source images `[B, K]`.
    pub source_logits: &'a Tensor,
    /// Logits of the target images `[B, K]`.
    pub target_logits: &'a Tensor,
}

/// What an adapting method adds to the classification loss.
pub trait Adaptation {
    /// Parameters trained beside the network (DANN's domain classifier).
    fn vars(&self) -> Vec<(String, Var)>;
    /// The adaptation loss at training progress `p` in [0, 1], and named values to log.
    fn loss(
        &mut self,
        out: &Outputs,
        p: f64,
        rng: &mut Rng,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)>;
}

/// What a method's [`MethodEntry::build`] is given.
pub struct BuildCtx<'a> {
    /// Width of the features.
    pub features: usize,
    pub classes: usize,
    pub seed: u64,
    pub device: &'a Device,
}

/// A method's adaptation, built from its JSON settings.
pub type Build = fn(&Value, &BuildCtx) -> Result<Box<dyn Adaptation>>;

/// One registered method.
pub struct MethodEntry {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub defaults: fn() -> Value,
    /// Whose labels train the classifier.
    pub labels: Labels,
    /// Builds the method's adaptation; `None`: plain supervised training (no target batch).
    pub build: Option<Build>,
    /// Checks the method's settings (the non-adapting methods have an empty section).
    pub check: fn(&Value) -> Result<()>,
}

impl MethodEntry {
    pub fn info(&self) -> MethodInfo {
        MethodInfo {
            name: self.name,
            paper: self.paper,
            description: self.description,
            defaults: (self.defaults)(),
        }
    }
}

/// The method called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static MethodEntry> {
    crate::registry::find_named(METHODS, name, "domain-adaptation method", |m| m.name)
}

/// Ganin et al. 2016's schedule `2 / (1 + exp(-gamma p)) - 1`: 0 at the start, towards 1
/// at the end (gamma = 10 in the paper), so that the adaptation loss does not act on the
/// features of an untrained network.
pub fn ramp(p: f64, gamma: f64) -> f64 {
    2.0 / (1.0 + (-gamma * p).exp()) - 1.0
}

/// The result of a run (`result.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaResult {
    pub method: String,
    pub source: String,
    pub target: String,
    /// Accuracy on the target's test set: the score.
    pub target_accuracy: f64,
    /// Accuracy on the source's test set.
    pub source_accuracy: f64,
    pub seconds: f64,
    pub config: DaConfig,
}

/// Resolves `cfg` (the method's defaults under `overrides`, keys `method.KEY`, and the
/// rest) and checks the method's settings.
pub fn resolve(cfg: &DaConfig, overrides: &[(String, Value)]) -> Result<DaConfig> {
    let entry = find(&cfg.method)?;
    let mut base = cfg.clone();
    if base.method_config.is_null() {
        base.method_config = (entry.defaults)();
    }
    let renamed = crate::registry::method_overrides(overrides);
    let out: DaConfig = genlab_core::config::resolve(&base, None, &renamed)?;
    (entry.check)(&out.method_config)?;
    Ok(out)
}

/// Refuses a source and a target the one network cannot serve: different image shapes
/// (its first dense layer is sized by the input) or different classes (its last one).
pub fn check_pair(source: &Data, target: &Data) -> Result<()> {
    if source.shape != target.shape {
        return Err(Error::InvalidInput(format!(
            "source `{}` has {:?} images but target `{}` has {:?}: one network takes one \
             image shape (`digits28` is the 8x8 digits at MNIST's 28x28)",
            source.name, source.shape, target.name, target.shape
        )));
    }
    if source.classes != target.classes {
        return Err(Error::InvalidInput(format!(
            "source `{}` has {} classes but target `{}` has {}: adaptation needs the same label set",
            source.name, source.classes, target.name, target.classes
        )));
    }
    Ok(())
}

/// Endless shuffled passes over `n` positions.
struct Order {
    n: usize,
    left: Vec<usize>,
    rng: Rng,
}

impl Order {
    fn new(n: usize, rng: Rng) -> Self {
        Self {
            n,
            left: Vec::new(),
            rng,
        }
    }

    fn take(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            if self.left.is_empty() {
                self.left = (0..self.n).collect();
                self.rng.shuffle(&mut self.left);
            }
            out.push(self.left.pop().unwrap_or(0));
        }
        out
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Trains with a method; writes `config.json`, `log.jsonl` and `result.json` to `out`.
pub fn run(
    cfg: &DaConfig,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<DaResult> {
    let entry = find(&cfg.method)?;
    if cfg.steps == 0 || cfg.batch < 2 {
        return Err(Error::setting(
            "steps / batch",
            format!(
                "need at least 1 step and 2 images per domain (MMD's unbiased estimate \
                 needs pairs); got steps {}, batch {}",
                cfg.steps, cfg.batch
            ),
        ));
    }
    let source = Data::open(&cfg.source)?;
    let target = Data::open(&cfg.target)?;
    check_pair(&source, &target)?;
    let net = Net::new(
        &cfg.model,
        &source.shape,
        source.classes,
        Rng::derive(cfg.seed, "da/net").next_u64(),
        device,
    )?;
    let mut adapt = match entry.build {
        Some(build) => Some(build(
            &cfg.method_config,
            &BuildCtx {
                features: cfg.model.hidden,
                classes: source.classes,
                seed: Rng::derive(cfg.seed, "da/method").next_u64(),
                device,
            },
        )?),
        None => {
            (entry.check)(&cfg.method_config)?;
            None
        }
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    genlab_core::io::write_json(&out.join("config.json"), cfg)?;

    let mut vars = net.params.vars();
    if let Some(a) = &adapt {
        vars.extend(a.vars());
    }
    let mut opt = AdamW::new(vars, AdamWConfig::default())?;
    let labelled: &Part = match entry.labels {
        Labels::Source => &source.pool,
        Labels::Target => &target.pool,
    };
    let mut lab_order = Order::new(labelled.len(), Rng::derive(cfg.seed, "da/labelled"));
    let mut tgt_order = Order::new(target.pool.len(), Rng::derive(cfg.seed, "da/target"));
    let mut drop_rng = Rng::derive(cfg.seed, "da/dropout");
    let mut method_rng = Rng::derive(cfg.seed, "da/method-steps");
    let b = cfg.batch;
    let start = Instant::now();
    let mut lines = String::new();
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    let mut count = 0usize;
    for step in 0..cfg.steps {
        let p = step as f64 / cfg.steps as f64;
        let (xl, yl) = gather(labelled, &lab_order.take(b), device)?;
        // The target's labels come along with its images and are dropped here, unread.
        let x = match adapt {
            Some(_) => Tensor::cat(
                &[&xl, &gather(&target.pool, &tgt_order.take(b), device)?.0],
                0,
            )?,
            None => xl,
        };
        let (features, logits) = net.head(&net.trunk(&x)?, Some(&mut drop_rng))?;
        let class_loss = cross_entropy(&logits.narrow(0, 0, b)?, &yl)?;
        let mut values = vec![("class_loss", scalar(&class_loss)?)];
        let loss = match adapt.as_mut() {
            Some(a) => {
                let o = Outputs {
                    source_features: &features.narrow(0, 0, b)?,
                    target_features: &features.narrow(0, b, b)?,
                    source_logits: &logits.narrow(0, 0, b)?,
                    target_logits: &logits.narrow(0, b, b)?,
                };
                let (l, v) = a.loss(&o, p, &mut method_rng)?;
                values.extend(v);
                (&class_loss + &l)?
            }
            None => class_loss,
        };
        let lv = scalar(&loss)?;
        if !lv.is_finite() {
            return Err(Error::Numeric(format!(
                "{} loss is {lv} at step {step}",
                cfg.method
            )));
        }
        opt.step(&loss.backward()?, cfg.lr, 1.0)?;
        if sums.is_empty() {
            sums = values.iter().map(|&(k, _)| (k, 0.0)).collect();
        }
        for (s, (_, v)) in sums.iter_mut().zip(&values) {
            s.1 += v;
        }
        count += 1;
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            let mut line = serde_json::Map::new();
            line.insert("step".into(), done.into());
            let mut text = format!("step {done}:");
            for (k, s) in &sums {
                line.insert((*k).into(), (s / count as f64).into());
                text.push_str(&format!(" {k} {:.4}", s / count as f64));
            }
            if cfg.eval_every > 0 && done % cfg.eval_every == 0 && done != cfg.steps {
                let acc = accuracy(&net, &target.test, cfg.eval_batch)?;
                line.insert("target_accuracy".into(), acc.into());
                text.push_str(&format!(", target test accuracy {:.2}%", 100.0 * acc));
            }
            let secs = start.elapsed().as_secs_f64();
            line.insert("seconds".into(), secs.into());
            log(&format!("{text} ({secs:.0} s)"));
            lines.push_str(&Value::Object(line).to_string());
            lines.push('\n');
            genlab_core::io::write_atomic(&out.join("log.jsonl"), lines.as_bytes())?;
            sums.clear();
            count = 0;
        }
    }
    let r = DaResult {
        method: cfg.method.clone(),
        source: cfg.source.clone(),
        target: cfg.target.clone(),
        target_accuracy: accuracy(&net, &target.test, cfg.eval_batch)?,
        source_accuracy: accuracy(&net, &source.test, cfg.eval_batch)?,
        seconds: start.elapsed().as_secs_f64(),
        config: cfg.clone(),
    };
    genlab_core::io::write_json(&out.join("result.json"), &r)?;
    Ok(r)
}

/// The settings of a method that has none: an empty section, any key refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// [`MethodEntry::check`] of a method without settings.
pub fn check_none(v: &Value) -> Result<()> {
    parse_config::<NoSettings>(v).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    #[test]
    fn the_ramp_is_ganins_schedule() {
        assert_eq!(ramp(0.0, 10.0), 0.0);
        // 2 / (1 + e^-5) - 1 = tanh(2.5).
        assert!((ramp(0.5, 10.0) - 2.5f64.tanh()).abs() < 1e-12);
        assert!(ramp(1.0, 10.0) > 0.9999 && ramp(1.0, 10.0) < 1.0);
    }

    #[test]
    fn pairs_of_other_shapes_or_classes_are_refused() {
        let d = Data::open("digits").unwrap();
        let big = Data::open("digits28").unwrap();
        let e = check_pair(&d, &big).unwrap_err().to_string();
        assert!(e.contains("[1, 8, 8]") && e.contains("[1, 28, 28]"), "{e}");
        assert!(check_pair(&big, &big).is_ok());
        let (p, t) = synthetic(5, 4, 2, 8);
        let five = Data {
            name: "five".into(),
            pool: Part {
                idx: (0..p.y.len()).collect(),
                ds: std::sync::Arc::new(p),
            },
            test: Part {
                idx: (0..t.y.len()).collect(),
                ds: std::sync::Arc::new(t),
            },
            shape: vec![1, 8, 8],
            classes: 5,
        };
        let e = check_pair(&d, &five).unwrap_err().to_string();
        assert!(e.contains("10 classes") && e.contains("has 5"), "{e}");
    }

    #[test]
    fn unknown_methods_and_settings_are_refused() {
        let e = find("coral").err().unwrap().to_string();
        assert!(e.contains("coral") && e.contains("dann"), "{e}");
        let cfg = DaConfig {
            method: "source-only".into(),
            ..DaConfig::default()
        };
        let bad = [("method.lambda".to_string(), Value::from(1.0))];
        assert!(resolve(&cfg, &bad).is_err());
        assert!(resolve(&cfg, &[]).is_ok());
    }
}
