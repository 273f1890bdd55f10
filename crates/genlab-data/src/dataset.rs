//! The [`Dataset`] trait: random access to examples stored as row-major `f32`.
//!
//! Every dataset genlab trains on implements it: toy 2-D points (`[2]`) and images
//! (`[C, H, W]`, values in `[0, 1]`). Examples are written into a caller-owned slice so
//! that [`crate::make_batch`] fills one contiguous buffer without per-example allocation.

use std::fmt;

/// What an example is: a point in the plane or an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// A 2-D point, example shape `[2]`.
    Points,
    /// An image, example shape `[C, H, W]` with values in `[0, 1]`.
    Image,
}

impl DataKind {
    /// `"points"` or `"image"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Points => "points",
            DataKind::Image => "image",
        }
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finite, random-access collection of examples of one fixed shape.
pub trait Dataset: Send + Sync {
    /// Short name, e.g. `"two-moons"`, `"mnist:train"`, `"folder:/data/cats"`.
    fn name(&self) -> &str;

    /// Number of examples.
    fn len(&self) -> usize;

    /// True when the dataset holds no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one example: `[2]` for 2-D points, `[C, H, W]` for images (values in `[0, 1]`).
    fn example_shape(&self) -> Vec<usize>;

    /// Writes example `i` (row-major f32) into `out`.
    ///
    /// Preconditions (checked by [`crate::make_batch`], the usual caller): `i < len()` and
    /// `out.len()` equals the product of [`Dataset::example_shape`]. Implementations may
    /// panic when they are violated, since this signature has no error channel.
    fn write_example(&self, i: usize, out: &mut [f32]);

    /// Class label of example `i`, if the dataset has labels.
    fn label(&self, i: usize) -> Option<u32> {
        let _ = i;
        None
    }

    /// Number of classes, if the dataset has labels (labels are `0..num_classes`).
    fn num_classes(&self) -> Option<usize> {
        None
    }

    /// Points or image.
    fn kind(&self) -> DataKind;
}
