//! `genlab sample`: draw samples from a checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::{Condition, Rng};
use genlab_models::SampleRequest;
use genlab_sampling::{SamplerOptions, SolverOptions};
use genlab_train::outputs::{check_writable, out_kind, save_labeled_samples, save_samples};
use genlab_train::session::{class_mode_coverage, mode_coverage_line};

#[derive(Args)]
pub struct SampleArgs {
    /// Run directory written by `genlab train --out` (or its checkpoint.safetensors).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Seed of the sampling noise: the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampler (see `genlab list`).
    #[arg(long, default_value = "ddim")]
    pub sampler: String,
    /// Number of sampling steps (default: a distilled student's own steps, else 50).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Where the steps sit on the model's timesteps: linspace (both ends, DDIM's default),
    /// trailing (T i/k - 1; nested under halving) or logsnr (uniform in log-SNR, DPM-Solver's
    /// choice for few steps). Distilled students always use trailing.
    #[arg(long, default_value = "linspace")]
    pub spacing: genlab_sampling::Spacing,
    /// DDIM noise: 0 deterministic, 1 DDPM-like.
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// DPM-Solver order (1, 2 or 3).
    #[arg(long, default_value_t = SolverOptions::default().order)]
    pub order: usize,
    /// RK45 relative tolerance.
    #[arg(long, default_value_t = SolverOptions::default().rtol)]
    pub rtol: f64,
    /// RK45 absolute tolerance.
    #[arg(long, default_value_t = SolverOptions::default().atol)]
    pub atol: f64,
    /// Predictor-corrector: signal-to-noise ratio of the Langevin corrector.
    #[arg(long, default_value_t = SolverOptions::default().snr)]
    pub snr: f64,
    /// Predictor-corrector: Langevin steps per noise level.
    #[arg(long, default_value_t = SolverOptions::default().corrector_steps)]
    pub corrector_steps: usize,
    /// Karras et al. 2022 sigma spacing for the sigma-space samplers (euler, heun,
    /// euler-ancestral, dpm-solver, dpm++2m).
    #[arg(long)]
    pub karras: bool,
    /// Flows: standard deviation of the base noise (Glow's temperature; 0.7 gives cleaner,
    /// less varied samples). Other models accept only 1.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Samples per network batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Use the raw weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    /// Class to generate (class-conditional models): a class number, or `all` for --n
    /// samples of every class (one picture row per class; a .npy gets its labels in a
    /// .labels.npy beside it).
    #[arg(long, value_name = "K|all")]
    pub class: Option<String>,
    /// Classifier-free guidance scale towards --class: 0 unconditional, 1 the conditional
    /// model, above 1 stronger (Ho & Salimans 2022). Needs a model trained with label dropout.
    #[arg(long, value_name = "W")]
    pub guidance: Option<f64>,
    /// Classifier guidance (Dhariwal & Nichol 2021): a `noisy-classifier` run trained on the
    /// model's data and noise schedule (`genlab train --model noisy-classifier --data D`);
    /// its gradient steers every step towards --class. Works on unconditional models too.
    #[arg(long, value_name = "RUN")]
    pub classifier: Option<PathBuf>,
    /// Classifier guidance scale s (the gradient's weight; Dhariwal & Nichol use 1-10).
    #[arg(long, value_name = "S", default_value_t = 1.0, requires = "classifier")]
    pub classifier_scale: f64,
    /// Video models: frames per clip. The model's own clip length by default; longer clips
    /// are extended window by window, each new window inpainting the frames after the last
    /// --context-frames ones (no extra training); shorter ones are refused.
    #[arg(long, value_name = "T")]
    pub frames: Option<usize>,
    /// Video extension: the frames each new window is conditioned on (default: half the
    /// model's clip length).
    #[arg(long, value_name = "K", requires = "frames")]
    pub context_frames: Option<usize>,
    /// Video extension: denoising steps of each window's inpainting (replacement method).
    #[arg(long, value_name = "N", default_value_t = 50, requires = "frames")]
    pub extend_steps: usize,
    /// Output: .npy (N x D for points, N x C x H x W in [0,1] for images, N x T x C x H x W
    /// for video), .png (grid or scatter; video: one clip per row, plus an animated .gif
    /// beside it) or .gif (video: all clips animated in a grid). A .json beside it records
    /// the resolved config.
    #[arg(long)]
    pub out: PathBuf,
}

