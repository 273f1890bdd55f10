//! `genlab eval --ckpt CLIP_RUN --metrics zero-shot,retrieval,clip-score,linear-probe,knn`:
//! the CLIP evaluations of `genlab_train::clip_eval` (zero-shot, retrieval),
//! `genlab_train::clip_score` (the CLIP score of `--fake` samples against their captions,
//! and of `--real` images against their own and shuffled captions) and
//! `genlab_labels::eval` (linear probe and k-NN on frozen pre-projection image features),
//! printed and optionally written as JSON. `--ckpt hf-clip:DIR` (a transformers CLIPModel
//! folder) runs zero-shot and the CLIP score with `genlab_train::hf_clip_eval`.

use std::path::Path;

use anyhow::{bail, Context};
use candle_core::Device;
use serde_json::{json, Value};

use genlab_data::captions::Thresholds;
use genlab_train::clip_eval::{evaluate_clip, ClipEvalOptions, CHECKPOINT_METRICS};
use genlab_train::clip_score::{self, ClipEmbedder, ClipScore};
use genlab_train::hf_clip_eval::{self, HfClipDigits};
use genlab_train::nll::default_nll_data;
use genlab_train::steps::clip::load_clip;

use crate::cmd_eval::EvalArgs;

/// Neighbours of the k-NN metric (the `genlab ssl` default).
const KNN_K: usize = 20;

pub fn run(a: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ckpt = a.ckpt.as_ref().context(
        "the CLIP metrics (zero-shot, retrieval, clip-score, linear-probe, knn) need --ckpt RUN \
         (a `genlab train --model clip` run, or hf-clip:DIR)",
    )?;
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    if a.n == Some(0) {
        bail!("--n must be at least 1, got 0");
    }
    let metrics: Vec<String> = a.metrics.split(',').map(|m| m.trim().to_string()).collect();
    let has = |m: &str| metrics.iter().any(|x| x == m);
    if !has("clip-score") && (a.fake.is_some() || a.real.is_some() || a.captions.is_some()) {
        bail!("--fake, --real and --captions go with --metrics clip-score");
    }
    if let Some(dir) = ckpt.to_str().and_then(hf_clip_eval::spec_dir) {
        return run_hf(a, &dir, &metrics);
    }
    let only_probe = metrics.iter().all(|m| m == "linear-probe" || m == "knn");
    let c = match load_clip(ckpt, device) {
        Ok(c) => c,
        Err(clip_err) if only_probe => {
            let r = genlab_labels::represent::Representation::load(ckpt, device).map_err(|e| {
                anyhow::anyhow!(
                    "--ckpt {} must be a CLIP run, an ssl run (`genlab ssl train`), a classifier \
                     or a VAE run for --metrics linear-probe/knn: {e} (as a CLIP run: {clip_err})",
                    ckpt.display()
                )
            })?;
            return run_representation_probe(a, ckpt, &r, has("linear-probe"), has("knn"), device);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "--ckpt {} must be a CLIP run (`genlab train --model clip`) or hf-clip:DIR",
                ckpt.display()
            )))
        }
    };
    let t0 = std::time::Instant::now();
    println!("model: {} (clip step {})", ckpt.display(), c.step);
    let checkpoint: Vec<String> = metrics
        .iter()
        .filter(|m| CHECKPOINT_METRICS.contains(&m.as_str()))
        .cloned()
        .collect();
    let mut out = json!({"model": ckpt.display().to_string(), "step": c.step});
    if !checkpoint.is_empty() {
        let v = run_checkpoint_metrics(a, &c, &checkpoint, device)?;
        merge(&mut out, v);
    }
    if has("clip-score") {
        let v = run_clip_score(a, &c, &c.cfg.captions)?;
        out["clip_score"] = v;
    }
    if has("linear-probe") || has("knn") {
        let v = run_probe(a, &c, has("linear-probe"), has("knn"), device)?;
        out["probe"] = v;
    }
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        genlab_core::io::write_json(p, &out)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(o), Value::Object(f)) = (into.as_object_mut(), from) {
        o.extend(f);
    }
}

