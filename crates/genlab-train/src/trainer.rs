//! The training loop: step cadence, JSONL logging, checkpoints, exact resume and Ctrl-C.
//!
//! A run directory holds `config.json` (the resolved config, for people), `log.jsonl` (one
//! line per logged step) and `checkpoint.safetensors`: weights, EMA and optimizer moments
//! as tensors, with the resolved config and the run state (step, RNG state, data order) in
//! its metadata. It is one file written by one atomic rename, so a crash or a failed run
//! can never leave weights and state that disagree, nor destroy the last good checkpoint.
//! Resuming restores all of it: N steps then N more give the same bytes as 2N straight.
//!
//! The directory is locked for the whole call ([`crate::lock`]): a second process training in
//! it fails at once instead of interleaving the log and overwriting the checkpoint.
//!
//! The loop runs on the step's device ([`TrainStep::device`]): batches are built there, and
//! checkpoints are written from it (tensors are copied to the host) and read back onto it, so
//! a run trained on one device can be resumed or sampled on another.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use genlab_core::{io, Error, Result, Rng};
use genlab_data::{make_training_batch, Dataset, EpochSampler};

use crate::lock::RunLock;
use crate::run::RunConfig;
use crate::step::TrainStep;

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const LOG_FILE: &str = "log.jsonl";
pub const CONFIG_FILE: &str = "config.json";
/// The one metadata key: `{"config": ..., "state": ...}` as JSON. One key because
/// safetensors writes its metadata map in hash order: with two keys, two identical runs
/// wrote checkpoints whose bytes differed.
const META_KEY: &str = "genlab";
/// Bumped when the checkpoint layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;

/// Run state stored in the checkpoint metadata.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub format: u32,
    pub step: u64,
    pub noise_rng: [u64; 4],
    pub data_order: EpochSampler,
    pub step_state: serde_json::Value,
}

/// Reads the config and state out of checkpoint metadata.
pub fn parse_metadata(
    meta: &HashMap<String, String>,
    file: &Path,
) -> Result<(RunConfig, RunState)> {
    let get = |k: &str| {
        meta.get(k).ok_or_else(|| {
            Error::Checkpoint(format!(
                "{} has no `{k}` metadata: not a genlab training checkpoint",
                file.display()
            ))
        })
    };
    let bad = |e: serde_json::Error| {
        Error::Checkpoint(format!("{}: corrupt metadata: {e}", file.display()))
    };
    let (tree, state): (serde_json::Value, RunState) = match (
        meta.get(META_KEY),
        meta.get("genlab.config"),
        meta.get("genlab.state"),
    ) {
        // The first checkpoints of this format kept config and state under two keys.
        (None, Some(c), Some(s)) => (
            serde_json::from_str(c).map_err(bad)?,
            serde_json::from_str(s).map_err(bad)?,
        ),
        _ => {
            let both: serde_json::Value = serde_json::from_str(get(META_KEY)?).map_err(bad)?;
            let serde_json::Value::Object(mut both) = both else {
                return Err(Error::Checkpoint(format!(
                    "{}: corrupt metadata: `{META_KEY}` is not a JSON object (expected one with \
                     `config` and `state`)",
                    file.display()
                )));
            };
            let take = |both: &mut serde_json::Map<String, serde_json::Value>, k: &str| {
                both.remove(k).unwrap_or(serde_json::Value::Null)
            };
            let state = serde_json::from_value(take(&mut both, "state")).map_err(bad)?;
            (take(&mut both, "config"), state)
        }
    };
    if state.format != FORMAT_VERSION {
        return Err(Error::Checkpoint(format!(
            "{} has checkpoint format {}, this genlab reads format {FORMAT_VERSION}",
            file.display(),
            state.format
        )));
    }
    Ok((RunConfig::from_tree(&tree)?, state))
}

/// Receives progress from the loop (the CLI draws a progress bar with it).
pub trait Observer {
    fn start(&mut self, _from_step: u64, _to_step: u64, _num_params: usize) {}
    /// Called every `log_every` steps with the mean metrics since the last call.
    fn log(&mut self, _step: u64, _metrics: &[(String, f64)], _steps_per_sec: f64) {}
    /// Called after every step (cheap: the CLI only moves its bar).
    fn tick(&mut self, _step: u64) {}
    fn checkpoint(&mut self, _step: u64, _path: &Path) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Step reached (and saved).
    pub step: u64,
    pub interrupted: bool,
    /// Mean loss over the last logged interval.
    pub last_loss: f64,
    pub seconds: f64,
}

