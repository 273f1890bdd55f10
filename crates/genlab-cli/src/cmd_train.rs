//! `genlab train`: resolve the config, train, save, and draw preview pictures.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use genlab_core::{config, Rng};
use genlab_data::{open_dataset, DataKind, Dataset, OpenOptions};
use genlab_models::{DataSpace, Sample, SampleRequest};
use genlab_sampling::SamplerOptions;
use genlab_train::{find_model, RunConfig};

use crate::output;

#[derive(Args, Clone, Default)]
pub struct TrainArgs {
    /// Model to train (see `genlab list`), e.g. ddpm.
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset: a toy 2-D set (eight-gaussians, two-moons, ...), digits, mnist, or folder:PATH.
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
    /// TOML file with any of: model, data, seed, [train], [<model>] tables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config value, e.g. --set train.lr=2e-4 --set ddpm.timesteps=500
    /// (repeatable; an unknown key is an error that lists the known ones).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
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

pub fn data_space(ds: &dyn Dataset) -> DataSpace {
    DataSpace {
        shape: ds.example_shape(),
        images: matches!(ds.kind(), DataKind::Image),
    }
}

pub fn open(spec: &str, seed: u64) -> anyhow::Result<Box<dyn Dataset>> {
    Ok(open_dataset(
        spec,
        &OpenOptions {
            seed,
            ..Default::default()
        },
    )?)
}

/// Resolves a fresh run: defaults for (model, data), then the TOML file, then --set, then
/// the --steps/--seed flags.
fn resolve_fresh(a: &TrainArgs) -> anyhow::Result<(RunConfig, Box<dyn Dataset>)> {
    let file = a.config.as_deref().map(config::read_toml).transpose()?;
    let overrides = a
        .set
        .iter()
        .map(|s| config::parse_override(s))
        .collect::<genlab_core::Result<Vec<_>>>()?;
    // model, data and seed choose the defaults, so they are read first: a flag wins over
    // `--set`, which wins over the file.
    let top = |k: &str| {
        overrides
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .or_else(|| file.as_ref().and_then(|f| f.get(k)).cloned())
    };
    let model = match (&a.model, top("model")) {
        (Some(m), _) => m.clone(),
        (None, Some(Value::String(m))) => m,
        _ => bail!("no model given: pass --model NAME (see `genlab list`)"),
    };
    let data = match (&a.data, top("data")) {
        (Some(d), _) => d.clone(),
        (None, Some(Value::String(d))) => d,
        _ => bail!("no dataset given: pass --data NAME (see `genlab list`)"),
    };
    let seed = match (a.seed, top("seed")) {
        (Some(s), _) => s,
        (None, None) => 0,
        (None, Some(v)) => v
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("seed must be a non-negative integer, got {v}"))?,
    };
    let entry = find_model(&model)?;
    let ds = open(&data, seed)?;
    let space = data_space(ds.as_ref());
    let defaults = RunConfig {
        model: model.clone(),
        data: data.clone(),
        seed,
        train: (entry.default_train)(&space),
        model_config: (entry.default_config)(&space)?,
    };
    let mut tree = defaults.to_tree();
    if let Some(f) = &file {
        config::apply_overlay(&mut tree, f, "")?;
    }
    for (k, v) in overrides {
        config::apply_override(&mut tree, &k, v)?;
    }
    tree["model"] = model.into();
    tree["data"] = data.into();
    tree["seed"] = seed.into();
    if let Some(steps) = a.steps {
        tree["train"]["steps"] = steps.into();
    }
    let run = RunConfig::from_tree(&tree)?;
    if run.model_config.get("data") != defaults.model_config.get("data") {
        bail!("the model's `data` section must describe the dataset ({:?}); it is set from --data, do not override it", space);
    }
    Ok((run, ds))
}

