//! What steers a conditional generator: one [`Condition`] travels with every request to a
//! model that takes one (sampling, likelihood, training batches), whatever the family.
//!
//! It holds, per example of a batch, any of: a class label; a sequence of embeddings (text
//! tokens, audio frames) with an optional mask; an image map (a low-resolution image, an edge
//! map, the known image of inpainting) with an optional mask. A model reads the parts it was
//! built for and refuses a condition it cannot take. Every part is batched along dim 0, so a
//! condition can be cut into the same batches as the examples it goes with
//! ([`Condition::narrow`]) and two can be stacked into one network call
//! ([`Condition::cat`], as classifier-free guidance does with the conditional and the
//! unconditional halves).

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// A per-example condition (every present part has the batch on dim 0).
#[derive(Clone, Debug, Default)]
pub struct Condition {
    /// Class labels, `[B]` u32. A model with `K` classes reads label `K` as "no label" (the
    /// null class of classifier-free guidance).
    pub class: Option<Tensor>,
    /// A sequence of embeddings, `[B, L, D]` f32 (text tokens, audio frames).
    pub tokens: Option<Tensor>,
    /// Which of the `L` sequence positions are real, `[B, L]` (1 real, 0 padding).
    pub token_mask: Option<Tensor>,
    /// An image map, `[B, C, H, W]` f32 in [0, 1] (a low-resolution image, an edge map, the
    /// image to inpaint).
    pub image: Option<Tensor>,
    /// Where `image` is known, `[B, 1, H, W]` (1 known, 0 to generate).
    pub mask: Option<Tensor>,
    /// A negative prompt's token sequence, `[B, L, D]`: classifier-free guidance steers away
    /// from it instead of from the empty prompt (Stable Diffusion's negative prompts).
    pub negative_tokens: Option<Tensor>,
    /// Its mask, `[B, L]`.
    pub negative_token_mask: Option<Tensor>,
}

/// The parts in a fixed order, for the operations that treat them alike.
fn parts(c: &Condition) -> [&Option<Tensor>; 7] {
    [
        &c.class,
        &c.tokens,
        &c.token_mask,
        &c.image,
        &c.mask,
        &c.negative_tokens,
        &c.negative_token_mask,
    ]
}

fn from_parts(p: [Option<Tensor>; 7]) -> Condition {
    let [class, tokens, token_mask, image, mask, negative_tokens, negative_token_mask] = p;
    Condition {
        class,
        tokens,
        token_mask,
        image,
        mask,
        negative_tokens,
        negative_token_mask,
    }
}

/// The names of the parts, in [`parts`]' order.
const PART_NAMES: [&str; 7] = [
    "class",
    "tokens",
    "token_mask",
    "image",
    "mask",
    "negative_tokens",
    "negative_token_mask",
];

