//! The [`Dataset`] trait: random access to examples stored as row-major `f32`.
//!
//! Every dataset genlab trains on implements it: toy 2-D points (`[2]`), images
//! (`[C, H, W]`, values in `[0, 1]`) and video clips (`[T, C, H, W]`, values in `[0, 1]`). Examples are written into a caller-owned slice so
//! that [`crate::make_batch`] fills one contiguous buffer without per-example allocation.

use std::fmt;

use genlab_core::Rng;

/// What an example is: a point in the plane, an image or a video clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// A 2-D point, example shape `[2]`.
    Points,
    /// An image, example shape `[C, H, W]` with values in `[0, 1]`.
    Image,
    /// A video clip of `T` frames, example shape `[T, C, H, W]` with values in `[0, 1]`.
    Video,
}

impl DataKind {
    /// `"points"`, `"image"` or `"video"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Points => "points",
            DataKind::Image => "image",
            DataKind::Video => "video",
        }
    }

    /// Whether values live in `[0, 1]` (images and video) rather than being unbounded
    /// (points).
    pub fn is_unit_interval(self) -> bool {
        match self {
            DataKind::Points => false,
            DataKind::Image | DataKind::Video => true,
        }
    }

    /// The layout of one example as people read it: `[2]`, `[C, H, W]`, `[T, C, H, W]`.
    pub fn layout(self) -> &'static str {
        match self {
            DataKind::Points => "[2]",
            DataKind::Image => "[C, H, W]",
            DataKind::Video => "[T, C, H, W]",
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

    /// Shape of one example: `[2]` for 2-D points, `[C, H, W]` for images, `[T, C, H, W]`
    /// for video clips (values of both in `[0, 1]`).
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

    /// A caption of example `i` that says what it shows, if the dataset has them (Moving
    /// MNIST: "a 3 moving up and to the right").
    fn caption(&self, i: usize) -> Option<String> {
        let _ = i;
        None
    }

    /// A caption of example `i` drawn afresh for one training step: datasets with several
    /// wordings per example (the two-digit canvas: eight templates, numerals or words) draw
    /// one with `rng`; the default is the fixed [`Dataset::caption`]. Evaluation uses
    /// [`Dataset::caption`], so that a metric sees the same text every time.
    fn draw_caption(&self, i: usize, rng: &mut Rng) -> Option<String> {
        let _ = rng;
        self.caption(i)
    }

    /// A readable name of class `k` when the classes have names (an image folder's class
    /// sub-folders: "golden_retriever" reads "golden retriever"); `None` otherwise.
    fn class_name(&self, k: usize) -> Option<String> {
        let _ = k;
        None
    }

    /// Number of classes, if the dataset has labels (labels are `0..num_classes`).
    fn num_classes(&self) -> Option<usize> {
        None
    }

    /// Points, image or video.
    fn kind(&self) -> DataKind;
}
