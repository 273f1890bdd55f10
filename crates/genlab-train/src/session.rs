//! A whole training run as every front end runs it: train (or resume) in a run directory,
//! then draw the loss curves, preview samples and the model's own figures, and evaluate on
//! the held-out split where the data have one. `genlab train`, `genlab demo` and each round
//! of the distillation ladder come through [`train_run`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use serde_json::Value;

use genlab_core::{Condition, Result, Rng};
use genlab_data::{dataset_info, make_batch, Dataset, ModeCoverage};
use genlab_models::{Sample, SampleRequest};
use genlab_sampling::SamplerOptions;

use crate::outputs::{save_figures, save_labeled_samples, save_samples, to_points, write_loss_svg};
use crate::registry::find_model;
use crate::resolve::open_data;
use crate::run::RunConfig;
use crate::trainer::{Observer, TrainJob, TrainOutcome};

/// How [`train_run`] runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Continue from the checkpoint in the run directory.
    pub resume: bool,
    /// Draw preview samples and figures after training.
    pub preview: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resume: false,
            preview: true, // a person wants to see what was trained
        }
    }
}

/// What the post-training preview produced.
#[derive(Clone, Debug)]
pub struct Preview {
    pub samples_png: PathBuf,
    /// Real examples beside the samples (images only).
    pub real_png: Option<PathBuf>,
    /// What was drawn and how, then one line per measurement (points: distances to the
    /// data, mode coverage where the data have modes).
    pub summary: String,
}

/// Metrics on the held-out split after training.
#[derive(Clone, Debug)]
pub struct HeldOut {
    /// The held-out split's spec (`mnist:test`).
    pub data: String,
    pub metrics: Vec<(String, f64)>,
    /// Where they were written (`eval.json` in the run directory).
    pub file: PathBuf,
}

/// What a finished (or interrupted) run produced.
pub struct Trained {
    pub run: RunConfig,
    pub outcome: TrainOutcome,
    pub preview: Option<Preview>,
    /// Pictures the model drew of itself (path, caption).
    pub figures: Vec<(PathBuf, String)>,
    pub evaluation: Option<HeldOut>,
}

/// The evaluation file a run directory gets when its data have a held-out split.
pub const EVAL_FILE: &str = "eval.json";

