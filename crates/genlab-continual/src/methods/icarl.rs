//! iCaRL: Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and
//! Representation Learning", arXiv:1611.07725, Class-IL only.
//!
//! - Representation learning (Algorithm 3): each task trains on its data plus the stored
//!   exemplars with the sum over units of the binary cross-entropy, the targets of the new
//!   classes one-hot and those of the old classes the previous network's sigmoid outputs
//!   (distillation; as in van de Ven & Tolias's code, at temperature 2: `sigmoid(z_old / 2)`).
//! - Exemplars (Algorithms 4-5): a budget of `K` examples split equally over the classes seen,
//!   `m = K / classes`; old sets are cut to their first `m`, and each new class gets `m`
//!   chosen by herding on the L2-normalised features (the penultimate layer): the `k`-th
//!   exemplar brings the mean of the chosen ones closest to the class mean.
//! - Classification (Algorithm 1): nearest mean of exemplars, each mean the normalised mean
//!   of its exemplars' normalised features, computed with the network after the task.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};
use genlab_rl::nn::Mlp;

use super::replay::check_budget;
use super::{parse_config, setting_error, Ctx, MemoryItem, Method, MethodEntry, Spec, TrainingSet};
use crate::benchmark::{BenchmarkEntry, Examples, Scenario};
use crate::learner::{binary_ce, Learner};
use crate::mlp::features;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Exemplars stored over all classes (the reference's 2000 for Table 2).
    pub budget: usize,
    /// Temperature of the distilled sigmoid targets (the reference's 2).
    pub temperature: f64,
    /// Choose exemplars by herding (else at random). The reference code's herding stores, in
    /// effect, random exemplars (it indexes the unshuffled class with positions from a shuffled
    /// loader); `false` reproduces its figures (docs/continual.md).
    pub herding: bool,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "icarl",
    paper: "Rebuffi et al. 2017, arXiv:1611.07725",
    description: "iCaRL: exemplars chosen by herding, distillation, nearest-mean-of-exemplars \
                  classification; needs class-incremental labels",
    scenarios: &[Scenario::Class],
    task_free: false,
    defaults,
    build,
};

fn defaults(_: &BenchmarkEntry, _: Scenario) -> Value {
    serde_json::to_value(Config {
        budget: 2000,
        temperature: 2.0,
        herding: true,
    })
    .expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    let classes = spec.bench.n_tasks() * spec.bench.classes_per_task();
    check_budget(
        c.budget,
        classes,
        &format!("it must hold an exemplar of each of the {classes} classes"),
    )?;
    if c.temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(setting_error(
            "temperature",
            format!("must be > 0, got {}", c.temperature),
        ));
    }
    Ok(Box::new(Icarl {
        cfg: c,
        dim: spec.bench.dim(),
        sets: Vec::new(),
        means: Vec::new(),
        prev: None,
    }))
}

/// L2-normalises each row of `f` `[n, d]` in place.
pub fn normalize_rows(f: &mut [f32], d: usize) {
    for row in f.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
        }
    }
}

/// Herding (Algorithm 4) on normalised features `f` `[n, d]`: up to `m` distinct indices.
pub fn herding(f: &[f32], d: usize, m: usize) -> Vec<usize> {
    let n = f.len() / d;
    let mut mean = vec![0f64; d];
    for row in f.chunks_exact(d) {
        for (a, v) in mean.iter_mut().zip(row) {
            *a += *v as f64 / n as f64;
        }
    }
    let mn = mean
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    mean.iter_mut().for_each(|v| *v /= mn);
    let mut chosen: Vec<usize> = Vec::new();
    let mut sum = vec![0f64; d];
    let mut used = vec![false; n];
    for k in 0..m.min(n) {
        let mut best = (f64::INFINITY, 0);
        for i in (0..n).filter(|&i| !used[i]) {
            let dist: f64 = (0..d)
                .map(|j| {
                    let v = (sum[j] + f[i * d + j] as f64) / (k + 1) as f64 - mean[j];
                    v * v
                })
                .sum();
            if dist < best.0 {
                best = (dist, i);
            }
        }
        used[best.1] = true;
        chosen.push(best.1);
        for j in 0..d {
            sum[j] += f[best.1 * d + j] as f64;
        }
    }
    chosen
}