fn save(
    run_dir: &Path,
    run: &RunConfig,
    state: &RunState,
    step: &dyn TrainStep,
) -> Result<std::path::PathBuf> {
    let both = serde_json::json!({ "config": run.to_tree(), "state": state });
    let meta: HashMap<String, String> = [(META_KEY.to_string(), both.to_string())].into();
    let path = run_dir.join(CHECKPOINT_FILE);
    io::save_tensors_with_metadata(&path, &step.state_tensors(), meta)?;
    Ok(path)
}

/// Keeps only log lines whose step is at most `step` (a resumed run rewrites what came
/// after its checkpoint).
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut kept = String::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io("read", path, e))?;
        let s = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
        if s.is_some_and(|s| s <= step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    io::write_atomic(path, kept.as_bytes())
}

/// Trains `step` on `data` in `run_dir` up to `run.train.steps`.
///
/// With `resume`, the checkpoint in `run_dir` is loaded first (its model config must be the
/// one in `run`); without it, an existing checkpoint there is an error rather than being
/// overwritten. `stop` (set by Ctrl-C) makes the loop save and return early.
pub fn train(
    run_dir: &Path,
    run: &RunConfig,
    data: &dyn Dataset,
    step: &mut dyn TrainStep,
    resume: bool,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    let _lock = lock_run_dir(run_dir, resume)?;
    let job = TrainJob {
        run_dir,
        run,
        data,
        resume,
    };
    train_locked(&job, step, observer, stop)
}

/// Locks `run_dir` for this process (creating it for a fresh run) before anything in it is
/// read or written: a second process on the same directory fails here, without touching the
/// first one's log or checkpoint. Resuming a directory that does not exist locks nothing
/// (`None`): loading its checkpoint fails with the message that says so. Hold the lock for
/// as long as the directory is being written (the session holds it through its pictures).
pub fn lock_run_dir(run_dir: &Path, resume: bool) -> Result<Option<RunLock>> {
    if !resume {
        std::fs::create_dir_all(run_dir)
            .map_err(|e| Error::io("create run directory", run_dir, e))?;
    }
    if run_dir.is_dir() {
        Ok(Some(RunLock::acquire(run_dir)?))
    } else {
        Ok(None)
    }
}

/// Where the loop trains, and on what.
pub struct TrainJob<'a> {
    pub run_dir: &'a Path,
    pub run: &'a RunConfig,
    pub data: &'a dyn Dataset,
    /// Continue from the checkpoint in `run_dir`.
    pub resume: bool,
}

