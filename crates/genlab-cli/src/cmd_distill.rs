//! `genlab distill`: progressive distillation (Salimans & Ho 2022, Algorithm 2) of a
//! diffusion run, halving its sampling steps round by round (e.g. 256 -> 128 -> ... -> 4);
//! the ladder itself is `genlab_train::ladder`. Running the same command again reuses the
//! finished rounds and continues an interrupted one.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use genlab_train::{distill_ladder, LadderRequest, RoundEvent};

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

pub fn run(a: DistillArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let req = LadderRequest {
        teacher: a.teacher.clone(),
        out: a.out.clone(),
        from: a.from,
        to: a.to,
        steps_per_round: a.steps_per_round,
        overrides: a.set.clone(),
        seed: a.seed,
    };
    let mut bar = crate::progress::TrainBar::new(a.quiet);
    let pb = bar.pb.clone(); // cleared after each round
    let outcome = distill_ladder(
        &req,
        device,
        &mut bar,
        &crate::progress::stop_flag(),
        &mut |event| match event {
            RoundEvent::Reused { student_steps, dir } => println!(
                "round {} -> {student_steps} steps: already trained in {}",
                2 * student_steps,
                dir.display()
            ),
            RoundEvent::Starting {
                student_steps,
                updates,
                dir,
                continuing,
            } => println!(
                "round {} -> {student_steps} steps: {updates} updates in {}{}",
                2 * student_steps,
                dir.display(),
                if continuing { " (continuing)" } else { "" }
            ),
            RoundEvent::Trained { trained, .. } => {
                pb.finish_and_clear();
                if let Some(p) = &trained.preview {
                    println!("{}", p.summary);
                }
            }
        },
    )
    .with_context(|| {
        format!(
            "distilling {} into {}",
            a.teacher.display(),
            a.out.display()
        )
    })?;
    if let Some((n, step)) = outcome.interrupted {
        bail!(
            "interrupted at step {step} of the {n}-step round; the checkpoint is saved, run the \
             same command again to continue"
        );
    }
    println!(
        "the {}-step student is {} (sample it with: genlab sample --ckpt {} --out s.png)",
        a.to,
        outcome.student.display(),
        outcome.student.display()
    );
    Ok(())
}
