//! MNIST (LeCun, Cortes & Burges, 1998) read from its four IDX files.
//!
//! `Mnist::load(dir, split)` reads `{train,t10k}-images-idx3-ubyte` and
//! `{train,t10k}-labels-idx1-ubyte` from `dir`, each raw or with a `.gz` suffix. Images are
//! `[1, 28, 28]` with values `v / 255`; labels are 0..=9. Use [`crate::fetch_mnist`] to fill
//! the folder.
//!
//! An `Mnist` is an [`IdxFolder`] (it dereferences to one) whose image size and classes are
//! checked: the folder layout, file names and parsing are those of `idx:PATH` datasets.

use std::ops::Deref;
use std::path::Path;

use genlab_core::Result;

pub use crate::idx_folder::Split;
use crate::idx_folder::{IdxExpect, IdxFolder};
use crate::{DataKind, Dataset};

/// What MNIST's files must hold.
const MNIST: IdxExpect = IdxExpect {
    what: "MNIST",
    side: Some([28, 28]),
    classes: Some(10),
    missing_hint: "; run `genlab data fetch mnist` to download it",
};

/// One split of MNIST, held in memory as bytes.
#[derive(Clone, Debug)]
pub struct Mnist(IdxFolder);

impl Mnist {
    /// Loads one split from `dir`, named `mnist:train` or `mnist:test`.
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        IdxFolder::load_with(dir, split, format!("mnist:{split}"), &MNIST).map(Self)
    }

    /// The split as a plain IDX folder dataset.
    pub fn into_inner(self) -> IdxFolder {
        self.0
    }
}

impl Deref for Mnist {
    type Target = IdxFolder;

    fn deref(&self) -> &IdxFolder {
        &self.0
    }
}

impl Dataset for Mnist {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        self.0.example_shape()
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        self.0.write_example(i, out)
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.0.label(i)
    }

    fn num_classes(&self) -> Option<usize> {
        self.0.num_classes()
    }

    fn kind(&self) -> DataKind {
        self.0.kind()
    }
}