/// Resolves a resumed run: the checkpoint's config, with only train.* settings changeable.
fn resolve_resume(a: &TrainArgs) -> anyhow::Result<(RunConfig, Box<dyn Dataset>)> {
    if a.config.is_some() || a.model.is_some() || a.data.is_some() || a.seed.is_some() {
        bail!("--resume continues the run in --out with its saved config; only --steps and --set train.KEY=VALUE may change");
    }
    let file = a.out.join(genlab_train::trainer::CHECKPOINT_FILE);
    let (_, meta) = genlab_core::io::load_tensors_with_metadata(&file, &candle_core::Device::Cpu)
        .with_context(|| format!("cannot resume from {}", a.out.display()))?;
    let (saved, _) = genlab_train::trainer::parse_metadata(&meta, &file)?;
    let mut tree = saved.to_tree();
    for s in &a.set {
        let (k, v) = config::parse_override(s)?;
        if !k.starts_with("train.") {
            bail!("--set {k}: a resumed run may only change train.* settings");
        }
        config::apply_override(&mut tree, &k, v)?;
    }
    if let Some(steps) = a.steps {
        tree["train"]["steps"] = steps.into();
    }
    let run = RunConfig::from_tree(&tree)?;
    let ds = open(&run.data, run.seed)?;
    Ok((run, ds))
}

pub struct Trained {
    pub run: RunConfig,
    pub outcome: genlab_train::TrainOutcome,
    pub preview: Option<Preview>,
    /// Pictures the model drew of itself (path, caption).
    pub figures: Vec<(std::path::PathBuf, String)>,
    /// Held-out split and the model's metrics on it (e.g. the classifier's test accuracy).
    pub evaluation: Option<(String, Vec<(String, f64)>)>,
}

/// The held-out split matching a training set, where the dataset has one.
pub fn held_out_split(data: &str) -> Option<&'static str> {
    match data {
        "mnist" | "mnist:train" => Some("mnist:test"),
        _ => None,
    }
}

/// What the post-training preview produced.
pub struct Preview {
    pub samples_png: PathBuf,
    pub real_png: Option<PathBuf>,
    pub summary: String,
}

/// Trains on `device` (see [`train`]).
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
    if let Some((spec, metrics)) = &t.evaluation {
        let parts: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!(
            "held-out evaluation on {spec}: {} (written to {})",
            parts.join(", "),
            a.out.join("eval.json").display()
        );
    }
    Ok(())
}

/// Trains per `a` on `device` and (unless disabled) writes preview pictures; shared with the
/// demo. The model, its optimizer state and the batches live on `device`; the data set,
/// checkpoints (written from the device), previews and metrics stay on the CPU.
pub fn train(a: &TrainArgs, device: &candle_core::Device) -> anyhow::Result<Trained> {
    let (run, ds) = if a.resume {
        resolve_resume(a)?
    } else {
        resolve_fresh(a)?
    };
    train_resolved(a, run, ds.as_ref(), device)
}

/// Trains an already resolved run in `a.out` (with `a.resume`, `a.quiet`, `a.no_preview`);
/// `genlab distill` builds its rounds' runs itself and comes in here.
pub fn train_resolved(
    a: &TrainArgs,
    run: RunConfig,
    ds: &dyn Dataset,
    device: &candle_core::Device,
) -> anyhow::Result<Trained> {
    let entry = find_model(&run.model)?;
    let mut step = (entry.build_step)(&run.model_config, &run.train, run.seed, device)?;
    let mut bar = crate::progress::TrainBar::new(a.quiet);
    let stop = crate::progress::stop_flag();
    let outcome = genlab_train::train(&a.out, &run, ds, step.as_mut(), a.resume, &mut bar, &stop)?;
    bar.pb.finish_and_clear();
    output::write_loss_svg(&a.out, &format!("{} on {}", run.model, run.data))?;
    let preview = match step.sampler() {
        Some(model) if !(a.no_preview || outcome.interrupted) => {
            Some(preview(&a.out, &run, ds, model)?)
        }
        _ => None,
    };
    let figures = if a.no_preview || outcome.interrupted {
        Vec::new()
    } else {
        // Held-out examples where the data set has a split, the training data otherwise.
        let held = held_out_split(&run.data)
            .map(|s| open(s, run.seed))
            .transpose()?;
        let figs = step.figures(held.as_deref().unwrap_or(ds))?;
        output::save_figures(&a.out, &figs)?
    };
    let evaluation = match held_out_split(&run.data) {
        Some(spec) if !outcome.interrupted => {
            let held = open(spec, run.seed)?;
            let metrics = step.evaluate(held.as_ref())?;
            if metrics.is_empty() {
                None
            } else {
                let mut rec = serde_json::Map::new();
                rec.insert("data".into(), spec.into());
                rec.insert("step".into(), outcome.step.into());
                for (k, v) in &metrics {
                    rec.insert(k.clone(), (*v).into());
                }
                genlab_core::io::write_json(&a.out.join("eval.json"), &Value::Object(rec))?;
                Some((spec.to_string(), metrics))
            }
        }
        _ => None,
    };
    Ok(Trained {
        run,
        outcome,
        preview,
        figures,
        evaluation,
    })
}

