//! Progressive distillation's ladder (Salimans & Ho 2022, Algorithm 2): halve a diffusion
//! run's sampling steps round by round (e.g. 256 -> 128 -> ... -> 4).
//!
//! Each round is an ordinary training run of the `distill` model in `OUT/steps-N`, whose
//! teacher is the round before (the first round's is the given teacher). A finished round
//! is reused and an interrupted one continues from its checkpoint, so running the same
//! ladder again resumes it. `OUT/distill.json` records every round.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use serde_json::Value;

use genlab_core::{config, Error, Result};
use genlab_models::diffusion::DistillConfig;

use crate::registry::find_model;
use crate::resolve::open_data;
use crate::run::{RunConfig, TrainConfig};
use crate::session::{train_run, RunOptions, Trained};
use crate::steps::distill::{distill_train, read_teacher};
use crate::trainer::{Observer, CHECKPOINT_FILE};

/// The registry name of a distillation round's model.
pub const ROUND_MODEL: &str = "distill";
/// The ladder's record of its rounds, in its output directory.
pub const LADDER_FILE: &str = "distill.json";

/// What to distil.
#[derive(Clone, Debug)]
pub struct LadderRequest {
    /// A diffusion run directory (or an earlier round) that teaches the first round.
    pub teacher: PathBuf,
    /// Output directory: one run directory per round (`steps-N`) and `distill.json`.
    pub out: PathBuf,
    /// Sampling steps of the teacher in the first round (on the trailing grid).
    pub from: usize,
    /// Sampling steps of the last student; `from / to` must be a power of two.
    pub to: usize,
    /// Training updates per round (default: [`distill_train`]'s).
    pub steps_per_round: Option<u64>,
    /// `train.KEY=VALUE` overrides applied to every round.
    pub overrides: Vec<String>,
    /// Seed of every round (default: the teacher's).
    pub seed: Option<u64>,
}

/// The student step counts of the ladder from `from` down to `to`: from/2, from/4, ..., to.
pub fn ladder(from: usize, to: usize, timesteps: usize) -> Result<Vec<usize>> {
    if to == 0 || from <= to || !from.is_multiple_of(to) || !(from / to).is_power_of_two() {
        return Err(Error::setting(
            "from",
            format!(
                "must be the last student's steps times a power of two (at least 2), got {from} \
                 -> {to}"
            ),
        ));
    }
    if from > timesteps {
        return Err(Error::setting(
            "from",
            format!(
                "{from} exceeds the teacher's {timesteps} timesteps; the teacher's grid needs at \
                 most one step per timestep"
            ),
        ));
    }
    Ok(std::iter::successors(Some(from / 2), |n| Some(n / 2))
        .take_while(|&n| n >= to)
        .collect())
}

/// The step a round directory's checkpoint reached, if it has one.
pub fn saved_step(dir: &Path) -> Result<Option<u64>> {
    let file = dir.join(CHECKPOINT_FILE);
    if !file.exists() {
        return Ok(None);
    }
    let (_, meta) = genlab_core::io::load_tensors_with_metadata(&file, &Device::Cpu)?;
    let (_, state) = crate::trainer::parse_metadata(&meta, &file)?;
    Ok(Some(state.step))
}

/// The trainer settings of every round: [`distill_train`] of the teacher's, then the
/// overrides (train.* only), then the updates per round.
fn round_train(teacher: &TrainConfig, req: &LadderRequest) -> Result<TrainConfig> {
    let mut tree = serde_json::json!({ "train": serde_json::to_value(distill_train(teacher)).map_err(|e| Error::Config(e.to_string()))? });
    for s in &req.overrides {
        let (k, v) = config::parse_override(s)?;
        if !k.starts_with("train.") {
            return Err(Error::setting(
                k,
                "cannot be set: distillation takes train.* settings only (the network is the \
                 teacher's)",
            ));
        }
        config::apply_override(&mut tree, &k, v)?;
    }
    if let Some(k) = req.steps_per_round {
        tree["train"]["steps"] = k.into();
    }
    let train: TrainConfig = serde_json::from_value(tree["train"].take())
        .map_err(|e| Error::Config(format!("the train settings after the overrides: {e}")))?;
    train.validate()?;
    Ok(train)
}

/// What the ladder tells its caller as it goes.
pub enum RoundEvent<'a> {
    /// A round already trained to its updates in `dir`, reused.
    Reused { student_steps: usize, dir: &'a Path },
    /// A round about to train (`continuing`: from its checkpoint).
    Starting {
        student_steps: usize,
        updates: u64,
        dir: &'a Path,
        continuing: bool,
    },
    /// A round that trained (possibly interrupted: see its outcome).
    Trained {
        student_steps: usize,
        trained: &'a Trained,
    },
}

