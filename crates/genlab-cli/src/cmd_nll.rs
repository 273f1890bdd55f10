//! `genlab eval --ckpt RUN --metrics nll`: the negative log-likelihood of a model with one
//! (exact for flows, an upper bound from the IWAE lower bound for VAEs), in nats per example
//! and bits per dimension, on a dataset.

use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;

use genlab_core::Rng;
use genlab_data::make_batch;
use genlab_models::{LikelihoodKind, LikelihoodOptions};

use crate::cmd_eval::EvalArgs;

/// Examples per likelihood call (their importance samples are chunked inside).
const EXAMPLES_PER_CALL: usize = 500;

pub fn run(a: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ckpt = a
        .ckpt
        .as_ref()
        .context("--metrics nll needs --ckpt RUN (the model whose likelihood to compute)")?;
    if a.k == 0 {
        bail!("--k must be at least 1 (importance samples per example), got 0");
    }
    if a.n == Some(0) {
        bail!("--n must be at least 1, got 0");
    }
    if let Some(p) = &a.json {
        crate::output::check_writable(p)?;
    }
    let loaded = genlab_train::load_model(ckpt, true, device)?;
    let ll = loaded.model.as_likelihood().with_context(|| {
        format!(
            "`{}` models have no likelihood to evaluate (nll applies to vae, flow and ddpm checkpoints)",
            loaded.run.model
        )
    })?;
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => crate::cmd_train::held_out_split(&loaded.run.data)
            .map(str::to_string)
            .unwrap_or_else(|| loaded.run.data.clone()),
    };
    let ds = crate::cmd_train::open(&spec, a.seed)?;
    let space = loaded.model.data_space();
    if ds.example_shape() != space.shape {
        bail!(
            "{spec} has examples of shape {:?}, the model was trained on {:?}",
            ds.example_shape(),
            space.shape
        );
    }
    let n = a.n.unwrap_or(ds.len()).min(ds.len());
    let idx: Vec<usize> = if n == ds.len() {
        (0..n).collect()
    } else {
        (0..n).map(|i| i * ds.len() / n).collect()
    };
    let opts = LikelihoodOptions {
        samples: a.k,
        batch_size: a.batch_size.max(1) * 10,
    };
    let pb = crate::progress::bar(
        n as u64,
        "nll {bar:40} {pos}/{len} examples [{elapsed_precise} < {eta_precise}]",
    );
    let t0 = Instant::now();
    let mut rng = Rng::derive(a.seed, "likelihood");
    let mut nats = Vec::with_capacity(n);
    let mut method = String::new();
    let mut kind = LikelihoodKind::Exact;
    // Eight gaussians has a known density: its NLL on the same points is the reference.
    let known = spec.split(':').next() == Some("eight-gaussians");
    let mut true_nats = Vec::new();
    for chunk in idx.chunks(EXAMPLES_PER_CALL) {
        let b = make_batch(ds.as_ref(), chunk, &Device::Cpu)?;
        let done = nats.len();
        if known {
            for p in b.x.to_vec2::<f32>()? {
                true_nats.push(genlab_data::eight_gaussians_log_density([
                    p[0] as f64,
                    p[1] as f64,
                ]));
            }
        }
        let r = ll.log_likelihood(&b.x, b.labels.as_ref(), &opts, &mut rng, &mut |d, _| {
            pb.set_position((done + d) as u64)
        })?;
        nats.extend(r.nats);
        method = r.method;
        kind = r.kind;
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let dims: usize = space.shape.iter().product();
    let m = nats.len() as f64;
    let mean_nll = -nats.iter().sum::<f64>() / m;
    let var = nats.iter().map(|v| (-v - mean_nll).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    let stderr = (var / m).sqrt();
    let bpd = mean_nll / (dims as f64 * std::f64::consts::LN_2);
    let what = match kind {
        LikelihoodKind::Exact => "exact",
        LikelihoodKind::LowerBound => {
            "an upper bound on the true NLL (from a lower bound on log p)"
        }
        LikelihoodKind::OdeEstimate { .. } => {
            "an ODE estimate of the density smoothed at sigma_min, not exact"
        }
    };
    println!(
        "model: {} ({} step {})",
        ckpt.display(),
        loaded.run.model,
        loaded.step
    );
    println!("data: {spec}, {} examples", nats.len());
    println!("estimator: {method}; {what}");
    println!(
        "nll {mean_nll:.3} nats per example (std error {stderr:.3}) = {bpd:.4} bits/dim over {dims} dims, in {secs:.0} s"
    );
    // The model's NLL minus the true density's on the same points, with the paired std error.
    let gap = (!true_nats.is_empty()).then(|| {
        let d: Vec<f64> = true_nats.iter().zip(&nats).map(|(t, v)| t - v).collect();
        let g = d.iter().sum::<f64>() / m;
        let var = d.iter().map(|v| (v - g).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
        let true_nll = -true_nats.iter().sum::<f64>() / m;
        println!(
            "true density on the same points: nll {true_nll:.3} nats; model - true = {g:.4} nats (paired std error {:.4})",
            (var / m).sqrt()
        );
        (true_nll, g, (var / m).sqrt())
    });
    if let Some(p) = &a.json {
        let mut j = serde_json::json!({
            "checkpoint": ckpt.display().to_string(),
            "model": loaded.run.model,
            "step": loaded.step,
            "data": spec,
            "n": nats.len(),
            "estimator": method,
            "exact": kind == LikelihoodKind::Exact,
            "nll_nats": mean_nll,
            "nll_nats_stderr": stderr,
            "bits_per_dim": bpd,
            "dims": dims,
            "seed": a.seed,
            "seconds": secs,
        });
        if let Some((t, g, se)) = gap {
            j["true_nll_nats"] = t.into();
            j["gap_nats"] = g.into();
            j["gap_nats_stderr"] = se.into();
        }
        genlab_core::io::write_json(p, &j)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
