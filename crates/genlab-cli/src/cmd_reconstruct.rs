//! `genlab reconstruct --autoencoder RUN --input SRC --n N --out recon.npy|png`: the
//! autoencoder's reconstructions (posterior mean, decoded) of the first N images of a
//! dataset or an image array, in the order given, with their PSNR and SSIM.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use clap::Args;

use genlab_train::outputs::{check_writable, out_kind, save_samples, OutKind};
use genlab_train::recon_eval::reconstruct_all;
use genlab_train::steps::autoencoder::load_autoencoder;

#[derive(Args)]
pub struct ReconstructArgs {
    /// The run directory of a trained autoencoder (`genlab train --model autoencoder`).
    #[arg(long, alias = "ckpt")]
    pub autoencoder: PathBuf,
    /// The images: a dataset (mnist:test, folder:PATH, ...) or a .npy array N x C x H x W in
    /// [0, 1] of the autoencoder's image shape.
    #[arg(long)]
    pub input: String,
    /// How many images (the first N; default 64).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Where to write the reconstructions: .npy (N x C x H x W in [0, 1]) or .png (a grid);
    /// a .png also gets NAME-compare.png with each input beside its reconstruction.
    #[arg(long)]
    pub out: PathBuf,
}

/// The first `n` images of `spec` (a dataset or a .npy image array) of shape `shape`.
fn read_input(spec: &str, n: usize, shape: &[usize]) -> anyhow::Result<Tensor> {
    if n == 0 {
        bail!("--n must be at least 1, got 0");
    }
    if spec.ends_with(".npy") {
        let a = genlab_core::io::read_npy(std::path::Path::new(spec))
            .with_context(|| format!("reading --input {spec}"))?;
        if a.shape.len() != 4 || a.shape[1..] != shape[..] {
            bail!(
                "--input {spec} has shape {:?}; expected N x {} x {} x {} images in [0, 1] (the \
                 autoencoder's image shape)",
                a.shape,
                shape[0],
                shape[1],
                shape[2]
            );
        }
        if let Some(v) = a.data.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            bail!("--input {spec} has a value {v} outside [0, 1]; images must be in [0, 1]");
        }
        let x = Tensor::from_vec(a.data, a.shape.as_slice(), &Device::Cpu)?;
        let n = n.min(x.dim(0)?);
        return Ok(x.narrow(0, 0, n)?);
    }
    let space = genlab_models::DataSpace {
        shape: shape.to_vec(),
        images: true,
    };
    Ok(genlab_train::edit::edit_source(&[], Some(spec), n, &space, 0)?.images)
}

pub fn run(a: ReconstructArgs, device: &Device) -> anyhow::Result<()> {
    let kind = out_kind(&a.out)?;
    check_writable(&a.out)?;
    let (ae, run) = load_autoencoder(&a.autoencoder, device)?;
    let shape = ae.config().data.shape.clone();
    let x = read_input(&a.input, a.n, &shape)?;
    let n = x.dim(0)?;
    let t0 = std::time::Instant::now();
    let rec = reconstruct_all(&ae, &x)?;
    let secs = t0.elapsed().as_secs_f64();
    save_samples(&rec, true, &a.out, None)?;
    let (xa, ra): (Vec<f32>, Vec<f32>) =
        (x.flatten_all()?.to_vec1()?, rec.flatten_all()?.to_vec1()?);
    let psnr = genlab_metrics::psnr::psnr(&xa, &ra, n, 1.0)?;
    println!(
        "{n} reconstructions by {} (trained on {}, f = {}, latents {:?}) in {secs:.1} s -> {}",
        a.autoencoder.display(),
        run.data,
        ae.config().factor(),
        ae.config().latent_shape(),
        a.out.display()
    );
    print!("PSNR {psnr:.2} dB");
    if shape[1] >= 11 && shape[2] >= 11 {
        let ssim = genlab_metrics::ssim::ssim(&xa, &ra, n, [shape[0], shape[1], shape[2]], 1.0)?;
        print!(", SSIM {ssim:.4}");
    }
    println!(" (per image, averaged)");
    if kind == OutKind::Png {
        let stem = a
            .out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("recon");
        let cmp = a.out.with_file_name(format!("{stem}-compare.png"));
        genlab_train::edit::save_columns(&[&x, &rec], &cmp)?;
        println!("inputs beside reconstructions: {}", cmp.display());
    }
    Ok(())
}
