//! Transfer learning: a representation trained on one data set (a self-supervised encoder,
//! a supervised classifier or a VAE, [`crate::represent`]) reused on another with few
//! labels, in four ways, over a range of label counts and seeds:
//!
//! | mode | what is trained on the target's labels |
//! |---|---|
//! | `probe` | nothing of the source: logistic regression on its frozen features ([`crate::eval::linear_probe`]) |
//! | `finetune-last` | the source's feature layer and a new head; its convolutions frozen |
//! | `finetune` | every layer, starting from the source's weights, and a new head |
//! | `scratch` | the same network from a random initialisation: the baseline |
//!
//! The protocol of Yosinski et al. 2014 ("How transferable are features in deep neural
//! networks?", arXiv:1411.1792: frozen against fine-tuned transferred layers against a
//! network trained from scratch) and of Kornblith, Shlens & Le 2019 ("Do Better ImageNet
//! Models Transfer Better?", arXiv:1805.08974: logistic regression on frozen features,
//! fine-tuning, training from random initialisation), at few labels. Every (labels, seed)
//! cell draws one class-balanced labelled subset that all modes share; fine-tuned layers
//! learn at `backbone_lr`, new heads and networks from scratch at `fit.lr`; a new head on
//! transferred layers reads their features centred and scaled to unit mean variance (on the
//! cell's labelled images, then fixed).
//!
//! Writes `config.json`, `results.jsonl` (a line per finished cell: a rerun with the same
//! config skips those, so an interrupted run resumes), `transfer.json` (mean, min and max
//! over seeds) and `transfer.svg` (test accuracy against labels, one line per mode, the band
//! spanning the seeds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::{Classifier, ClassifierConfig};
use genlab_train::optim::{AdamW, AdamWConfig};
use serde::{Deserialize, Serialize};

use crate::data::{balanced_subset, gather_host, Data};
use crate::eval::{linear_probe, ProbeConfig};
use crate::represent::Representation;
use crate::train::{accuracy_with, features, fit_with, FitConfig};

/// The modes: `(name, what it trains)`.
pub const MODES: &[(&str, &str)] = &[
    (
        "probe",
        "logistic regression on the source's frozen features (the linear probe)",
    ),
    (
        "finetune-last",
        "the source's feature layer and a new head; its convolutions frozen",
    ),
    (
        "finetune",
        "every layer from the source's weights, and a new head",
    ),
    (
        "scratch",
        "the same network from a random initialisation (the baseline)",
    ),
];

/// A transfer run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// The source run directory.
    pub from: String,
    /// The target data (a [`crate::data::SOURCES`] name).
    pub data: String,
    pub modes: Vec<String>,
    /// Labelled target examples per cell (class-balanced).
    pub labels: Vec<usize>,
    pub seeds: Vec<u64>,
    /// Training of the fine-tuned and scratch networks (epochs over the labelled set, at
    /// least `min_steps`; `lr` for new heads and for networks from scratch).
    pub fit: FitConfig,
    /// Adam's rate for the transferred layers when fine-tuning (a tenth of `fit.lr`: the
    /// usual smaller rate for pretrained layers).
    pub backbone_lr: f64,
    /// Random shifts of up to 1/8 of the side on the labelled images (the weak
    /// augmentation of `genlab semi`).
    pub augment: bool,
    pub probe: ProbeConfig,
    /// Images per evaluation batch.
    pub eval_batch: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            from: String::new(),
            data: "digits28".into(),
            modes: MODES.iter().map(|m| m.0.to_string()).collect(),
            labels: vec![10, 20, 50, 100, 200, 500],
            seeds: vec![0, 1, 2],
            fit: FitConfig {
                epochs: 50,
                batch: 64,
                min_steps: 200,
                lr: 1e-3,
                weight_decay: 0.0,
            },
            backbone_lr: 1e-4,
            augment: true,
            probe: ProbeConfig::default(),
            eval_batch: 500,
        }
    }
}

/// One finished (mode, labels, seed) cell.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub mode: String,
    pub labels: usize,
    pub seed: u64,
    /// Test accuracy in [0, 1] on the target's test set.
    pub accuracy: f64,
    /// Optimizer steps (0 for `probe`, whose epochs are in the config).
    pub steps: usize,
    pub seconds: f64,
}