/// Zero-shot and retrieval on `--data` (default: the run's held-out split).
fn run_checkpoint_metrics(
    a: &EvalArgs,
    c: &genlab_train::steps::clip::LoadedClip,
    metrics: &[String],
    device: &Device,
) -> anyhow::Result<Value> {
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => default_nll_data(&c.run.data)?,
    };
    // An image folder is loaded at the size and channels the run trained on.
    let (size, channels) = if spec.starts_with("folder:") {
        (c.run.image_size, c.run.channels)
    } else {
        (None, None)
    };
    let ds = genlab_train::open_data(&spec, a.seed, size, channels)?;
    let opts = ClipEvalOptions {
        n: a.n,
        prompts: a
            .prompts
            .iter()
            .flat_map(|p| p.split(';'))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        classifier: a.classifier.clone(),
    };
    let report = evaluate_clip(c, ds.as_ref(), &spec, metrics, &opts, device)?;
    println!("data: {spec}");
    if let Some(z) = &report.zero_shot {
        println!(
            "zero-shot accuracy {:.2}% on {} examples, {} classes ({} prompt templates x the \
             names of each class)",
            100.0 * z.accuracy,
            z.examples,
            z.confusion.len(),
            z.templates.len()
        );
    }
    if let Some(acc) = report.classifier_accuracy {
        println!(
            "supervised classifier {} on the same images: {:.2}%",
            a.classifier
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            100.0 * acc
        );
    }
    if let Some(r) = &report.retrieval {
        let fmt = |v: &[f64]| {
            r.ks.iter()
                .zip(v)
                .map(|(k, x)| format!("R@{k} {:.1}%", 100.0 * x))
                .collect::<Vec<_>>()
                .join("  ")
        };
        println!(
            "retrieval on {} pairs ({} distinct captions):",
            r.pairs, r.distinct_captions
        );
        println!("  image->text  {}", fmt(&r.image_to_text));
        println!("  text->image  {}", fmt(&r.text_to_image));
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(serde_json::to_value(&report)?)
}

/// How the score is defined, printed above the numbers.
const SCORE_DEF: &str = "CLIP score = 100 max(cos(image, caption), 0), the mean over pairs \
     (torchmetrics' CLIPScore scale; Hessel et al.'s CLIP-S with w = 2.5 is this / 40)";

fn print_score(what: &str, s: &ClipScore) {
    println!(
        "  {what:<48} {:>6.2} +- {:<6.2} (N {}, CLIP-S {:.4}, mean cosine {:.4})",
        s.mean, s.std, s.n, s.clip_s, s.mean_cosine
    );
}

/// The CLIP score of `--fake` samples with their captions and of `--real` images with their
/// own and shuffled captions.
fn run_clip_score(
    a: &EvalArgs,
    clip: &dyn ClipEmbedder,
    thresholds: &Thresholds,
) -> anyhow::Result<Value> {
    if a.fake.is_none() && a.real.is_none() {
        bail!(
            "--metrics clip-score needs --fake SAMPLES.npy (text-conditioned samples with their \
             captions) and/or --real D (a captioned dataset: mnist:test, mnist-pairs:test)"
        );
    }
    println!("{SCORE_DEF}");
    let mut out = json!({
        "definition": SCORE_DEF,
        "w": clip_score::REPORT_W,
        "hessel_w": clip_score::HESSEL_W,
    });
    let mut notes: Vec<String> = Vec::new();
    if let Some(spec) = &a.fake {
        let path = Path::new(spec);
        if path.extension().is_none_or(|e| e != "npy") {
            bail!(
                "--fake {spec}: the CLIP score reads a .npy of N x C x H x W images in [0, 1] \
                 (as `genlab txt2img --out samples.npy` writes them)"
            );
        }
        let cap_path = match &a.captions {
            Some(p) => {
                if !p.is_file() {
                    bail!("--captions {}: no such file", p.display());
                }
                p.clone()
            }
            None => clip_score::sibling_captions(path).with_context(|| {
                format!(
                    "no captions for {spec}: give --captions FILE (one caption per line, or a \
                     JSON array), or put {} (as `genlab txt2img` writes it) beside it",
                    clip_score::prompts_path(path).display()
                )
            })?,
        };
        let mut captions = clip_score::read_captions(&cap_path)?;
        let x = read_images(path, a.n)?;
        if let Some(n) = a.n {
            captions.truncate(n);
        }
        let (s, nt) = clip_score::score_images(clip, &x, &captions)
            .with_context(|| format!("scoring {spec} against {}", cap_path.display()))?;
        notes.extend(nt);
        print_score(&format!("fake {spec} ({} images)", s.n), &s);
        println!("    captions: {}", cap_path.display());
        out["fake"] =
            json!({"source": spec, "captions": cap_path.display().to_string(), "score": s});
    }
    if let Some(spec) = &a.real {
        let ds = genlab_train::open_data(spec, a.seed, None, None)?;
        let n = a.n.unwrap_or(ds.len()).min(ds.len());
        let idx = crate::cmd_eval::strided(ds.len(), n);
        let captions = clip_score::real_captions(ds.as_ref(), spec, &idx, thresholds, a.seed)?;
        let x = clip_score::images_of(ds.as_ref(), &idx)?;
        let (own, nt) = clip_score::score_images(clip, &x, &captions)?;
        notes.extend(nt);
        let (shuf, _) =
            clip_score::score_images(clip, &x, &clip_score::shuffled(&captions, a.seed))?;
        print_score(&format!("real {spec}, own captions"), &own);
        print_score(&format!("real {spec}, shuffled captions (floor)"), &shuf);
        println!("    e.g. \"{}\"", captions[0]);
        out["real"] = json!({
            "source": spec, "examples": idx.len(), "own": own, "shuffled": shuf,
            "captions": if spec.starts_with("mnist-pairs") { "a training pair caption per canvas, drawn from --seed" } else { "each image's attribute caption" },
            "seed": a.seed,
        });
    }
    notes.dedup();
    for n in &notes {
        eprintln!("note: {n}");
    }
    out["notes"] = json!(notes);
    Ok(out)
}