/// One class's exemplars.
struct ExemplarSet {
    unit: u32,
    task: usize,
    /// `[m, dim]`.
    x: Vec<f32>,
}

pub struct Icarl {
    cfg: Config,
    dim: usize,
    sets: Vec<ExemplarSet>,
    /// `(unit, normalised mean feature)` per class, after the last task.
    means: Vec<(u32, Vec<f32>)>,
    prev: Option<Mlp>,
}

/// Nearest mean (Algorithm 1) of each row of normalised features `f` `[n, d]` among `means`
/// restricted to `range`.
pub fn nearest_mean(
    f: &[f32],
    d: usize,
    means: &[(u32, Vec<f32>)],
    range: Range<usize>,
) -> Vec<u32> {
    f.chunks_exact(d)
        .map(|row| {
            let mut best = (f64::INFINITY, range.start as u32);
            for (u, mu) in means.iter().filter(|(u, _)| range.contains(&(*u as usize))) {
                let dist: f64 = row
                    .iter()
                    .zip(mu)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum();
                if dist < best.0 {
                    best = (dist, *u);
                }
            }
            best.1
        })
        .collect()
}

impl Method for Icarl {
    fn training_set(&self, ctx: &Ctx) -> Option<TrainingSet> {
        let mut extra = Examples::default();
        for s in &self.sets {
            let m = s.x.len() / self.dim;
            extra.x.extend_from_slice(&s.x);
            extra.y.extend(std::iter::repeat_n(s.unit, m));
            extra.task.extend(std::iter::repeat_n(s.task, m));
        }
        Some(TrainingSet {
            parts: vec![(ctx.task, (0..ctx.bench.train[ctx.task].len()).collect())],
            extra,
        })
    }

    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        let n = batch.len();
        let ranges = ctx.ranges(batch);
        let width = ranges[0].len();
        let old = ctx.previous_units().len();
        let prev = self
            .prev
            .as_ref()
            .map(|p| super::scores(p, &batch.x, n, 0..old));
        let t = self.cfg.temperature;
        let mut targets = vec![0f32; n * width];
        for r in 0..n {
            let row = &mut targets[r * width..(r + 1) * width];
            if let Some(s) = &prev {
                for j in 0..old {
                    row[j] = 1.0 / (1.0 + (-(s[r * old + j] as f64) / t).exp()) as f32;
                }
            }
            let y = batch.y[r] as usize;
            if y >= old {
                row[y] = 1.0;
            }
        }
        learner.zero_grad();
        let out = learner.outputs();
        let loss = learner.accumulate(&batch.x, n, |z, d| {
            binary_ce(z, out, &ranges, &targets, 1.0, d)
        });
        learner.step()?;
        Ok(loss)
    }

    fn end_task(&mut self, ctx: &Ctx, learner: &mut Learner, rng: &mut Rng) -> Result<()> {
        let classes = (ctx.task + 1) * ctx.bench.classes_per_task();
        let m = self.cfg.budget / classes;
        let d = self.dim;
        for s in &mut self.sets {
            s.x.truncate(m * d);
        }
        let part = &ctx.bench.train[ctx.task];
        for &digit in &ctx.bench.task_classes[ctx.task] {
            let ids = part.with_digit(digit);
            if ids.is_empty() {
                return Err(setting_error(
                    "budget",
                    format!("cannot pick exemplars: class {digit} has no training example"),
                ));
            }
            let chosen: Vec<usize> = if self.cfg.herding {
                let x = part.gather(&ids);
                let h = learner.net.sizes[learner.net.n_layers() - 1];
                let mut f = features(&learner.net, &x, ids.len());
                normalize_rows(&mut f, h);
                herding(&f, h, m).into_iter().map(|i| ids[i]).collect()
            } else {
                let mut ids = ids;
                rng.shuffle(&mut ids);
                ids.truncate(m);
                ids
            };
            self.sets.push(ExemplarSet {
                unit: ctx.bench.target(ctx.scenario, ctx.task, digit),
                task: ctx.task,
                x: part.gather(&chosen),
            });
        }
        // Class means with the network as it is now.
        let h = learner.net.sizes[learner.net.n_layers() - 1];
        self.means = self
            .sets
            .iter()
            .map(|s| {
                let k = s.x.len() / d;
                let mut f = features(&learner.net, &s.x, k);
                normalize_rows(&mut f, h);
                let mut mu = vec![0f32; h];
                for row in f.chunks_exact(h) {
                    for (a, v) in mu.iter_mut().zip(row) {
                        *a += v / k as f32;
                    }
                }
                normalize_rows(&mut mu, h);
                (s.unit, mu)
            })
            .collect();
        self.prev = Some(learner.net.clone());
        Ok(())
    }

    fn predict(
        &self,
        learner: &Learner,
        x: &[f32],
        n: usize,
        _task: usize,
        range: Range<usize>,
    ) -> Option<Vec<u32>> {
        if self.means.is_empty() {
            return None;
        }
        let h = learner.net.sizes[learner.net.n_layers() - 1];
        let mut f = features(&learner.net, x, n);
        normalize_rows(&mut f, h);
        Some(nearest_mean(&f, h, &self.means, range))
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![
            MemoryItem {
                what: "exemplars".into(),
                floats: self.sets.iter().map(|s| s.x.len()).sum(),
            },
            MemoryItem {
                what: "previous model".into(),
                floats: self.prev.as_ref().map_or(0, |m| m.num_params()),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_mean_matches_brute_force() {
        let mut rng = Rng::new(11);
        let d = 4;
        let mut f = rng.normal_vec(30 * d);
        normalize_rows(&mut f, d);
        let means: Vec<(u32, Vec<f32>)> = (0..5u32)
            .map(|u| {
                let mut m = rng.normal_vec(d);
                normalize_rows(&mut m, d);
                (u, m)
            })
            .collect();
        let got = nearest_mean(&f, d, &means, 1..4);
        for (r, g) in got.iter().enumerate() {
            // Brute force: the largest cosine among units 1..4 (unit vectors: the nearest).
            let mut best = (f64::NEG_INFINITY, 0);
            for (u, m) in &means[1..4] {
                let c: f64 = (0..d).map(|j| f[r * d + j] as f64 * m[j] as f64).sum();
                if c > best.0 {
                    best = (c, *u);
                }
            }
            assert_eq!(*g, best.1);
        }
    }

    #[test]
    fn herding_follows_the_class_mean_worked_by_hand() {
        // Unit vectors at 0, 90, 45 and 10 degrees; their normalised mean points at ~34.9
        // degrees, (0.820, 0.573). First pick: the nearest, 45 degrees (index 2). Second: of
        // (f2 + x) / 2, x = 10 degrees gives (0.846, 0.441), 0.135 from the mean; x = 0 gives
        // (0.854, 0.354), 0.222; x = 90 is farther: index 3.
        let deg = [0.0f64, 90.0, 45.0, 10.0];
        let f: Vec<f32> = deg
            .iter()
            .flat_map(|a| {
                let r = a.to_radians();
                [r.cos() as f32, r.sin() as f32]
            })
            .collect();
        let chosen = herding(&f, 2, 4);
        assert_eq!(&chosen[..2], &[2, 3]);
        let mut all = chosen.clone();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3], "no exemplar twice");
        assert_eq!(herding(&f, 2, 9).len(), 4, "at most the class's examples");
    }
}