/// [`train`] in a directory whose lock ([`lock_run_dir`]) the caller holds.
pub fn train_locked(
    job: &TrainJob,
    step: &mut dyn TrainStep,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    let TrainJob {
        run_dir,
        run,
        data,
        resume,
    } = *job;
    let t = &run.train;
    t.validate()?;
    if data.is_empty() {
        return Err(Error::Data(format!("dataset `{}` is empty", data.name())));
    }
    let ckpt = run_dir.join(CHECKPOINT_FILE);
    let mut state = if resume {
        let (tensors, meta) = io::load_tensors_with_metadata(&ckpt, step.device())?;
        let (saved, state) = parse_metadata(&meta, &ckpt)?;
        // The data order must be one for this dataset: its length sizes the permutation
        // drawn at every batch, so a corrupt one could ask for any amount of memory.
        state
            .data_order
            .check_len(data.len())
            .map_err(|e| match e {
                Error::Data(m) => Error::Checkpoint(format!("{}: {m}", ckpt.display())),
                other => other,
            })?;
        if saved.model != run.model
            || saved.model_config != run.model_config
            || saved.data != run.data
        {
            return Err(Error::Checkpoint(format!(
                "{} was trained as model `{}` on `{}` with another config; resume it unchanged \
                 (only train.* settings may change)",
                ckpt.display(),
                saved.model,
                saved.data
            )));
        }
        step.load_state(&tensors, &state.step_state)?;
        truncate_log(&run_dir.join(LOG_FILE), state.step)?;
        state
    } else {
        if ckpt.exists() {
            return Err(Error::setting(
                "resume",
                format!(
                    "is needed to continue the checkpoint {} already holds (or choose another \
                     run directory)",
                    run_dir.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(run_dir.join(LOG_FILE));
        RunState {
            format: FORMAT_VERSION,
            step: 0,
            noise_rng: Rng::derive(run.seed, "train-noise").state(),
            data_order: EpochSampler::new(data.len(), run.seed),
            step_state: serde_json::Value::Null,
        }
    };
    io::write_json(&run_dir.join(CONFIG_FILE), &run.to_tree())?;
    let log_path = run_dir.join(LOG_FILE);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("open log", &log_path, e))?;

    let mut rng = Rng::from_state(state.noise_rng);
    let started = Instant::now();
    let mut window_start = Instant::now();
    let mut sums: Vec<(String, f64)> = Vec::new();
    let mut count = 0u64;
    let mut last_loss = f64::NAN;
    let mut last_saved = state.step;
    observer.start(state.step, t.steps, step.num_params());

    let snapshot = |state: &mut RunState, rng: &Rng, step: &dyn TrainStep| {
        state.noise_rng = rng.state();
        state.step_state = step.state_json();
    };

    while state.step < t.steps {
        if stop.load(Ordering::SeqCst) {
            snapshot(&mut state, &rng, step);
            let p = save(run_dir, run, &state, step)?;
            observer.checkpoint(state.step, &p);
            return Ok(TrainOutcome {
                step: state.step,
                interrupted: true,
                last_loss,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let idx = state.data_order.next_indices(t.batch_size);
        // Captions drawn per step from their own stream (derived from the seed and the step,
        // so a resumed run draws the same ones and no other randomness shifts).
        let mut caption_rng = Rng::derive(run.seed, &format!("captions/{}", state.step));
        let batch = make_training_batch(data, &idx, step.device(), &mut caption_rng)?;
        let metrics = step.step(&batch, &mut rng, t.lr_at(state.step)).map_err(|e| match e {
            Error::Numeric(m) => Error::Numeric(format!(
                "{m} at step {}; training stopped, the last good checkpoint (step {last_saved}) is kept",
                state.step + 1
            )),
            other => other,
        })?;
        state.step += 1;
        if sums.is_empty() {
            sums = metrics.iter().map(|(k, _)| (k.clone(), 0.0)).collect();
        }
        for ((_, s), (_, v)) in sums.iter_mut().zip(&metrics) {
            *s += v;
        }
        count += 1;
        observer.tick(state.step);
        if state.step % t.log_every == 0 || state.step == t.steps {
            let sps = count as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
            let means: Vec<(String, f64)> = sums
                .iter()
                .map(|(k, s)| (k.clone(), s / count as f64))
                .collect();
            last_loss = means.first().map(|m| m.1).unwrap_or(f64::NAN);
            let mut rec = serde_json::Map::new();
            rec.insert("step".into(), state.step.into());
            for (k, v) in &means {
                rec.insert(k.clone(), (*v).into());
            }
            rec.insert("lr".into(), t.lr_at(state.step - 1).into());
            rec.insert("steps_per_sec".into(), sps.into());
            rec.insert("elapsed_s".into(), started.elapsed().as_secs_f64().into());
            writeln!(log, "{}", serde_json::Value::Object(rec))
                .map_err(|e| Error::io("write log", &log_path, e))?;
            log.flush()
                .map_err(|e| Error::io("write log", &log_path, e))?;
            observer.log(state.step, &means, sps);
            sums.clear();
            count = 0;
            window_start = Instant::now();
        }
        if state.step % t.ckpt_every == 0 || state.step == t.steps {
            snapshot(&mut state, &rng, step);
            let p = save(run_dir, run, &state, step)?;
            last_saved = state.step;
            observer.checkpoint(state.step, &p);
        }
    }
    if last_saved != state.step {
        // Resumed at or past the target: make sure a checkpoint of this step exists.
        snapshot(&mut state, &rng, step);
        save(run_dir, run, &state, step)?;
    }
    Ok(TrainOutcome {
        step: state.step,
        interrupted: false,
        last_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_resume_drops_log_lines_written_after_the_checkpoint() {
        // A run killed after logging step 6 but checkpointed at step 4 must not log steps
        // 5-6 twice once resumed.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LOG_FILE);
        let lines: String = (1..=6)
            .map(|s| format!("{{\"step\":{s},\"loss\":1.0}}\n"))
            .collect();
        std::fs::write(&p, lines + "not json\n").unwrap();
        truncate_log(&p, 4).unwrap();
        let kept = std::fs::read_to_string(&p).unwrap();
        assert_eq!(kept.lines().count(), 4, "{kept}");
        assert!(kept.lines().last().unwrap().contains("\"step\":4"));
    }
}
