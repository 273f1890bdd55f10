//! `genlab txt2img`: images from prompts with a text-conditioned latent diffusion run, and
//! the two-digit canvas evaluation (a prompt set read back by the MNIST classifier, one row
//! per guidance scale).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::Rng;
use genlab_sampling::SamplerOptions;
use genlab_train::txt2img::{load_txt2img, Txt2ImgOptions};

#[derive(Args)]
pub struct Txt2ImgArgs {
    /// A text-conditioned `ldm` run (`genlab train --model ldm --set 'ldm.text={...}'`).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// A prompt; give several for one row each (e.g. --prompt "a 3 on the left and a 7 on
    /// the right").
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Instead of --prompt: an evaluation prompt set of the two-digit canvas,
    /// `pairs-test[:N]` (training wordings) or `pairs-unseen[:N]` (held-out wordings), N
    /// prompts (default 1000) covering the 100 digit pairs evenly; needs --classifier.
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_set: Option<String>,
    /// With --prompt-set: the MNIST `classifier` run that reads both halves of each canvas.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// What to steer away from instead of the empty prompt.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Classifier-free guidance scale (1: no guidance); a comma-separated list gives one
    /// row (or, with --prompt-set, one table row) per scale.
    #[arg(long, default_value = "3")]
    pub guidance: String,
    /// Sampler (see `genlab list`).
    #[arg(long, default_value = "dpm++2m")]
    pub sampler: String,
    /// Sampling steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// DDIM eta (ddim only).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Images per prompt (with --prompt).
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many images go through the network at once.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// The picture (.png: one row per prompt and scale) or raw images (.npy); a .json with
    /// the prompts and settings is written beside it.
    #[arg(long)]
    pub out: PathBuf,
}

fn scales(s: &str) -> anyhow::Result<Vec<f64>> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .with_context(|| {
                    format!("--guidance expects numbers >= 0 like 3 or 1,2,4, got `{p}`")
                })
        })
        .collect()
}

/// The prompts of a `--prompt-set` spec.
fn prompt_set(spec: &str) -> anyhow::Result<Vec<genlab_data::pairs::PairPrompt>> {
    let (name, n) = match spec.split_once(':') {
        Some((a, b)) => (
            a,
            b.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("--prompt-set {spec}: N must be a positive count"))?,
        ),
        None => (spec, 1000),
    };
    Ok(match name {
        "pairs-test" => genlab_data::pairs::pair_prompts_test(n),
        "pairs-unseen" => genlab_data::pairs::pair_prompts_unseen(n),
        other => bail!("--prompt-set: unknown set `{other}` (known: pairs-test, pairs-unseen)"),
    })
}

