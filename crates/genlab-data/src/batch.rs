//! Gathering dataset examples into a batch of tensors.

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result, Rng};

use crate::Dataset;

/// A batch of examples.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, ...example_shape]`, f32.
    pub x: Tensor,
    /// `[B]`, u32 class labels; `None` when the dataset has no labels.
    pub labels: Option<Tensor>,
    /// One caption per example when every example has one ([`Dataset::caption`], or
    /// [`Dataset::draw_caption`] in [`make_training_batch`]); `None` when none has.
    pub captions: Option<Vec<String>>,
}

/// Gathers the examples `indices` of `ds` into a [`Batch`] on `device`, with the fixed
/// captions of [`Dataset::caption`].
///
/// Errors when `indices` is empty, when an index is out of range, or when some but not
/// all of the requested examples carry a label (or a caption).
pub fn make_batch(ds: &dyn Dataset, indices: &[usize], device: &Device) -> Result<Batch> {
    gather(ds, indices, device, |i| ds.caption(i))
}

/// [`make_batch`] for a training step: captions come from [`Dataset::draw_caption`] with
/// `rng`, so a dataset with several wordings per example gives a fresh one each draw.
pub fn make_training_batch(
    ds: &dyn Dataset,
    indices: &[usize],
    device: &Device,
    rng: &mut Rng,
) -> Result<Batch> {
    gather(ds, indices, device, |i| ds.draw_caption(i, rng))
}

fn gather(
    ds: &dyn Dataset,
    indices: &[usize],
    device: &Device,
    mut caption: impl FnMut(usize) -> Option<String>,
) -> Result<Batch> {
    if indices.is_empty() {
        return Err(Error::InvalidInput(format!(
            "make_batch on {}: no indices given (expected at least one)",
            ds.name()
        )));
    }
    let len = ds.len();
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(Error::InvalidInput(format!(
            "make_batch on {}: index {bad} is out of range (dataset has {len} examples)",
            ds.name()
        )));
    }
    let shape = ds.example_shape();
    let per: usize = shape.iter().product();
    let mut buf = vec![0f32; indices.len() * per];
    for (chunk, &i) in buf.chunks_exact_mut(per.max(1)).zip(indices) {
        ds.write_example(i, &mut chunk[..per]);
    }
    // [B, ...example_shape]
    let mut full = Vec::with_capacity(shape.len() + 1);
    full.push(indices.len());
    full.extend_from_slice(&shape);
    let x = Tensor::from_vec(buf, full, device)?;

    let labels: Vec<Option<u32>> = indices.iter().map(|&i| ds.label(i)).collect();
    let labels = all_or_none(ds, labels, "a label")?
        .map(|v| {
            let n = v.len();
            Tensor::from_vec(v, n, device) // [B]
        })
        .transpose()?;
    let captions: Vec<Option<String>> = indices.iter().map(|&i| caption(i)).collect();
    let captions = all_or_none(ds, captions, "a caption")?;
    Ok(Batch {
        x,
        labels,
        captions,
    })
}

/// `Some` of every value when all are present, `None` when none is, an error otherwise.
fn all_or_none<T>(ds: &dyn Dataset, v: Vec<Option<T>>, what: &str) -> Result<Option<Vec<T>>> {
    let have = v.iter().filter(|l| l.is_some()).count();
    if have == 0 {
        Ok(None)
    } else if have == v.len() {
        Ok(Some(v.into_iter().flatten().collect()))
    } else {
        Err(Error::Data(format!(
            "make_batch on {}: {have} of {} examples have {what} (expected all or none)",
            ds.name(),
            v.len()
        )))
    }
}