/// The first `n` (default all) images of a .npy `[N, C, H, W]` in [0, 1].
fn read_images(path: &Path, n: Option<usize>) -> anyhow::Result<candle_core::Tensor> {
    let arr = genlab_core::io::read_npy_f64(path)
        .with_context(|| format!("reading the samples {}", path.display()))?;
    if arr.shape.len() != 4 {
        bail!(
            "{}: the CLIP score needs N x C x H x W images, got shape {:?}",
            path.display(),
            arr.shape
        );
    }
    let k = n.unwrap_or(arr.shape[0]).min(arr.shape[0]);
    let per: usize = arr.shape[1..].iter().product();
    let data: Vec<f32> = arr.data[..k * per].iter().map(|&v| v as f32).collect();
    if let Some(v) = data.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        bail!(
            "{}: image values must lie in [0, 1] (as `genlab txt2img` writes them), found {v}",
            path.display()
        );
    }
    Ok(candle_core::Tensor::from_vec(
        data,
        (k, arr.shape[1], arr.shape[2], arr.shape[3]),
        &Device::Cpu,
    )?)
}

/// Linear probe and k-NN on frozen pre-projection image features.
fn run_probe(
    a: &EvalArgs,
    c: &genlab_train::steps::clip::LoadedClip,
    probe: bool,
    knn: bool,
    device: &Device,
) -> anyhow::Result<Value> {
    let frame = genlab_train::steps::clip::MNIST_FRAME;
    let post = match a.probe_features.as_str() {
        "pre" => false,
        "post" => true,
        other => bail!("--probe-features expects pre or post, got `{other}`"),
    };
    let what = match post {
        true => "the image embedding in the joint space (after the projection)",
        false => "the image tower's output before the projection to the joint space",
    };
    probe_and_print(
        a,
        &c.run.data,
        |x| {
            let f = genlab_train::clip_eval::image_features(&c.net, x, frame)?;
            Ok(match post {
                true => c.net.project_image(&f)?.detach(),
                false => f,
            })
        },
        what,
        probe,
        knn,
        device,
    )
}

