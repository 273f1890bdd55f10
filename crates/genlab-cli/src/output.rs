//! Writing samples and pictures: `.npy` arrays, `.png` grids/scatters, loss curves, and the
//! JSON sidecar that carries the resolved config of every output.

use std::path::Path;

use anyhow::{bail, Context};
use candle_core::Tensor;

/// Fails early, before minutes of work, if `path` cannot be written.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the output directory {}", parent.display()))?;
    }
    let probe = path.with_extension("write-check");
    std::fs::write(&probe, b"").with_context(|| format!("cannot write to {}", path.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The output kind, from the extension.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutKind {
    Npy,
    Png,
}

pub fn out_kind(path: &Path) -> anyhow::Result<OutKind> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("npy") => Ok(OutKind::Npy),
        Some("png") => Ok(OutKind::Png),
        _ => bail!(
            "--out {} must end in .npy (raw samples) or .png (a picture)",
            path.display()
        ),
    }
}

/// Points as `[x, y]` pairs (first two coordinates).
pub fn to_points(x: &Tensor) -> anyhow::Result<Vec<[f32; 2]>> {
    let v: Vec<Vec<f32>> = x.to_vec2()?;
    Ok(v.into_iter()
        .map(|r| [r[0], *r.get(1).unwrap_or(&0.0)])
        .collect())
}

/// Saves samples: raw `.npy`, or a picture (grid for images, scatter for points, with
/// `reference` points drawn behind in grey).
pub fn save_samples(
    x: &Tensor,
    images: bool,
    path: &Path,
    reference: Option<&[[f32; 2]]>,
) -> anyhow::Result<()> {
    let dims = x.dims().to_vec();
    let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
    match out_kind(path)? {
        OutKind::Npy => genlab_core::io::write_npy(path, &dims, &flat)?,
        OutKind::Png if images => {
            let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
            let ncol = (n as f64).sqrt().ceil() as usize;
            let scale = (96 / h.max(1)).clamp(1, 8); // cells of about 96 px
            let img = genlab_report::image_grid(&flat, n, c, h, w, ncol, scale, 2)?;
            genlab_report::save_png(&img, path)?;
        }
        OutKind::Png => {
            if dims.len() != 2 || dims[1] != 2 {
                bail!("a scatter picture needs 2-D points, the samples have shape {dims:?}; write .npy instead");
            }
            let img = genlab_report::scatter_png(&to_points(x)?, reference, 640, None)?;
            genlab_report::save_png(&img, path)?;
        }
    }
    Ok(())
}

/// `(step, loss)` pairs from a run's log.jsonl.
pub fn read_loss(log: &Path) -> Vec<(f64, f64)> {
    let Ok(s) = std::fs::read_to_string(log) else {
        return vec![];
    };
    s.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v.get("step")?.as_f64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

/// Writes the loss curve of a run as SVG.
pub fn write_loss_svg(run_dir: &Path, title: &str) -> anyhow::Result<String> {
    let pts = read_loss(&run_dir.join(genlab_train::trainer::LOG_FILE));
    let series = [genlab_report::Series {
        name: "loss (mean per log interval)".into(),
        points: pts,
    }];
    let svg = genlab_report::line_chart_svg(title, "step", "loss", &series, true)?;
    genlab_core::io::write_atomic(&run_dir.join("loss.svg"), svg.as_bytes())?;
    Ok(svg)
}
