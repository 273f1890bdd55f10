//! `genlab txt2img`: images from prompts with a text-conditioned latent diffusion run or a
//! pretrained Stable Diffusion 1.x / 2.x checkpoint (`--model`), and the two-digit canvas
//! evaluation (a prompt set read back by the MNIST classifier, one row per guidance scale).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::{Condition, Rng};
use genlab_models::pretrained::sd_pipeline::{SdLoadOptions, StableDiffusion};
use genlab_models::{Sample, SampleRequest, SampleResult};
use genlab_sampling::{Prediction, SamplerOptions};
use genlab_train::txt2img::{load_txt2img, TextToImage, Txt2ImgOptions};

#[derive(Args)]
pub struct Txt2ImgArgs {
    /// A text-conditioned `ldm` run (`genlab train --model ldm --set 'ldm.text={...}'`).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub ckpt: Option<PathBuf>,
    /// A pretrained Stable Diffusion 1.x / 2.x checkpoint: a diffusers folder
    /// (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or an
    /// original single file (.safetensors / .ckpt). See docs/pretrained.md.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With a single-file --model: a diffusers folder whose config files describe it
    /// (otherwise SD 1.x's / 2.x's standard configs are inferred from the tensor shapes).
    #[arg(long, requires = "model")]
    pub config: Option<PathBuf>,
    /// With --model: override the prediction type (epsilon | v | x0); a single SD 2.x
    /// file does not say whether it is the 768-v model (v) or the 512 base (epsilon).
    #[arg(long, requires = "model")]
    pub prediction_type: Option<String>,
    /// With --model: image height and width in pixels (multiples of 8).
    #[arg(long, requires = "model", default_value_t = 512)]
    pub height: usize,
    #[arg(long, requires = "model", default_value_t = 512)]
    pub width: usize,
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
    /// Images per prompt (with --prompt; default 8, 1 with --model).
    #[arg(long)]
    pub n: Option<usize>,
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

/// What generates: a trained text-conditioned LDM run, or a pretrained Stable Diffusion.
enum Generator {
    Ldm(Box<TextToImage>),
    Sd(Box<StableDiffusion>),
}

impl Generator {
    fn can_guide(&self) -> bool {
        match self {
            Generator::Ldm(t) => t.can_guide(),
            Generator::Sd(_) => true,
        }
    }

    fn max_tokens(&self) -> usize {
        match self {
            Generator::Ldm(t) => t.prompts.cfg.max_tokens,
            Generator::Sd(s) => s.tokenizer.model_max_length(),
        }
    }

    /// The prompts that were cut to fit the text encoder.
    fn cut(&self, prompts: &[String], negative: Option<&str>) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Generator::Ldm(t) => t.condition(prompts, negative)?.1,
            Generator::Sd(s) => {
                let mut all: Vec<String> = prompts.to_vec();
                all.extend(negative.map(String::from));
                all.dedup();
                let mut out = Vec::new();
                for p in all {
                    if s.tokenizer.truncates(&p) {
                        out.push(p);
                    }
                }
                out
            }
        })
    }

    fn generate(
        &self,
        prompts: &[String],
        o: &Txt2ImgOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<SampleResult> {
        Ok(match self {
            Generator::Ldm(t) => t.generate(prompts, o, rng, progress)?,
            Generator::Sd(s) => {
                let (tokens, _) = s.encode_prompts(prompts)?;
                let negative_tokens = match &o.negative_prompt {
                    Some(neg) => Some(s.encode_prompts(std::slice::from_ref(neg))?.0.repeat((
                        prompts.len(),
                        1,
                        1,
                    ))?),
                    None => None,
                };
                let guidance = if o.guidance == 1.0 && o.negative_prompt.is_none() {
                    None
                } else {
                    Some(o.guidance)
                };
                let req = SampleRequest {
                    n: prompts.len(),
                    sampler: o.sampler.clone(),
                    options: o.options.clone(),
                    batch_size: o.batch_size,
                    condition: Condition {
                        tokens: Some(tokens),
                        negative_tokens,
                        ..Condition::none()
                    },
                    guidance,
                    classifier: None,
                };
                s.sample(&req, rng, progress)?
            }
        })
    }

    fn describe(&self) -> serde_json::Value {
        match self {
            Generator::Ldm(t) => serde_json::json!({
                "checkpoint_step": t.step,
                "run_config": t.run.to_tree(),
            }),
            Generator::Sd(s) => serde_json::json!({
                "stable_diffusion": s.source,
                "unet": s.unet.config(),
                "scheduler": s.scheduler.class_name(),
                "prediction": format!("{:?}", s.prediction()),
                "size": [s.data_space().shape[1], s.data_space().shape[2]],
            }),
        }
    }
}

