//! The continual-learning loop: tasks in sequence, a fixed number of iterations each, the
//! test accuracy on every task after every task (the accuracy matrix) and, every
//! `eval_every` iterations, on a subset of each task's test set (the curves).
//!
//! Batches are drawn as PyTorch's shuffled `DataLoader` with `drop_last` does in the
//! reference code: an epoch is a fresh permutation of the task's examples cut into full
//! batches, and a new epoch starts when it runs out.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Error, Result, Rng};

use crate::benchmark::{self, Benchmark, Examples, Scenario};
use crate::learner::Learner;
use crate::measures::{measures, Measures};
use crate::methods::{self, Ctx, MemoryItem, Method, Spec, TrainingSet};

/// Test examples classified per chunk.
const EVAL_CHUNK: usize = 1000;

/// Everything that defines a run; saved in its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub benchmark: String,
    pub scenario: Scenario,
    pub method: String,
    pub seed: u64,
    /// Number of tasks (null: the benchmark's, 5 for split MNIST and 10 for permuted).
    pub tasks: Option<usize>,
    /// Split benchmarks: the digits of each task (null: pairs 0/1, 2/3, ...).
    pub groups: Option<Vec<Vec<u32>>>,
    /// Iterations per task (the reference: 2000 on split MNIST, 5000 on permuted).
    pub iters: usize,
    /// Batch size (the reference: 128).
    pub batch: usize,
    /// Adam's learning rate (the reference: 1e-3 on split MNIST, 1e-4 on permuted).
    pub lr: f64,
    /// Hidden widths of the classifier MLP (the reference: 2 x 400, 2 x 1000 permuted).
    pub hidden: Vec<usize>,
    /// Iterations between points of the accuracy curves (0: only at task ends).
    pub eval_every: usize,
    /// Test examples per task for the curves (the matrix uses every test example).
    pub curve_examples: usize,
    /// The method's settings (its preset for the benchmark and scenario, then overrides).
    pub method_config: Value,
}

impl RunConfig {
    /// The defaults for a benchmark, scenario and method, then `key=value` overrides
    /// (`iters=500`, `method.lambda=1e6`).
    pub fn resolve(
        benchmark: &str,
        scenario: Scenario,
        method: &str,
        seed: u64,
        overrides: &[String],
    ) -> Result<Self> {
        let b = benchmark::find(benchmark)?;
        let m = methods::find(method)?;
        m.check_scenario(scenario)?;
        let defaults = RunConfig {
            benchmark: b.name.to_string(),
            scenario,
            method: m.name.to_string(),
            seed,
            tasks: None,
            groups: None,
            iters: b.iters,
            batch: b.batch,
            lr: b.lr,
            hidden: vec![b.hidden; 2],
            eval_every: (b.iters / 10).max(1),
            curve_examples: 500,
            method_config: (m.defaults)(b, scenario),
        };
        let mut tree = serde_json::to_value(&defaults)
            .map_err(|e| Error::Config(format!("cannot serialise defaults: {e}")))?;
        for o in overrides {
            let (k, v) = genlab_core::config::parse_override(o)?;
            let k = k.replacen("method.", "method_config.", 1);
            // The defaults hold null for optional settings: allow setting them.
            genlab_core::config::apply_override(&mut tree, &k, v)?;
        }
        let cfg: RunConfig = serde_json::from_value(tree)
            .map_err(|e| Error::Config(format!("invalid value: {e}")))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        let bad = |setting: &str, problem: String| {
            Err(Error::Setting {
                setting: setting.into(),
                problem,
            })
        };
        if self.iters == 0 {
            return bad("iters", "must be at least 1, got 0".into());
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1, got 0".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("must be one or more widths >= 1, got {:?}", self.hidden),
            );
        }
        Ok(())
    }
}

/// A point of a task's accuracy curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Iterations since the start of the run.
    pub iteration: usize,
    /// Accuracy on each task's curve subset.
    pub accuracy: Vec<f64>,
}

