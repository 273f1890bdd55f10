//! What the runs directory holds: every training run under it, with its state, progress,
//! last loss and metrics, read from the files the trainer writes (`config.json`,
//! `checkpoint.safetensors`, `log.jsonl`, `eval.json`, `run.lock`).
//!
//! Two trainers write runs: `genlab train` (generative models and classifiers on a data set)
//! and `genlab rl train` (an agent of an algorithm on an environment). They share the file
//! names and the run lock; the checkpoint's metadata tells them apart, and each is parsed
//! by its own crate (`genlab_train::trainer::parse_metadata`,
//! `genlab_rl::train::parse_metadata`). An RL run shows its algorithm as the model, its
//! environment as the data, environment steps as steps, and its episode returns beside the
//! last loss.
//!
//! A run is any directory holding one of `config.json`, `checkpoint.safetensors` or
//! `log.jsonl`, at any depth (a distillation ladder keeps its rounds inside its own run).
//! Reading a run never writes to it and never loads its weights: the checkpoint's state
//! comes from its safetensors header alone. A file that cannot be read makes the run
//! `broken` or adds a line to its `problems`; it never hides the other runs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use serde_json::Value;

use genlab_train::trainer::{CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE};
use genlab_train::Capabilities;

use crate::logs;
use crate::paths::RunsRoot;

/// Which trainer wrote a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `genlab train`: a model trained on a data set.
    Generative,
    /// `genlab rl train`: an agent (`model` is its algorithm) on an environment (`data`);
    /// its steps are environment steps.
    Rl,
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// A process holds its run lock: it is training now.
    Training,
    /// Its checkpoint reached the run's target steps.
    Finished,
    /// It stopped before its target (stopped, interrupted, killed or failed); it can be
    /// resumed from its checkpoint where it has one.
    Interrupted,
    /// Its checkpoint or config cannot be read (see `problems`).
    Broken,
    /// Nothing trained yet (a config without a log or checkpoint).
    Empty,
}

/// One row of the runs page.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// The run's path relative to the runs directory, `/`-separated.
    pub id: String,
    pub family: Family,
    /// The model, or an RL run's algorithm.
    pub model: Option<String>,
    /// The data set, or an RL run's environment.
    pub data: Option<String>,
    pub seed: Option<u64>,
    pub state: RunState,
    /// The latest step known: the log's while training, else the checkpoint's.
    pub step: Option<u64>,
    /// The run's target steps (`train.steps`).
    pub steps: Option<u64>,
    pub checkpoint_step: Option<u64>,
    /// The main loss of the last log line that has one (`loss`, or a GAN's first `*_loss`;
    /// an RL run's loss lines come every `log_every` steps, between its episode lines).
    pub last_loss: Option<f64>,
    pub loss_name: Option<String>,
    /// RL: the return of the last training episode in the log.
    pub last_return: Option<f64>,
    /// RL: the mean return of the last `genlab_rl::train::RUNNING_EPISODES` training
    /// episodes in the log.
    pub running_return: Option<f64>,
    /// RL: training episodes finished.
    pub episodes: Option<u64>,
    /// Evaluation results: `eval.json` (held-out metrics after training; for an RL run what
    /// `genlab rl eval RUN --json RUN/eval.json` writes, as `eval_return`, ...) and
    /// `nll.json` (a likelihood evaluation).
    pub metrics: BTreeMap<String, f64>,
    /// Newest modification time of its files, seconds since the Unix epoch.
    pub modified: Option<u64>,
    /// What could not be read, one line each.
    pub problems: Vec<String>,
    /// What the run's model family can do (from the model registry); `None` for a model
    /// this genlab does not know; nothing (every capability false) for an RL run.
    pub capabilities: Option<Capabilities>,
}

/// The checkpoint as its header describes it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointInfo {
    pub family: Family,
    pub step: u64,
    pub bytes: u64,
    pub modified: Option<u64>,
    /// The run config saved inside it.
    pub config: Value,
    /// RL: training episodes finished when it was saved.
    pub episodes: Option<u64>,
}

/// A held-out evaluation's file written after training.
pub const EVAL_FILE: &str = genlab_train::session::EVAL_FILE;
/// The likelihood evaluation a job writes into a run.
pub const NLL_FILE: &str = "nll.json";
/// Where sampling results saved from the playground go, inside a run.
pub const SAMPLES_DIR: &str = "samples";
/// Bytes of a log's end read for a summary.
const TAIL_BYTES: u64 = 64 << 10;
/// Deepest directory the scan enters below the runs directory.
const MAX_DEPTH: usize = 6;
/// Most directories one scan visits (a runs directory is not a whole disk).
const MAX_DIRS: usize = 20_000;

