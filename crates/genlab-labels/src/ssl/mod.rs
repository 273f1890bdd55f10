//! Self-supervised representation learning: an encoder trained without labels by a pretext
//! task (methods one file each behind one [`MethodEntry`] registry), then judged by the one
//! evaluation of representations ([`crate::eval`]: linear probe and k-NN on its frozen
//! features). Adding a method is one new file here (a `pub const ENTRY: MethodEntry`)
//! plus one line in [`METHODS`].
//!
//! The encoder is genlab-nn's digit [`Classifier`]'s feature stack (four 3x3 convolutions,
//! a dense layer; `features` wide) without its head.

pub mod byol;
pub mod dae;
pub mod masked;
pub mod moco;
pub mod nt_xent;
pub mod reconstruct;
pub mod rotation;
pub mod simclr;

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::{Classifier, ClassifierConfig};
use genlab_train::LrDecay;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use crate::registry::parse_config;
pub use crate::registry::MethodInfo;

use crate::data::{gather_host, Data, Part};
use crate::eval::{knn_accuracy, linear_probe, ProbeConfig};
use crate::train::features;

/// Every method.
pub const METHODS: &[&MethodEntry] = &[
    &simclr::ENTRY,
    &moco::ENTRY,
    &byol::ENTRY,
    &rotation::ENTRY,
    &dae::ENTRY,
    &masked::ENTRY,
];

/// A pretext task being trained.
pub trait Method {
    /// The loss of a batch of unlabelled images `[B, C, H, W]` (host, row-major).
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor>;

    /// Called after the optimizer step `step` (0-based) of `total`, once the trained weights
    /// have moved: where momentum copies follow them and queues take the batch's keys
    /// (MoCo, BYOL). Nothing by default.
    fn after_step(&self, _step: usize, _total: usize) -> Result<()> {
        Ok(())
    }
}

/// Two independently augmented views ([`crate::augment::simclr`]) of a batch of `b` host
/// images `[C, H, W]`, as tensors: every image of the first view is drawn before the second.
pub(crate) fn two_views(
    x: &[f32],
    b: usize,
    shape: [usize; 3],
    device: &Device,
    rng: &mut Rng,
) -> Result<[Tensor; 2]> {
    let d: usize = shape.iter().product();
    let mut views = [x.to_vec(), x.to_vec()];
    for v in &mut views {
        for ex in v.chunks_exact_mut(d) {
            crate::augment::simclr(ex, shape, rng);
        }
    }
    let [c, h, w] = shape;
    let [v1, v2] = views;
    Ok([
        Tensor::from_vec(v1, (b, c, h, w), device)?,
        Tensor::from_vec(v2, (b, c, h, w), device)?,
    ])
}

/// What `build` gets.
pub struct Spec<'a> {
    pub encoder: &'a Classifier,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    pub params: &'a ParamStore,
    pub config: &'a Value,
    pub device: &'a Device,
}

/// One registered method.
pub struct MethodEntry {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub defaults: fn() -> Value,
    pub build: for<'a> fn(&Spec<'a>) -> Result<Box<dyn Method + 'a>>,
}

/// The method called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static MethodEntry> {
    crate::registry::find_named(METHODS, name, "self-supervised method", |m| m.name)
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

/// A self-supervised run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    pub method: String,
    pub data: String,
    pub steps: usize,
    /// Images per step (256: SimCLR's smallest batch in its Figure 9).
    pub batch: usize,
    /// Adam's learning rate (the peak, with a decay).
    pub lr: f64,
    /// `constant`, or `cosine` (MoCo v2's and BYOL's schedule: half a cosine from `lr` to 0
    /// at `steps`, no warm-up) or `linear` decay.
    pub lr_decay: LrDecay,
    /// AdamW's decoupled weight decay (each step multiplies every weight by
    /// `1 - lr * weight_decay`); 0: plain Adam.
    pub weight_decay: f64,
    pub seed: u64,
    /// The encoder (its `num_classes` is unused).
    pub encoder: ClassifierConfig,
    /// Labelled pool examples the linear probe and k-NN train on (0: the whole pool).
    pub probe_labels: usize,
    pub probe: ProbeConfig,
    /// Neighbours of the k-NN evaluation (20: DINO's k-NN protocol).
    pub knn_k: usize,
    /// Steps between progress lines.
    pub log_every: usize,
    pub method_config: Value,
}

