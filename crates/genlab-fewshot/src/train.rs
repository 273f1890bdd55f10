//! Meta-training and the standard evaluation.
//!
//! `train` runs meta-steps: each draws `meta_batch` tasks (episode `t`'s randomness is
//! `Rng::derive(seed, "train/t")`, so a resumed run sees the same tasks as an uninterrupted
//! one), asks the method for its meta-loss, and follows its gradient with AdamW. Every
//! `val_every` steps it scores `val_episodes` meta-validation tasks (fixed: the same ones
//! at every check) and logs the mean. The run directory holds `config.json` (the resolved
//! [`TrainConfig`]), `checkpoint.safetensors` (weights and optimizer moments),
//! `state.json` (steps done) and `log.jsonl` (one line per logged step).
//!
//! `evaluate` scores `episodes` test tasks of the meta-test split (query accuracy, or the
//! MSE after K-shot adaptation for regression) and reports the mean with its 95% interval.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Error, Result, Rng};
use genlab_train::optim::{AdamW, AdamWConfig};

use crate::classes::ClassSet;
use crate::episode::{sample_episode, EpisodeShape};
use crate::methods::{self, Method, MethodEntry, Spec, Task, TaskKind};
use crate::sinusoid::sample_task;
use crate::sources;
use crate::stats::{mean_ci95, MeanCi};

const CONFIG_FILE: &str = "config.json";
const CKPT_FILE: &str = "checkpoint.safetensors";
const STATE_FILE: &str = "state.json";
const LOG_FILE: &str = "log.jsonl";

/// Settings of a meta-training run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Few-shot method (`genlab fewshot list`).
    pub method: String,
    /// Few-shot source ([`sources::SOURCES`]).
    pub data: String,
    /// Add every meta-train class turned by 90/180/270° as new classes.
    pub rotations: bool,
    /// Training episodes' N, K and Q (for regression: K support and Q query points).
    pub ways: usize,
    pub shots: usize,
    pub queries: usize,
    /// Meta-steps in total.
    pub steps: u64,
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// Adam's (outer) learning rate.
    pub lr: f64,
    /// Halve the learning rate every this many steps (0: never).
    pub lr_halve_every: u64,
    /// Meta-steps between meta-validations (and log lines).
    pub val_every: u64,
    /// Tasks per meta-validation.
    pub val_episodes: usize,
    /// Meta-steps between checkpoints.
    pub ckpt_every: u64,
    pub seed: u64,
    /// The method's own config.
    pub method_config: Value,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: "protonet".into(),
            data: "glyphs".into(),
            rotations: false,
            // 5-way 1-shot: the most reported Omniglot setting.
            ways: 5,
            shots: 1,
            // 15: Snell et al.'s queries per class.
            queries: 15,
            // 2000: minutes on two CPU cores with the conv-4.
            steps: 2000,
            // 1: one episode per step (ProtoNet); MAML's paper uses 25 sinusoid tasks.
            meta_batch: 1,
            // 1e-3: Adam's rate in Snell et al. and Finn et al.
            lr: 1e-3,
            // 0: constant (Snell et al. halve every 2000 episodes of much longer runs).
            lr_halve_every: 0,
            // 200: a few dozen points on the validation curve of a short run.
            val_every: 200,
            // 100: a ±2-3% interval on accuracy, cheap beside training.
            val_episodes: 100,
            // 500: a checkpoint every few minutes.
            ckpt_every: 500,
            seed: 0,
            method_config: Value::Null,
        }
    }
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub step: u64,
    /// Mean meta-loss since the previous line.
    pub loss: f64,
    /// Mean training-query accuracy since the previous line (classification).
    pub train_accuracy: Option<f64>,
    /// Meta-validation score: accuracy (classification) or MSE (regression).
    pub val: MeanCi,
    pub lr: f64,
    /// Wall-clock seconds of this process's training so far.
    pub seconds: f64,
}

/// What a test evaluation reports (`genlab fewshot eval --json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub method: String,
    pub data: String,
    /// "accuracy" or "mse".
    pub metric: String,
    pub ways: usize,
    pub shots: usize,
    pub queries: usize,
    pub episodes: usize,
    pub seed: u64,
    pub result: MeanCi,
    /// How the classes were split.
    pub split: String,
    pub steps_trained: u64,
    pub train_config: TrainConfig,
}