/// Where the ladder stopped.
pub struct LadderOutcome {
    /// The last student's run directory (the last finished round's if interrupted).
    pub student: PathBuf,
    /// Interrupted in the round of this many student steps, at this update.
    pub interrupted: Option<(usize, u64)>,
}

/// Runs the ladder of `req` on `device`; `observer` follows each round's training and
/// `on_event` hears of every round.
pub fn distill_ladder(
    req: &LadderRequest,
    device: &Device,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(RoundEvent),
) -> Result<LadderOutcome> {
    let first = read_teacher(&req.teacher)?;
    if let Some(k) = first.steps {
        if k != req.from {
            return Err(Error::setting(
                "from",
                format!(
                    "must be {k}: {} is a distilled student of {k} steps",
                    req.teacher.display()
                ),
            ));
        }
    }
    if !find_model(&first.run.model)?.caps.distillable {
        return Err(Error::InvalidInput(format!(
            "{} holds a `{}` model, which cannot be distilled",
            req.teacher.display(),
            first.run.model
        )));
    }
    let steps = ladder(req.from, req.to, first.ddpm.timesteps)?;
    let train = round_train(&first.run.train, req)?;
    let seed = req.seed.unwrap_or(first.run.seed);
    let ds = open_data(
        &first.run.data,
        seed,
        first.run.image_size,
        first.run.channels,
    )?;
    std::fs::create_dir_all(&req.out)
        .map_err(|e| Error::io("create the output directory", &req.out, e))?;
    let mut teacher = req.teacher.clone();
    let mut rounds = Vec::new();
    for n in steps {
        let dir = req.out.join(format!("steps-{n}"));
        let run = RunConfig {
            model: ROUND_MODEL.into(),
            seed,
            train: train.clone(),
            model_config: serde_json::to_value(DistillConfig {
                teacher: teacher.display().to_string(),
                student_steps: n,
                ddpm: first.ddpm.clone(),
            })
            .map_err(|e| Error::Config(e.to_string()))?,
            ..first.run.clone()
        };
        let done = saved_step(&dir)?;
        let t0 = Instant::now();
        let mut record = serde_json::json!({
            "student_steps": n,
            "teacher_steps": 2 * n,
            "teacher": teacher.display().to_string(),
            "dir": dir.display().to_string(),
        });
        if done.is_some_and(|s| s >= train.steps) {
            on_event(RoundEvent::Reused {
                student_steps: n,
                dir: &dir,
            });
            record["reused"] = true.into();
        } else {
            on_event(RoundEvent::Starting {
                student_steps: n,
                updates: train.steps,
                dir: &dir,
                continuing: done.is_some(),
            });
            let opts = RunOptions {
                resume: done.is_some(),
                preview: true,
            };
            let t = train_run(&dir, run, ds.as_ref(), device, &opts, observer, stop)?;
            on_event(RoundEvent::Trained {
                student_steps: n,
                trained: &t,
            });
            if t.outcome.interrupted {
                return Ok(LadderOutcome {
                    student: teacher,
                    interrupted: Some((n, t.outcome.step)),
                });
            }
            if let Some(p) = &t.preview {
                record["preview"] = p.summary.trim().into();
            }
            record["final_loss"] = t.outcome.last_loss.into();
            record["seconds"] = t0.elapsed().as_secs_f64().into();
        }
        rounds.push(record);
        genlab_core::io::write_json(
            &req.out.join(LADDER_FILE),
            &serde_json::json!({ "teacher": req.teacher.display().to_string(), "rounds": Value::Array(rounds.clone()) }),
        )?;
        teacher = dir;
    }
    Ok(LadderOutcome {
        student: teacher,
        interrupted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_halves_and_rejects_bad_ranges() {
        assert_eq!(ladder(256, 4, 1000).unwrap(), vec![128, 64, 32, 16, 8, 4]);
        assert_eq!(ladder(8, 4, 1000).unwrap(), vec![4]);
        for (from, to) in [(4, 4), (12, 4), (256, 0), (6, 4)] {
            let e = ladder(from, to, 1000).unwrap_err().to_string();
            assert!(e.contains("power of two"), "{from} {to}: {e}");
        }
        assert!(ladder(2048, 4, 1000)
            .unwrap_err()
            .to_string()
            .contains("1000"));
    }
}
