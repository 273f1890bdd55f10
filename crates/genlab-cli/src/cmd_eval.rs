//! `genlab eval`: compare generated samples with real ones on any of the seven metrics.
//!
//! Each side is a source (a `.npy` feature matrix or image array, a dataset name, an image
//! folder, a checkpoint to sample from, or cached feature statistics); images go through a
//! feature extractor; the metrics come from `genlab_metrics::suite`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use clap::Args;

use genlab_core::Rng;
use genlab_data::{open_dataset, DataKind, OpenOptions};
use genlab_metrics::features::classifier::extract_all;
use genlab_metrics::features::FeatureExtractor;
use genlab_metrics::kernel::{Bandwidth, KidOptions};
use genlab_metrics::stats::{GaussianStats, StatsProvenance};
use genlab_metrics::suite::{evaluate, parse_metrics, Needs, Side, SuiteOptions};
use genlab_metrics::wasserstein::{Method, WassersteinOptions};
use genlab_metrics::FeatureMatrix;
use genlab_models::SampleRequest;
use genlab_sampling::SamplerOptions;

#[derive(Args)]
pub struct EvalArgs {
    /// Real side: a .npy file (N x D features, or N x C x H x W images in [0,1]), a dataset
    /// (mnist:test, digits, eight-gaussians, ...), folder:PATH of images, a run directory to
    /// sample from, or a .safetensors feature-statistics file (FID only). Not needed for
    /// is/mode from --fake-probs/--real-probs.
    #[arg(long)]
    pub real: Option<String>,
    /// Generated side: same kinds of source as --real (usually a run directory or the .npy
    /// written by `genlab sample`). Not needed for is/mode from --fake-probs.
    #[arg(long)]
    pub fake: Option<String>,
    /// Comma-separated metrics: fid, kid, mmd, is, mode, wasserstein, 1nn (or all); or
    /// `nll` with --ckpt: the model's negative log-likelihood on --data; or `zero-shot`,
    /// `retrieval` with --ckpt of a CLIP run: zero-shot accuracy with unseen prompts, and
    /// image<->text recall@1/5/10 on --data (default: the run's held-out split); zero-shot
    /// also with --ckpt hf-clip:DIR (a transformers CLIPModel folder) and --data;
    /// `clip-score` with --ckpt CLIP_RUN (or hf-clip:DIR): the CLIP score (Hessel et al.
    /// 2021) of --fake SAMPLES.npy against their captions (--captions, default the
    /// .prompts.json `genlab txt2img` writes beside them), reported as torchmetrics does, 100
    /// max(cos, 0), with mean, std and N (Hessel's CLIP-S, w = 2.5, is that / 40), and of
    /// --real D (mnist:test, mnist-pairs:test) with its own and with shuffled captions;
    /// `linear-probe`, `knn` with --ckpt CLIP_RUN: logistic regression and 20-NN accuracy
    /// on the frozen pre-projection image features, fit on --data's training split (mnist
    /// or digits; default the run's data) and tested on its test split; or `psnr`,
    /// `ssim`, `rfid`, `recon-acc` with --ckpt of an autoencoder run: reconstruction quality
    /// on --data (rfid and recon-acc with --features CLASSIFIER_RUN).
    #[arg(long, default_value = "fid,kid,1nn")]
    pub metrics: String,
    /// With --metrics nll: the run directory (or checkpoint) whose likelihood to compute.
    #[arg(long)]
    pub ckpt: Option<PathBuf>,
    /// With --metrics nll: the dataset (default: the run's held-out split, e.g. mnist:test
    /// for mnist, else its training data).
    #[arg(long)]
    pub data: Option<String>,
    /// With --metrics zero-shot: prompt templates, each with one `{}` for the digit's name
    /// (word and numeral are both tried), separated by `;` or given several times (default:
    /// six templates that never appear in CLIP's training captions).
    #[arg(long)]
    pub prompts: Vec<String>,
    /// With --metrics clip-score: the captions of the --fake images, one per line in their
    /// order (or a JSON array of strings); default: SAMPLES.prompts.json (written by `genlab
    /// txt2img`) or SAMPLES.captions.txt beside SAMPLES.npy.
    #[arg(long)]
    pub captions: Option<PathBuf>,
    /// With --metrics linear-probe/knn: which CLIP image features, `pre` (the image tower's
    /// output before the projection to the joint space, what Radford et al. probe) or `post`
    /// (the joint-space embedding that zero-shot and the CLIP score compare with text).
    #[arg(long, default_value = "pre")]
    pub probe_features: String,
    /// With --metrics zero-shot: a `classifier` run whose supervised accuracy on the same
    /// images is reported beside the zero-shot accuracy.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// With --metrics nll on a VAE: importance samples per example of the IWAE bound.
    #[arg(long, default_value_t = 5000)]
    pub k: usize,
    /// Feature extractor for image sources: a classifier run directory (`genlab train --model
    /// classifier`), `inception` (FID Inception-v3; weights file needed), `efficientnet-lite0`,
    /// `pixels`, or `hf-clip:DIR` (a transformers CLIPModel folder: image embeddings and
    /// zero-shot digit probabilities). Point data and .npy feature matrices need none.
    #[arg(long)]
    pub features: Option<String>,
    /// Weights file for `inception` / `efficientnet-lite0` (default: under $GENLAB_DATA/weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Samples per side: the first N of a file, N evenly spaced examples of a dataset, or N
    /// samples drawn from a checkpoint (default: all of a file or dataset; 1000 from a
    /// checkpoint). With clip-score: the first N samples and captions, N evenly spaced
    /// --real examples; with linear-probe/knn: a class-balanced subset of N training images
    /// (the whole test split is scored).
    #[arg(long)]
    pub n: Option<usize>,
    /// Seed of checkpoint sampling, of KID's subsets and of clip-score's shuffled captions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampler for checkpoint sources.
    #[arg(long, default_value = "ddim")]
    pub sampler: String,
    /// Sampling steps for checkpoint sources (default: a distilled student's own, else 50).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Timestep spacing for checkpoint sources: linspace, trailing or logsnr (see `genlab
    /// sample`).
    #[arg(long, default_value = "linspace")]
    pub spacing: genlab_sampling::Spacing,
    /// Flows: base-noise temperature for checkpoint sources (see `genlab sample`).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// DDIM eta for checkpoint sources.
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Class probabilities (.npy, N x K, rows summing to 1) of the generated samples, for IS
    /// and Mode Score without an extractor.
    #[arg(long)]
    pub fake_probs: Option<PathBuf>,
    /// Class probabilities of the real samples (Mode Score's real label marginal).
    #[arg(long)]
    pub real_probs: Option<PathBuf>,
    /// The class each generated sample was asked for (.npy of N labels), for class-acc;
    /// default: the .labels.npy that `genlab sample --class` writes beside a .npy --fake.
    #[arg(long)]
    pub fake_labels: Option<PathBuf>,
    /// KID: number of subsets.
    #[arg(long, default_value_t = 100)]
    pub kid_subsets: usize,
    /// KID: samples per subset (capped at the smaller side).
    #[arg(long, default_value_t = 1000)]
    pub kid_subset_size: usize,
    /// MMD's Gaussian-kernel bandwidth (default: median pairwise distance).
    #[arg(long)]
    pub mmd_sigma: Option<f64>,
    /// Splits of the Inception and Mode Scores.
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
    /// Wasserstein method: auto (exact up to a few thousand points, sliced above), exact,
    /// sinkhorn, sliced.
    #[arg(long, default_value = "auto")]
    pub wasserstein: String,
    /// Save the real side's feature statistics here (.safetensors) for later `--real FILE`.
    #[arg(long)]
    pub save_real_stats: Option<PathBuf>,
    /// Write every value (with std, N per side, extractor, sources) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Side length that folder:PATH images are resized and centre-cropped to (default: what
    /// the extractor takes: the classifier's input, 299 for inception, 224 for
    /// efficientnet-lite0, 32 for pixels).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Channels (1 or 3) of folder:PATH images (default: the extractor's; 3 for pixels).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Images per feature-extraction batch.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
}