#[derive(Serialize, Deserialize)]
struct State {
    steps_done: u64,
}

/// The method entry and a checked copy of the config with the method's defaults filled in.
pub fn resolve(
    mut cfg: TrainConfig,
    overrides: &[(String, Value)],
) -> Result<(TrainConfig, &'static MethodEntry)> {
    let entry = methods::find(&cfg.method)?;
    let regression = sources::is_regression(&cfg.data);
    let want = if regression {
        TaskKind::Regression
    } else {
        TaskKind::Classification
    };
    if entry.kind != want {
        let fits: Vec<&str> = methods::METHODS
            .iter()
            .filter(|m| m.kind == want)
            .map(|m| m.name)
            .collect();
        return Err(Error::setting(
            "method",
            format!(
                "`{}` learns {:?} tasks but data `{}` gives {:?} tasks (methods for it: {})",
                entry.name,
                entry.kind,
                cfg.data,
                want,
                fits.join(", ")
            )
            .to_lowercase(),
        ));
    }
    if cfg.method_config.is_null() {
        cfg.method_config = (entry.defaults)();
    }
    for (k, v) in overrides {
        genlab_core::config::apply_override(&mut cfg.method_config, k, v.clone())?;
    }
    if cfg.steps == 0 || cfg.meta_batch == 0 || cfg.val_every == 0 || cfg.ckpt_every == 0 {
        return Err(Error::setting(
            "steps",
            "steps, meta_batch, val_every and ckpt_every must be positive",
        ));
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::setting(
            "lr",
            format!("the learning rate must be positive, got {}", cfg.lr),
        ));
    }
    Ok((cfg, entry))
}

/// Opened data of a run: classification splits or the regression task distribution.
pub use crate::sources::Source as Data;

impl Data {
    pub fn open(cfg: &TrainConfig) -> Result<Self> {
        sources::open(&cfg.data, cfg.rotations)
    }

    fn input(&self) -> Vec<usize> {
        match self {
            Data::Classes(s) => s.train.shape.clone(),
            Data::Sinusoid => vec![1],
        }
    }

    fn split_note(&self) -> String {
        match self {
            Data::Classes(s) => s.note.clone(),
            Data::Sinusoid => "tasks drawn fresh from the task distribution".into(),
        }
    }
}

/// One task of `set` (classification) or of the sinusoid distribution.
fn draw(
    data: &Data,
    split: &str,
    shape: EpisodeShape,
    rng: &mut Rng,
    device: &Device,
) -> Result<Task> {
    match data {
        Data::Classes(s) => {
            let set: &ClassSet = match split {
                "train" => &s.train,
                "val" => &s.val,
                _ => &s.test,
            };
            Ok(Task::Classify(sample_episode(set, shape, rng, device)?))
        }
        Data::Sinusoid => Ok(Task::Regress(sample_task(
            shape.shots,
            shape.queries,
            rng,
            DType::F32,
            device,
        )?)),
    }
}

/// Checks an episode shape against the split it will be drawn from.
fn check_shape(data: &Data, split: &str, shape: EpisodeShape) -> Result<()> {
    match data {
        Data::Classes(s) => shape.check(match split {
            "train" => &s.train,
            "val" => &s.val,
            _ => &s.test,
        }),
        Data::Sinusoid if shape.shots == 0 || shape.queries == 0 => Err(Error::setting(
            "shots",
            "regression tasks need at least one shot and one query point",
        )),
        Data::Sinusoid => Ok(()),
    }
}

/// Builds the method of a resolved config.
pub fn build(
    cfg: &TrainConfig,
    entry: &MethodEntry,
    data: &Data,
    device: &Device,
) -> Result<Box<dyn Method>> {
    if (entry.double_backward)(&cfg.method_config) {
        // Read once per thread by candle at the first backward pass: set before any.
        std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    }
    (entry.build)(&Spec {
        input: data.input(),
        seed: cfg.seed,
        config: &cfg.method_config,
        device: device.clone(),
    })
}

// The evaluation's whole context (method, data, split, shape, count, seed, stream, device):
// bundling them would only move the list into a struct used once.
#[allow(clippy::too_many_arguments)]
fn score(
    method: &dyn Method,
    data: &Data,
    split: &str,
    shape: EpisodeShape,
    n: usize,
    seed: u64,
    stream: &str,
    device: &Device,
) -> Result<MeanCi> {
    let mut xs = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = Rng::derive(seed, &format!("{stream}/{i}"));
        let task = draw(data, split, shape, &mut rng, device)?;
        xs.push(method.evaluate(&task)?);
    }
    Ok(mean_ci95(&xs))
}