pub fn run(a: Txt2ImgArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let kind = genlab_train::outputs::out_kind(&a.out)?;
    genlab_train::outputs::check_writable(&a.out)?;
    let gs = scales(&a.guidance)?;
    if a.prompt.is_empty() && a.prompt_set.is_none() {
        bail!("give --prompt \"...\" (one or more) or --prompt-set pairs-test");
    }
    if a.n == 0 {
        bail!("--n must be at least 1, got 0");
    }
    let set = a.prompt_set.as_deref().map(prompt_set).transpose()?;
    if set.is_some() && a.classifier.is_none() {
        bail!("--prompt-set needs --classifier RUN (an MNIST `classifier` run reads the digits)");
    }
    let t =
        load_txt2img(&a.ckpt, device).with_context(|| format!("loading {}", a.ckpt.display()))?;
    let mut gs = gs;
    if !t.can_guide() && gs.iter().any(|g| *g != 1.0) {
        eprintln!(
            "warning: {} was trained without prompt dropout (ldm.ddpm.label_dropout = 0), so it \
             has no unconditional mode to guide from; sampling without guidance (scale 1)",
            a.ckpt.display()
        );
        gs = vec![1.0];
    }
    let prompts: Vec<String> = match &set {
        Some(s) => s.iter().map(|p| p.caption.clone()).collect(),
        None => a
            .prompt
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), a.n))
            .collect(),
    };
    let (_, cut) = t.condition(&prompts, a.negative_prompt.as_deref())?;
    for p in &cut {
        eprintln!(
            "warning: the prompt \"{p}\" is longer than the text encoder's {} tokens; it was cut",
            t.prompts.cfg.max_tokens
        );
    }
    let mut images = Vec::new();
    let mut rows = Vec::new();
    for &g in &gs {
        let o = Txt2ImgOptions {
            sampler: a.sampler.clone(),
            options: SamplerOptions {
                steps: a.steps,
                eta: a.eta,
                ..SamplerOptions::default()
            },
            guidance: g,
            negative_prompt: a.negative_prompt.clone(),
            batch_size: a.batch_size,
        };
        let t0 = Instant::now();
        let pb = crate::progress::bar(
            0,
            "txt2img [{bar:30}] {pos}/{len} network evaluations, ETA {eta}",
        );
        let out = t.generate(
            &prompts,
            &o,
            &mut Rng::derive(a.seed, "txt2img"),
            &mut |done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            },
        );
        pb.finish_and_clear();
        let out = out?;
        let secs = t0.elapsed().as_secs_f64();
        let mut row = serde_json::json!({ "guidance": g, "seconds": secs, "nfe": out.nfe });
        if let (Some(set), Some(clf)) = (&set, &a.classifier) {
            let req: Vec<(u8, u8)> = set.iter().map(|p| (p.left, p.right)).collect();
            let acc = genlab_train::pairs_eval::pair_accuracy_run(clf, &out.x, &req)?;
            println!(
                "guidance {g}: both digits as asked {:.1}% (left {:.1}%, right {:.1}%) of {} \
                 images, {secs:.0} s",
                100.0 * acc.both,
                100.0 * acc.left,
                100.0 * acc.right,
                acc.n
            );
            row["both"] = acc.both.into();
            row["left"] = acc.left.into();
            row["right"] = acc.right.into();
            row["per_pair_table"] = acc.table().into();
            // The picture: the first 100 prompts are the pairs 00..99 in order.
            let k = out.x.dim(0)?.min(100);
            images.push(out.x.narrow(0, 0, k)?);
        } else {
            println!(
                "guidance {g}: {} images in {secs:.1} s ({} network evaluations each)",
                out.x.dim(0)?,
                out.nfe
            );
            images.push(out.x);
        }
        rows.push(row);
    }
    let x = candle_core::Tensor::cat(&images, 0)?;
    let ncol = if set.is_some() { 10 } else { a.n };
    match kind {
        genlab_train::outputs::OutKind::Npy => {
            genlab_train::outputs::save_samples(&x, true, &a.out, None)?
        }
        genlab_train::outputs::OutKind::Png => {
            let (n, c, h, w) = x.dims4()?;
            let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let scale = (96 / h.max(1)).clamp(1, 4);
            let img = genlab_report::image_grid(&flat, n, c, h, w, ncol, scale, 2)?;
            genlab_report::save_png(&img, &a.out)?;
        }
    }
    let sidecar = serde_json::json!({
        "checkpoint": a.ckpt.display().to_string(),
        "checkpoint_step": t.step,
        "run_config": t.run.to_tree(),
        "prompts": if set.is_some() { serde_json::json!(a.prompt_set) } else { serde_json::json!(a.prompt) },
        "negative_prompt": a.negative_prompt,
        "images_per_prompt": if set.is_some() { 1 } else { a.n },
        "sampler": a.sampler, "steps": a.steps, "eta": a.eta, "seed": a.seed,
        "rows": rows,
        "picture": if set.is_some() { "per guidance scale: a 10x10 grid, row = left digit, column = right digit (the first 100 prompts)" } else { "one row per prompt (n images), prompts repeated per guidance scale" },
    });
    let json = a.out.with_extension("json");
    genlab_core::io::write_json(&json, &sidecar)?;
    println!("wrote {} and {}", a.out.display(), json.display());
    Ok(())
}