/// What a run produces.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub config: RunConfig,
    /// `accuracy[i][j]`: test accuracy on task `j` after training through task `i`.
    pub accuracy: Vec<Vec<f64>>,
    /// Test accuracy of the network at initialisation, per task.
    pub initial_accuracy: Vec<f64>,
    pub measures: Measures,
    pub curves: Vec<CurvePoint>,
    /// What the method keeps besides the classifier.
    pub memory: Vec<MemoryItemOut>,
    pub classifier_params: usize,
    /// The digits of each task.
    pub task_classes: Vec<Vec<u32>>,
    pub seconds: f64,
}

/// [`MemoryItem`] with its size in bytes (f32).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryItemOut {
    pub what: String,
    pub floats: usize,
    pub bytes: usize,
}

impl From<MemoryItem> for MemoryItemOut {
    fn from(m: MemoryItem) -> Self {
        MemoryItemOut {
            what: m.what,
            floats: m.floats,
            bytes: 4 * m.floats,
        }
    }
}

/// Progress of a run.
pub trait Observer {
    fn start_task(&mut self, task: usize, tasks: usize, iters: usize) {
        let _ = (task, tasks, iters);
    }
    fn iteration(&mut self, task: usize, iter: usize, loss: f64) {
        let _ = (task, iter, loss);
    }
    fn end_task(&mut self, task: usize, row: &[f64]) {
        let _ = (task, row);
    }
}

/// No progress.
pub struct Quiet;
impl Observer for Quiet {}

/// Shuffled full batches over a training set.
struct Sampler {
    /// `(task, index)` into the benchmark, or `(usize::MAX, i)` into `extra`.
    items: Vec<(usize, usize)>,
    extra: Examples,
    order: Vec<usize>,
    pos: usize,
}

impl Sampler {
    fn new(set: TrainingSet) -> Self {
        let mut items = Vec::new();
        for (t, ids) in &set.parts {
            items.extend(ids.iter().map(|&i| (*t, i)));
        }
        items.extend((0..set.extra.len()).map(|i| (usize::MAX, i)));
        Sampler {
            items,
            extra: set.extra,
            order: Vec::new(),
            pos: usize::MAX,
        }
    }

    fn next(&mut self, b: &Benchmark, s: Scenario, batch: usize, rng: &mut Rng) -> Examples {
        let batch = batch.min(self.items.len());
        if self.pos == usize::MAX || self.pos + batch > self.order.len() {
            self.order = (0..self.items.len()).collect();
            rng.shuffle(&mut self.order);
            self.pos = 0;
        }
        let d = b.dim();
        let mut ex = Examples {
            x: vec![0f32; batch * d],
            y: Vec::with_capacity(batch),
            task: Vec::with_capacity(batch),
        };
        for r in 0..batch {
            let (t, i) = self.items[self.order[self.pos + r]];
            let row = &mut ex.x[r * d..(r + 1) * d];
            if t == usize::MAX {
                row.copy_from_slice(&self.extra.x[i * d..(i + 1) * d]);
                ex.y.push(self.extra.y[i]);
                ex.task.push(self.extra.task[i]);
            } else {
                let part = &b.train[t];
                part.write(i, row);
                ex.y.push(b.target(s, t, part.digit(i)));
                ex.task.push(t);
            }
        }
        self.pos += batch;
        ex
    }
}

/// Accuracy on the first `limit` examples of task `task`'s test set after training through
/// task `after`.
fn accuracy(
    b: &Benchmark,
    s: Scenario,
    method: &dyn Method,
    learner: &Learner,
    task: usize,
    after: usize,
    limit: usize,
) -> f64 {
    let part = &b.test[task];
    let n = part.len().min(limit);
    if n == 0 {
        return 0.0;
    }
    let range = b.eval_range(s, task, after);
    let out = learner.outputs();
    let mut correct = 0usize;
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(EVAL_CHUNK) {
        let x = part.gather(chunk);
        let m = chunk.len();
        let pred = method
            .predict(learner, &x, m, range.clone())
            .unwrap_or_else(|| {
                let z = learner.logits(&x, m);
                (0..m)
                    .map(|r| {
                        let zr = &z[r * out + range.start..r * out + range.end];
                        (range.start + crate::mlp::argmax(zr)) as u32
                    })
                    .collect()
            });
        for (&i, p) in chunk.iter().zip(pred) {
            if p == b.target(s, task, part.digit(i)) {
                correct += 1;
            }
        }
    }
    correct as f64 / n as f64
}