/// Meta-trains into `out` (continuing its checkpoint when `resume`); `on_log` sees every
/// log line as it is written.
pub fn train(
    cfg: TrainConfig,
    overrides: &[(String, Value)],
    out: &Path,
    resume: bool,
    device: &Device,
    on_log: &mut dyn FnMut(&LogLine),
) -> Result<TrainConfig> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    let (cfg, entry, steps_done) = if resume {
        let saved: TrainConfig = genlab_core::io::read_json(&out.join(CONFIG_FILE))?;
        if !overrides.is_empty() {
            return Err(Error::setting(
                "set",
                "a resumed run keeps its method config (config.json); drop --set",
            ));
        }
        let state: State = genlab_core::io::read_json(&out.join(STATE_FILE))?;
        let new_steps = cfg.steps;
        let mut c = saved;
        c.steps = new_steps;
        let (c, e) = resolve(c, &[])?;
        (c, e, state.steps_done)
    } else {
        if out.join(CKPT_FILE).exists() {
            return Err(Error::setting(
                "out",
                format!(
                    "{} already holds a run; resume it or choose another folder",
                    out.display()
                ),
            ));
        }
        let (c, e) = resolve(cfg, overrides)?;
        (c, e, 0)
    };
    let data = Data::open(&cfg)?;
    let shape = EpisodeShape {
        ways: cfg.ways,
        shots: cfg.shots,
        queries: cfg.queries,
    };
    check_shape(&data, "train", shape)?;
    // Meta-validation episodes have the training shape, with at most as many ways as the
    // validation split has classes (MNIST's has 5).
    let val_shape = match &data {
        Data::Classes(s) => EpisodeShape {
            ways: shape.ways.min(s.val.classes.len()),
            ..shape
        },
        Data::Sinusoid => shape,
    };
    check_shape(&data, "val", val_shape)?;
    let mut method = build(&cfg, entry, &data, device)?;
    let vars = method.params().vars();
    let mut opt = AdamW::new(vars, AdamWConfig::default())?;
    if resume {
        let map = genlab_core::io::load_safetensors(&out.join(CKPT_FILE), device)?;
        let (mut weights, mut moments) = (HashMap::new(), HashMap::new());
        for (k, v) in map {
            match k.strip_prefix("opt.") {
                Some(m) => moments.insert(m.to_string(), v),
                None => weights.insert(k, v),
            };
        }
        method.params().load(&weights)?;
        opt.load_state(&moments, steps_done)?;
    }
    genlab_core::io::write_json(&out.join(CONFIG_FILE), &cfg)?;
    let save = |method: &dyn Method, opt: &AdamW, steps: u64| -> Result<()> {
        let mut map = method.params().tensors();
        for (k, v) in opt.state() {
            map.insert(format!("opt.{k}"), v);
        }
        genlab_core::io::save_safetensors(&out.join(CKPT_FILE), &map)?;
        genlab_core::io::write_json(&out.join(STATE_FILE), &State { steps_done: steps })
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join(LOG_FILE))
        .map_err(|e| Error::io("open", out.join(LOG_FILE), e))?;
    let start = Instant::now();
    let (mut loss_sum, mut acc_sum, mut n_acc, mut n) = (0.0, 0.0, 0usize, 0usize);
    for step in steps_done..cfg.steps {
        let lr = match cfg.lr_halve_every {
            0 => cfg.lr,
            h => cfg.lr * 0.5f64.powi((step / h) as i32),
        };
        let mut tasks = Vec::with_capacity(cfg.meta_batch);
        for b in 0..cfg.meta_batch {
            let mut rng = Rng::derive(cfg.seed, &format!("train/{step}/{b}"));
            tasks.push(draw(&data, "train", shape, &mut rng, device)?);
        }
        let ml = method.meta_loss(&tasks)?;
        let l = ml.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !l.is_finite() {
            return Err(Error::Numeric(format!("meta-loss is {l} at step {step}")));
        }
        let grads = ml.loss.backward()?;
        opt.step(&grads, lr, 1.0)?;
        loss_sum += l;
        n += 1;
        if let Some(a) = ml.accuracy {
            acc_sum += a;
            n_acc += 1;
        }
        let done = step + 1;
        if done % cfg.val_every == 0 || done == cfg.steps {
            let val = score(
                method.as_ref(),
                &data,
                "val",
                val_shape,
                cfg.val_episodes,
                cfg.seed,
                "val",
                device,
            )?;
            let line = LogLine {
                step: done,
                loss: loss_sum / n as f64,
                train_accuracy: (n_acc > 0).then(|| acc_sum / n_acc as f64),
                val,
                lr,
                seconds: start.elapsed().as_secs_f64(),
            };
            let s = serde_json::to_string(&line).map_err(|e| Error::InvalidInput(e.to_string()))?;
            writeln!(log, "{s}").map_err(|e| Error::io("write", out.join(LOG_FILE), e))?;
            on_log(&line);
            (loss_sum, acc_sum, n_acc, n) = (0.0, 0.0, 0, 0);
        }
        if done % cfg.ckpt_every == 0 || done == cfg.steps {
            save(method.as_ref(), &opt, done)?;
        }
    }
    Ok(cfg)
}