impl Default for SslConfig {
    fn default() -> Self {
        Self {
            method: "simclr".into(),
            data: "mnist".into(),
            steps: 2000,
            batch: 256,
            lr: 1e-3,
            lr_decay: LrDecay::Constant,
            weight_decay: 0.0,
            seed: 0,
            encoder: ClassifierConfig::default(),
            probe_labels: 0,
            probe: ProbeConfig::default(),
            knn_k: 20,
            log_every: 100,
            method_config: Value::Null,
        }
    }
}

/// Resolves the method's defaults and the `--set` overrides (`method.KEY` for its own).
pub fn resolve(cfg: &SslConfig, overrides: &[(String, Value)]) -> Result<SslConfig> {
    let entry = find(&cfg.method)?;
    let mut base = cfg.clone();
    if base.method_config.is_null() {
        base.method_config = (entry.defaults)();
    }
    let renamed = crate::registry::method_overrides(overrides);
    genlab_core::config::resolve(&base, None, &renamed)
}

/// Linear-probe and k-NN accuracy of an encoder's features (`eval.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SslEval {
    pub data: String,
    pub probe_labels: usize,
    pub linear_probe: f64,
    pub knn: f64,
    pub knn_k: usize,
}

fn encoder_for(cfg: &SslConfig, data: &Data, device: &Device) -> Result<(ParamStore, Classifier)> {
    let [c, h, w] = data.shape[..] else {
        return Err(Error::InvalidInput(format!(
            "images expected, got shape {:?}",
            data.shape
        )));
    };
    encoder(cfg, [c, h, w], device)
}

/// The encoder of a run on `[C, H, W]` images, in a store seeded by the run's seed (also
/// the `simclr-step` bench workload's).
pub(crate) fn encoder(
    cfg: &SslConfig,
    input: [usize; 3],
    device: &Device,
) -> Result<(ParamStore, Classifier)> {
    let enc_cfg = ClassifierConfig {
        input,
        ..cfg.encoder.clone()
    };
    enc_cfg.validate()?;
    let ps = ParamStore::new(cfg.seed, device);
    let enc = Classifier::new(&enc_cfg, ps.vb().pp("encoder"))?;
    Ok((ps, enc))
}

/// Trains the encoder; writes `config.json`, `checkpoint.safetensors`, `log.jsonl` and
/// `eval.json` (probe and k-NN on `data`) to `out`.
pub fn train(
    cfg: &SslConfig,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<SslEval> {
    let entry = find(&cfg.method)?;
    let data = Data::open(&cfg.data)?;
    if cfg.batch < 2 {
        return Err(Error::setting("batch", "needs at least 2 images"));
    }
    if !(cfg.weight_decay >= 0.0 && cfg.lr * cfg.weight_decay < 1.0) {
        return Err(Error::setting(
            "weight_decay",
            "must be >= 0 with lr * weight_decay below 1",
        ));
    }
    let (ps, enc) = encoder_for(cfg, &data, device)?;
    let shape = [data.shape[0], data.shape[1], data.shape[2]];
    let method = (entry.build)(&Spec {
        encoder: &enc,
        shape,
        params: &ps,
        config: &cfg.method_config,
        device,
    })?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    genlab_core::io::write_json(&out.join("config.json"), cfg)?;
    let adam = genlab_train::optim::AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    let mut opt = genlab_train::optim::AdamW::new(ps.vars(), adam)?;
    let mut rng = Rng::derive(cfg.seed, "ssl/train");
    let start = Instant::now();
    let mut lines = String::new();
    let mut sum = 0.0;
    let pool = data.pool.len() as u64;
    for step in 0..cfg.steps {
        let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.below(pool) as usize).collect();
        let (x, _) = gather_host(&data.pool, &idx);
        let loss = method.loss(&x, cfg.batch, &mut rng)?;
        let l = loss.to_scalar::<f32>()? as f64;
        if !l.is_finite() {
            return Err(Error::Numeric(format!(
                "{} loss is {l} at step {step}",
                cfg.method
            )));
        }
        let lr = cfg.lr * cfg.lr_decay.factor(step as f64 / cfg.steps as f64);
        opt.step(&loss.backward()?, lr, 1.0)?;
        method.after_step(step, cfg.steps)?;
        sum += l;
        if (step + 1) % cfg.log_every.max(1) == 0 || step + 1 == cfg.steps {
            let k = (step % cfg.log_every.max(1) + 1) as f64;
            let line = serde_json::json!({"step": step + 1, "loss": sum / k, "seconds": start.elapsed().as_secs_f64()});
            log(&format!(
                "step {}: loss {:.4} ({:.0} s)",
                step + 1,
                sum / k,
                start.elapsed().as_secs_f64()
            ));
            lines.push_str(&line.to_string());
            lines.push('\n');
            genlab_core::io::write_atomic(&out.join("log.jsonl"), lines.as_bytes())?;
            sum = 0.0;
        }
    }
    // The encoder alone: the heads of the pretext task are not part of the representation.
    let encoder: std::collections::HashMap<_, _> = ps
        .tensors()
        .into_iter()
        .filter(|(k, _)| k.starts_with("encoder."))
        .collect();
    genlab_core::io::save_safetensors(&out.join("checkpoint.safetensors"), &encoder)?;
    let r = evaluate_encoder(cfg, &data, &enc, device)?;
    genlab_core::io::write_json(&out.join("eval.json"), &r)?;
    Ok(r)
}

