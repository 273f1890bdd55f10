//! Gathering dataset examples into a batch of tensors.

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result};

use crate::Dataset;

/// A batch of examples.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, ...example_shape]`, f32.
    pub x: Tensor,
    /// `[B]`, u32 class labels; `None` when the dataset has no labels.
    pub labels: Option<Tensor>,
}

/// Gathers the examples `indices` of `ds` into a [`Batch`] on `device`.
///
/// Errors when `indices` is empty, when an index is out of range, or when some but not
/// all of the requested examples carry a label.
pub fn make_batch(ds: &dyn Dataset, indices: &[usize], device: &Device) -> Result<Batch> {
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
    let labelled = labels.iter().filter(|l| l.is_some()).count();
    let labels = if labelled == 0 {
        None
    } else if labelled == labels.len() {
        let v: Vec<u32> = labels.into_iter().flatten().collect();
        let n = v.len();
        Some(Tensor::from_vec(v, n, device)?) // [B]
    } else {
        return Err(Error::Data(format!(
            "make_batch on {}: {labelled} of {} examples have a label (expected all or none)",
            ds.name(),
            labels.len()
        )));
    };
    Ok(Batch { x, labels })
}