/// What a source turned into.
enum Loaded {
    /// Feature vectors already (a 2-D .npy, or point data).
    Features(FeatureMatrix),
    /// NCHW images in [0, 1].
    Images(Tensor),
    Stats(GaussianStats, StatsProvenance),
    /// No source: the metrics read probability files only.
    Nothing,
}

pub(crate) fn strided(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

fn load_source(
    spec: &str,
    a: &EvalArgs,
    side: &str,
    device: &candle_core::Device,
) -> anyhow::Result<(Loaded, String)> {
    let path = Path::new(spec);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "npy" {
        let arr = genlab_core::io::read_npy_f64(path)
            .with_context(|| format!("reading the {side} side"))?;
        let take = |rows: usize| a.n.unwrap_or(rows).min(rows);
        return match arr.shape.len() {
            2 => {
                let (r, c) = (arr.shape[0], arr.shape[1]);
                let k = take(r);
                let m = FeatureMatrix::new(r, c, arr.data, &format!("{side} features ({spec})"))?;
                Ok((Loaded::Features(m.head(k)), format!("{spec} ({k} x {c} features)")))
            }
            4 => {
                let k = take(arr.shape[0]);
                let per: usize = arr.shape[1..].iter().product();
                let data: Vec<f32> = arr.data[..k * per].iter().map(|&v| v as f32).collect();
                if let Some(v) = data.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                    bail!("{spec}: image values must lie in [0, 1] (as `genlab sample` writes them), found {v}");
                }
                let shape = [k, arr.shape[1], arr.shape[2], arr.shape[3]];
                Ok((
                    Loaded::Images(Tensor::from_vec(data, &shape, &Device::Cpu)?),
                    format!("{spec} ({k} images {:?})", &shape[1..]),
                ))
            }
            _ => bail!(
                "{spec}: a .npy source must be N x D features or N x C x H x W images, got shape {:?}",
                arr.shape
            ),
        };
    }
    if ext == "safetensors" && path.is_file() {
        let (s, prov) = GaussianStats::load(path)?;
        let desc = format!("{spec} (statistics of {} samples of {})", s.n, prov.source);
        return Ok((Loaded::Stats(s, prov), desc));
    }
    if path.is_dir() && path.join(genlab_train::trainer::CHECKPOINT_FILE).exists() {
        return sample_checkpoint(path, a, device);
    }
    let (image_size, channels) = if spec.starts_with("folder:") {
        folder_geometry(a)?
    } else {
        (None, None)
    };
    let ds = open_dataset(
        spec,
        &OpenOptions {
            seed: a.seed,
            image_size,
            channels,
            ..Default::default()
        },
    )
    .with_context(|| {
        format!(
            "{side} side `{spec}` is not a .npy file, statistics file, run directory or dataset"
        )
    })?;
    let idx = strided(ds.len(), a.n.unwrap_or(ds.len()));
    let b = genlab_data::make_batch(ds.as_ref(), &idx, &Device::Cpu)?;
    let desc = format!("{spec} ({} of {} examples)", idx.len(), ds.len());
    Ok(match ds.kind() {
        DataKind::Image => (Loaded::Images(b.x), desc),
        DataKind::Video => anyhow::bail!(
            "genlab eval takes images or points; {} is video {} (shape {:?})",
            ds.name(),
            DataKind::Video.layout(),
            ds.example_shape()
        ),
        DataKind::Points => {
            let n = idx.len();
            let v = b.x.flatten_all()?.to_vec1::<f32>()?;
            let d = v.len() / n.max(1);
            (
                Loaded::Features(FeatureMatrix::from_f32(n, d, &v, spec)?),
                desc,
            )
        }
    })
}

