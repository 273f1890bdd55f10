//! The acquisition loop: start from a small labelled set, train, score candidates from the
//! unlabelled pool, label the best ones, and again until the budget is spent.
//!
//! Each round trains a fresh network from scratch on the labelled set (Gal, Islam &
//! Ghahramani 2017, arXiv:1703.02910, section 5.1), records its test accuracy against the
//! number of labels, then scores `pool_subset` random unlabelled candidates (2,000 in the
//! common re-implementations of Gal et al.'s protocol, which scored the whole pool; 0 here
//! scores every unlabelled example) in batches of `batch`, so the pool is never one
//! array. `curve.json` is rewritten after every round (a run stopped early keeps its
//! points); `rounds.jsonl` gets one line per round.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use genlab_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};

use super::{find, Evidence, Features, Needs, StrategyEntry};
use crate::curve::{Curve, CurvePoint};
use crate::data::{balanced_subset, gather_host, Data};
use crate::net::{Net, NetConfig};
use crate::train::{accuracy, features, fit, predict, FitConfig, Probs};

/// Everything an active-learning run is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveConfig {
    /// `genlab active list`.
    pub strategy: String,
    /// `mnist`, `digits` or `synthetic`.
    pub data: String,
    /// Labelled examples to start with, class-balanced (20: Gal et al.).
    pub initial: usize,
    /// Labels acquired per round (10: Gal et al.).
    pub per_round: usize,
    /// Total labels at which the run stops (1,000: Gal et al.).
    pub budget: usize,
    /// Random unlabelled candidates scored per round (0: all of them).
    pub pool_subset: usize,
    /// Monte Carlo dropout samples for BALD and variation ratios (20: Gal et al.'s code).
    pub mc_samples: usize,
    /// Members of the query-by-committee committee.
    pub committee: usize,
    /// Examples per forward pass when scoring and testing (memory, not results).
    pub batch: usize,
    pub seed: u64,
    pub model: NetConfig,
    pub fit: FitConfig,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        Self {
            strategy: "random".into(),
            data: "mnist".into(),
            initial: 20,
            per_round: 10,
            budget: 1000,
            pool_subset: 2000,
            mc_samples: 20,
            // 3: the smallest committee whose members can outvote each other.
            committee: 3,
            batch: 500,
            seed: 0,
            model: NetConfig::default(),
            fit: FitConfig::default(),
        }
    }
}

/// One round as `rounds.jsonl` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundLog {
    pub round: usize,
    pub labels: usize,
    pub test_accuracy: f64,
    pub train_loss: f64,
    /// Class counts of the labelled set.
    pub class_counts: Vec<usize>,
    pub seconds: f64,
}

/// Checks a config against its data and strategy before any work.
pub fn validate(cfg: &ActiveConfig, data: &Data) -> Result<&'static StrategyEntry> {
    let entry = find(&cfg.strategy)?;
    if cfg.initial == 0 || cfg.per_round == 0 {
        return Err(Error::setting(
            if cfg.initial == 0 {
                "initial"
            } else {
                "per_round"
            },
            "must be at least 1",
        ));
    }
    if cfg.budget < cfg.initial {
        return Err(Error::setting(
            "budget",
            format!(
                "is {} labels, smaller than the initial labelled set of {}",
                cfg.budget, cfg.initial
            ),
        ));
    }
    if cfg.budget > data.pool.len() {
        return Err(Error::setting(
            "budget",
            format!(
                "asks for {} labels but the {} pool has only {} examples",
                cfg.budget,
                data.name,
                data.pool.len()
            ),
        ));
    }
    let dropout = cfg.model.dropout_conv > 0.0 || cfg.model.dropout_fc > 0.0;
    if entry.needs == Needs::McDropout && !dropout {
        return Err(Error::setting(
            "strategy",
            format!(
                "`{}` samples the model with Monte Carlo dropout, but the model has no dropout \
                 (model.dropout_conv and model.dropout_fc are 0); give one a rate in (0, 1)",
                entry.name
            ),
        ));
    }
    if entry.needs == Needs::McDropout && cfg.mc_samples < 2 {
        return Err(Error::setting(
            "mc_samples",
            "MC dropout needs at least 2 samples",
        ));
    }
    if entry.needs == Needs::Committee && cfg.committee < 2 {
        return Err(Error::setting(
            "committee",
            "a committee needs at least 2 members",
        ));
    }
    Ok(entry)
}

