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

/// Every loss series of a run's log.jsonl (`loss`, or a GAN's `d_loss` and `g_loss`), as
/// `(name, [(step, value)])`.
pub fn read_losses(log: &Path) -> Vec<(String, Vec<(f64, f64)>)> {
    let Ok(s) = std::fs::read_to_string(log) else {
        return vec![];
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for v in s
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let (Some(step), Some(obj)) = (v.get("step").and_then(|s| s.as_f64()), v.as_object())
        else {
            continue;
        };
        for (k, val) in obj {
            let Some(y) = val.as_f64().filter(|y| y.is_finite()) else {
                continue;
            };
            if k == "loss" || k.ends_with("_loss") {
                match series.iter_mut().find(|(n, _)| n == k) {
                    Some((_, pts)) => pts.push((step, y)),
                    None => series.push((k.clone(), vec![(step, y)])),
                }
            }
        }
    }
    series
}

/// Writes the loss curves of a run as SVG (log scale unless a loss goes negative, as a
/// WGAN critic's does).
pub fn write_loss_svg(run_dir: &Path, title: &str) -> anyhow::Result<String> {
    let losses = read_losses(&run_dir.join(genlab_train::trainer::LOG_FILE));
    let positive = losses.iter().all(|(_, p)| p.iter().all(|&(_, y)| y > 0.0));
    let series: Vec<genlab_report::Series> = losses
        .into_iter()
        .map(|(name, points)| genlab_report::Series {
            name: format!("{name} (mean per log interval)"),
            points,
        })
        .collect();
    let svg = genlab_report::line_chart_svg(title, "step", "loss", &series, positive)?;
    genlab_core::io::write_atomic(&run_dir.join("loss.svg"), svg.as_bytes())?;
    Ok(svg)
}

/// Saves a model's figures as `<name>.png` in `dir`; returns (path, caption) pairs.
pub fn save_figures(
    dir: &Path,
    figs: &[genlab_models::Figure],
) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    use genlab_models::Figure;
    let mut out = Vec::new();
    for f in figs {
        match f {
            Figure::Images {
                name,
                x,
                ncol,
                caption,
            } => {
                let (n, c, h, w) = x.dims4()?;
                let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let scale = (64 / h.max(1)).clamp(1, 8);
                let img = genlab_report::image_grid(&flat, n, c, h, w, *ncol, scale, 2)?;
                let p = dir.join(format!("{name}.png"));
                genlab_report::save_png(&img, &p)?;
                out.push((p, caption.clone()));
            }
            Figure::Scatter {
                name,
                points,
                labels,
                caption,
            } => {
                let img = genlab_report::scatter_labeled_png(points, labels, 640)?;
                let p = dir.join(format!("{name}.png"));
                genlab_report::save_png(&img, &p)?;
                out.push((p, caption.clone()));
            }
            Figure::Density {
                name,
                values,
                nx,
                ny,
                bounds: _,
                caption,
            } => {
                let img = genlab_report::density_png(values, *nx, *ny, 480)?;
                let p = dir.join(format!("{name}.png"));
                genlab_report::save_png(&img, &p)?;
                out.push((p, caption.clone()));
            }
        }
    }
    Ok(out)
}
