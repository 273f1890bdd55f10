//! `genlab sample`: draw samples from a checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::Rng;
use genlab_models::SampleRequest;
use genlab_sampling::{SamplerOptions, SolverOptions};
use genlab_train::outputs::{check_writable, out_kind, save_samples};
use genlab_train::session::mode_coverage_line;

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
    /// Output: .npy (N x D for points, N x C x H x W in [0,1] for images) or .png (grid or
    /// scatter). A .json beside it records the resolved config.
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
    let spacing = loaded.model.fixed_spacing().unwrap_or(a.spacing);
    let req = SampleRequest {
        n: a.n,
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
        },
        batch_size: a.batch_size,
    };
    let t0 = Instant::now();
    let out = crate::progress::sample_with_bar(
        loaded.model.as_ref(),
        &req,
        &mut Rng::derive(a.seed, "sample"),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let space = loaded.model.data_space().clone();
    save_samples(&out.x, space.images, &a.out, None)?;
    let mut sidecar = serde_json::json!({
        "checkpoint": a.ckpt.display().to_string(),
        "checkpoint_step": loaded.step,
        "run_config": loaded.run.to_tree(),
        "sampling": { "n": a.n, "seed": a.seed, "sampler": a.sampler, "steps": steps, "spacing": spacing, "eta": a.eta, "temperature": a.temperature,
                      "ema": !a.no_ema, "batch_size": a.batch_size },
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
    genlab_core::io::write_json(&a.out.with_extension("json"), &sidecar)?;
    println!(
        "wrote {} samples of shape {:?} to {} ({} network evaluations per sample, {:.1} s){report}",
        a.n,
        &out.x.dims()[1..],
        a.out.display(),
        out.nfe,
        secs
    );
    Ok(())
}
