//! `genlab train`: parse the flags into a run request; `genlab_train` resolves, trains,
//! saves and draws the preview; print what happened.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use genlab_train::{resolve_run, train_run, RunOptions, RunRequest, Trained};

#[derive(Args, Clone, Default)]
pub struct TrainArgs {
    /// Model to train (see `genlab list`), e.g. ddpm.
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset: a toy 2-D set (eight-gaussians, two-moons, ...), digits, mnist, folder:PATH
    /// (see `genlab list`).
    #[arg(long)]
    pub data: Option<String>,
    /// Total training steps (shorthand for --set train.steps=N; with --resume, the new total).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of initialisation, data order and noise: the same seed gives the same weights.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory: checkpoint, config.json, log.jsonl, loss.svg and preview pictures.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with any of: model, data, seed, image_size, channels, [train], [<model>]
    /// tables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config value, e.g. --set train.lr=2e-4 --set ddpm.timesteps=500
    /// (repeatable; an unknown key is an error that lists the known ones).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Side length that folder:PATH images are resized and centre-cropped to (default 32);
    /// saved with the run.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Channels of folder:PATH images: 1 (grey) or 3 (RGB, the default); saved with the run.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Condition the model on the data's class labels (the class count comes from the data;
    /// labels are dropped with probability <model>.label_dropout so that classifier-free
    /// guidance works). For models that take a condition (see `genlab list`).
    #[arg(long)]
    pub class_conditional: bool,
    /// Condition a ddpm on an image map of each example, concatenated to its input (SR3):
    /// low-res:SIZE (the image at SIZE x SIZE, bicubic-upsampled: super-resolution, e.g.
    /// low-res:7 for MNIST) or edges[:THRESHOLD] (its Sobel edge map). Sample it with
    /// `genlab translate --ckpt RUN --from mnist:test`.
    #[arg(long, value_name = "MAP")]
    pub image_condition: Option<String>,
    /// Continue the run in --out exactly where its checkpoint stopped.
    #[arg(long)]
    pub resume: bool,
    /// Skip the preview samples drawn after training.
    #[arg(long)]
    pub no_preview: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    fn request(&self) -> RunRequest {
        RunRequest {
            out: self.out.clone(),
            model: self.model.clone(),
            data: self.data.clone(),
            seed: self.seed,
            steps: self.steps,
            config_file: self.config.clone(),
            overrides: self.set.clone(),
            image_size: self.image_size,
            channels: self.channels,
            resume: self.resume,
            class_conditional: self.class_conditional,
            image_condition: self.image_condition.clone(),
        }
    }
}

/// Trains on `device` and prints the outcome.
pub fn run(a: TrainArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let t = train(&a, device)?;
    if t.outcome.interrupted {
        bail!(
            "interrupted at step {}; the checkpoint is saved, continue with: genlab train --resume --out {}",
            t.outcome.step,
            a.out.display()
        );
    }
    println!(
        "trained {} on {} to step {} in {:.1} s (final mean loss {:.4}); run directory {}",
        t.run.model,
        t.run.data,
        t.outcome.step,
        t.outcome.seconds,
        t.outcome.last_loss,
        a.out.display()
    );
    if let Some(p) = &t.preview {
        println!("{}", p.summary);
    }
    for (path, caption) in &t.figures {
        println!("figure {}: {caption}", path.display());
    }
    if let Some(e) = &t.evaluation {
        let parts: Vec<String> = e
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        println!(
            "held-out evaluation on {}: {} (written to {})",
            e.data,
            parts.join(", "),
            e.file.display()
        );
    }
    Ok(())
}

/// Resolves and trains per `a` on `device` with a progress bar; shared with the demo.
pub fn train(a: &TrainArgs, device: &candle_core::Device) -> anyhow::Result<Trained> {
    let resolved = if a.resume {
        resolve_run(&a.request())
            .with_context(|| format!("cannot resume from {}", a.out.display()))?
    } else {
        resolve_run(&a.request())?
    };
    let mut bar = crate::progress::TrainBar::new(a.quiet);
    let opts = RunOptions {
        resume: a.resume,
        preview: !a.no_preview,
    };
    let t = train_run(
        &a.out,
        resolved.run,
        resolved.data.as_ref(),
        device,
        &opts,
        &mut bar,
        &crate::progress::stop_flag(),
    )?;
    bar.pb.finish_and_clear();
    Ok(t)
}
