//! What runs write besides checkpoints: samples as `.npy` arrays or `.png` pictures (a grid
//! for images, a scatter for points), the loss curves of a run's log, and the figures a
//! model draws of itself.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

use genlab_core::{Error, Result};
use genlab_report::ReportError;

/// A picture-writing error as a genlab error (I/O errors keep their path).
pub fn report_error(e: ReportError) -> Error {
    match e {
        ReportError::Io {
            action,
            path,
            source,
        } => Error::io(action, path, source),
        other => Error::InvalidInput(other.to_string()),
    }
}

/// Fails early, before minutes of work, if `path` cannot be written (creating its parent
/// folders).
pub fn check_writable(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the output directory", parent, e))?;
    }
    let probe = path.with_extension("write-check");
    std::fs::write(&probe, b"").map_err(|e| Error::io("write to", path, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The kind of a samples file, from its extension.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutKind {
    /// Raw samples: `N x D` for points, `N x C x H x W` in [0, 1] for images.
    Npy,
    /// A picture: a grid of images or a scatter of points (for video: a filmstrip, one
    /// clip per row, with the animated grid written beside it as `.gif`).
    Png,
    /// An animated GIF of video samples, all clips in one grid.
    Gif,
}

/// The kind of samples file `path` names; anything but `.npy` or `.png` is an error
/// about the `out` setting.
pub fn out_kind(path: &Path) -> Result<OutKind> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("npy") => Ok(OutKind::Npy),
        Some("png") => Ok(OutKind::Png),
        Some("gif") => Ok(OutKind::Gif),
        _ => Err(Error::setting(
            "out",
            format!(
                "{} must end in .npy (raw samples), .png (a picture) or .gif (video)",
                path.display()
            ),
        )),
    }
}

/// Points as `[x, y]` pairs (first two coordinates).
pub fn to_points(x: &Tensor) -> Result<Vec<[f32; 2]>> {
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
) -> Result<()> {
    let dims = x.dims().to_vec();
    if dims.len() == 5 && out_kind(path)? != OutKind::Npy {
        let ncol = (dims[0] as f64).sqrt().ceil() as usize;
        return save_video(x, path, ncol);
    }
    let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
    match out_kind(path)? {
        OutKind::Npy => genlab_core::io::write_npy(path, &dims, &flat)?,
        OutKind::Gif => {
            return Err(Error::setting(
                "out",
                format!(
                    "{}: a .gif is for video samples [N, T, C, H, W]; these have shape \
                     {dims:?}: write .png or .npy",
                    path.display()
                ),
            ))
        }
        OutKind::Png if images => {
            let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
            let ncol = (n as f64).sqrt().ceil() as usize;
            let scale = (96 / h.max(1)).clamp(1, 8); // cells of about 96 px
            let img = genlab_report::image_grid(&flat, n, c, h, w, ncol, scale, 2)
                .map_err(report_error)?;
            genlab_report::save_png(&img, path).map_err(report_error)?;
        }
        OutKind::Png => {
            if dims.len() != 2 || dims[1] != 2 {
                return Err(Error::InvalidInput(format!(
                    "a scatter picture needs 2-D points, the samples have shape {dims:?}; \
                     write .npy instead"
                )));
            }
            let img = genlab_report::scatter_png(&to_points(x)?, reference, 640, None)
                .map_err(report_error)?;
            genlab_report::save_png(&img, path).map_err(report_error)?;
        }
    }
    Ok(())
}

/// Saves class-labelled samples (`labels[i]` for row i): a `.npy` with the labels in a
/// `.labels.npy` beside it, or a picture: a grid of images with one row of `per_row` samples
/// per class, or a scatter of points coloured by class.
pub fn save_labeled_samples(
    x: &Tensor,
    images: bool,
    labels: &[u32],
    per_row: usize,
    path: &Path,
) -> Result<()> {
    match out_kind(path)? {
        OutKind::Npy => {
            save_samples(x, images, path, None)?;
            let l: Vec<f32> = labels.iter().map(|&v| v as f32).collect();
            genlab_core::io::write_npy(&labels_path(path), &[l.len()], &l)?;
        }
        OutKind::Png | OutKind::Gif if x.rank() == 5 => save_video(x, path, per_row.max(1))?,
        OutKind::Gif => save_samples(x, images, path, None)?,
        OutKind::Png if images => {
            let (n, c, h, w) = x.dims4()?;
            let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let scale = (96 / h.max(1)).clamp(1, 8);
            let img = genlab_report::image_grid(&flat, n, c, h, w, per_row.max(1), scale, 2)
                .map_err(report_error)?;
            genlab_report::save_png(&img, path).map_err(report_error)?;
        }
        OutKind::Png => {
            let img = genlab_report::scatter_labeled_png(&to_points(x)?, labels, 640)
                .map_err(report_error)?;
            genlab_report::save_png(&img, path).map_err(report_error)?;
        }
    }
    Ok(())
}