/// Size and channels for image-folder sources: the flags, else what the extractor takes.
fn folder_geometry(a: &EvalArgs) -> anyhow::Result<(Option<usize>, Option<usize>)> {
    let input = match a.features.as_deref() {
        Some(spec) => genlab_train::extractor_input(spec)?,
        None => None,
    };
    Ok((
        a.image_size.or(input.map(|i| i.0)),
        a.channels.or(input.map(|i| i.1)),
    ))
}

/// Samples a checkpoint on `device` (the samples come back to the CPU for the metrics).
fn sample_checkpoint(
    dir: &Path,
    a: &EvalArgs,
    device: &candle_core::Device,
) -> anyhow::Result<(Loaded, String)> {
    let n = a.n.unwrap_or(1000);
    if n == 0 {
        bail!("--n must be at least 1, got 0");
    }
    let loaded = genlab_train::load_model(dir, true, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    let shape = &loaded.model.data_space().shape;
    if shape.len() == 4 {
        bail!(
            "{} is a video model (clips of shape {shape:?}); genlab eval measures images or \
             points. Sample clips with `genlab sample --ckpt {} --class all --out clips.npy` and \
             measure them with `genlab video-eval --fake clips.npy` (docs/video.md)",
            dir.display(),
            dir.display()
        );
    }
    let steps = a.steps.or(loaded.model.preferred_steps()).unwrap_or(50);
    let req = SampleRequest {
        n,
        sampler: a.sampler.clone(),
        options: SamplerOptions {
            steps,
            spacing: a.spacing,
            temperature: a.temperature,
            eta: a.eta,
            clip_x0: None,
            ..Default::default()
        },
        batch_size: 500,
        ..Default::default()
    };
    let out = crate::progress::sample_with_bar(
        loaded.model.as_ref(),
        &req,
        &mut Rng::derive(a.seed, "eval-sample"),
    )?;
    let zoo = genlab_train::find_model(&loaded.run.model)?
        .caps
        .sampler_zoo;
    let how = match zoo {
        true => format!(
            "{} {steps} steps ({} NFE), {} spacing, eta {}",
            a.sampler,
            out.nfe,
            loaded.model.fixed_spacing().unwrap_or(a.spacing),
            a.eta
        ),
        false if a.temperature != 1.0 => format!(
            "{} network evaluations each, temperature {}",
            out.nfe, a.temperature
        ),
        false => format!("{} network evaluations each", out.nfe),
    };
    let desc = format!(
        "{} (step {}, {n} samples, {how}, seed {})",
        dir.display(),
        loaded.step,
        a.seed
    );
    if loaded.model.data_space().images {
        Ok((Loaded::Images(out.x), desc))
    } else {
        let v = out.x.flatten_all()?.to_vec1::<f32>()?;
        let d = v.len() / n;
        Ok((
            Loaded::Features(FeatureMatrix::from_f32(n, d, &v, "samples")?),
            desc,
        ))
    }
}

fn make_extractor(
    a: &EvalArgs,
    first_images: &Tensor,
) -> anyhow::Result<Box<dyn FeatureExtractor>> {
    let Some(spec) = a.features.as_deref() else {
        let names: Vec<String> = genlab_train::extractor_names()
            .into_iter()
            .map(|e| e.0)
            .collect();
        bail!(
            "image sources need a feature extractor: --features NAME, one of {} (RUN_DIR: a \
             classifier trained with `genlab train --model classifier --data mnist`)",
            names.join(", ")
        );
    };
    Ok(genlab_train::open_extractor(
        spec,
        a.weights.as_deref(),
        &first_images.dims()[1..],
    )?)
}

fn to_side(
    loaded: Loaded,
    ex: Option<&dyn FeatureExtractor>,
    batch: usize,
    what: &str,
) -> anyhow::Result<(Side, Option<StatsProvenance>)> {
    Ok(match loaded {
        Loaded::Features(f) => (
            Side {
                features: Some(f),
                ..Default::default()
            },
            None,
        ),
        Loaded::Stats(s, p) => (
            Side {
                stats: Some(s),
                ..Default::default()
            },
            Some(p),
        ),
        Loaded::Nothing => (Side::default(), None),
        Loaded::Images(x) => {
            let ex = ex.expect("an extractor exists when a side has images");
            let n = x.dim(0)?;
            let pb = crate::progress::bar(
                n as u64,
                &format!("{what} features [{{bar:30}}] {{pos}}/{{len}} images, ETA {{eta}}"),
            );
            let e = extract_all(ex, &x, batch, &mut |done, _| pb.set_position(done as u64))?;
            pb.finish_and_clear();
            (
                Side {
                    features: Some(e.features),
                    probs: e.probs,
                    ..Default::default()
                },
                None,
            )
        }
    })
}

fn read_probs(p: &Path, what: &str) -> anyhow::Result<FeatureMatrix> {
    let a = genlab_core::io::read_npy_f64(p)?;
    if a.shape.len() != 2 {
        bail!(
            "{}: class probabilities must be an N x K matrix, got shape {:?}",
            p.display(),
            a.shape
        );
    }
    let m = FeatureMatrix::new(a.shape[0], a.shape[1], a.data, what)?;
    genlab_metrics::score::check_probs(&m, what)?;
    Ok(m)
}

/// `device` is where checkpoints are sampled; feature extractors and metrics run on the CPU.
pub fn run(a: EvalArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let names: Vec<&str> = a.metrics.split(',').map(|m| m.trim()).collect();
    if names
        .iter()
        .any(|m| genlab_train::clip_eval::is_clip_metric(m))
    {
        if let Some(m) = names
            .iter()
            .find(|m| !genlab_train::clip_eval::is_clip_metric(m))
        {
            bail!("--metrics {m} cannot be combined with the CLIP checkpoint metrics (zero-shot, retrieval, clip-score, linear-probe, knn); run it in another call");
        }
        return crate::cmd_clip_eval::run(&a, device);
    }
    if names
        .iter()
        .any(|m| genlab_train::recon_eval::is_recon_metric(m))
    {
        if let Some(m) = names
            .iter()
            .find(|m| !genlab_train::recon_eval::is_recon_metric(m))
        {
            bail!("--metrics {m} cannot be combined with the autoencoder metrics (psnr, ssim, rfid, recon-acc); run it in another call");
        }
        return crate::cmd_recon_eval::run(&a, device);
    }
    if a.metrics.split(',').any(|m| m.trim() == "nll") {
        if a.metrics.trim() != "nll" {
            bail!("--metrics nll runs on its own (with --ckpt); compute the sample metrics in another call");
        }
        return crate::cmd_nll::run(&a, device);
    }
    if a.ckpt.is_some() || a.data.is_some() {
        bail!("--ckpt and --data go with --metrics nll; sample metrics compare --real with --fake");
    }
    let metrics = parse_metrics(&a.metrics)?;
    // Sides that only class probabilities feed (is, mode) may come from probability files.
    let features = metrics.iter().any(|m| m.needs.features());
    let real_probs_only = metrics.iter().any(|m| m.needs == Needs::BothProbs);
    let need_real = features || (real_probs_only && a.real_probs.is_none());
    let need_fake = features || a.fake_probs.is_none();
    let real_spec = match (&a.real, need_real) {
        (Some(s), _) => Some(s.clone()),
        (None, false) => None,
        (None, true) => {
            bail!("--real is needed: the real samples (or, for is/mode alone, --real-probs)")
        }
    };
    let fake_spec = match (&a.fake, need_fake) {
        (Some(s), _) => Some(s.clone()),
        (None, false) => None,
        (None, true) => {
            bail!("--fake is needed: the generated samples (or, for is/mode alone, --fake-probs)")
        }
    };
    if a.n == Some(0) {
        bail!("--n must be at least 1, got 0");
    }
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    let wmethod = Method::parse(&a.wasserstein, a.seed)?;
    let t0 = Instant::now();
    let none = || (Loaded::Nothing, "none (probabilities given)".to_string());
    let (real, real_desc) = match &real_spec {
        Some(spec) => load_source(spec, &a, "real", device)?,
        None => none(),
    };
    let (fake, fake_desc) = match &fake_spec {
        Some(spec) => load_source(spec, &a, "fake", device)?,
        None => none(),
    };
    let images = [&real, &fake].into_iter().find_map(|l| match l {
        Loaded::Images(x) => Some(x.clone()),
        _ => None,
    });
    let ex = images.as_ref().map(|x| make_extractor(&a, x)).transpose()?;
    let ex_ref = ex.as_deref();
    let extractor_id = ex_ref.map_or("none (features given)".to_string(), |e| e.id());
    let (mut real_side, real_prov) = to_side(real, ex_ref, a.batch_size, "real")?;
    let (mut fake_side, _) = to_side(fake, ex_ref, a.batch_size, "fake")?;
    if let (Some(p), Some(e)) = (&real_prov, ex_ref) {
        if p.extractor != e.id() {
            bail!(
                "{} holds statistics of `{}` features, but the fake side uses `{}`; FIDs across \
                 extractors are meaningless",
                real_spec.as_deref().unwrap_or_default(),
                p.extractor,
                e.id()
            );
        }
    }
    if let Some(p) = &a.fake_probs {
        fake_side.probs = Some(read_probs(p, "--fake-probs")?);
    }
    let sibling = fake_spec
        .as_deref()
        .filter(|s| s.ends_with(".npy"))
        .map(|s| genlab_train::outputs::labels_path(Path::new(s)))
        .filter(|p| p.is_file());
    if let Some(p) = a.fake_labels.clone().or(sibling) {
        let l = genlab_core::io::read_npy_f64(&p)
            .with_context(|| format!("reading the labels {}", p.display()))?;
        if l.shape.len() != 1 || l.data.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
            bail!(
                "{}: labels must be a 1-D array of class numbers, got shape {:?}",
                p.display(),
                l.shape
            );
        }
        let n = fake_side.features.as_ref().map(|f| f.rows());
        let labels: Vec<u32> = l.data.iter().map(|&v| v as u32).collect();
        fake_side.labels = Some(match n {
            Some(n) if n <= labels.len() => labels[..n].to_vec(),
            _ => labels,
        });
    }
    if let Some(p) = &a.real_probs {
        real_side.probs = Some(read_probs(p, "--real-probs")?);
    }
    if let Some(path) = &a.save_real_stats {
        let f = real_side.features.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "--save-real-stats needs real features (the real side is already statistics)"
            )
        })?;
        let prov = StatsProvenance {
            extractor: extractor_id.clone(),
            preprocessing: ex_ref.map_or("none".into(), |e| e.preprocessing()),
            source: real_desc.clone(),
        };
        GaussianStats::of(f)?.save(path, &prov)?;
        eprintln!("saved real feature statistics to {}", path.display());
    }
    let opts = SuiteOptions {
        kid: KidOptions {
            subsets: a.kid_subsets,
            subset_size: a.kid_subset_size,
            seed: a.seed,
        },
        mmd_bandwidth: a.mmd_sigma.map_or(Bandwidth::Median, Bandwidth::Fixed),
        splits: a.splits,
        wasserstein: WassersteinOptions {
            method: wmethod,
            ..Default::default()
        },
    };
    let report = evaluate(&metrics, &real_side, &fake_side, &opts)?;
    let secs = t0.elapsed().as_secs_f64();

    println!("real: {real_desc}");
    println!("fake: {fake_desc}");
    println!("features: {extractor_id}");
    println!("{:<12} {:>14} {:>12}", "metric", "value", "std");
    for v in &report.values {
        let std = v.std.map_or(String::new(), |s| format!("{s:.6}"));
        println!("{:<12} {:>14.6} {:>12}", v.metric, v.value, std);
    }
    if let Some(f) = report
        .values
        .iter()
        .find(|v| v.metric == "is")
        .and_then(|v| v.detail["confident_fraction"].as_f64())
    {
        println!(
            "is: {:.1}% of generated samples have a top-class probability >= {}",
            100.0 * f,
            genlab_metrics::suite::CONFIDENT_PROB
        );
    }
    if let Some(fr) = report
        .values
        .iter()
        .find(|v| v.metric == "is")
        .and_then(|v| v.detail["class_fractions"].as_array())
    {
        let fr: Vec<f64> = fr.iter().filter_map(|v| v.as_f64()).collect();
        let parts: Vec<String> = fr
            .iter()
            .enumerate()
            .map(|(k, f)| format!("{k}: {:.1}%", 100.0 * f))
            .collect();
        let min = fr.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "is: generated samples per predicted class: {} (smallest {:.1}%)",
            parts.join(", "),
            100.0 * min
        );
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(p) = &a.json {
        let j = serde_json::json!({
            "real": real_desc,
            "fake": fake_desc,
            "features": extractor_id,
            "preprocessing": ex_ref.map(|e| e.preprocessing()),
            "n_real": report.n_real,
            "n_fake": report.n_fake,
            "metrics": report.values,
            "warnings": report.warnings,
            "seed": a.seed,
            "seconds": secs,
        });
        genlab_core::io::write_json(p, &j)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
