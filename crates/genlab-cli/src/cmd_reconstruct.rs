//! `genlab reconstruct --autoencoder RUN|taef2 --input SRC --n N --out recon.npy|png|DIR`:
//! the autoencoder's reconstructions (posterior mean, decoded) of the first N images of a
//! dataset or an image array, in the order given, with their PSNR and SSIM. `taef2` is the
//! pretrained TAEF2 (weights from --weights, else the genlab cache or a local copy), at
//! --image-size (default 64); image folders are composited on white where they have alpha.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use clap::Args;

use genlab_train::outputs::{check_writable, out_kind, save_samples, OutKind};
use genlab_train::recon_eval::reconstruct_all;
use genlab_train::steps::ldm::open_first_stage;

/// TAEF2's image side when --image-size is not given.
const DEFAULT_TAEF2_SIZE: usize = 64;

#[derive(Args)]
pub struct ReconstructArgs {
    /// The run directory of a trained autoencoder (`genlab train --model autoencoder`), or
    /// `taef2` for the pretrained TAEF2 (`genlab data fetch taef2`).
    #[arg(long, alias = "ckpt")]
    pub autoencoder: String,
    /// TAEF2 only: the folder holding taef2_encoder.pth and taef2_decoder.pth (default: the
    /// genlab cache, else $GENLAB_TAEF2_DIR or ../shared/weights/taef2).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// TAEF2 only: images are read at this side (a multiple of 8; default 64).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// The images: a dataset (mnist:test, folder:PATH, ...) or a .npy array N x C x H x W in
    /// [0, 1] of the autoencoder's image shape.
    #[arg(long)]
    pub input: String,
    /// How many images (the first N; default 64).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Where to write the reconstructions: .npy (N x C x H x W in [0, 1]) or .png (a grid);
    /// a .png also gets NAME-compare.png with each input beside its reconstruction. Any
    /// other path is a folder that gets reconstructions.png, reconstructions.npy,
    /// compare.png and metrics.json (a name without an extension).
    #[arg(long, default_value = "reconstruct-out")]
    pub out: PathBuf,
}

/// Where the outputs go: one file (`.npy` / `.png`) or a folder.
enum Target {
    File(PathBuf, OutKind),
    Dir(PathBuf),
}

fn target(out: &Path) -> anyhow::Result<Target> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("npy") | Some("png") => {
            let kind = out_kind(out)?;
            check_writable(out)?;
            Ok(Target::File(out.to_path_buf(), kind))
        }
        Some(_) if !out.is_dir() => bail!(
            "--out {} must end in .npy (raw reconstructions) or .png (a grid), or name a \
             folder (no extension)",
            out.display()
        ),
        _ if out.is_file() => bail!(
            "--out {} is a file; give a .npy or .png file, or a folder",
            out.display()
        ),
        _ => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("creating the --out folder {}", out.display()))?;
            Ok(Target::Dir(out.to_path_buf()))
        }
    }
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
    let size = a.image_size.unwrap_or(DEFAULT_TAEF2_SIZE);
    let taef2_space = genlab_models::DataSpace {
        shape: vec![3, size, size],
        images: true,
    };
    let (ae, trained_on) = open_first_stage(
        &a.autoencoder,
        a.weights.as_deref(),
        Some(&taef2_space),
        device,
    )?;
    if trained_on.is_some() && a.image_size.is_some() {
        bail!(
            "--image-size applies to taef2 only; an autoencoder run reads images at the size \
             it was trained on"
        );
    }
    let shape = ae.data().shape.clone();
    let x = read_input(&a.input, a.n, &shape)?;
    // Checked (and a folder made) once the inputs are known to be readable.
    let target = target(&a.out)?;
    let n = x.dim(0)?;
    let t0 = std::time::Instant::now();
    let rec = reconstruct_all(&ae, &x)?;
    let secs = t0.elapsed().as_secs_f64();
    let (xa, ra): (Vec<f32>, Vec<f32>) =
        (x.flatten_all()?.to_vec1()?, rec.flatten_all()?.to_vec1()?);
    let psnr = genlab_metrics::psnr::psnr(&xa, &ra, n, 1.0)?;
    let ssim = if shape[1] >= 11 && shape[2] >= 11 {
        Some(genlab_metrics::ssim::ssim(
            &xa,
            &ra,
            n,
            [shape[0], shape[1], shape[2]],
            1.0,
        )?)
    } else {
        None
    };
    let (recon_path, compare) = match &target {
        Target::File(p, kind) => {
            save_samples(&rec, true, p, None)?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("recon");
            let cmp =
                (*kind == OutKind::Png).then(|| p.with_file_name(format!("{stem}-compare.png")));
            (p.clone(), cmp)
        }
        Target::Dir(d) => {
            save_samples(&rec, true, &d.join("reconstructions.npy"), None)?;
            save_samples(&rec, true, &d.join("reconstructions.png"), None)?;
            let metrics = serde_json::json!({
                "autoencoder": a.autoencoder,
                "input": a.input,
                "n": n,
                "image_shape": shape,
                "latent_shape": ae.latent_shape(),
                "psnr": psnr,
                "ssim": ssim,
            });
            std::fs::write(
                d.join("metrics.json"),
                serde_json::to_string_pretty(&metrics)? + "\n",
            )
            .with_context(|| format!("writing {}", d.join("metrics.json").display()))?;
            (d.clone(), Some(d.join("compare.png")))
        }
    };
    let origin = match &trained_on {
        Some(data) => format!("trained on {data}"),
        None => "pretrained".into(),
    };
    println!(
        "{n} reconstructions by {} ({origin}; {}) in {secs:.1} s -> {}",
        a.autoencoder,
        ae.describe(),
        recon_path.display()
    );
    print!("PSNR {psnr:.2} dB");
    if let Some(s) = ssim {
        print!(", SSIM {s:.4}");
    }
    println!(" (per image, averaged)");
    if let Some(cmp) = compare {
        genlab_train::edit::save_columns(&[&x, &rec], &cmp)?;
        println!("inputs beside reconstructions: {}", cmp.display());
    }
    Ok(())
}