/// Video samples `[N, T, C, H, W]` in [0, 1] as pictures: `.gif`, one animated grid of
/// `ncol` clips per row; `.png`, a filmstrip (one clip per row, its frames left to right)
/// plus the animated grid beside it (`NAME.gif`).
pub fn save_video(x: &Tensor, path: &Path, ncol: usize) -> Result<()> {
    let (n, t, c, h, w) = x.dims5()?;
    let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let scale = (96 / h.max(1)).clamp(1, 8);
    let gif = match out_kind(path)? {
        OutKind::Png => {
            let strip = genlab_report::image_grid(&flat, n * t, c, h, w, t, scale.min(3), 2)
                .map_err(report_error)?;
            genlab_report::save_png(&strip, path).map_err(report_error)?;
            path.with_extension("gif")
        }
        _ => path.to_path_buf(),
    };
    genlab_report::video_grid_gif(&gif, &flat, [n, t, c, h, w], ncol, scale)
        .map_err(report_error)?;
    Ok(())
}

/// Where [`save_labeled_samples`] writes the labels of `samples.npy`: `samples.labels.npy`.
pub fn labels_path(path: &Path) -> PathBuf {
    path.with_extension("labels.npy")
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

/// Writes the loss curves of a run as `loss.svg` (log scale unless a loss goes negative,
/// as a WGAN critic's does) and returns the SVG.
pub fn write_loss_svg(run_dir: &Path, title: &str) -> Result<String> {
    let losses = read_losses(&run_dir.join(crate::trainer::LOG_FILE));
    let positive = losses.iter().all(|(_, p)| p.iter().all(|&(_, y)| y > 0.0));
    let series: Vec<genlab_report::Series> = losses
        .into_iter()
        .map(|(name, points)| genlab_report::Series {
            name: format!("{name} (mean per log interval)"),
            points,
        })
        .collect();
    let svg = genlab_report::line_chart_svg(title, "step", "loss", &series, positive)
        .map_err(report_error)?;
    genlab_core::io::write_atomic(&run_dir.join(LOSS_SVG), svg.as_bytes())?;
    Ok(svg)
}

/// The loss-curve picture of a run directory.
pub const LOSS_SVG: &str = "loss.svg";

/// Saves a model's figures as `<name>.png` in `dir`; returns (path, caption) pairs.
pub fn save_figures(dir: &Path, figs: &[genlab_models::Figure]) -> Result<Vec<(PathBuf, String)>> {
    use genlab_models::Figure;
    let mut out = Vec::new();
    for f in figs {
        let (name, img, caption) = match f {
            Figure::Images {
                name,
                x,
                ncol,
                caption,
            } => {
                let (n, c, h, w) = x.dims4()?;
                let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let scale = (64 / h.max(1)).clamp(1, 8);
                let img = genlab_report::image_grid(&flat, n, c, h, w, *ncol, scale, 2);
                (name, img, caption)
            }
            Figure::Scatter {
                name,
                points,
                labels,
                caption,
            } => (
                name,
                genlab_report::scatter_labeled_png(points, labels, 640),
                caption,
            ),
            Figure::Density {
                name,
                values,
                nx,
                ny,
                bounds: _,
                caption,
            } => (
                name,
                genlab_report::density_png(values, *nx, *ny, 480),
                caption,
            ),
        };
        let p = dir.join(format!("{name}.png"));
        genlab_report::save_png(&img.map_err(report_error)?, &p).map_err(report_error)?;
        out.push((p, caption.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_files_are_npy_or_png_and_others_name_the_setting() {
        assert_eq!(out_kind(Path::new("a/s.NPY")).unwrap(), OutKind::Npy);
        assert_eq!(out_kind(Path::new("s.png")).unwrap(), OutKind::Png);
        let e = out_kind(Path::new("s.jpg")).unwrap_err();
        assert!(
            matches!(&e, Error::Setting { setting, .. } if setting == "out"),
            "{e}"
        );
    }

    #[test]
    fn losses_are_read_per_series_skipping_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        std::fs::write(
            &p,
            "{\"step\":1,\"d_loss\":0.5,\"g_loss\":2.0,\"lr\":1}\nnot json\n{\"step\":2,\"d_loss\":0.25,\"g_loss\":null}\n",
        )
        .unwrap();
        let s = read_losses(&p);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], ("d_loss".to_string(), vec![(1.0, 0.5), (2.0, 0.25)]));
        assert_eq!(s[1], ("g_loss".to_string(), vec![(1.0, 2.0)]));
    }
}