/// Trains `run` on `data` in `dir` (see [`crate::trainer::train`]; the directory stays
/// locked throughout), then writes
/// `loss.svg` and, unless interrupted or `opts.preview` is off, the preview and figures;
/// evaluates on the held-out split where the data have one. The model runs on `device`;
/// data, checkpoints, pictures and metrics stay on the CPU.
pub fn train_run(
    dir: &Path,
    run: RunConfig,
    data: &dyn Dataset,
    device: &Device,
    opts: &RunOptions,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
) -> Result<Trained> {
    let entry = find_model(&run.model)?;
    // Held until the pictures and the evaluation are written too.
    let _lock = crate::trainer::lock_run_dir(dir, opts.resume)?;
    let mut step = (entry.build_step)(&run.model_config, &run.train, run.seed, device)?;
    let job = TrainJob {
        run_dir: dir,
        run: &run,
        data,
        resume: opts.resume,
    };
    let outcome = crate::trainer::train_locked(&job, step.as_mut(), observer, stop)?;
    write_loss_svg(dir, &format!("{} on {}", run.model, run.data))?;
    let finished = !outcome.interrupted;
    let held_spec = dataset_info(&run.data)?.held_out;
    let held = match &held_spec {
        Some(spec) if finished => Some(open_data(spec, run.seed, run.image_size, run.channels)?),
        _ => None,
    };
    let mut preview = None;
    let mut figures = Vec::new();
    if finished && opts.preview {
        if let Some(model) = step.sampler() {
            preview = Some(draw_preview(dir, &run, data, model)?);
        }
        // Held-out examples where the data set has a split, the training data otherwise.
        let figs = step.figures(held.as_deref().unwrap_or(data))?;
        figures = save_figures(dir, &figs)?;
    }
    let evaluation = match (held, held_spec) {
        (Some(held), Some(spec)) => {
            let metrics = step.evaluate(held.as_ref())?;
            if metrics.is_empty() {
                None
            } else {
                let mut rec = serde_json::Map::new();
                rec.insert("data".into(), spec.clone().into());
                rec.insert("step".into(), outcome.step.into());
                for (k, v) in &metrics {
                    rec.insert(k.clone(), (*v).into());
                }
                let file = dir.join(EVAL_FILE);
                genlab_core::io::write_json(&file, &Value::Object(rec))?;
                Some(HeldOut {
                    data: spec,
                    metrics,
                    file,
                })
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
fn point_metrics(real: &Tensor, fake: &Tensor) -> Result<String> {
    use genlab_metrics::suite::{evaluate, parse_metrics, Side, SuiteOptions};
    let side = |t: &Tensor, what: &str| -> Result<Side> {
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
        &parse_metrics("wasserstein,mmd,1nn")?,
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

/// One line on how samples cover the modes of `data`, where its distribution has isolated
/// modes (eight gaussians); `None` otherwise.
pub fn mode_coverage_line(data: &str, samples: &Tensor) -> Result<Option<(String, ModeCoverage)>> {
    let Some(coverage) = dataset_info(data)?.mode_coverage else {
        return Ok(None);
    };
    let cov = coverage(&to_points(samples)?);
    let line = format!(
        "{data}: {:.1}% of samples within 3 std of a mode; smallest mode holds {:.1}%",
        100.0 * cov.fraction_within_3std,
        100.0 * cov.smallest_mode()
    );
    Ok(Some((line, cov)))
}

/// For class-conditional samples (`labels[i]` of row i) of data whose classes are their
/// modes (eight gaussians): per class, the share of its samples within 3 std of its own
/// mode; `None` for other data.
pub fn class_mode_coverage(
    data: &str,
    samples: &Tensor,
    labels: &[u32],
) -> Result<Option<Vec<(u32, f64)>>> {
    let info = dataset_info(data)?;
    let (Some(coverage), true) = (info.mode_coverage, info.labels_are_modes) else {
        return Ok(None);
    };
    let points = to_points(samples)?;
    let mut classes: Vec<u32> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut rows = Vec::new();
    for k in classes {
        let mine: Vec<[f32; 2]> = points
            .iter()
            .zip(labels)
            .filter(|(_, &l)| l == k)
            .map(|(p, _)| *p)
            .collect();
        let cov = coverage(&mine);
        rows.push((
            k,
            cov.per_mode_fraction
                .get(k as usize)
                .copied()
                .unwrap_or(0.0),
        ));
    }
    Ok(Some(rows))
}

/// Steps of the preview's DDIM run for models without steps of their own.
const PREVIEW_STEPS: usize = 50;

/// Draws preview samples from the EMA model (DDIM, 50 steps, or a distilled student's own
/// steps): a scatter over the data for points, a grid next to real examples for images.
fn draw_preview(
    dir: &Path,
    run: &RunConfig,
    ds: &dyn Dataset,
    model: &dyn Sample,
) -> Result<Preview> {
    let images = model.data_space().images;
    let classes = model.num_classes();
    // Class-conditional models: every class in turn (a row of 8 images per class).
    let per_class = if images { 8 } else { 2000 / classes.max(1) };
    let labels: Option<Vec<u32>> = (classes > 0).then(|| {
        (0..classes as u32)
            .flat_map(|k| std::iter::repeat_n(k, per_class))
            .collect()
    });
    let n = match &labels {
        Some(l) => l.len(),
        None if images => 64,
        None => 2000,
    };
    let mut condition = match &labels {
        Some(l) => Condition::class(Tensor::from_vec(l.clone(), l.len(), &Device::Cpu)?),
        None => Condition::none(),
    };
    // An image-conditioned model: the maps of the first `n` training examples (the preview
    // shows each example, its map and the sample drawn from it).
    let mut mapped = None;
    if images && model.image_map_name().is_some() {
        let m = n.min(ds.len());
        let batch = make_batch(ds, &(0..m).collect::<Vec<_>>(), &Device::Cpu)?;
        let map = model
            .image_map(&batch.x)?
            .expect("the model has an image map");
        condition = Condition {
            image: Some(map.clone()),
            // A model that also takes classes gets each example's own.
            class: if labels.is_some() { batch.labels } else { None },
            ..Condition::none()
        };
        mapped = Some((batch.x, map));
    }
    let n = mapped.as_ref().map_or(n, |(x, _)| x.dim(0).unwrap_or(n));
    let req = SampleRequest {
        n,
        condition,
        sampler: "ddim".into(),
        options: SamplerOptions {
            steps: model.preferred_steps().unwrap_or(PREVIEW_STEPS),
            eta: 0.0,
            clip_x0: None,
            ..Default::default()
        },
        batch_size: 500,
        ..Default::default()
    };
    let out = model.sample(&req, &mut Rng::derive(run.seed, "preview"), &mut |_, _| {})?;
    let samples_png = dir.join("samples.png");
    let zoo = find_model(&run.model)?.caps.sampler_zoo;
    let how = match (out.nfe, zoo, model.fixed_spacing()) {
        (1, _, _) => "one network pass each".to_string(),
        (k, true, None) => format!("ddim, {k} steps"),
        (k, true, Some(spacing)) => format!("ddim on the {spacing} grid, {k} steps"),
        (k, false, _) => format!("{k} network evaluations each"),
    };
    let mut summary = format!("preview: {n} samples ({how}) in {}", samples_png.display());
    let real_png = if images {
        let m = n.min(ds.len());
        let idx: Vec<usize> = (0..m).map(|i| i * ds.len() / m).collect();
        let real = make_batch(ds, &idx, &Device::Cpu)?.x;
        match (&mapped, &labels) {
            (Some((x, map)), _) => {
                crate::edit::save_columns(&[x, map, &out.x], &samples_png)?;
                summary.push_str(" (columns: the example, its map, the sample)");
            }
            (None, Some(l)) => save_labeled_samples(&out.x, true, l, per_class, &samples_png)?,
            (None, None) => save_samples(&out.x, true, &samples_png, None)?,
        }
        let p = dir.join("real.png");
        save_samples(&real, true, &p, None)?;
        Some(p)
    } else {
        let m = 2000.min(ds.len());
        let idx: Vec<usize> = (0..m).collect();
        let real = make_batch(ds, &idx, &Device::Cpu)?.x;
        let reference = to_points(&real)?;
        match &labels {
            Some(l) => save_labeled_samples(&out.x, false, l, per_class, &samples_png)?,
            None => save_samples(&out.x, false, &samples_png, Some(&reference))?,
        }
        summary.push_str(&point_metrics(&real, &out.x)?);
        if let Some((line, _)) = mode_coverage_line(&run.data, &out.x)? {
            summary.push('\n');
            summary.push_str(&line);
        }
        if let Some(rows) = labels
            .as_ref()
            .map(|l| class_mode_coverage(&run.data, &out.x, l))
            .transpose()?
            .flatten()
        {
            let worst = rows.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            summary.push_str(&format!(
                "\nclass-conditional: the worst class has {:.1}% of its samples within 3 std of its own mode",
                100.0 * worst
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
