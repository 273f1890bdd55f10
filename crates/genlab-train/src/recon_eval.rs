//! How well a first-stage autoencoder reconstructs: PSNR and SSIM per image, rFID
//! (Fréchet distance between the features of the originals and of their reconstructions,
//! as the LDM paper's Table 8 reports it) and a classifier's accuracy on the
//! reconstructions next to its accuracy on the originals.
//! `genlab eval --ckpt AE_RUN --metrics psnr,ssim,rfid,recon-acc [--features CLF_RUN]`.

use candle_core::{Device, Tensor};
use serde::Serialize;

use genlab_core::{Error, Result};
use genlab_data::{make_batch, Dataset};
use genlab_metrics::features::FeatureExtractor;
use genlab_models::diffusion::ldm::Reconstruct;

/// The reconstruction metrics, in the order they are reported.
pub const RECON_METRICS: &[&str] = &["psnr", "ssim", "rfid", "recon-acc"];

/// Whether `m` is one of [`RECON_METRICS`].
pub fn is_recon_metric(m: &str) -> bool {
    RECON_METRICS.contains(&m)
}

/// Images per encoder / decoder call.
const BATCH: usize = 250;

/// Reconstruction quality over `n` examples.
#[derive(Clone, Debug, Serialize)]
pub struct ReconReport {
    pub n: usize,
    /// Mean per-image PSNR (dB, peak 1).
    pub psnr: Option<f64>,
    /// Mean per-image SSIM (Gaussian window, sigma 1.5).
    pub ssim: Option<f64>,
    /// FID between the originals' and the reconstructions' features.
    pub rfid: Option<f64>,
    /// The feature extractor of rFID and the accuracies.
    pub features: Option<String>,
    /// The classifier's accuracy on the reconstructions.
    pub recon_accuracy: Option<f64>,
    /// ... and on the originals.
    pub original_accuracy: Option<f64>,
}

/// The reconstructions (posterior mean, decoded) of images `x` in [0, 1], in batches, on
/// the CPU, by a genlab autoencoder, TAEF2 or an LDM's first stage.
pub fn reconstruct_all<R: Reconstruct + ?Sized>(ae: &R, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let mut out = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let len = BATCH.min(n - start);
        let b = x.narrow(0, start, len)?.to_device(ae.device())?;
        out.push(ae.reconstruct(&b)?.detach().to_device(&Device::Cpu)?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Evaluates `metrics` (names from [`RECON_METRICS`]) on the first `n` examples of `data`;
/// `extractor` (a classifier run, for rfid and recon-acc) is opened by the caller.
pub fn evaluate_reconstruction<R: Reconstruct + ?Sized>(
    ae: &R,
    data: &dyn Dataset,
    n: usize,
    metrics: &[String],
    extractor: Option<&dyn FeatureExtractor>,
) -> Result<ReconReport> {
    for m in metrics {
        if !is_recon_metric(m) {
            return Err(Error::unknown(
                "reconstruction metric",
                m,
                RECON_METRICS.iter().copied(),
            ));
        }
    }
    let n = n.min(data.len());
    if n < 2 {
        return Err(Error::InvalidInput(format!(
            "`{}` has {} examples; the reconstruction metrics need at least 2",
            data.name(),
            data.len()
        )));
    }
    let want = |m: &str| metrics.iter().any(|x| x == m);
    let idx: Vec<usize> = (0..n).collect();
    let b = make_batch(data, &idx, &Device::Cpu)?;
    let x = b.x;
    let rec = reconstruct_all(ae, &x)?;
    let shape = x.dims()[1..].to_vec();
    let (a, r): (Vec<f32>, Vec<f32>) = (x.flatten_all()?.to_vec1()?, rec.flatten_all()?.to_vec1()?);
    let mut report = ReconReport {
        n,
        psnr: None,
        ssim: None,
        rfid: None,
        features: None,
        recon_accuracy: None,
        original_accuracy: None,
    };
    if want("psnr") {
        report.psnr = Some(genlab_metrics::psnr::psnr(&a, &r, n, 1.0)?);
    }
    if want("ssim") {
        let chw = [shape[0], shape[1], shape[2]];
        report.ssim = Some(genlab_metrics::ssim::ssim(&a, &r, n, chw, 1.0)?);
    }
    if want("rfid") || want("recon-acc") {
        let ex = extractor.ok_or_else(|| {
            Error::setting(
                "features",
                "rfid and recon-acc need a feature extractor: --features RUN (a `classifier` \
                 run) or a named extractor",
            )
        })?;
        report.features = Some(ex.id());
        let fx = genlab_metrics::features::classifier::extract_all(ex, &x, BATCH, &mut |_, _| {})?;
        let fr =
            genlab_metrics::features::classifier::extract_all(ex, &rec, BATCH, &mut |_, _| {})?;
        if want("rfid") {
            report.rfid = Some(genlab_metrics::fid::fid(&fx.features, &fr.features)?.fid);
        }
        if want("recon-acc") {
            let labels = b.labels.ok_or_else(|| {
                Error::Data(format!(
                    "recon-acc needs labelled data; `{}` has no labels",
                    data.name()
                ))
            })?;
            let labels: Vec<u32> = labels.to_vec1()?;
            let acc = |p: &Option<genlab_metrics::FeatureMatrix>| -> Result<f64> {
                let p = p.as_ref().ok_or_else(|| {
                    Error::setting(
                        "features",
                        "recon-acc needs an extractor with class probabilities (a classifier run)",
                    )
                })?;
                Ok(crate::edit::argmax_accuracy(p, &labels))
            };
            report.recon_accuracy = Some(acc(&fr.probs)?);
            report.original_accuracy = Some(acc(&fx.probs)?);
        }
    }
    Ok(report)
}
