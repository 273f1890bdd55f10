//! `genlab eval --ckpt CLIP_RUN --metrics zero-shot,retrieval [--data D]`: the CLIP
//! evaluations of `genlab_train::clip_eval`, printed and optionally written as JSON.
//! `--ckpt hf-clip:DIR` (a transformers CLIPModel folder) runs zero-shot with
//! `genlab_train::hf_clip_eval` (`--data` required).

use anyhow::{bail, Context};
use candle_core::Device;

use genlab_train::clip_eval::{evaluate_clip, ClipEvalOptions};
use genlab_train::hf_clip_eval::{self, HfClipDigits};
use genlab_train::nll::default_nll_data;
use genlab_train::steps::clip::load_clip;

use crate::cmd_eval::EvalArgs;

pub fn run(a: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ckpt = a.ckpt.as_ref().context(
        "--metrics zero-shot/retrieval need --ckpt RUN (a `genlab train --model clip` run)",
    )?;
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    let metrics: Vec<String> = a.metrics.split(',').map(|m| m.trim().to_string()).collect();
    if let Some(dir) = ckpt.to_str().and_then(hf_clip_eval::spec_dir) {
        return run_hf(a, &dir, &metrics);
    }
    let c = load_clip(ckpt, device)?;
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
    let t0 = std::time::Instant::now();
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
    let report = evaluate_clip(&c, ds.as_ref(), &spec, &metrics, &opts, device)?;
    println!("model: {} (clip step {})", ckpt.display(), c.step);
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
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        genlab_core::io::write_json(p, &serde_json::to_value(&report)?)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Zero-shot digit classification with a transformers CLIPModel folder.
fn run_hf(a: &EvalArgs, dir: &std::path::Path, metrics: &[String]) -> anyhow::Result<()> {
    if let Some(m) = metrics.iter().find(|m| *m != "zero-shot") {
        bail!("--ckpt hf-clip:DIR runs the zero-shot metric only, not `{m}`");
    }
    let spec = a
        .data
        .as_ref()
        .context("--ckpt hf-clip:DIR needs --data (a labelled digit dataset, e.g. mnist:test)")?;
    let prompts: Vec<String> = a
        .prompts
        .iter()
        .flat_map(|p| p.split(';'))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let t0 = std::time::Instant::now();
    let model = HfClipDigits::open(dir, &prompts)?;
    let ds = genlab_train::open_data(spec, a.seed, None, None)?;
    let z = model.zero_shot(ds.as_ref(), a.n)?;
    println!("model: {} (transformers CLIPModel)", dir.display());
    println!("data: {spec}");
    println!(
        "zero-shot accuracy {:.2}% on {} examples ({} prompt templates x 2 digit names per class)",
        100.0 * z.accuracy,
        z.examples,
        z.templates.len()
    );
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        let v =
            serde_json::json!({"model": dir.display().to_string(), "data": spec, "zero_shot": z});
        genlab_core::io::write_json(p, &v)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
