//! `genlab distill`: progressive distillation (Salimans & Ho 2022, Algorithm 2) of a
//! diffusion run, halving its sampling steps round by round (e.g. 256 -> 128 -> ... -> 4).
//!
//! Each round is an ordinary training run of the `distill` model in `OUT/steps-N`, whose
//! teacher is the round before (the first round's is `--teacher`). A finished round is
//! reused and an interrupted one continues from its checkpoint, so running the same command
//! again resumes the whole ladder. `OUT/distill.json` records every round.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::config;
use genlab_models::diffusion::DistillConfig;
use genlab_train::steps::distill::{distill_train, read_teacher};
use genlab_train::RunConfig;

use crate::cmd_train::{open, train_resolved, TrainArgs};

#[derive(Args)]
pub struct DistillArgs {
    /// The teacher: a diffusion run directory (`genlab train --model ddpm`), ideally trained
    /// with `--set ddpm.prediction=v` (an epsilon student degrades at a few steps), or a
    /// round of an earlier `genlab distill`.
    #[arg(long)]
    pub teacher: PathBuf,
    /// Output directory: one run directory per round (steps-N) and distill.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Sampling steps of the teacher in the first round (on the trailing grid).
    #[arg(long, default_value_t = 256)]
    pub from: usize,
    /// Sampling steps of the last student; from/to must be a power of two.
    #[arg(long, default_value_t = 4)]
    pub to: usize,
    /// Training updates per round (shorthand for --set train.steps=K).
    #[arg(long)]
    pub steps_per_round: Option<u64>,
    /// Override a trainer setting of every round, e.g. --set train.lr=1e-4 (train.* only).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of every round (default: the teacher's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The student step counts of the ladder from `from` down to `to`: from/2, from/4, ..., to.
fn ladder(from: usize, to: usize, timesteps: usize) -> anyhow::Result<Vec<usize>> {
    if to == 0 || from <= to || !from.is_multiple_of(to) || !(from / to).is_power_of_two() {
        bail!("--from must be --to times a power of two (at least 2), got --from {from} --to {to}");
    }
    if from > timesteps {
        bail!(
            "--from {from} exceeds the teacher's {timesteps} timesteps; the teacher's grid needs \
             at most one step per timestep"
        );
    }
    let mut v = Vec::new();
    let mut n = from / 2;
    while n >= to {
        v.push(n);
        n /= 2;
    }
    Ok(v)
}

/// The step a round directory's checkpoint reached, if it has one.
fn saved_step(dir: &Path) -> anyhow::Result<Option<u64>> {
    let file = dir.join(genlab_train::trainer::CHECKPOINT_FILE);
    if !file.exists() {
        return Ok(None);
    }
    let (_, meta) = genlab_core::io::load_tensors_with_metadata(&file, &candle_core::Device::Cpu)?;
    let (_, state) = genlab_train::trainer::parse_metadata(&meta, &file)?;
    Ok(Some(state.step))
}

pub fn run(a: DistillArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let first = read_teacher(&a.teacher)
        .with_context(|| format!("reading the teacher {}", a.teacher.display()))?;
    if let Some(k) = first.steps {
        if k != a.from {
            bail!(
                "{} is a distilled student of {k} steps: pass --from {k} to distil it further",
                a.teacher.display()
            );
        }
    }
    let steps = ladder(a.from, a.to, first.ddpm.timesteps)?;
    let mut train = distill_train(&first.run.train);
    let mut tree = serde_json::json!({ "train": serde_json::to_value(&train)? });
    for s in &a.set {
        let (k, v) = config::parse_override(s)?;
        if !k.starts_with("train.") {
            bail!("--set {k}: `genlab distill` takes train.* settings only (the network is the teacher's)");
        }
        config::apply_override(&mut tree, &k, v)?;
    }
    if let Some(k) = a.steps_per_round {
        tree["train"]["steps"] = k.into();
    }
    train =
        serde_json::from_value(tree["train"].take()).context("the train settings after --set")?;
    train.validate()?;
    let seed = a.seed.unwrap_or(first.run.seed);
    let ds = open(&first.run.data, seed)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating the output directory {}", a.out.display()))?;
    let mut teacher = a.teacher.clone();
    let mut rounds = Vec::new();
    for n in steps {
        let dir = a.out.join(format!("steps-{n}"));
        let run = RunConfig {
            model: "distill".into(),
            data: first.run.data.clone(),
            seed,
            train: train.clone(),
            model_config: serde_json::to_value(DistillConfig {
                teacher: teacher.display().to_string(),
                student_steps: n,
                ddpm: first.ddpm.clone(),
            })?,
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
            println!(
                "round {} -> {n} steps: already trained in {}",
                2 * n,
                dir.display()
            );
            record["reused"] = true.into();
        } else {
            println!(
                "round {} -> {n} steps: {} updates in {}{}",
                2 * n,
                train.steps,
                dir.display(),
                if done.is_some() { " (continuing)" } else { "" }
            );
            let args = TrainArgs {
                out: dir.clone(),
                resume: done.is_some(),
                quiet: a.quiet,
                ..Default::default()
            };
            let t = train_resolved(&args, run, ds.as_ref(), device)
                .with_context(|| format!("distilling to {n} steps in {}", dir.display()))?;
            if t.outcome.interrupted {
                bail!(
                    "interrupted at step {} of the {n}-step round; the checkpoint is saved, run \
                     the same command again to continue",
                    t.outcome.step
                );
            }
            if let Some(p) = &t.preview {
                println!("{}", p.summary);
                record["preview"] = p.summary.trim().into();
            }
            record["final_loss"] = t.outcome.last_loss.into();
            record["seconds"] = t0.elapsed().as_secs_f64().into();
        }
        rounds.push(record);
        genlab_core::io::write_json(
            &a.out.join("distill.json"),
            &serde_json::json!({ "teacher": a.teacher.display().to_string(), "rounds": rounds }),
        )?;
        teacher = dir;
    }
    println!(
        "the {}-step student is {} (sample it with: genlab sample --ckpt {} --out s.png)",
        a.to,
        teacher.display(),
        teacher.display()
    );
    Ok(())
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