fn prediction_arg(s: &str) -> anyhow::Result<Prediction> {
    Ok(match s {
        "epsilon" | "eps" => Prediction::Epsilon,
        "v" | "v_prediction" | "v-prediction" => Prediction::V,
        "x0" | "sample" => Prediction::X0,
        other => bail!("--prediction-type expects epsilon, v or x0, got `{other}`"),
    })
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
    let n_per = a.n.unwrap_or(if a.model.is_some() { 1 } else { 8 });
    if n_per == 0 {
        bail!("--n must be at least 1, got 0");
    }
    let set = a.prompt_set.as_deref().map(prompt_set).transpose()?;
    if set.is_some() && a.classifier.is_none() {
        bail!("--prompt-set needs --classifier RUN (an MNIST `classifier` run reads the digits)");
    }
    let source = a.model.clone().or(a.ckpt.clone()).context(
        "give --ckpt RUN (a trained text-to-image run) or --model SD (Stable Diffusion)",
    )?;
    let t = match &a.model {
        Some(m) => {
            let opts = SdLoadOptions {
                config_dir: a.config.clone(),
                prediction: a
                    .prediction_type
                    .as_deref()
                    .map(prediction_arg)
                    .transpose()?,
            };
            let mut sd = StableDiffusion::load(m, &opts, device)
                .with_context(|| format!("loading Stable Diffusion from {}", m.display()))?;
            sd.set_size(a.height, a.width)?;
            Generator::Sd(Box::new(sd))
        }
        None => Generator::Ldm(Box::new(
            load_txt2img(&source, device)
                .with_context(|| format!("loading {}", source.display()))?,
        )),
    };
    let mut gs = gs;
    if !t.can_guide() && gs.iter().any(|g| *g != 1.0) {
        eprintln!(
            "warning: {} was trained without prompt dropout (ldm.ddpm.label_dropout = 0), so it \
             has no unconditional mode to guide from; sampling without guidance (scale 1)",
            source.display()
        );
        gs = vec![1.0];
    }
    let prompts: Vec<String> = match &set {
        Some(s) => s.iter().map(|p| p.caption.clone()).collect(),
        None => a
            .prompt
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), n_per))
            .collect(),
    };
    let cut = t.cut(&prompts, a.negative_prompt.as_deref())?;
    for p in &cut {
        eprintln!(
            "warning: the prompt \"{p}\" is longer than the text encoder's {} tokens; it was cut",
            t.max_tokens()
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
            images.push(out.x);
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
    let ncol = if set.is_some() { 10 } else { n_per };
    let mut also = String::new();
    match kind {
        genlab_train::outputs::OutKind::Npy | genlab_train::outputs::OutKind::Gif => {
            let x = candle_core::Tensor::cat(&images, 0)?;
            genlab_train::outputs::save_samples(&x, true, &a.out, None)?;
            if kind == genlab_train::outputs::OutKind::Npy {
                // The prompt of every saved image, in order, for `genlab eval --metrics
                // clip-score --fake OUT.npy` (as `genlab sample --class` writes .labels.npy).
                let all: Vec<&String> = gs.iter().flat_map(|_| prompts.iter()).collect();
                let p = genlab_train::clip_score::prompts_path(&a.out);
                genlab_core::io::write_json(&p, &serde_json::json!(all))?;
                also = format!(", {}", p.display());
            }
        }
        genlab_train::outputs::OutKind::Png => {
            // With a prompt set, the picture holds the first 100 prompts of each scale (the
            // pairs 00..99 in order).
            let shown: Vec<candle_core::Tensor> = images
                .iter()
                .map(|x| match set {
                    Some(_) => x.narrow(0, 0, x.dim(0)?.min(100)),
                    None => Ok(x.clone()),
                })
                .collect::<candle_core::Result<_>>()?;
            let x = candle_core::Tensor::cat(&shown, 0)?;
            let (n, c, h, w) = x.dims4()?;
            let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let scale = (96 / h.max(1)).clamp(1, 4);
            let img = genlab_report::image_grid(&flat, n, c, h, w, ncol, scale, 2)?;
            genlab_report::save_png(&img, &a.out)?;
        }
    }
    let sidecar = serde_json::json!({
        "checkpoint": source.display().to_string(),
        "model": t.describe(),
        "prompts": if set.is_some() { serde_json::json!(a.prompt_set) } else { serde_json::json!(a.prompt) },
        "negative_prompt": a.negative_prompt,
        "images_per_prompt": if set.is_some() { 1 } else { n_per },
        "sampler": a.sampler, "steps": a.steps, "eta": a.eta, "seed": a.seed,
        "rows": rows,
        "picture": if set.is_some() { "per guidance scale: a 10x10 grid, row = left digit, column = right digit (the first 100 prompts); a .npy holds every image, prompts in order, per guidance scale" } else { "one row per prompt (n images), prompts repeated per guidance scale" },
    });
    let json = a.out.with_extension("json");
    genlab_core::io::write_json(&json, &sidecar)?;
    println!("wrote {}{also} and {}", a.out.display(), json.display());
    Ok(())
}