/// Wasserstein-1, MMD and the 1-NN test between preview samples and data points, as one
/// summary line.
fn point_metrics(real: &candle_core::Tensor, fake: &candle_core::Tensor) -> anyhow::Result<String> {
    use genlab_metrics::suite::{evaluate, Metric, Side, SuiteOptions};
    let side = |t: &candle_core::Tensor, what: &str| -> anyhow::Result<Side> {
        let n = t.dim(0)?;
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(Side {
            features: Some(genlab_metrics::FeatureMatrix::from_f32(
                n,
                v.len() / n,
                &v,
                what,
            )?),
            ..Default::default()
        })
    };
    let r = evaluate(
        &[Metric::Wasserstein, Metric::Mmd, Metric::OneNn],
        &side(real, "data points")?,
        &side(fake, "samples")?,
        &SuiteOptions::default(),
    )?;
    let v = |i: usize| r.values[i].value;
    Ok(format!(
        "\nagainst {} data points: Wasserstein-1 {:.4} ({}), MMD^2 {:.5}, 1-NN accuracy {:.3} (0.5 = indistinguishable)",
        r.n_real,
        v(0),
        r.values[0].detail["method"].as_str().unwrap_or("?"),
        v(1),
        v(2)
    ))
}

/// Draws preview samples from the EMA model (DDIM, 50 steps, or a distilled student's own
/// steps): a scatter over the data for points, a grid next to real examples for images.
fn preview(
    dir: &Path,
    run: &RunConfig,
    ds: &dyn Dataset,
    model: &dyn Sample,
) -> anyhow::Result<Preview> {
    let images = model.data_space().images;
    let n = if images { 64 } else { 2000 };
    let req = SampleRequest {
        n,
        sampler: "ddim".into(),
        options: SamplerOptions {
            steps: model.preferred_steps().unwrap_or(50),
            eta: 0.0,
            clip_x0: None,
            ..Default::default()
        },
        batch_size: 500,
    };
    let out = model.sample(&req, &mut Rng::derive(run.seed, "preview"), &mut |_, _| {})?;
    let samples_png = dir.join("samples.png");
    let how = match (out.nfe, run.model.as_str()) {
        (1, _) => "one network pass each".to_string(),
        (k, "ddpm") => format!("ddim, {k} steps"),
        (k, "distill") => format!("ddim on the trailing grid, {k} steps"),
        (k, _) => format!("{k} network evaluations each"),
    };
    let mut summary = format!("preview: {n} samples ({how}) in {}", samples_png.display());
    let real_png = if images {
        let m = n.min(ds.len());
        let idx: Vec<usize> = (0..m).map(|i| i * ds.len() / m).collect();
        let real = genlab_data::make_batch(ds, &idx, &candle_core::Device::Cpu)?.x;
        output::save_samples(&out.x, true, &samples_png, None)?;
        let p = dir.join("real.png");
        output::save_samples(&real, true, &p, None)?;
        Some(p)
    } else {
        let m = 2000.min(ds.len());
        let idx: Vec<usize> = (0..m).collect();
        let real = genlab_data::make_batch(ds, &idx, &candle_core::Device::Cpu)?.x;
        let reference = output::to_points(&real)?;
        output::save_samples(&out.x, false, &samples_png, Some(&reference))?;
        summary.push_str(&point_metrics(&real, &out.x)?);
        if run.data == "eight-gaussians" {
            let cov = genlab_data::mode_coverage(&output::to_points(&out.x)?);
            let min_mode = cov.smallest_mode();
            summary.push_str(&format!(
                "\neight-gaussians: {:.1}% of samples within 3 std of a mode; smallest mode holds {:.1}%",
                100.0 * cov.fraction_within_3std,
                100.0 * min_mode
            ));
        }
        None
    };
    Ok(Preview {
        samples_png,
        real_png,
        summary,
    })
}
