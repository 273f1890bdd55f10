//! `genlab eval --ckpt RUN --metrics nll`: the negative log-likelihood of a model with one
//! (`genlab_train::nll`), in nats per example and bits per dimension, on a dataset.

use anyhow::{bail, Context};
use candle_core::Device;

use genlab_models::LikelihoodKind;
use genlab_train::nll::{default_nll_data, evaluate_nll, NllOptions};

use crate::cmd_eval::EvalArgs;

pub fn run(a: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ckpt = a
        .ckpt
        .as_ref()
        .context("--metrics nll needs --ckpt RUN (the model whose likelihood to compute)")?;
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    let loaded = genlab_train::load_model(ckpt, true, device)?;
    if loaded.model.as_likelihood().is_none() {
        let with: Vec<&str> = genlab_train::MODELS
            .iter()
            .filter(|m| m.caps.likelihood)
            .map(|m| m.name)
            .collect();
        bail!(
            "`{}` models have no likelihood to evaluate (nll applies to {} checkpoints)",
            loaded.run.model,
            with.join(", ")
        );
    }
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => default_nll_data(&loaded.run.data)?,
    };
    let ds = genlab_train::open_data(&spec, a.seed, loaded.run.image_size, loaded.run.channels)?;
    let opts = NllOptions {
        n: a.n,
        samples: a.k,
        batch_size: a.batch_size.max(1) * 10,
        seed: a.seed,
    };
    let pb = crate::progress::bar(
        0,
        "nll {bar:40} {pos}/{len} examples [{elapsed_precise} < {eta_precise}]",
    );
    let s = evaluate_nll(
        loaded.model.as_ref(),
        &spec,
        ds.as_ref(),
        &opts,
        &mut |d, n| {
            pb.set_length(n as u64);
            pb.set_position(d as u64)
        },
    )?;
    pb.finish_and_clear();
    let what = match s.kind {
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
    println!("data: {spec}, {} examples", s.n);
    println!("estimator: {}; {what}", s.method);
    println!(
        "nll {:.3} nats per example (std error {:.3}) = {:.4} bits/dim over {} dims, in {:.0} s",
        s.nll_nats, s.nll_nats_stderr, s.bits_per_dim, s.dims, s.seconds
    );
    if let Some(r) = &s.reference {
        println!(
            "true density on the same points: nll {:.3} nats; model - true = {:.4} nats (paired std error {:.4})",
            r.true_nll_nats, r.gap_nats, r.gap_nats_stderr
        );
    }
    if let Some(p) = &a.json {
        let mut j = serde_json::json!({
            "checkpoint": ckpt.display().to_string(),
            "model": loaded.run.model,
            "step": loaded.step,
            "data": spec,
            "n": s.n,
            "estimator": s.method,
            "exact": s.kind == LikelihoodKind::Exact,
            "nll_nats": s.nll_nats,
            "nll_nats_stderr": s.nll_nats_stderr,
            "bits_per_dim": s.bits_per_dim,
            "dims": s.dims,
            "seed": a.seed,
            "seconds": s.seconds,
        });
        if let Some(r) = &s.reference {
            j["true_nll_nats"] = r.true_nll_nats.into();
            j["gap_nats"] = r.gap_nats.into();
            j["gap_nats_stderr"] = r.gap_nats_stderr.into();
        }
        genlab_core::io::write_json(p, &j)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
