//! Semi-supervised learning: a few labelled images and many unlabelled ones. Methods one
//! file each behind one [`MethodEntry`] registry, and the run ([`run`]) that draws the
//! labelled set, calls the method and records its test accuracy. Adding a method is one new
//! file here (a `pub const ENTRY: MethodEntry`) plus one line in [`METHODS`].

pub mod co_training;
pub mod fixmatch;
pub mod self_training;
pub mod supervised;

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use crate::registry::parse_config;
pub use crate::registry::MethodInfo;

use crate::data::{balanced_subset, for_batches, Data};
use crate::net::NetConfig;
use crate::train::FitConfig;

/// Every method.
pub const METHODS: &[&MethodEntry] = &[
    &supervised::ENTRY,
    &self_training::ENTRY,
    &co_training::ENTRY,
    &fixmatch::ENTRY,
];

/// A semi-supervised run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SemiConfig {
    /// `genlab semi list`.
    pub method: String,
    pub data: String,
    /// Labelled examples, class-balanced (100: the usual MNIST benchmark).
    pub labels: usize,
    pub seed: u64,
    pub model: NetConfig,
    /// Supervised fitting (the baseline, and the inner fits of self- and co-training).
    pub fit: FitConfig,
    /// Examples per forward pass when scoring and testing.
    pub batch: usize,
    /// The method's own settings (`method.KEY`); `null`: its defaults.
    pub method_config: Value,
}

impl Default for SemiConfig {
    fn default() -> Self {
        Self {
            method: "fixmatch".into(),
            data: "mnist".into(),
            labels: 100,
            seed: 0,
            model: NetConfig::default(),
            fit: FitConfig {
                // 100 labels are one batch: 50 epochs would be 50 steps, too few.
                min_steps: 500,
                ..FitConfig::default()
            },
            batch: 500,
            method_config: Value::Null,
        }
    }
}

/// What a method is given.
pub struct Ctx<'a> {
    pub cfg: &'a SemiConfig,
    pub data: &'a Data,
    /// Positions in the pool of the labelled examples; every other pool example is
    /// unlabelled (its label never read).
    pub labelled: &'a [usize],
    pub device: &'a Device,
    /// Progress lines.
    pub log: &'a mut dyn FnMut(&str),
}

impl Ctx<'_> {
    /// The pool positions without labels.
    pub fn unlabelled(&self) -> Vec<usize> {
        let mut l = vec![false; self.data.pool.len()];
        for &i in self.labelled {
            l[i] = true;
        }
        (0..self.data.pool.len()).filter(|&i| !l[i]).collect()
    }

    /// Test accuracy of a classifier given as a function from images to probabilities.
    pub fn test_accuracy(&self, probs: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<f64> {
        let idx: Vec<usize> = (0..self.data.test.len()).collect();
        let mut correct = 0usize;
        for_batches(
            &self.data.test,
            &idx,
            self.cfg.batch,
            self.device,
            |_, x, y| {
                let pred = probs(x)?.argmax(1)?;
                correct += pred
                    .eq(y)?
                    .to_dtype(candle_core::DType::F32)?
                    .sum_all()?
                    .to_scalar::<f32>()? as usize;
                Ok(())
            },
        )?;
        Ok(correct as f64 / self.data.test.len().max(1) as f64)
    }
}

/// One registered method.
pub struct MethodEntry {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub defaults: fn() -> Value,
    /// Trains and returns the test accuracy.
    pub run: fn(&mut Ctx, &Value, &mut Rng) -> Result<f64>,
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
    crate::registry::find_named(METHODS, name, "semi-supervised method", |m| m.name)
}

/// The result of a run (`result.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SemiResult {
    pub method: String,
    pub data: String,
    pub labels: usize,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub config: SemiConfig,
}

/// Resolves `cfg` (the method's defaults under `overrides`, keys `method.KEY`, and the
/// rest) and checks it against the data.
pub fn resolve(cfg: &SemiConfig, overrides: &[(String, Value)]) -> Result<SemiConfig> {
    let entry = find(&cfg.method)?;
    let mut base = cfg.clone();
    if base.method_config.is_null() {
        base.method_config = (entry.defaults)();
    }
    let renamed = crate::registry::method_overrides(overrides);
    genlab_core::config::resolve(&base, None, &renamed)
}

/// Runs a method; writes `config.json` and `result.json` to `out`.
pub fn run(
    cfg: &SemiConfig,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<SemiResult> {
    let entry = find(&cfg.method)?;
    let data = Data::open(&cfg.data)?;
    if cfg.labels == 0 || cfg.labels > data.pool.len() {
        return Err(Error::setting(
            "labels",
            format!(
                "asks for {} labelled examples but the {} pool has {} (at least 1 needed)",
                cfg.labels,
                data.name,
                data.pool.len()
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    genlab_core::io::write_json(&out.join("config.json"), cfg)?;
    let start = Instant::now();
    let labelled = balanced_subset(
        &data.pool,
        data.classes,
        cfg.labels,
        &mut Rng::derive(cfg.seed, "semi/labels"),
    )?;
    let mut rng = Rng::derive(cfg.seed, "semi/method");
    let mut ctx = Ctx {
        cfg,
        data: &data,
        labelled: &labelled,
        device,
        log,
    };
    let acc = (entry.run)(&mut ctx, &cfg.method_config, &mut rng)?;
    let r = SemiResult {
        method: cfg.method.clone(),
        data: cfg.data.clone(),
        labels: cfg.labels,
        test_accuracy: acc,
        seconds: start.elapsed().as_secs_f64(),
        config: cfg.clone(),
    };
    genlab_core::io::write_json(&out.join("result.json"), &r)?;
    Ok(r)
}