/// Runs the loop; writes `config.json`, `rounds.jsonl`, `curve.json`, `curve.svg` and
/// `labelled.json` (the pool positions labelled, in order) to `out`. `on_round` sees each
/// round's log line.
pub fn run(
    cfg: &ActiveConfig,
    out: &Path,
    device: &Device,
    on_round: &mut dyn FnMut(&RoundLog),
) -> Result<Curve> {
    let data = Data::open(&cfg.data)?;
    let entry = validate(cfg, &data)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    genlab_core::io::write_json(&out.join("config.json"), cfg)?;
    let log_path = out.join("rounds.jsonl");
    let mut log = String::new();
    let start = Instant::now();
    let mut rng = Rng::derive(cfg.seed, "active/initial");
    let mut labelled = balanced_subset(&data.pool, data.classes, cfg.initial, &mut rng)?;
    let mut is_labelled = vec![false; data.pool.len()];
    for &i in &labelled {
        is_labelled[i] = true;
    }
    let mut curve = Curve::new(
        format!("{} on {}", entry.name, cfg.data),
        serde_json::to_value(cfg).map_err(|e| Error::Config(e.to_string()))?,
    );
    let mut round = 0;
    loop {
        let (x, y) = gather_host(&data.pool, &labelled);
        let mut fit_rng = Rng::derive(cfg.seed, &format!("active/fit/{round}"));
        let net = Net::new(
            &cfg.model,
            &data.shape,
            data.classes,
            fit_rng.next_u64(),
            device,
        )?;
        let loss = fit(&net, &x, &y, &data.shape, &cfg.fit, &mut fit_rng, None)?;
        let acc = accuracy(&net, &data.test, cfg.batch)?;
        let mut counts = vec![0; data.classes];
        for &c in &y {
            counts[c as usize] += 1;
        }
        let line = RoundLog {
            round,
            labels: labelled.len(),
            test_accuracy: acc,
            train_loss: loss,
            class_counts: counts,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_round(&line);
        log.push_str(&serde_json::to_string(&line).map_err(|e| Error::Config(e.to_string()))?);
        log.push('\n');
        genlab_core::io::write_atomic(&log_path, log.as_bytes())?;
        curve.points.push(CurvePoint {
            labels: labelled.len(),
            accuracy: acc,
            seconds: line.seconds,
        });
        curve.write(out)?;
        genlab_core::io::write_json(&out.join("labelled.json"), &labelled)?;
        if labelled.len() >= cfg.budget {
            break;
        }
        // Candidates: a random subset of the unlabelled pool.
        let mut srng = Rng::derive(cfg.seed, &format!("active/select/{round}"));
        let mut cand: Vec<usize> = (0..data.pool.len()).filter(|&i| !is_labelled[i]).collect();
        if cfg.pool_subset > 0 && cand.len() > cfg.pool_subset {
            for i in 0..cfg.pool_subset {
                let j = i + srng.below((cand.len() - i) as u64) as usize;
                cand.swap(i, j);
            }
            cand.truncate(cfg.pool_subset);
        }
        let k = cfg
            .per_round
            .min(cfg.budget - labelled.len())
            .min(cand.len());
        let evidence =
            gather_evidence(cfg, entry, &data, &net, &labelled, &cand, &mut srng, device)?;
        let ev = Evidence {
            n: cand.len(),
            probs: evidence.0.as_ref(),
            features: evidence.1.as_ref(),
        };
        let picked = (entry.select)(&ev, k, &mut srng)?;
        for p in picked {
            let i = cand[p];
            if is_labelled[i] {
                return Err(Error::Numeric(format!(
                    "{} picked pool example {i} twice",
                    entry.name
                )));
            }
            is_labelled[i] = true;
            labelled.push(i);
        }
        round += 1;
    }
    curve.write_svg(out)?;
    Ok(curve)
}

/// What `entry` needs about the candidates, computed from the round's network.
#[allow(clippy::too_many_arguments)]
fn gather_evidence(
    cfg: &ActiveConfig,
    entry: &StrategyEntry,
    data: &Data,
    net: &Net,
    labelled: &[usize],
    cand: &[usize],
    rng: &mut Rng,
    device: &Device,
) -> Result<(Option<Probs>, Option<Features>)> {
    Ok(match entry.needs {
        Needs::Nothing => (None, None),
        Needs::Probs => (
            Some(predict(net, &data.pool, cand, cfg.batch, 0, rng)?),
            None,
        ),
        Needs::McDropout => (
            Some(predict(
                net,
                &data.pool,
                cand,
                cfg.batch,
                cfg.mc_samples,
                rng,
            )?),
            None,
        ),
        Needs::Committee => {
            // Query by bagging: member c trains on a bootstrap resample of the labelled set.
            let mut all = Vec::new();
            let (x, y) = gather_host(&data.pool, labelled);
            let d = data.dim();
            let mut members = 0;
            for c in 0..cfg.committee {
                let mut mrng =
                    Rng::derive(cfg.seed, &format!("active/member/{c}/{}", labelled.len()));
                let boot: Vec<usize> = (0..y.len())
                    .map(|_| mrng.below(y.len() as u64) as usize)
                    .collect();
                let bx: Vec<f32> = boot
                    .iter()
                    .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
                    .collect();
                let by: Vec<u32> = boot.iter().map(|&i| y[i]).collect();
                let m = Net::new(
                    &cfg.model,
                    &data.shape,
                    data.classes,
                    mrng.next_u64(),
                    device,
                )?;
                fit(&m, &bx, &by, &data.shape, &cfg.fit, &mut mrng, None)?;
                let p = predict(&m, &data.pool, cand, cfg.batch, 0, rng)?;
                all.extend(p.p);
                members += 1;
            }
            let probs = Probs {
                t: members,
                n: cand.len(),
                k: data.classes,
                p: all,
            };
            (Some(probs), None)
        }
        Needs::Features => {
            let f = |x: &candle_core::Tensor| net.features(x);
            let (c, dim) = features(&data.pool, cand, cfg.batch, device, f)?;
            let (l, _) = features(&data.pool, labelled, cfg.batch, device, f)?;
            (
                None,
                Some(Features {
                    candidates: c,
                    labelled: l,
                    dim,
                }),
            )
        }
    })
}