/// `genlab eval --ckpt RUN --metrics linear-probe,knn` of a run that is not a CLIP run: an
/// ssl encoder, a classifier or a VAE (`genlab_labels::represent`).
fn run_representation_probe(
    a: &EvalArgs,
    ckpt: &Path,
    r: &genlab_labels::represent::Representation,
    probe: bool,
    knn: bool,
    device: &Device,
) -> anyhow::Result<()> {
    if a.probe_features != "pre" {
        bail!(
            "--probe-features is for CLIP runs; {} is not one",
            ckpt.display()
        );
    }
    println!("model: {}", ckpt.display());
    let t0 = std::time::Instant::now();
    let v = probe_and_print(
        a,
        &r.data,
        |x| r.features(x),
        &r.describe(),
        probe,
        knn,
        device,
    )?;
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        genlab_core::io::write_json(p, &json!({"model": ckpt.display().to_string(), "probe": v}))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The probe and k-NN of frozen features `f` on --data (default: `default_data`, the run's
/// training data), printed; `what` says what the features are.
#[allow(clippy::too_many_arguments)]
fn probe_and_print(
    a: &EvalArgs,
    default_data: &str,
    f: impl Fn(&candle_core::Tensor) -> genlab_core::Result<candle_core::Tensor>,
    what: &str,
    probe: bool,
    knn: bool,
    device: &Device,
) -> anyhow::Result<Value> {
    let spec = a.data.clone().unwrap_or_else(|| default_data.to_string());
    let name = spec.split(':').next().unwrap_or(&spec).to_string();
    let data = genlab_labels::Data::open(&name).with_context(|| {
        format!(
            "--metrics linear-probe/knn fit on a dataset's training split and test on its test \
             split: --data {} (from `{spec}`) must be one of {}",
            name,
            genlab_labels::data::SOURCES
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let cfg = genlab_labels::eval::ProbeConfig::default();
    let r = genlab_labels::eval::probe_frozen(
        &data,
        a.n,
        f,
        probe.then_some(&cfg),
        knn.then_some(KNN_K),
        a.seed,
        device,
    )?;
    let subset = if a.n.is_some() {
        ", a class-balanced subset"
    } else {
        ""
    };
    println!(
        "probe data: {name} (fit on {} training images{subset}, tested on {}); features: {}-d, \
         {what}",
        r.train, r.test, r.dim
    );
    if let Some(p) = r.linear_probe {
        println!(
            "linear probe accuracy {:.2}% (logistic regression on standardised features, {} \
             epochs of Adam, {} rate)",
            100.0 * p,
            cfg.epochs,
            serde_json::to_value(cfg.lr_decay)?.as_str().unwrap_or("?")
        );
    }
    if let Some(k) = r.knn {
        println!("k-NN accuracy {:.2}% (k = {}, cosine)", 100.0 * k, r.knn_k);
    }
    let mut v = serde_json::to_value(&r)?;
    v["features"] = json!(what);
    v["probe_config"] = serde_json::to_value(&cfg)?;
    Ok(v)
}

/// Zero-shot digit classification with a transformers CLIPModel folder.
fn run_hf(a: &EvalArgs, dir: &std::path::Path, metrics: &[String]) -> anyhow::Result<()> {
    if let Some(m) = metrics
        .iter()
        .find(|m| *m != "zero-shot" && *m != "clip-score")
    {
        bail!("--ckpt hf-clip:DIR runs the zero-shot and clip-score metrics only, not `{m}`");
    }
    let prompts: Vec<String> = a
        .prompts
        .iter()
        .flat_map(|p| p.split(';'))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let t0 = std::time::Instant::now();
    let model = HfClipDigits::open(dir, &prompts)?;
    println!("model: {} (transformers CLIPModel)", dir.display());
    let mut out = json!({"model": dir.display().to_string()});
    if metrics.iter().any(|m| m == "clip-score") {
        out["clip_score"] = run_clip_score(a, &model, &Thresholds::default())?;
    }
    if !metrics.iter().any(|m| m == "zero-shot") {
        println!("({:.0} s)", t0.elapsed().as_secs_f64());
        if let Some(p) = &a.json {
            genlab_core::io::write_json(p, &out)?;
            println!("wrote {}", p.display());
        }
        return Ok(());
    }
    let spec = a
        .data
        .as_ref()
        .context("--ckpt hf-clip:DIR needs --data (a labelled digit dataset, e.g. mnist:test)")?;
    let ds = genlab_train::open_data(spec, a.seed, None, None)?;
    let z = model.zero_shot(ds.as_ref(), a.n)?;
    println!("data: {spec}");
    println!(
        "zero-shot accuracy {:.2}% on {} examples ({} prompt templates x 2 digit names per class)",
        100.0 * z.accuracy,
        z.examples,
        z.templates.len()
    );
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        out["data"] = json!(spec);
        out["zero_shot"] = serde_json::to_value(&z)?;
        genlab_core::io::write_json(p, &out)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
