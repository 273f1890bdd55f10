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
    /// Task-free stream: one pass over each task's data in order, no task boundaries given
    /// to the method (`iters` is ignored), for task-free methods only.
    #[serde(default)]
    pub stream: bool,
    /// Stream mode: the fraction of each boundary's neighbourhood that is blurred (the last
    /// `overlap / 2` of a task and the first `overlap / 2` of the next are shuffled together).
    #[serde(default)]
    pub overlap: f64,
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
            stream: false,
            overlap: 0.0,
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
        if cfg.stream && !m.task_free {
            let ok: Vec<&str> = methods::METHODS
                .iter()
                .filter(|m| m.task_free)
                .map(|m| m.name)
                .collect();
            return Err(Error::Setting {
                setting: "method".into(),
                problem: format!(
                    "`{}` needs task boundaries; the stream mode takes a task-free method ({})",
                    m.name,
                    ok.join(", ")
                ),
            });
        }
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
        if !(0.0..=1.0).contains(&self.overlap) {
            return bad(
                "overlap",
                format!("must be in [0, 1], got {}", self.overlap),
            );
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
            .predict(learner, &x, m, task, range.clone())
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
    if cfg.stream {
        run_stream(
            bench,
            cfg,
            method.as_mut(),
            &mut learner,
            &mut rng,
            obs,
            &mut |t, it, l, m| {
                matrix.push(
                    (0..t_count)
                        .map(|j| accuracy(bench, s, m, l, j, t, usize::MAX))
                        .collect(),
                );
                curves.push(curve(m, l, t, it));
            },
        )?;
    }
    for t in (0..t_count).filter(|_| !cfg.stream) {
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

/// The order of a task-free stream: each task's examples shuffled, tasks in sequence, the
/// neighbourhood of each boundary (`overlap / 2` of each side) shuffled together.
pub fn stream_order(lens: &[usize], overlap: f64, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut starts = Vec::new();
    for (t, &n) in lens.iter().enumerate() {
        let mut ids: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut ids);
        starts.push(order.len());
        order.extend(ids.into_iter().map(|i| (t, i)));
    }
    for t in 1..lens.len() {
        let a = ((lens[t - 1] as f64) * overlap / 2.0).round() as usize;
        let b = ((lens[t] as f64) * overlap / 2.0).round() as usize;
        let (lo, hi) = (starts[t] - a, starts[t] + b);
        rng.shuffle(&mut order[lo..hi]);
    }
    order
}

/// The stream mode: one pass, batches in stream order, the method never told of a boundary;
/// `ctx.task` is the latest task whose examples the stream has shown (what a task-free
/// learner can know: the classes seen so far). `row(t, batches done, learner, method)` is called where
/// each task's data ends, for the accuracy matrix.
fn run_stream(
    bench: &Benchmark,
    cfg: &RunConfig,
    method: &mut dyn Method,
    learner: &mut Learner,
    rng: &mut Rng,
    obs: &mut dyn Observer,
    row: &mut dyn FnMut(usize, usize, &Learner, &dyn Method),
) -> Result<()> {
    let lens: Vec<usize> = bench.train.iter().map(|p| p.len()).collect();
    let order = stream_order(&lens, cfg.overlap, rng);
    let mut ends = Vec::new();
    let mut acc = 0;
    for &n in &lens {
        acc += n;
        ends.push(acc);
    }
    let batches = order.len().div_ceil(cfg.batch);
    obs.start_task(0, 1, batches);
    let (mut seen, mut next_end) = (0usize, 0usize);
    for (k, chunk) in order.chunks(cfg.batch).enumerate() {
        let mut set = TrainingSet::default();
        for &(t, i) in chunk {
            seen = seen.max(t);
            set.parts.push((t, vec![i]));
        }
        let mut sampler = Sampler::new(set);
        sampler.order = (0..chunk.len()).collect();
        sampler.pos = 0;
        let batch = sampler.next(bench, cfg.scenario, chunk.len(), rng);
        let ctx = Ctx {
            bench,
            scenario: cfg.scenario,
            task: seen,
            batch: cfg.batch,
            iters: batches,
        };
        let loss = method.train_step(&ctx, learner, &batch, rng)?;
        if !loss.is_finite() {
            return Err(Error::Numeric(format!(
                "loss is {loss} at stream batch {k}"
            )));
        }
        obs.iteration(0, k, loss);
        let done = (k + 1) * cfg.batch;
        while next_end < ends.len() && done >= ends[next_end] {
            row(next_end, k + 1, learner, method);
            next_end += 1;
        }
    }
    while next_end < ends.len() {
        row(next_end, batches, learner, method);
        next_end += 1;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_order_shows_each_example_once_and_blurs_only_near_boundaries() {
        let mut rng = Rng::new(4);
        let lens = [40, 60, 20];
        let clean = stream_order(&lens, 0.0, &mut rng);
        let tasks: Vec<usize> = clean.iter().map(|p| p.0).collect();
        assert!(tasks.windows(2).all(|w| w[0] <= w[1]), "sharp boundaries");
        let blurred = stream_order(&lens, 0.5, &mut rng);
        let mut all = blurred.clone();
        all.sort();
        let mut want: Vec<(usize, usize)> = Vec::new();
        for (t, &n) in lens.iter().enumerate() {
            want.extend((0..n).map(|i| (t, i)));
        }
        assert_eq!(all, want, "one pass: every example exactly once");
        // Task 0's first 30 (outside the 10-example window) and task 2's last 15 are pure.
        assert!(blurred[..30].iter().all(|p| p.0 == 0));
        assert!(blurred[105..].iter().all(|p| p.0 == 2));
        assert!(
            blurred[30..55].iter().any(|p| p.0 == 1),
            "the window mixes tasks"
        );
    }

    #[test]
    fn stream_mode_runs_task_free_methods_and_refuses_the_others() {
        let s = Scenario::Class;
        let over = |extra: &str| -> Vec<String> {
            [
                "batch=32",
                "hidden=[32]",
                "stream=true",
                "overlap=0.2",
                extra,
            ]
            .iter()
            .map(|v| v.to_string())
            .collect()
        };
        let cfg =
            RunConfig::resolve("split-digits", s, "replay", 0, &over("method.budget=100")).unwrap();
        let bench = Benchmark::load("split-digits", None, None, s, 0).unwrap();
        let r = run_on(&bench, &cfg, &mut Quiet).unwrap();
        assert_eq!(r.accuracy.len(), 5);
        assert!(r.accuracy[0][0] > 0.75, "{:?}", r.accuracy[0]);
        let e = RunConfig::resolve("split-digits", s, "ewc", 0, &over("iters=1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("task-free"), "{e}");
    }
}
