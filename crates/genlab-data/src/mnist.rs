//! MNIST (LeCun, Cortes & Burges, 1998) read from its four IDX files.
//!
//! `Mnist::load(dir, split)` reads `{train,t10k}-images-idx3-ubyte` and
//! `{train,t10k}-labels-idx1-ubyte` from `dir`, each raw or with a `.gz` suffix. Images are
//! `[1, 28, 28]` with values `v / 255`; labels are 0..=9. Use [`crate::fetch_mnist`] to fill
//! the folder.

use std::fmt;
use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};

use crate::idx::{read_idx, IdxArray};
use crate::{DataKind, Dataset};

/// Image side in pixels.
const SIDE: usize = 28;
/// Number of classes.
const CLASSES: usize = 10;

/// Which half of MNIST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 60 000 training images.
    Train,
    /// 10 000 test images.
    Test,
}

impl Split {
    /// `"train"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// The file-name prefix: `"train"` or `"t10k"`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The raw (uncompressed) image and label file names of this split.
    pub fn file_names(self) -> (String, String) {
        let p = self.file_prefix();
        (
            format!("{p}-images-idx3-ubyte"),
            format!("{p}-labels-idx1-ubyte"),
        )
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One split of MNIST, held in memory as bytes.
#[derive(Clone, Debug)]
pub struct Mnist {
    name: String,
    /// `[N, 28, 28]` pixels 0..=255.
    images: Vec<u8>,
    /// `[N]` labels 0..=9.
    labels: Vec<u8>,
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::Data(format!(
        "MNIST file {} (or {}) not found; run `genlab data fetch mnist` to download it",
        raw.display(),
        gz.display()
    )))
}

impl Mnist {
    /// Loads one split from `dir`.
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Data(format!(
                "MNIST folder {} does not exist; run `genlab data fetch mnist` to download it",
                dir.display()
            )));
        }
        let (img_name, lbl_name) = split.file_names();
        let img_path = find_file(dir, &img_name)?;
        let lbl_path = find_file(dir, &lbl_name)?;
        let images = read_idx(&img_path)?;
        let labels = read_idx(&lbl_path)?;
        Self::from_idx(format!("mnist:{split}"), images, labels).map_err(|e| match e {
            Error::Data(m) => Error::Data(format!("{}: {m}", dir.display())),
            other => other,
        })
    }

    /// Builds a dataset from decoded image (`[N, 28, 28]`) and label (`[N]`) arrays.
    pub fn from_idx(name: String, images: IdxArray, labels: IdxArray) -> Result<Self> {
        if images.dims.len() != 3 || images.dims[1] != SIDE || images.dims[2] != SIDE {
            return Err(Error::Data(format!(
                "MNIST images have dimensions {:?}, expected [N, 28, 28]",
                images.dims
            )));
        }
        if labels.dims.len() != 1 {
            return Err(Error::Data(format!(
                "MNIST labels have dimensions {:?}, expected [N]",
                labels.dims
            )));
        }
        if images.dims[0] != labels.dims[0] {
            return Err(Error::Data(format!(
                "MNIST has {} images but {} labels, expected equal counts",
                images.dims[0], labels.dims[0]
            )));
        }
        if let Some((i, &l)) = labels
            .data
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= CLASSES)
        {
            return Err(Error::Data(format!(
                "MNIST label {i} is {l}, expected 0..=9"
            )));
        }
        Ok(Self {
            name,
            images: images.data,
            labels: labels.data,
        })
    }

    /// Number of examples of each class 0..=9.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut c = [0; CLASSES];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// The 784 raw pixels (0..=255) of image `i`.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn raw_pixels(&self, i: usize) -> &[u8] {
        &self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]
    }
}

impl Dataset for Mnist {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![1, SIDE, SIDE]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        for (o, &p) in out.iter_mut().zip(self.raw_pixels(i)) {
            *o = p as f32 / 255.0;
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.get(i).map(|&l| l as u32)
    }

    fn num_classes(&self) -> Option<usize> {
        Some(CLASSES)
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}
