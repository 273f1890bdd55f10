//! The RL training loop, evaluation and rollouts.
//!
//! A run directory holds `config.json` (the resolved run: algorithm, environment, seed,
//! steps, the algorithm's config), `checkpoint.safetensors` (the agent's whole state as
//! tensors, the run config and counters in its metadata; one atomic rename, so a crash never
//! leaves a broken checkpoint), `log.jsonl` (one line per finished training episode:
//! `{"step", "episode", "return", "length", "elapsed_s"}`, and every `log_every` steps a line
//! with the mean losses) and `returns.svg` (the learning curve). The directory is locked
//! for the run (genlab-train's `run.lock`). Resuming restores everything, environments
//! and generators included: N steps then N more give the same bytes as 2N straight.
//! A NaN or infinite loss stops the run with an error and keeps the last good checkpoint.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::candle::{Device, Tensor};
use genlab_core::{io, Error, Result, Rng};
use genlab_report::{line_chart_svg, Series};

use crate::agents::{self, Agent, AlgoEntry, Report, Spec};
use crate::env::{Action, Frame, Space};
use crate::envs::{self, EnvEntry, Maker};
use crate::saved::Saved;

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const LOG_FILE: &str = "log.jsonl";
pub const CONFIG_FILE: &str = "config.json";
pub const CURVE_FILE: &str = "returns.svg";
/// The safetensors metadata key of a genlab-rl checkpoint (the run config and counters, as
/// JSON); its presence is what tells an RL checkpoint from another kind.
pub const META_KEY: &str = "genlab-rl";
/// The field of an episode line of the log that holds its return (the others are `step`,
/// `episode`, `length` and `elapsed_s`; loss lines hold `step` and the mean losses).
pub const RETURN_FIELD: &str = "return";
/// Bumped when the checkpoint layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;
/// Episodes averaged in the running return.
pub const RUNNING_EPISODES: usize = 20;

/// The resolved run, saved beside and inside every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub algo: String,
    pub env: String,
    pub seed: u64,
    /// Environment steps to train for.
    pub steps: u64,
    /// Environment steps between checkpoints.
    pub ckpt_every: u64,
    /// Environment steps between loss lines in the log.
    pub log_every: u64,
    /// The algorithm's config.
    pub config: Value,
}

/// What `genlab rl train` asks for.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub algo: String,
    pub env: String,
    pub steps: u64,
    pub seed: u64,
    /// `key=value` settings of the algorithm's config (`lr=1e-3`, `hidden=[64, 64]`).
    pub overrides: Vec<String>,
    pub out: PathBuf,
    /// Continue the checkpoint in `out` up to `steps`.
    pub resume: bool,
    pub ckpt_every: Option<u64>,
}

/// Progress callbacks (the CLI draws a bar).
pub trait Observer {
    fn start(&mut self, _from: u64, _to: u64) {}
    /// After every training unit: environment steps so far and the mean return of the last
    /// [`RUNNING_EPISODES`] episodes, if any ended.
    fn progress(&mut self, _step: u64, _running_return: Option<f64>) {}
    fn checkpoint(&mut self, _step: u64) {}
}

pub struct Quiet;
impl Observer for Quiet {}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    pub steps: u64,
    pub episodes: u64,
    pub running_return: Option<f64>,
    pub interrupted: bool,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    run: RunConfig,
    episodes: u64,
    recent: Vec<f64>,
    agent: serde_json::Map<String, Value>,
}

/// Resolves the algorithm's config: its preset for the environment, then the overrides.
pub fn resolve_config(algo: &AlgoEntry, env: &EnvEntry, overrides: &[String]) -> Result<Value> {
    let mut tree = (algo.defaults)(env.name);
    for o in overrides {
        let (k, v) = genlab_core::config::parse_override(o)?;
        genlab_core::config::apply_override(&mut tree, &k, v)?;
    }
    Ok(tree)
}