/// Accuracy over seeds at one label count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub mode: String,
    pub labels: usize,
    pub seeds: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// What `transfer.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The source representation, in words.
    pub source: String,
    pub data: String,
    pub summary: Vec<Summary>,
    pub config: TransferConfig,
}

/// Resolves the `--set` overrides.
pub fn resolve(
    cfg: &TransferConfig,
    overrides: &[(String, serde_json::Value)],
) -> Result<TransferConfig> {
    genlab_core::config::resolve(cfg, None, overrides)
}

impl TransferConfig {
    fn validate(&self) -> Result<()> {
        if self.modes.is_empty() || self.labels.is_empty() || self.seeds.is_empty() {
            return Err(Error::Config(
                "transfer needs at least one mode, one label count and one seed".into(),
            ));
        }
        for m in &self.modes {
            if !MODES.iter().any(|k| k.0 == m) {
                return Err(Error::unknown(
                    "transfer mode",
                    m,
                    MODES.iter().map(|k| k.0),
                ));
            }
        }
        if self.labels.contains(&0) {
            return Err(Error::setting(
                "labels",
                "every label count must be at least 1",
            ));
        }
        if !(self.backbone_lr > 0.0 && self.fit.lr > 0.0) {
            return Err(Error::setting(
                "backbone_lr",
                "learning rates must be positive",
            ));
        }
        Ok(())
    }
}

/// Checks that the source can feed the target: same image shape.
pub fn check_shapes(source: &Representation, target: &Data) -> Result<()> {
    if target.shape[..] != source.input[..] {
        return Err(Error::InvalidInput(format!(
            "the source ({}) takes {:?} images but data `{}` has {:?}: transfer needs the \
             same image shape (digits28 is the 8x8 digits at MNIST's 28x28)",
            source.describe(),
            source.input,
            target.name,
            target.shape
        )));
    }
    Ok(())
}

/// The cells already finished in `results.jsonl` of a run with the same config.
fn finished(out: &Path, cfg: &TransferConfig) -> Result<Vec<Cell>> {
    let old_cfg = out.join("config.json");
    let results = out.join("results.jsonl");
    if !old_cfg.exists() || !results.exists() {
        return Ok(Vec::new());
    }
    let old: TransferConfig = match genlab_core::io::read_json(&old_cfg) {
        Ok(c) => c,
        Err(_) => return Ok(Vec::new()),
    };
    if &old != cfg {
        return Err(Error::InvalidInput(format!(
            "{} holds a transfer run with another config; choose a new --out (or delete it)",
            out.display()
        )));
    }
    let text = std::fs::read_to_string(&results).map_err(|e| Error::io("read", &results, e))?;
    // A line cut by a crash is dropped: its cell runs again.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Cell>(l).ok())
        .collect())
}