/// Settings of a test evaluation.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Score on this source's meta-test split instead of the run's (a cross-domain test:
    /// the examples must have the training data's shape).
    pub data: Option<String>,
    pub ways: Option<usize>,
    pub shots: Option<usize>,
    pub queries: usize,
    pub episodes: usize,
    pub seed: u64,
}

/// Loads the run in `run` and scores `episodes` meta-test tasks.
pub fn evaluate(run: &Path, ec: &EvalConfig, device: &Device) -> Result<EvalReport> {
    let cfg_path = run.join(CONFIG_FILE);
    if !cfg_path.exists() {
        return Err(Error::InvalidInput(format!(
            "{} is not a few-shot run (no {CONFIG_FILE}); train one with `genlab fewshot train`",
            run.display()
        )));
    }
    let cfg: TrainConfig = genlab_core::io::read_json(&cfg_path)?;
    let state: State = genlab_core::io::read_json(&run.join(STATE_FILE))?;
    let entry = methods::find(&cfg.method)?;
    let data = match &ec.data {
        None => Data::open(&cfg)?,
        Some(d) => {
            let other = sources::open(d, false)?;
            let (a, b) = (Data::open(&cfg)?.input(), other.input());
            if a != b {
                return Err(Error::setting(
                    "data",
                    format!(
                        "`{d}` has examples of shape {b:?}; the run was trained on {a:?} (`{}`)",
                        cfg.data
                    ),
                ));
            }
            other
        }
    };
    let method = build(&cfg, entry, &data, device)?;
    let map = genlab_core::io::load_safetensors(&run.join(CKPT_FILE), device)?;
    let weights: HashMap<String, Tensor> = map
        .into_iter()
        .filter(|(k, _)| !k.starts_with("opt."))
        .collect();
    method.params().load(&weights)?;
    let shape = EpisodeShape {
        ways: ec.ways.unwrap_or(cfg.ways),
        shots: ec.shots.unwrap_or(cfg.shots),
        queries: ec.queries,
    };
    if ec.episodes == 0 {
        return Err(Error::setting(
            "episodes",
            "at least one test episode is needed",
        ));
    }
    check_shape(&data, "test", shape)?;
    let result = score(
        method.as_ref(),
        &data,
        "test",
        shape,
        ec.episodes,
        ec.seed,
        "test",
        device,
    )?;
    Ok(EvalReport {
        method: cfg.method.clone(),
        data: ec.data.clone().unwrap_or_else(|| cfg.data.clone()),
        metric: if matches!(data, Data::Sinusoid) {
            "mse"
        } else {
            "accuracy"
        }
        .into(),
        ways: shape.ways,
        shots: shape.shots,
        queries: shape.queries,
        episodes: ec.episodes,
        seed: ec.seed,
        result,
        split: data.split_note(),
        steps_trained: state.steps_done,
        train_config: cfg,
    })
}

/// The run folder's log, for pictures and tests.
pub fn read_log(run: &Path) -> Result<Vec<LogLine>> {
    let p: PathBuf = run.join(LOG_FILE);
    let s = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::Checkpoint(format!("{}: {e}", p.display())))
        })
        .collect()
}