/// Runs `cfg` on the loaded benchmark `bench`.
pub fn run_on(bench: &Benchmark, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<RunResult> {
    let start = Instant::now();
    let entry = methods::find(&cfg.method)?;
    entry.check_scenario(cfg.scenario)?;
    let s = cfg.scenario;
    let mut init_rng = Rng::derive(cfg.seed, "classifier");
    let mut learner = Learner::new(
        bench.dim(),
        &cfg.hidden,
        bench.n_outputs(s),
        cfg.lr,
        &mut init_rng,
    );
    let mut sizes = vec![bench.dim()];
    sizes.extend(&cfg.hidden);
    sizes.push(bench.n_outputs(s));
    let mut method = (entry.build)(&Spec {
        bench,
        scenario: s,
        config: &cfg.method_config,
        seed: cfg.seed,
        sizes,
        lr: cfg.lr,
    })?;
    let mut rng = Rng::derive(cfg.seed, "train");
    let t_count = bench.n_tasks();
    let initial_accuracy: Vec<f64> = (0..t_count)
        .map(|j| accuracy(bench, s, method.as_ref(), &learner, j, 0, usize::MAX))
        .collect();
    let mut matrix = Vec::new();
    let mut curves = Vec::new();
    let curve = |method: &dyn Method, learner: &Learner, after: usize, it: usize| CurvePoint {
        iteration: it,
        accuracy: (0..t_count)
            .map(|j| accuracy(bench, s, method, learner, j, after, cfg.curve_examples))
            .collect(),
    };
    curves.push(curve(method.as_ref(), &learner, 0, 0));
    for t in 0..t_count {
        let ctx = Ctx {
            bench,
            scenario: s,
            task: t,
            batch: cfg.batch,
            iters: cfg.iters,
        };
        obs.start_task(t, t_count, cfg.iters);
        method.begin_task(&ctx, &mut learner, &mut rng)?;
        let set = method.training_set(&ctx).unwrap_or_else(|| TrainingSet {
            parts: vec![(t, (0..bench.train[t].len()).collect())],
            extra: Examples::default(),
        });
        let mut sampler = Sampler::new(set);
        if sampler.items.is_empty() {
            return Err(Error::Data(format!("task {t} has no training examples")));
        }
        for it in 0..cfg.iters {
            let batch = sampler.next(bench, s, cfg.batch, &mut rng);
            let loss = method.train_step(&ctx, &mut learner, &batch, &mut rng)?;
            if !loss.is_finite() {
                return Err(Error::Numeric(format!(
                    "loss is {loss} at task {t}, iteration {it}"
                )));
            }
            obs.iteration(t, it, loss);
            let done = t * cfg.iters + it + 1;
            if cfg.eval_every > 0 && (it + 1) % cfg.eval_every == 0 && it + 1 < cfg.iters {
                curves.push(curve(method.as_ref(), &learner, t, done));
            }
        }
        method.end_task(&ctx, &mut learner, &mut rng)?;
        curves.push(curve(method.as_ref(), &learner, t, (t + 1) * cfg.iters));
        let row: Vec<f64> = (0..t_count)
            .map(|j| accuracy(bench, s, method.as_ref(), &learner, j, t, usize::MAX))
            .collect();
        obs.end_task(t, &row);
        matrix.push(row);
    }
    Ok(RunResult {
        measures: measures(&matrix, &initial_accuracy),
        accuracy: matrix,
        initial_accuracy,
        curves,
        memory: method.memory().into_iter().map(Into::into).collect(),
        classifier_params: learner.net.num_params(),
        task_classes: bench.task_classes.clone(),
        config: cfg.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Loads the benchmark of `cfg` and runs it.
pub fn run(cfg: &RunConfig, obs: &mut dyn Observer) -> Result<RunResult> {
    let bench = Benchmark::load(
        &cfg.benchmark,
        cfg.tasks,
        cfg.groups.clone(),
        cfg.scenario,
        cfg.seed,
    )?;
    run_on(&bench, cfg, obs)
}