/// Builds the agent of a run (checking that the algorithm fits the environment).
pub fn build_agent(run: &RunConfig) -> Result<Box<dyn Agent>> {
    let algo = agents::find(&run.algo)?;
    let env = envs::find(&run.env)?;
    agents::check_fit(algo, env)?;
    (algo.build)(&Spec {
        env,
        seed: run.seed,
        total_steps: run.steps,
        config: &run.config,
    })
}

fn save(dir: &Path, meta: &Meta, saved: Saved) -> Result<()> {
    let mut tensors = HashMap::new();
    for (k, v) in saved.tensors {
        let n = v.len();
        tensors.insert(k, Tensor::from_vec(v, n, &Device::Cpu)?);
    }
    let mut meta = meta.clone();
    meta.agent = saved.json;
    let text = serde_json::to_string(&meta).expect("meta serialises");
    io::save_tensors_with_metadata(
        &dir.join(CHECKPOINT_FILE),
        &tensors,
        [(META_KEY.to_string(), text)].into(),
    )
}

/// The checkpoint metadata of `path` (its safetensors metadata map), checked.
fn parse_meta(meta: &HashMap<String, String>, path: &Path) -> Result<Meta> {
    let text = meta.get(META_KEY).ok_or_else(|| {
        Error::Checkpoint(format!(
            "{} is not a genlab-rl checkpoint (no `{META_KEY}` metadata)",
            path.display()
        ))
    })?;
    let meta: Meta = serde_json::from_str(text)
        .map_err(|e| Error::Checkpoint(format!("{}: corrupt metadata: {e}", path.display())))?;
    if meta.format != FORMAT_VERSION {
        return Err(Error::Checkpoint(format!(
            "{} has format {}, this genlab reads {FORMAT_VERSION}",
            path.display(),
            meta.format
        )));
    }
    Ok(meta)
}

/// What a checkpoint says about its run, read from its metadata alone (no tensors, no
/// agent built): for tools that list runs (`genlab serve`, `genlab report`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointState {
    pub run: RunConfig,
    /// Environment steps trained when it was saved.
    pub step: u64,
    /// Training episodes finished.
    pub episodes: u64,
    /// Mean return of the last [`RUNNING_EPISODES`] training episodes, if any ended.
    pub running_return: Option<f64>,
}

/// Whether a checkpoint's safetensors metadata is a genlab-rl checkpoint's (parse it with
/// [`parse_metadata`]).
pub fn is_rl_metadata(meta: &HashMap<String, String>) -> bool {
    meta.contains_key(META_KEY)
}

/// Parses a genlab-rl checkpoint's safetensors metadata (`path` names the file in errors).
pub fn parse_metadata(meta: &HashMap<String, String>, path: &Path) -> Result<CheckpointState> {
    let meta = parse_meta(meta, path)?;
    // Every agent saves its environment steps as `steps` (checked for each in the tests).
    let step = meta
        .agent
        .get("steps")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: corrupt metadata: the agent state has no `steps` count",
                path.display()
            ))
        })?;
    Ok(CheckpointState {
        step,
        episodes: meta.episodes,
        running_return: mean(&meta.recent),
        run: meta.run,
    })
}

/// A checkpoint's run config, metadata and agent state.
fn load(dir: &Path) -> Result<(Meta, Saved)> {
    let path = dir.join(CHECKPOINT_FILE);
    let (tensors, meta) = io::load_tensors_with_metadata(&path, &Device::Cpu)?;
    let meta = parse_meta(&meta, &path)?;
    let mut saved = Saved {
        json: meta.agent.clone(),
        ..Default::default()
    };
    for (k, t) in tensors {
        saved.tensors.insert(k, t.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok((meta, saved))
}

/// Reads the run config of a checkpoint directory.
pub fn read_run(dir: &Path) -> Result<RunConfig> {
    Ok(load(dir)?.0.run)
}

/// Loads the trained agent of a run directory.
pub fn load_agent(dir: &Path) -> Result<(RunConfig, Box<dyn Agent>)> {
    let (meta, saved) = load(dir)?;
    let mut agent = build_agent(&meta.run)?;
    agent.load(saved)?;
    Ok((meta.run, agent))
}

/// Keeps only log lines whose step is at most `step`.
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut kept = String::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io("read", path, e))?;
        let s = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
        if s.is_some_and(|s| s <= step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    io::write_atomic(path, kept.as_bytes())
}

/// (step, return) of every episode in a run's log.
pub fn read_returns(dir: &Path) -> Result<Vec<(u64, f64)>> {
    let path = dir.join(LOG_FILE);
    let f = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io("read", &path, e))?;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if let (Some(s), Some(r)) = (v["step"].as_u64(), v[RETURN_FIELD].as_f64()) {
                out.push((s, r));
            }
        }
    }
    Ok(out)
}