fn modified_secs(meta: &std::fs::Metadata) -> Option<u64> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Reads a checkpoint's header only (not its weights), checks that the file is as long as
/// the header says, and parses the run config and state in its metadata.
pub fn read_checkpoint(path: &Path) -> genlab_core::Result<CheckpointInfo> {
    let corrupt = |why: String| {
        genlab_core::Error::Checkpoint(format!("{} is corrupt: {why}", path.display()))
    };
    let mut f = File::open(path).map_err(|e| genlab_core::Error::io("open", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| genlab_core::Error::io("read", path, e))?;
    let len = meta.len();
    let mut n_bytes = [0u8; 8];
    f.read_exact(&mut n_bytes)
        .map_err(|_| corrupt(format!("{len} bytes, shorter than a safetensors header")))?;
    let n = u64::from_le_bytes(n_bytes);
    // safetensors' own limit on a header.
    if n > 100_000_000 || 8 + n > len {
        return Err(corrupt(format!(
            "its header claims {n} bytes, the file has {len}"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| genlab_core::Error::io("read", path, e))?;
    let parsed: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("bad header: {e}")))?;
    let expected = 8 + n + parsed.data_len() as u64;
    if expected != len {
        return Err(corrupt(format!(
            "the header describes {expected} bytes, the file has {len} (truncated?)"
        )));
    }
    let metadata = parsed.metadata().clone().unwrap_or_default();
    if genlab_rl::train::is_rl_metadata(&metadata) {
        let st = genlab_rl::train::parse_metadata(&metadata, path)?;
        return Ok(CheckpointInfo {
            family: Family::Rl,
            step: st.step,
            bytes: len,
            modified: modified_secs(&meta),
            config: serde_json::to_value(&st.run).unwrap_or_default(),
            episodes: Some(st.episodes),
        });
    }
    let (run, state) = genlab_train::trainer::parse_metadata(&metadata, path)?;
    Ok(CheckpointInfo {
        family: Family::Generative,
        step: state.step,
        bytes: len,
        modified: modified_secs(&meta),
        config: run.to_tree(),
        episodes: None,
    })
}

/// Whether a process holds `dir`'s run lock now. Reads the lock file, and only when it
/// names a holder (a holder that exits clears it) checks the lock itself with a shared
/// lock that is released at once.
pub fn is_training(dir: &Path) -> bool {
    let path = dir.join(genlab_train::lock::LOCK_FILE);
    let Ok(mut f) = File::open(&path) else {
        return false;
    };
    let mut text = String::new();
    if f.read_to_string(&mut text).is_err() || text.trim().is_empty() {
        return false;
    }
    matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

fn is_run_dir(dir: &Path) -> bool {
    [CONFIG_FILE, CHECKPOINT_FILE, LOG_FILE]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Every run under the runs directory, sorted by id.
pub fn scan(root: &RunsRoot) -> Vec<RunSummary> {
    let mut out = Vec::new();
    let mut stack = vec![(root.path().to_path_buf(), 0usize)];
    let mut visited = 0;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        if depth > 0 && is_run_dir(&dir) {
            if let Some(id) = root.relative(&dir) {
                out.push(summarize(&dir, id));
            }
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            // Symbolic links are not followed: the scan stays inside the runs directory.
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !hidden {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn read_json(path: &Path, problems: &mut Vec<String>) -> Option<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            problems.push(format!("{}: cannot be read ({e})", file_name(path)));
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{}: not valid JSON ({e})", file_name(path)));
            None
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The summary of the run in `dir`, named `id`.
pub fn summarize(dir: &Path, id: String) -> RunSummary {
    let mut problems = Vec::new();
    let mut modified = None;
    let mut touch = |p: &Path| {
        if let Some(m) = std::fs::metadata(p).ok().as_ref().and_then(modified_secs) {
            modified = Some(modified.map_or(m, |o: u64| o.max(m)));
        }
    };
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let log_path = dir.join(LOG_FILE);
    touch(&ckpt_path);
    touch(&log_path);
    touch(&dir.join(CONFIG_FILE));

    let config = read_json(&dir.join(CONFIG_FILE), &mut problems);
    let mut broken = false;
    let checkpoint = if ckpt_path.exists() {
        match read_checkpoint(&ckpt_path) {
            Ok(c) => Some(c),
            Err(e) => {
                // The page shows it under the run: name the file, not the whole path.
                let prefix = format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR);
                problems.push(e.to_string().replace(&prefix, ""));
                broken = true;
                None
            }
        }
    } else {
        None
    };
    // The checkpoint's own config wins: config.json is a copy written for people.
    let cfg = checkpoint.as_ref().map(|c| &c.config).or(config.as_ref());
    let rl_run = cfg.and_then(rl_config);
    // A broken checkpoint leaves the config to say which trainer wrote the run.
    let family = match (&checkpoint, &rl_run) {
        (Some(c), _) => c.family,
        (None, Some(_)) => Family::Rl,
        (None, None) => Family::Generative,
    };
    let text = |k: &str| {
        cfg.and_then(|c| c.get(k))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let (model, data, seed, steps) = match (family, rl_run) {
        (Family::Rl, Some(r)) => (Some(r.algo), Some(r.env), Some(r.seed), Some(r.steps)),
        (Family::Rl, None) => (None, None, None, None),
        (Family::Generative, _) => (
            text("model"),
            text("data"),
            cfg.and_then(|c| c.get("seed")).and_then(Value::as_u64),
            cfg.and_then(|c| c.pointer("/train/steps"))
                .and_then(Value::as_u64),
        ),
    };

    let log = match logs::read_tail(&log_path, TAIL_BYTES) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("{LOG_FILE}: cannot be read ({e})"));
            Default::default()
        }
    };
    if log.bad_lines > 0 {
        problems.push(format!(
            "{LOG_FILE}: {} unreadable line{} skipped",
            log.bad_lines,
            if log.bad_lines == 1 { "" } else { "s" }
        ));
    }
    let last = log.records.last();
    let (loss_name, last_loss) = match log.records.iter().rev().find_map(|r| r.main_loss()) {
        Some((k, v)) => (Some(k.to_string()), Some(v)),
        None => (None, None),
    };
    let (mut last_return, mut running_return, mut episodes) = (None, None, None);
    if family == Family::Rl {
        let returns = log_returns(&log.records);
        last_return = returns.last().map(|p| p.1);
        let recent = &returns[returns
            .len()
            .saturating_sub(genlab_rl::train::RUNNING_EPISODES)..];
        running_return = (!recent.is_empty())
            .then(|| recent.iter().map(|p| p.1).sum::<f64>() / recent.len() as f64);
        episodes = log
            .records
            .iter()
            .rev()
            .find_map(|r| r.values.get("episode"))
            .map(|&e| e as u64)
            .or(checkpoint.as_ref().and_then(|c| c.episodes));
    }

    let mut metrics = BTreeMap::new();
    for file in [EVAL_FILE, NLL_FILE] {
        let value = read_json(&dir.join(file), &mut problems);
        if family == Family::Rl && file == EVAL_FILE {
            if let Some(e) = value
                .as_ref()
                .and_then(|v| serde_json::from_value(v.clone()).ok())
            {
                rl_eval_metrics(&e, &mut metrics);
                continue;
            }
        }
        if let Some(Value::Object(m)) = value {
            for (k, v) in m {
                if k != "step" && k != "seed" && k != "n" && k != "dims" && k != "seconds" {
                    if let Some(x) = v.as_f64() {
                        metrics.insert(k, x);
                    }
                }
            }
        }
    }

    let training = is_training(dir);
    let checkpoint_step = checkpoint.as_ref().map(|c| c.step);
    let state = if training {
        RunState::Training
    } else if broken || (cfg.is_none() && checkpoint.is_none() && log.records.is_empty()) {
        RunState::Broken
    } else {
        match (checkpoint_step, steps) {
            (Some(s), Some(t)) if s >= t => RunState::Finished,
            (Some(_), _) => RunState::Interrupted,
            (None, _) if !log.records.is_empty() => RunState::Interrupted,
            (None, _) => RunState::Empty,
        }
    };
    let step = match state {
        RunState::Training => last.map(|r| r.step).or(checkpoint_step),
        _ => checkpoint_step.or(last.map(|r| r.step)),
    };
    let capabilities = match family {
        // An agent draws no samples and has no likelihood: nothing the pages can start.
        Family::Rl => Some(Capabilities::default()),
        Family::Generative => model
            .as_deref()
            .and_then(|m| genlab_train::find_model(m).ok())
            .map(|e| e.caps),
    };
    RunSummary {
        id,
        family,
        model,
        data,
        seed,
        state,
        step,
        steps,
        checkpoint_step,
        last_loss,
        loss_name,
        last_return,
        running_return,
        episodes,
        metrics,
        modified,
        problems,
        capabilities,
    }
}

/// The config of an RL run (`config.json`, or the one inside its checkpoint), if `cfg` is one.
fn rl_config(cfg: &Value) -> Option<genlab_rl::train::RunConfig> {
    serde_json::from_value(cfg.clone()).ok()
}

/// (step, return) of the episode lines among `records`.
pub fn log_returns(records: &[logs::LogRecord]) -> Vec<(u64, f64)> {
    records
        .iter()
        .filter_map(|r| Some((r.step, *r.values.get(genlab_rl::train::RETURN_FIELD)?)))
        .collect()
}

/// An RL evaluation's summary as metrics.
fn rl_eval_metrics(e: &genlab_rl::train::EvalResult, metrics: &mut BTreeMap<String, f64>) {
    metrics.insert("eval_return".into(), e.mean);
    metrics.insert("eval_return_std".into(), e.std);
    metrics.insert("eval_episodes".into(), e.episodes as f64);
    metrics.insert("eval_length".into(), e.mean_length);
}

/// A picture in a run directory.
#[derive(Clone, Debug, Serialize)]
pub struct Picture {
    /// Its path relative to the runs directory (for `/files/...`).
    pub path: String,
    /// Its path inside the run.
    pub name: String,
}

/// Everything the run page shows.
#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    /// The resolved config (`config.json`, else the checkpoint's).
    pub config: Option<Value>,
    pub checkpoint: Option<CheckpointInfo>,
    /// Preview pictures, the model's figures and saved samples.
    pub pictures: Vec<Picture>,
    /// `eval.json` and `nll.json` as written.
    pub evaluations: BTreeMap<String, Value>,
}

/// The learning-curve charts the few-label commands write into their runs: test error
/// against labels (`genlab active`), accuracy against labels with bands over seeds
/// (`genlab transfer`).
pub const LABEL_CURVES: &[&str] = &["curve.svg", "transfer.svg"];

/// Picture files of a run: top-level PNGs and GIFs (an RL rollout's), an RL run's learning
/// curve (`returns.svg`; a generative run's `loss.svg` is drawn live instead) and the
/// few-label commands' charts ([`LABEL_CURVES`]), then saved samples.
pub fn pictures(dir: &Path, id: &str, family: Family) -> Vec<Picture> {
    let mut out = Vec::new();
    for (sub, prefix) in [
        ("", String::new()),
        (SAMPLES_DIR, format!("{SAMPLES_DIR}/")),
    ] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| {
                let lower = n.to_ascii_lowercase();
                lower.ends_with(".png")
                    || lower.ends_with(".gif")
                    || (family == Family::Rl && sub.is_empty() && n == genlab_rl::train::CURVE_FILE)
                    || (sub.is_empty() && LABEL_CURVES.contains(&n.as_str()))
            })
            .collect();
        // The preview (or the learning curve) first, then the rest by name.
        names.sort_by_key(|n| {
            (
                n != "samples.png"
                    && n != genlab_rl::train::CURVE_FILE
                    && !LABEL_CURVES.contains(&n.as_str()),
                n != "real.png",
                n.clone(),
            )
        });
        for n in names {
            let name = format!("{prefix}{n}");
            out.push(Picture {
                path: format!("{id}/{name}"),
                name,
            });
        }
    }
    out
}

/// The run page's content for the run in `dir`, named `id`.
pub fn detail(dir: &Path, id: String) -> RunDetail {
    let summary = summarize(dir, id.clone());
    let mut ignored = Vec::new();
    let checkpoint = read_checkpoint(&dir.join(CHECKPOINT_FILE)).ok();
    let config = read_json(&dir.join(CONFIG_FILE), &mut ignored)
        .or_else(|| checkpoint.as_ref().map(|c| c.config.clone()));
    let mut evaluations = BTreeMap::new();
    for file in [EVAL_FILE, NLL_FILE] {
        if let Some(v) = read_json(&dir.join(file), &mut ignored) {
            evaluations.insert(file.to_string(), v);
        }
    }
    RunDetail {
        pictures: pictures(dir, &id, summary.family),
        summary,
        config,
        checkpoint,
        evaluations,
    }
}