/// Runs every cell not yet in `out`, then writes the summary and the chart.
pub fn run(
    cfg: &TransferConfig,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<Report> {
    cfg.validate()?;
    let source = Representation::load(&PathBuf::from(&cfg.from), device)?;
    let data = Data::open(&cfg.data)?;
    check_shapes(&source, &data)?;
    let trains = cfg.modes.iter().any(|m| m != "probe");
    let src_weights = match trains {
        true => Some(source.classifier_weights()?),
        false => None,
    };
    for &n in &cfg.labels {
        if n > data.pool.len() {
            return Err(Error::setting(
                "labels",
                format!(
                    "asks for {n} labelled examples but the pool of {} has only {}",
                    data.name,
                    data.pool.len()
                ),
            ));
        }
    }
    let mut cells = finished(out, cfg)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    genlab_core::io::write_json(&out.join("config.json"), cfg)?;
    log(&format!("source: {}", source.describe()));
    let test_idx: Vec<usize> = (0..data.test.len()).collect();
    let f = |x: &Tensor| source.features(x);
    let (test_feats, dim) = match cfg.modes.iter().any(|m| m == "probe") {
        true => features(&data.test, &test_idx, cfg.eval_batch, device, f)?,
        false => (Vec::new(), source.dim),
    };
    let test_y: Vec<u32> = test_idx.iter().map(|&i| data.test.label(i)).collect();
    let shape = [data.shape[0], data.shape[1], data.shape[2]];
    for &seed in &cfg.seeds {
        for &n in &cfg.labels {
            let idx = balanced_subset(
                &data.pool,
                data.classes,
                n,
                &mut Rng::derive(seed, &format!("transfer/subset/{n}")),
            )?;
            for mode in &cfg.modes {
                if cells
                    .iter()
                    .any(|c| &c.mode == mode && c.labels == n && c.seed == seed)
                {
                    continue;
                }
                let t0 = Instant::now();
                let (accuracy, steps) = match mode.as_str() {
                    "probe" => {
                        let (tx, _) = features(&data.pool, &idx, cfg.eval_batch, device, f)?;
                        let ty: Vec<u32> = idx.iter().map(|&i| data.pool.label(i)).collect();
                        let acc = linear_probe(
                            &tx,
                            &ty,
                            &test_feats,
                            &test_y,
                            dim,
                            data.classes,
                            &cfg.probe,
                            seed,
                        )?;
                        (acc, 0)
                    }
                    _ => {
                        let (enc_cfg, w) = src_weights.as_ref().ok_or_else(|| {
                            Error::InvalidInput("no source weights to fine-tune".into())
                        })?;
                        train_cell(cfg, mode, enc_cfg, w, &data, &idx, shape, seed, device)?
                    }
                };
                let cell = Cell {
                    mode: mode.clone(),
                    labels: n,
                    seed,
                    accuracy,
                    steps,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                log(&format!(
                    "{mode:>13} {n:>5} labels, seed {seed}: test accuracy {:.2}% ({} steps, {:.0} s)",
                    100.0 * accuracy,
                    steps,
                    cell.seconds
                ));
                append_line(&out.join("results.jsonl"), &cell)?;
                cells.push(cell);
            }
        }
    }
    let summary = summarise(&cells, cfg);
    let report = Report {
        source: source.describe(),
        data: data.name.clone(),
        summary,
        config: cfg.clone(),
    };
    genlab_core::io::write_json(&out.join("transfer.json"), &report)?;
    let svg = chart(&report)?;
    genlab_core::io::write_atomic(&out.join("transfer.svg"), svg.as_bytes())?;
    Ok(report)
}

fn append_line(path: &Path, cell: &Cell) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let line = serde_json::to_string(cell).map_err(|e| Error::Config(e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| Error::io("write", path, e))
}

/// The network of a trained mode, trained on the cell's labels; its test accuracy and steps.
#[allow(clippy::too_many_arguments)]
fn train_cell(
    cfg: &TransferConfig,
    mode: &str,
    src: &ClassifierConfig,
    weights: &HashMap<String, Tensor>,
    data: &Data,
    idx: &[usize],
    shape: [usize; 3],
    seed: u64,
    device: &Device,
) -> Result<(f64, usize)> {
    let net_cfg = ClassifierConfig {
        num_classes: data.classes,
        ..src.clone()
    };
    let ps = ParamStore::new(seed, device);
    let net = Classifier::new(&net_cfg, ps.vb())?;
    // Which layers start from the source, and which of them are trained.
    let transferred = |name: &str| mode != "scratch" && !name.starts_with("head.");
    let frozen = |name: &str| mode == "finetune-last" && name.starts_with("conv.");
    for (name, var) in ps.vars() {
        if transferred(&name) {
            let w = weights
                .get(&name)
                .ok_or_else(|| Error::Checkpoint(format!("the source has no tensor `{name}`")))?;
            var.set(&w.to_device(device)?.copy()?)?;
        }
    }
    let adam = AdamWConfig {
        weight_decay: cfg.fit.weight_decay,
        ..AdamWConfig::default()
    };
    let (backbone, fresh): (Vec<_>, Vec<_>) = ps
        .vars()
        .into_iter()
        .filter(|(n, _)| !frozen(n))
        .partition(|(n, _)| transferred(n));
    let mut opt_backbone = AdamW::new(backbone, adam.clone())?;
    let mut opt_fresh = AdamW::new(fresh, adam)?;
    let (x, y) = gather_host(&data.pool, idx);
    let aug = move |ex: &mut [f32], r: &mut Rng| crate::augment::weak(ex, shape, r);
    let freeze_trunk = mode == "finetune-last";
    // The new head reads the source's features centred and scaled on the labelled images: a
    // reconstruction pretext's features can be large enough that a head on the raw ones
    // learns nothing in a few hundred steps.
    let norm = match mode {
        "scratch" => None,
        _ => Some(standardiser(&net, &x, idx.len(), shape, device)?),
    };
    let head_of = |f: Tensor| -> Result<Tensor> {
        let f = match &norm {
            Some((mean, inv_std)) => f.broadcast_sub(mean)?.broadcast_mul(inv_std)?,
            None => f,
        };
        Ok(net.head(&f)?)
    };
    let logits = |xb: &Tensor, _: &mut Rng| -> Result<Tensor> {
        let mut t = net.trunk(xb)?;
        if freeze_trunk {
            t = t.detach();
        }
        head_of(net.features_from_trunk(&t)?)
    };
    let mut rng = Rng::derive(seed, &format!("transfer/{mode}/{}", idx.len()));
    fit_with(
        &logits,
        &mut |g| {
            opt_backbone.step(g, cfg.backbone_lr, 1.0)?;
            opt_fresh.step(g, cfg.fit.lr, 1.0)?;
            Ok(())
        },
        &x,
        &y,
        &shape,
        &cfg.fit,
        &mut rng,
        cfg.augment.then_some(&aug as _),
        device,
    )?;
    let acc = accuracy_with(&data.test, cfg.eval_batch, device, |xb| {
        head_of(net.features(xb)?)
    })?;
    Ok((acc, cfg.fit.steps(idx.len())))
}

/// Per-feature mean `[1, F]` and one inverse deviation `[1, 1]` (the root mean variance
/// over features, floored at 1e-6) of `net`'s features of the `n` images `x`, constants.
fn standardiser(
    net: &Classifier,
    x: &[f32],
    n: usize,
    shape: [usize; 3],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let [c, h, w] = shape;
    let f = net
        .features(&Tensor::from_slice(x, (n, c, h, w), device)?)?
        .detach();
    let mean = f.mean_keepdim(0)?;
    // One scale for all features (the root of their mean variance), not one per feature: a
    // feature that is 0 on every one of ten labelled images would get a deviation of 0 and
    // blow up on the first test image where it is not.
    let var = f
        .broadcast_sub(&mean)?
        .sqr()?
        .mean_all()?
        .to_scalar::<f32>()? as f64;
    let inv_std = Tensor::new(&[1.0 / var.sqrt().max(1e-6) as f32], device)?.reshape((1, 1))?;
    Ok((mean, inv_std))
}

/// Mean, min and max over seeds of every (mode, labels) in the config's order.
pub fn summarise(cells: &[Cell], cfg: &TransferConfig) -> Vec<Summary> {
    let mut out = Vec::new();
    for mode in &cfg.modes {
        for &n in &cfg.labels {
            let acc: Vec<f64> = cells
                .iter()
                .filter(|c| &c.mode == mode && c.labels == n && cfg.seeds.contains(&c.seed))
                .map(|c| c.accuracy)
                .collect();
            if acc.is_empty() {
                continue;
            }
            out.push(Summary {
                mode: mode.clone(),
                labels: n,
                seeds: acc.len(),
                mean: acc.iter().sum::<f64>() / acc.len() as f64,
                min: acc.iter().copied().fold(f64::INFINITY, f64::min),
                max: acc.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
        }
    }
    out
}

/// Test accuracy (%) against log10 labels, a line per mode, the band from the worst to the
/// best seed.
pub fn chart(report: &Report) -> Result<String> {
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for mode in &report.config.modes {
        let rows: Vec<&Summary> = report.summary.iter().filter(|s| &s.mode == mode).collect();
        let x = |s: &Summary| (s.labels as f64).log10();
        series.push(genlab_report::Series {
            name: mode.clone(),
            points: rows.iter().map(|s| (x(s), 100.0 * s.mean)).collect(),
        });
        bands.push(
            rows.iter()
                .map(|s| (x(s), 100.0 * s.min, 100.0 * s.max))
                .collect(),
        );
    }
    genlab_report::line_chart_bands_svg(
        &format!("{} -> {}", short_source(&report.config.from), report.data),
        "labelled target examples (log10: 1 = 10, 2 = 100, 3 = 1,000)",
        "test accuracy (%), mean and range over seeds",
        &series,
        &bands,
        false,
    )
    .map_err(|e| Error::InvalidInput(format!("transfer chart: {e}")))
}

fn short_source(from: &str) -> String {
    Path::new(from)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| from.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mode: &str, labels: usize, seed: u64, accuracy: f64) -> Cell {
        Cell {
            mode: mode.into(),
            labels,
            seed,
            accuracy,
            steps: 0,
            seconds: 0.0,
        }
    }

    #[test]
    fn the_summary_is_mean_min_and_max_over_the_configs_seeds() {
        let cfg = TransferConfig {
            modes: vec!["scratch".into(), "probe".into()],
            labels: vec![10, 20],
            seeds: vec![0, 1, 2],
            ..TransferConfig::default()
        };
        let cells = vec![
            cell("probe", 10, 0, 0.5),
            cell("probe", 10, 1, 0.7),
            cell("probe", 10, 2, 0.9),
            // A seed outside the config (an older run's) is not counted.
            cell("probe", 10, 7, 0.0),
            cell("scratch", 20, 1, 0.25),
        ];
        let s = summarise(&cells, &cfg);
        // Config order: scratch first; (scratch, 10), (probe, 20) have no cell.
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].mode.as_str(), s[0].labels, s[0].seeds),
            ("scratch", 20, 1)
        );
        assert_eq!((s[0].mean, s[0].min, s[0].max), (0.25, 0.25, 0.25));
        assert_eq!(
            (s[1].mode.as_str(), s[1].labels, s[1].seeds),
            ("probe", 10, 3)
        );
        assert!((s[1].mean - 0.7).abs() < 1e-12);
        assert_eq!((s[1].min, s[1].max), (0.5, 0.9));
    }

    #[test]
    fn the_head_input_is_centred_and_scaled_by_one_root_mean_variance() {
        let dev = Device::Cpu;
        let cfg = ClassifierConfig {
            input: [1, 8, 8],
            channels: [4, 8],
            features: 6,
            ..ClassifierConfig::default()
        };
        let ps = ParamStore::new(5, &dev);
        let net = Classifier::new(&cfg, ps.vb()).unwrap();
        let n = 7;
        let mut rng = Rng::new(2);
        let x: Vec<f32> = (0..n * 64).map(|_| rng.uniform() as f32).collect();
        let f: Vec<Vec<f32>> = net
            .features(&Tensor::from_slice(&x, (n, 1, 8, 8), &dev).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        // f64 reference.
        let mean: Vec<f64> = (0..6)
            .map(|j| f.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64)
            .collect();
        let var: f64 = (0..6)
            .map(|j| {
                f.iter()
                    .map(|r| (r[j] as f64 - mean[j]).powi(2))
                    .sum::<f64>()
                    / n as f64
            })
            .sum::<f64>()
            / 6.0;
        let (m, s) = standardiser(&net, &x, n, [1, 8, 8], &dev).unwrap();
        let m: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        let s: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
        // f32 sums of 7 values.
        const TOL: f64 = 1e-5;
        for (a, b) in m.iter().zip(&mean) {
            assert!((*a as f64 - b).abs() <= TOL * b.abs().max(1.0), "{a} {b}");
        }
        assert_eq!(s.len(), 1);
        let want = 1.0 / var.sqrt();
        assert!((s[0] as f64 - want).abs() <= TOL * want, "{} {want}", s[0]);
    }

    #[test]
    fn configs_without_modes_or_with_unknown_ones_are_refused() {
        let bad = |f: &dyn Fn(&mut TransferConfig)| {
            let mut c = TransferConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(&|c| c.modes = vec!["frozen".into()]).contains("frozen"));
        assert!(bad(&|c| c.seeds.clear()).contains("at least one"));
        assert!(bad(&|c| c.labels = vec![0]).contains("at least 1"));
        assert!(bad(&|c| c.backbone_lr = 0.0).contains("positive"));
    }
}