/// Writes the learning curve (episode returns against environment steps) of a run.
pub fn write_curve(dir: &Path, title: &str) -> Result<()> {
    let pts = read_returns(dir)?;
    let series = Series {
        name: "episode return".into(),
        points: pts.iter().map(|&(s, r)| (s as f64, r)).collect(),
    };
    let svg = line_chart_svg(title, "environment steps", "return", &[series], false)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    io::write_atomic(&dir.join(CURVE_FILE), svg.as_bytes())
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Trains (or resumes) a run; see the module header.
pub fn train(
    req: &TrainRequest,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    if req.steps == 0 {
        return Err(Error::setting("steps", "must be at least 1, got 0"));
    }
    let dir = &req.out;
    let _lock = genlab_train::trainer::lock_run_dir(dir, req.resume)?;
    let ckpt = dir.join(CHECKPOINT_FILE);
    let (mut agent, mut meta) = if req.resume {
        let (mut meta, saved) = load(dir)?;
        if meta.run.algo != req.algo || meta.run.env != req.env {
            return Err(Error::Checkpoint(format!(
                "{} holds a `{}` run on `{}`, not `{}` on `{}`; resume it with its own algorithm \
                 and environment",
                ckpt.display(),
                meta.run.algo,
                meta.run.env,
                req.algo,
                req.env
            )));
        }
        if !req.overrides.is_empty() {
            return Err(Error::setting(
                "set",
                "cannot change a resumed run's config (only steps may change)",
            ));
        }
        meta.run.steps = req.steps;
        let mut agent = build_agent(&meta.run)?;
        agent.load(saved)?;
        truncate_log(&dir.join(LOG_FILE), agent.env_steps())?;
        (agent, meta)
    } else {
        if ckpt.exists() {
            return Err(Error::setting(
                "resume",
                format!(
                    "is needed to continue the checkpoint {} already holds (or choose another \
                     run directory)",
                    dir.display()
                ),
            ));
        }
        let algo = agents::find(&req.algo)?;
        let env = envs::find(&req.env)?;
        agents::check_fit(algo, env)?;
        let config = resolve_config(algo, env, &req.overrides)?;
        // Every tenth of the run by default: a checkpoint holds the whole replay buffer
        // (hundreds of MB for the multi-agent runs), so writing one every few thousand
        // steps would dominate a long run.
        let ckpt_every = req.ckpt_every.unwrap_or((req.steps / 10).max(1000));
        if ckpt_every == 0 {
            return Err(Error::setting("ckpt_every", "must be at least 1, got 0"));
        }
        let run = RunConfig {
            algo: req.algo.clone(),
            env: req.env.clone(),
            seed: req.seed,
            steps: req.steps,
            ckpt_every,
            log_every: 1000,
            config,
        };
        let agent = build_agent(&run)?;
        let _ = std::fs::remove_file(dir.join(LOG_FILE));
        let meta = Meta {
            format: FORMAT_VERSION,
            run,
            episodes: 0,
            recent: Vec::new(),
            agent: Default::default(),
        };
        save(dir, &meta, agent.save())?;
        (agent, meta)
    };
    io::write_json(&dir.join(CONFIG_FILE), &meta.run)?;
    let log_path = dir.join(LOG_FILE);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("open log", &log_path, e))?;
    let started = Instant::now();
    let run = meta.run.clone();
    let mut last_saved = agent.env_steps();
    observer.start(last_saved, run.steps);
    let mut sums: Vec<(&'static str, f64, u64)> = Vec::new();
    let mut interrupted = false;
    let mut report = Report::default();
    while agent.env_steps() < run.steps {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let before = agent.env_steps();
        report.episodes.clear();
        report.metrics.clear();
        agent.train_unit(&mut report).map_err(|e| match e {
            Error::Numeric(m) => Error::Numeric(format!(
                "{m} after {} environment steps; training stopped, the last good checkpoint \
                 (step {last_saved}) is kept",
                agent.env_steps()
            )),
            other => other,
        })?;
        let step = agent.env_steps();
        for ep in &report.episodes {
            meta.episodes += 1;
            meta.recent.push(ep.ret);
            if meta.recent.len() > RUNNING_EPISODES {
                meta.recent.remove(0);
            }
            let mut line = serde_json::Map::new();
            line.insert("step".into(), step.into());
            line.insert("episode".into(), meta.episodes.into());
            line.insert(RETURN_FIELD.into(), ep.ret.into());
            line.insert("length".into(), ep.len.into());
            line.insert("elapsed_s".into(), started.elapsed().as_secs_f64().into());
            let line = Value::Object(line);
            writeln!(log, "{line}").map_err(|e| Error::io("write log", &log_path, e))?;
        }
        for (k, v) in &report.metrics {
            match sums.iter_mut().find(|s| s.0 == *k) {
                Some(s) => {
                    s.1 += v;
                    s.2 += 1;
                }
                None => sums.push((k, *v, 1)),
            }
        }
        let crossed = |every: u64| step / every != before / every || step >= run.steps;
        if crossed(run.log_every) && !sums.is_empty() {
            let mut rec = serde_json::Map::new();
            rec.insert("step".into(), step.into());
            for (k, s, n) in sums.drain(..) {
                rec.insert(k.into(), (s / n as f64).into());
            }
            writeln!(log, "{}", Value::Object(rec))
                .map_err(|e| Error::io("write log", &log_path, e))?;
        }
        observer.progress(step, mean(&meta.recent));
        if crossed(run.ckpt_every) {
            log.flush()
                .map_err(|e| Error::io("write log", &log_path, e))?;
            save(dir, &meta, agent.save())?;
            last_saved = step;
            observer.checkpoint(step);
        }
    }
    if last_saved != agent.env_steps() {
        save(dir, &meta, agent.save())?;
        observer.checkpoint(agent.env_steps());
    }
    log.flush()
        .map_err(|e| Error::io("write log", &log_path, e))?;
    if meta.episodes > 0 {
        write_curve(
            dir,
            &format!("{} on {}, seed {}", run.algo, run.env, run.seed),
        )?;
    }
    Ok(TrainOutcome {
        steps: agent.env_steps(),
        episodes: meta.episodes,
        running_return: mean(&meta.recent),
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Summary of evaluation episodes (`genlab rl eval --json FILE` writes it; `genlab serve`
/// shows it as a run's evaluation when it is the run's `eval.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub algo: String,
    pub env: String,
    pub episodes: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub mean_length: f64,
    pub returns: Vec<f64>,
}

/// One recorded step of a rollout (`genlab rl rollout`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRecord {
    pub episode: usize,
    pub t: usize,
    pub obs: Vec<f32>,
    pub action: Vec<f32>,
    /// Per agent for a multi-agent task (one value otherwise).
    pub reward: Vec<f64>,
    pub next_obs: Vec<f32>,
    pub terminated: bool,
    pub truncated: bool,
}

/// Runs `episodes` episodes of the deterministic policy; `each` sees every step, and every
/// frame when `frames` is set. Start states come from `Rng::derive(seed, "eval")`.
pub fn run_episodes(
    agent: &mut dyn Agent,
    env: &EnvEntry,
    episodes: usize,
    seed: u64,
    frames: bool,
    each: &mut dyn FnMut(StepRecord, Option<Frame>),
) -> Result<Vec<(f64, usize)>> {
    let mut rng = Rng::derive(seed, "eval");
    let mut out = Vec::with_capacity(episodes);
    let mut action = Vec::new();
    match env.make {
        Maker::Single(_) => {
            let mut e = env.make_single()?;
            let space = e.env.action_space();
            let n = e.env.observation_space().flat_len();
            let (mut obs, mut next) = (vec![0f32; n], vec![0f32; n]);
            for ep in 0..episodes {
                e.reset(&mut rng, &mut obs);
                if frames {
                    each_frame(each, e.env.render());
                }
                let (mut ret, mut t) = (0.0, 0);
                loop {
                    agent.act(&obs, &mut action);
                    let a = match space {
                        Space::Discrete(_) => Action::Discrete(action[0] as usize),
                        Space::Box { .. } => Action::Continuous(&action),
                    };
                    let tr = e.step(a, &mut rng, &mut next);
                    ret += tr.reward;
                    let frame = if frames { e.env.render() } else { None };
                    each(
                        StepRecord {
                            episode: ep,
                            t,
                            obs: obs.clone(),
                            action: action.clone(),
                            reward: vec![tr.reward],
                            next_obs: next.clone(),
                            terminated: tr.terminated,
                            truncated: tr.truncated,
                        },
                        frame,
                    );
                    t += 1;
                    obs.copy_from_slice(&next);
                    if tr.terminated || tr.truncated {
                        break;
                    }
                }
                out.push((ret, t));
            }
        }
        Maker::Multi(f) => {
            let mut e = f(true);
            let n = e.n_agents() * e.obs_dim();
            let (mut obs, mut next) = (vec![0f32; n], vec![0f32; n]);
            let mut rew = vec![0f64; e.n_agents()];
            for ep in 0..episodes {
                e.reset(&mut rng, &mut obs);
                if frames {
                    each_frame(each, e.render());
                }
                let (mut ret, mut t) = (0.0, 0);
                loop {
                    agent.act(&obs, &mut action);
                    let (term, trunc) = e.step(&action, &mut next, &mut rew);
                    ret += rew.iter().sum::<f64>();
                    let frame = if frames { e.render() } else { None };
                    each(
                        StepRecord {
                            episode: ep,
                            t,
                            obs: obs.clone(),
                            action: action.clone(),
                            reward: rew.clone(),
                            next_obs: next.clone(),
                            terminated: term,
                            truncated: trunc,
                        },
                        frame,
                    );
                    t += 1;
                    obs.copy_from_slice(&next);
                    if term || trunc {
                        break;
                    }
                }
                out.push((ret, t));
            }
        }
    }
    Ok(out)
}

/// Passes the reset frame on as a frame without a step (t = usize::MAX marks it).
fn each_frame(each: &mut dyn FnMut(StepRecord, Option<Frame>), f: Option<Frame>) {
    if f.is_some() {
        each(
            StepRecord {
                episode: usize::MAX,
                t: usize::MAX,
                obs: vec![],
                action: vec![],
                reward: vec![],
                next_obs: vec![],
                terminated: false,
                truncated: false,
            },
            f,
        );
    }
}

/// A policy that acts uniformly at random (the baseline of a comparison).
pub struct RandomPolicy {
    space: Space,
    n_agents: usize,
    rng: Rng,
}

impl Agent for RandomPolicy {
    fn env_steps(&self) -> u64 {
        0
    }
    fn train_unit(&mut self, _report: &mut Report) -> Result<()> {
        Err(Error::InvalidInput(
            "the random policy does not train".into(),
        ))
    }
    fn act(&mut self, _obs: &[f32], action: &mut Vec<f32>) {
        action.clear();
        for _ in 0..self.n_agents {
            match &self.space {
                Space::Discrete(n) => action.push(self.rng.below(*n as u64) as f32),
                Space::Box { low, high } => action.extend(
                    low.iter()
                        .zip(high)
                        .map(|(l, h)| l + (h - l) * self.rng.uniform() as f32),
                ),
            }
        }
    }
    fn save(&self) -> Saved {
        Saved::default()
    }
    fn load(&mut self, _saved: Saved) -> Result<()> {
        Ok(())
    }
}

/// Evaluates a uniformly random policy on `env` (continuous actions for multi-agent tasks).
pub fn evaluate_random(env: &str, episodes: usize, seed: u64) -> Result<EvalResult> {
    if episodes == 0 {
        return Err(Error::setting("episodes", "must be at least 1, got 0"));
    }
    let entry = envs::find(env)?;
    let (space, n_agents) = match entry.make {
        Maker::Single(f) => (f().action_space(), 1),
        Maker::Multi(f) => {
            let e = f(true);
            (e.action_space(), e.n_agents())
        }
    };
    let mut agent = RandomPolicy {
        space,
        n_agents,
        rng: Rng::derive(seed, "random-policy"),
    };
    let eps = run_episodes(&mut agent, entry, episodes, seed, false, &mut |_, _| {})?;
    let run = RunConfig {
        algo: "random".into(),
        env: env.into(),
        seed,
        steps: 0,
        ckpt_every: 1,
        log_every: 1,
        config: Value::Null,
    };
    Ok(summarise(&run, &eps))
}

/// Evaluates the deterministic policy of a run directory over `episodes` episodes.
pub fn evaluate(dir: &Path, episodes: usize, seed: u64) -> Result<EvalResult> {
    if episodes == 0 {
        return Err(Error::setting("episodes", "must be at least 1, got 0"));
    }
    let (run, mut agent) = load_agent(dir)?;
    let env = envs::find(&run.env)?;
    let eps = run_episodes(agent.as_mut(), env, episodes, seed, false, &mut |_, _| {})?;
    Ok(summarise(&run, &eps))
}

pub(crate) fn summarise(run: &RunConfig, eps: &[(f64, usize)]) -> EvalResult {
    let r: Vec<f64> = eps.iter().map(|e| e.0).collect();
    let n = r.len() as f64;
    let m = r.iter().sum::<f64>() / n;
    let var = r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    EvalResult {
        algo: run.algo.clone(),
        env: run.env.clone(),
        episodes: r.len(),
        mean: m,
        std: var.sqrt(),
        min: r.iter().copied().fold(f64::INFINITY, f64::min),
        max: r.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mean_length: eps.iter().map(|e| e.1 as f64).sum::<f64>() / n,
        returns: r,
    }
}

/// What a rollout wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutResult {
    pub steps: usize,
    pub returns: Vec<f64>,
    pub frames: usize,
}

/// Plays `episodes` episodes of a run's deterministic policy, writing one JSON record per
/// step to `out` and, with `gif`, the rendered frames as an animated GIF.
pub fn rollout(
    dir: &Path,
    episodes: usize,
    seed: u64,
    out: &Path,
    gif: Option<&Path>,
) -> Result<RolloutResult> {
    if episodes == 0 {
        return Err(Error::setting("episodes", "must be at least 1, got 0"));
    }
    let (run, mut agent) = load_agent(dir)?;
    let env = envs::find(&run.env)?;
    let mut text = String::new();
    let mut frames = Vec::new();
    let mut steps = 0;
    let eps = run_episodes(
        agent.as_mut(),
        env,
        episodes,
        seed,
        gif.is_some(),
        &mut |rec, f| {
            if rec.t != usize::MAX {
                text.push_str(&serde_json::to_string(&rec).expect("record serialises"));
                text.push('\n');
                steps += 1;
            }
            frames.extend(f);
        },
    )?;
    io::write_atomic(out, text.as_bytes())?;
    if gif.is_some() && frames.is_empty() {
        return Err(Error::InvalidInput(format!(
            "environment `{}` has no picture to draw; drop the GIF",
            env.name
        )));
    }
    let n_frames = frames.len();
    if let Some(g) = gif {
        crate::render::write_gif(g, frames, 4)?;
    }
    Ok(RolloutResult {
        steps,
        returns: eps.iter().map(|e| e.0).collect(),
        frames: n_frames,
    })
}