/// Settings a re-evaluation may change: how the probe and the k-NN read the features.
const EVAL_KEYS: [&str; 3] = ["probe", "probe_labels", "knn_k"];

/// Loads a run's encoder and evaluates it on `data` (default: the run's own), with the run's
/// probe and k-NN settings changed by `overrides` (`probe.epochs`, `probe.lr`,
/// `probe.lr_decay`, `probe_labels`, `knn_k`, ...).
pub fn evaluate(
    run: &Path,
    data: Option<&str>,
    overrides: &[(String, Value)],
    device: &Device,
) -> Result<SslEval> {
    let saved: SslConfig = genlab_core::io::read_json(&run.join("config.json"))?;
    if let Some((k, _)) = overrides
        .iter()
        .find(|(k, _)| !EVAL_KEYS.contains(&k.split('.').next().unwrap_or("")))
    {
        return Err(Error::setting(
            k,
            "cannot change when evaluating a trained encoder (only probe.*, probe_labels and knn_k can)",
        ));
    }
    let cfg = genlab_core::config::resolve(&saved, None, overrides)?;
    let data = Data::open(data.unwrap_or(&cfg.data))?;
    let trained: [usize; 3] = {
        let d = Data::open(&cfg.data)?;
        [d.shape[0], d.shape[1], d.shape[2]]
    };
    if data.shape[..] != trained[..] {
        return Err(Error::InvalidInput(format!(
            "the encoder of {} takes {:?} images; data `{}` has {:?}",
            run.display(),
            trained,
            data.name,
            data.shape
        )));
    }
    let (ps, enc) = encoder_for(&cfg, &data, device)?;
    ps.load(&genlab_core::io::load_safetensors(
        &run.join("checkpoint.safetensors"),
        device,
    )?)?;
    evaluate_encoder(&cfg, &data, &enc, device)
}

fn evaluate_encoder(
    cfg: &SslConfig,
    data: &Data,
    enc: &Classifier,
    device: &Device,
) -> Result<SslEval> {
    let n = match cfg.probe_labels {
        0 => data.pool.len(),
        k => k.min(data.pool.len()),
    };
    let train_idx = crate::data::balanced_subset(
        &data.pool,
        data.classes,
        n,
        &mut Rng::derive(cfg.seed, "ssl/probe"),
    )?;
    let f = |x: &Tensor| Ok(enc.features(x)?.detach());
    let (tx, dim) = features(&data.pool, &train_idx, 500, device, f)?;
    let ty = labels_of(&data.pool, &train_idx);
    let test_idx: Vec<usize> = (0..data.test.len()).collect();
    let (sx, _) = features(&data.test, &test_idx, 500, device, f)?;
    let sy = labels_of(&data.test, &test_idx);
    let probe = linear_probe(&tx, &ty, &sx, &sy, dim, data.classes, &cfg.probe, cfg.seed)?;
    let knn = knn_accuracy(
        &tx,
        &ty,
        &sx,
        &sy,
        dim,
        data.classes,
        cfg.knn_k.min(tx.len() / dim),
    )?;
    Ok(SslEval {
        data: data.name.clone(),
        probe_labels: n,
        linear_probe: probe,
        knn,
        knn_k: cfg.knn_k,
    })
}

fn labels_of(part: &Part, idx: &[usize]) -> Vec<u32> {
    idx.iter().map(|&i| part.label(i)).collect()
}