/// Samples on `device` (the network runs there; the samples are written from the CPU).
pub fn run(a: SampleArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1, got 0");
    }
    out_kind(&a.out)?;
    check_writable(&a.out)?;
    let loaded = genlab_train::load_model(&a.ckpt, !a.no_ema, device)
        .with_context(|| format!("loading {}", a.ckpt.display()))?;
    let steps = a.steps.or(loaded.model.preferred_steps()).unwrap_or(50);
    let model_shape = loaded.model.data_space().shape.clone();
    if let Some(f) = a.frames {
        match model_shape[..] {
            [t, ..] if model_shape.len() == 4 && f < t => bail!(
                "--frames {f}: {} makes clips of {t} frames; ask for {t} or more (longer clips \
                 are extended by conditioning on earlier frames)",
                a.ckpt.display()
            ),
            _ if model_shape.len() != 4 => bail!(
                "--frames is for video checkpoints; {} makes single examples of shape {:?}",
                a.ckpt.display(),
                model_shape
            ),
            _ => {}
        }
    }
    let spacing = loaded.model.fixed_spacing().unwrap_or(a.spacing);
    let classifier = match &a.classifier {
        Some(path) => {
            let c = genlab_train::steps::noisy_classifier::load_noisy_classifier(path, device)
                .with_context(|| format!("loading the classifier {}", path.display()))?;
            c.check_data(&loaded.run.data)?;
            if a.class.is_none() {
                bail!("--classifier steers towards a class: give --class K or --class all");
            }
            Some(genlab_sampling::guidance::ClassifierGuidance {
                classifier: c.model,
                scale: a.classifier_scale,
            })
        }
        None => None,
    };
    // The classes to draw: the model's, or (an unconditional model) the classifier's.
    let classes = match (&classifier, loaded.model.num_classes()) {
        (Some(c), 0) => c.classifier.num_classes(),
        (_, k) => k,
    };
    let labels = class_labels(a.class.as_deref(), classes, a.n)?;
    let n = labels.as_ref().map_or(a.n, Vec::len);
    let condition = match &labels {
        Some(l) => Condition::class(candle_core::Tensor::from_vec(
            l.clone(),
            l.len(),
            &candle_core::Device::Cpu,
        )?),
        None => Condition::none(),
    };
    let req = SampleRequest {
        n,
        condition,
        guidance: a.guidance,
        sampler: a.sampler.clone(),
        options: SamplerOptions {
            steps,
            spacing,
            temperature: a.temperature,
            eta: a.eta,
            clip_x0: None,
            solver: SolverOptions {
                order: a.order,
                rtol: a.rtol,
                atol: a.atol,
                snr: a.snr,
                corrector_steps: a.corrector_steps,
                karras_sigmas: a.karras,
            },
            ..Default::default()
        },
        batch_size: a.batch_size,
        classifier,
    };
    let t0 = Instant::now();
    let out = crate::progress::sample_with_bar(
        loaded.model.as_ref(),
        &req,
        &mut Rng::derive(a.seed, "sample"),
    )?;
    let mut out = out;
    if let (Some(f), [t, ..]) = (a.frames, &model_shape[..]) {
        if f > *t {
            let context = a.context_frames.unwrap_or((*t / 2).max(1));
            let opts = genlab_sampling::inpaint::InpaintOptions::replacement(a.extend_steps);
            eprintln!("extending {n} clips from {t} to {f} frames ({context} context frames)");
            out.x = genlab_models::video::extend_clips(
                loaded.model.as_ref(),
                &out.x,
                genlab_models::video::Extension { frames: f, context },
                &req,
                &opts,
                &mut Rng::derive(a.seed, "extend"),
                &mut |k, total| eprintln!("  window {k}/{total}"),
            )?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let space = loaded.model.data_space().clone();
    match &labels {
        Some(l) => save_labeled_samples(&out.x, space.images, l, a.n, &a.out)?,
        None => save_samples(&out.x, space.images, &a.out, None)?,
    }
    let mut sidecar = serde_json::json!({
        "checkpoint": a.ckpt.display().to_string(),
        "checkpoint_step": loaded.step,
        "run_config": loaded.run.to_tree(),
        "sampling": { "n": n, "seed": a.seed, "sampler": a.sampler, "steps": steps, "spacing": spacing, "eta": a.eta, "temperature": a.temperature,
                      "ema": !a.no_ema, "batch_size": a.batch_size, "class": a.class, "guidance": a.guidance,
                      "classifier": a.classifier.as_ref().map(|p| p.display().to_string()),
                      "classifier_scale": a.classifier.as_ref().map(|_| a.classifier_scale),
                      "frames": a.frames, "context_frames": a.context_frames, "extend_steps": a.frames.map(|_| a.extend_steps) },
        "nfe": out.nfe,
        "shape": out.x.dims(),
        "seconds": secs,
    });
    let mut report = String::new();
    // Data with isolated modes (eight gaussians): how well the samples cover them.
    if let Some((line, cov)) = mode_coverage_line(&loaded.run.data, &out.x)? {
        report = format!("\n{line}");
        // `eight_gaussians_coverage`: the key names the data, as it always has.
        let key = format!("{}_coverage", loaded.run.data.replace('-', "_"));
        sidecar[key] = serde_json::to_value(&cov)?;
    }
    // Class-conditional samples of data whose classes are its modes: each class's share
    // within 3 std of its own mode.
    if let Some(l) = &labels {
        if let Some(rows) = class_mode_coverage(&loaded.run.data, &out.x, l)? {
            for (k, f) in &rows {
                report.push_str(&format!(
                    "\nclass {k}: {:.1}% of its samples within 3 std of mode {k}",
                    100.0 * f
                ));
            }
            sidecar["class_mode_coverage"] = serde_json::json!(rows
                .iter()
                .map(|(k, f)| serde_json::json!({ "class": k, "within_3std_of_its_mode": f }))
                .collect::<Vec<_>>());
        }
    }
    genlab_core::io::write_json(&a.out.with_extension("json"), &sidecar)?;
    println!(
        "wrote {} samples of shape {:?} to {} ({} network evaluations per sample, {:.1} s){report}",
        n,
        &out.x.dims()[1..],
        a.out.display(),
        out.nfe,
        secs
    );
    Ok(())
}

/// The labels `--class` asks for: `n` of class K, or `n` of every class in turn for `all`;
/// `None` without `--class`.
fn class_labels(class: Option<&str>, classes: usize, n: usize) -> anyhow::Result<Option<Vec<u32>>> {
    let Some(c) = class else {
        return Ok(None);
    };
    if classes == 0 {
        bail!("--class needs a class-conditional model; this one was trained without labels");
    }
    if c.trim() == "all" {
        return Ok(Some(
            (0..classes as u32)
                .flat_map(|k| std::iter::repeat_n(k, n))
                .collect(),
        ));
    }
    match c.trim().parse::<u32>() {
        Ok(k) if (k as usize) < classes => Ok(Some(vec![k; n])),
        _ => bail!(
            "--class {c}: expected a class number 0..{} or all",
            classes - 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_flags_become_labels_or_clear_errors() {
        assert_eq!(class_labels(None, 10, 3).unwrap(), None);
        assert_eq!(class_labels(Some("2"), 3, 2).unwrap(), Some(vec![2, 2]));
        assert_eq!(
            class_labels(Some("all"), 3, 2).unwrap(),
            Some(vec![0, 0, 1, 1, 2, 2])
        );
        for (c, classes) in [("3", 3), ("x", 3), ("-1", 3), ("0", 0)] {
            let e = class_labels(Some(c), classes, 2).unwrap_err().to_string();
            assert!(e.contains("--class"), "{c}: {e}");
        }
    }
}
