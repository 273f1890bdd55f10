//! `genlab eval --ckpt AE_RUN --metrics psnr,ssim,rfid,recon-acc [--data D] [--features
//! CLF_RUN]`: the reconstruction metrics of `genlab_train::recon_eval`, printed and
//! optionally written as JSON.

use anyhow::Context;
use candle_core::Device;

use genlab_train::nll::default_nll_data;
use genlab_train::recon_eval::evaluate_reconstruction;
use genlab_train::steps::autoencoder::load_autoencoder;

use crate::cmd_eval::EvalArgs;

pub fn run(a: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ckpt = a.ckpt.as_ref().context(
        "--metrics psnr/ssim/rfid/recon-acc need --ckpt RUN (a `genlab train --model \
         autoencoder` run)",
    )?;
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    let metrics: Vec<String> = a.metrics.split(',').map(|m| m.trim().to_string()).collect();
    let (ae, run) = load_autoencoder(ckpt, device)?;
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => default_nll_data(&run.data)?,
    };
    let shape = &ae.config().data.shape;
    let ds = genlab_train::open_data(&spec, a.seed, Some(shape[1]), Some(shape[0]))?;
    let extractor = match &a.features {
        Some(f) => Some(genlab_train::extractors::open_extractor(
            f,
            a.weights.as_deref(),
            shape,
        )?),
        None => None,
    };
    let t0 = std::time::Instant::now();
    let n = a.n.unwrap_or(usize::MAX);
    let r = evaluate_reconstruction(&ae, ds.as_ref(), n, &metrics, extractor.as_deref())?;
    println!("autoencoder: {} (trained on {})", ckpt.display(), run.data);
    println!("data: the first {} examples of {spec}", r.n);
    if let Some(v) = r.psnr {
        println!("PSNR {v:.2} dB (per image, averaged; peak 1)");
    }
    if let Some(v) = r.ssim {
        println!("SSIM {v:.4} (Gaussian window sigma 1.5, per image, averaged)");
    }
    if let Some(v) = r.rfid {
        println!(
            "rFID {v:.3} (originals vs reconstructions, features {})",
            r.features.as_deref().unwrap_or("?")
        );
    }
    if let (Some(rec), Some(orig)) = (r.recon_accuracy, r.original_accuracy) {
        println!(
            "classifier accuracy: {:.2}% on the reconstructions, {:.2}% on the originals",
            100.0 * rec,
            100.0 * orig
        );
    }
    println!("({:.1} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        let v = serde_json::json!({
            "autoencoder": ckpt.display().to_string(),
            "data": spec,
            "metrics": metrics,
            "report": r,
        });
        genlab_core::io::write_json(p, &v)?;
        println!("written to {}", p.display());
    }
    Ok(())
}
