//! What the image-editing commands (img2img, inpainting) share: the images to edit (files or
//! examples of a dataset, shaped like the model's data), side-by-side pictures, and a
//! classifier's accuracy on the results.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use genlab_core::{Error, Result};
use genlab_data::image_folder::{decode_image, preprocess_image};
use genlab_data::make_batch;
use genlab_models::DataSpace;

use crate::outputs::report_error;

/// Images to edit.
pub struct EditSource {
    /// `[N, C, H, W]` in [0, 1], on the CPU.
    pub images: Tensor,
    /// Their class labels, when they come from a labelled dataset.
    pub labels: Option<Vec<u32>>,
    /// Where they came from, for messages and sidecars.
    pub description: String,
}

/// The images of `files` (PNG/JPEG, resized and centre-cropped to the model's size and
/// channels), or the first `n` examples of the dataset `from` (which must have the model's
/// shape). Exactly one of the two must be given.
pub fn edit_source(
    files: &[PathBuf],
    from: Option<&str>,
    n: usize,
    space: &DataSpace,
    seed: u64,
) -> Result<EditSource> {
    let [c, h, w] = match space.shape.as_slice() {
        [c, h, w] if space.images => [*c, *h, *w],
        s => {
            return Err(Error::InvalidInput(format!(
                "image editing needs an image model; this one generates examples of shape {s:?}"
            )))
        }
    };
    match (files.is_empty(), from) {
        (false, None) => {
            if h != w {
                return Err(Error::InvalidInput(format!(
                    "the model's images are {h}x{w}; files are read square"
                )));
            }
            let mut v = Vec::with_capacity(files.len() * c * h * w);
            for f in files {
                v.extend(preprocess_image(&decode_image(f)?, h, c)?);
            }
            Ok(EditSource {
                images: Tensor::from_vec(v, (files.len(), c, h, w), &Device::Cpu)?,
                labels: None,
                description: files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
        (true, Some(spec)) => {
            if n == 0 {
                return Err(Error::setting("n", "must be at least 1, got 0"));
            }
            let ds = crate::resolve::open_data(spec, seed, Some(h), Some(c))?;
            if ds.example_shape() != space.shape {
                return Err(Error::InvalidInput(format!(
                    "{spec} has examples of shape {:?}, the model {:?}",
                    ds.example_shape(),
                    space.shape
                )));
            }
            let idx: Vec<usize> = (0..n.min(ds.len())).collect();
            let b = make_batch(ds.as_ref(), &idx, &Device::Cpu)?;
            let labels = b.labels.map(|l| l.to_vec1::<u32>()).transpose()?;
            Ok(EditSource {
                images: b.x,
                labels,
                description: format!("the first {} examples of {spec}", idx.len()),
            })
        }
        (false, Some(_)) => Err(Error::setting(
            "from",
            "and image files cannot both be given; pick one source",
        )),
        (true, None) => Err(Error::setting(
            "image",
            "is required: the image files to edit (or a dataset to take examples from)",
        )),
    }
}

/// A picture of `columns` side by side: row i shows example i of every column (each
/// `[N, C, H, W]` in [0, 1] with the same N, C, H, W; a `[1, ...]` column repeats).
pub fn save_columns(columns: &[&Tensor], path: &Path) -> Result<()> {
    let (n, c, h, w) = columns
        .iter()
        .map(|t| t.dims4())
        .find(|d| d.as_ref().is_ok_and(|d| d.0 > 1))
        .unwrap_or_else(|| columns[0].dims4())?;
    let mut flat = Vec::with_capacity(n * columns.len() * c * h * w);
    let cols: Vec<Vec<f32>> = columns
        .iter()
        .map(|t| -> Result<Vec<f32>> {
            let t = t.broadcast_as((n, c, h, w))?.contiguous()?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        })
        .collect::<Result<_>>()?;
    let per = c * h * w;
    for i in 0..n {
        for col in &cols {
            flat.extend_from_slice(&col[i * per..(i + 1) * per]);
        }
    }
    let scale = (96 / h.max(1)).clamp(1, 8);
    let img = genlab_report::image_grid(&flat, n * columns.len(), c, h, w, columns.len(), scale, 2)
        .map_err(report_error)?;
    genlab_report::save_png(&img, path).map_err(report_error)
}

/// The share of `images` that the classifier `extractor` (a spec of
/// [`crate::extractors::open_extractor`] with a class head) assigns to `labels`.
pub fn classifier_accuracy(extractor: &str, images: &Tensor, labels: &[u32]) -> Result<f64> {
    let ex = crate::extractors::open_extractor(extractor, None, &images.dims()[1..])?;
    let e = genlab_metrics::features::classifier::extract_all(
        ex.as_ref(),
        images,
        250,
        &mut |_, _| {},
    )?;
    let probs = e.probs.ok_or_else(|| {
        Error::InvalidInput(format!(
            "{extractor} has no class head; a classifier run is needed to check classes"
        ))
    })?;
    Ok(argmax_accuracy(&probs, labels))
}

/// The share of rows of `probs` (N x K) whose most probable class is `labels[i]`.
pub fn argmax_accuracy(probs: &genlab_metrics::FeatureMatrix, labels: &[u32]) -> f64 {
    let right = (0..probs.rows())
        .filter(|&i| {
            let row = probs.row(i);
            let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            labels.get(i) == Some(&(best as u32))
        })
        .count();
    right as f64 / probs.rows().max(1) as f64
}