/// Each part, in [`parts`]' order, mapped by `f`.
fn map_parts(
    c: &Condition,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Condition> {
    let mut out: [Option<Tensor>; 7] = Default::default();
    for (o, p) in out.iter_mut().zip(parts(c)) {
        *o = p.as_ref().map(&f).transpose()?;
    }
    Ok(from_parts(out))
}

impl Condition {
    /// No condition at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Class labels only.
    pub fn class(labels: Tensor) -> Self {
        Self {
            class: Some(labels),
            ..Self::default()
        }
    }

    /// The same class `label` for `n` examples.
    pub fn class_repeated(label: u32, n: usize, device: &Device) -> Result<Self> {
        Ok(Self::class(Tensor::from_vec(vec![label; n], n, device)?))
    }

    /// An image map (and where it is known) only.
    pub fn image(image: Tensor, mask: Option<Tensor>) -> Self {
        Self {
            image: Some(image),
            mask,
            ..Self::default()
        }
    }

    /// Whether no part is present.
    pub fn is_none(&self) -> bool {
        parts(self).iter().all(|p| p.is_none())
    }

    /// The names of the present parts (for messages).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = parts(self)
            .iter()
            .zip(PART_NAMES)
            .filter(|(p, _)| p.is_some())
            .map(|(_, n)| n)
            .collect();
        if names.is_empty() {
            "no condition".into()
        } else {
            names.join(" + ")
        }
    }

    /// The batch size, when some part is present; an error when the parts disagree.
    pub fn batch_size(&self) -> Result<Option<usize>> {
        let mut n = None;
        for (p, name) in parts(self).iter().zip(PART_NAMES) {
            if let Some(t) = p {
                let b = t.dim(0)?;
                match n {
                    Some(m) if m != b => {
                        return Err(Error::InvalidInput(format!(
                            "the condition's {name} has {b} examples, its other parts {m}"
                        )))
                    }
                    _ => n = Some(b),
                }
            }
        }
        Ok(n)
    }

    /// Errors unless the condition is absent or has exactly `n` examples.
    pub fn check_batch(&self, n: usize) -> Result<()> {
        match self.batch_size()? {
            Some(b) if b != n => Err(Error::InvalidInput(format!(
                "the condition has {b} examples, the batch {n}"
            ))),
            _ => Ok(()),
        }
    }

    /// Examples `start..start + len` of every part.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        map_parts(self, |t| t.narrow(0, start, len))
    }

    /// The examples `indices` of every part (in that order).
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let device = match parts(self).iter().find_map(|p| p.as_ref()) {
            Some(t) => t.device().clone(),
            None => return Ok(Self::none()),
        };
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, indices.len(), &device)?;
        map_parts(self, |t| t.index_select(&idx, 0))
    }

    /// `self` stacked on `other` along the batch: both must have the same parts.
    pub fn cat(&self, other: &Condition) -> Result<Self> {
        let mut out: [Option<Tensor>; 7] = Default::default();
        for (i, ((a, b), name)) in parts(self)
            .iter()
            .zip(parts(other))
            .zip(PART_NAMES)
            .enumerate()
        {
            out[i] = match (a, b) {
                (Some(a), Some(b)) => Some(Tensor::cat(&[a, b], 0)?),
                (None, None) => None,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "cannot stack conditions: one has a {name} part, the other not"
                    )))
                }
            };
        }
        Ok(from_parts(out))
    }

    /// Every part on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        map_parts(self, |t| t.to_device(device))
    }

    /// The class labels as numbers, when there are any.
    pub fn class_labels(&self) -> Result<Option<Vec<u32>>> {
        Ok(match &self.class {
            Some(t) => Some(t.to_dtype(DType::U32)?.to_vec1::<u32>()?),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[u32]) -> Tensor {
        Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn parts_are_cut_selected_and_stacked_along_the_batch() {
        let img = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 1, 2, 4))
            .unwrap();
        let c = Condition {
            class: Some(labels(&[4, 5, 6])),
            image: Some(img),
            ..Default::default()
        };
        assert_eq!(c.batch_size().unwrap(), Some(3));
        assert_eq!(c.describe(), "class + image");
        let n = c.narrow(1, 2).unwrap();
        assert_eq!(n.class_labels().unwrap(), Some(vec![5, 6]));
        assert_eq!(n.image.as_ref().unwrap().dims(), &[2, 1, 2, 4]);
        let s = c.select(&[2, 0]).unwrap();
        assert_eq!(s.class_labels().unwrap(), Some(vec![6, 4]));
        let first: f32 = s
            .image
            .as_ref()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert_eq!(first, 16.0); // example 2 starts at 2 * 8
        let both = n.cat(&s).unwrap();
        assert_eq!(both.class_labels().unwrap(), Some(vec![5, 6, 6, 4]));
        assert!(c.check_batch(3).is_ok() && c.check_batch(2).is_err());
        assert!(Condition::none().check_batch(7).is_ok());
        assert!(Condition::none().is_none() && !c.is_none());
    }

    #[test]
    fn mismatched_parts_are_errors() {
        let c = Condition {
            class: Some(labels(&[1, 2])),
            image: Some(Tensor::zeros((3, 1, 2, 2), DType::F32, &Device::Cpu).unwrap()),
            ..Default::default()
        };
        let e = c.batch_size().unwrap_err().to_string();
        assert!(e.contains("image has 3") && e.contains("2"), "{e}");
        let e = Condition::class(labels(&[1]))
            .cat(&Condition::none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("class part"), "{e}");
        let r = Condition::class_repeated(7, 3, &Device::Cpu).unwrap();
        assert_eq!(r.class_labels().unwrap(), Some(vec![7, 7, 7]));
    }
}
