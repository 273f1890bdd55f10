//! The dataset registry: turns a spec string into a dataset.
//!
//! Specs: a toy 2-D name (`two-moons`, `rings`, ...), `digits`, `mnist` (= `mnist:train`),
//! `mnist:test`, `folder:PATH` for a folder of images, or `idx:PATH` / `idx:PATH:test` for a
//! folder in MNIST's IDX layout ([`crate::idx_folder`]). MNIST is read from
//! `data_dir()/mnist` (see [`crate::fetch_mnist`]).

use std::path::Path;

use genlab_core::{Error, Result};

use crate::{
    data_dir, Dataset, Digits, IdxFolder, ImageFolder, ImageFolderConfig, Mnist, Split, Toy2d,
    Toy2dKind,
};

/// Options of [`open_dataset`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenOptions {
    /// Number of points of a toy 2-D dataset.
    pub n_points: usize,
    /// Seed of toy 2-D datasets.
    pub seed: u64,
    /// Image side for `folder:` datasets (default 32). Other image datasets have a fixed
    /// size: giving a different one is an error rather than a silent resize.
    pub image_size: Option<usize>,
    /// Channels (1 or 3) for `folder:` datasets (default 3); as `image_size` otherwise.
    pub channels: Option<usize>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            // 100k points: enough that a toy model sees fresh points for many epochs.
            n_points: 100_000,
            seed: 0,
            image_size: None,
            channels: None,
        }
    }
}

/// Prefix of image-folder specs.
const FOLDER_PREFIX: &str = "folder:";

/// Every accepted spec (the folder one as a pattern) with a one-line description.
pub fn dataset_names() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&'static str, &'static str)> = Toy2dKind::ALL
        .iter()
        .map(|k| (k.name(), k.description()))
        .collect();
    v.extend([
        (
            "digits",
            "8x8 handwritten digits, 1797 images, 10 classes (embedded, no download)",
        ),
        (
            "mnist",
            "MNIST training set, 60000 28x28 digits (same as mnist:train)",
        ),
        ("mnist:train", "MNIST training set, 60000 28x28 digits"),
        ("mnist:test", "MNIST test set, 10000 28x28 digits"),
        (
            "folder:PATH",
            "PNG/JPEG images in PATH (sub-folders = classes), resized and centre-cropped",
        ),
        (
            "idx:PATH",
            "IDX files in PATH laid out as MNIST's (Fashion-MNIST, ...); idx:PATH:test = test split",
        ),
    ]);
    v
}

/// Errors when a fixed-shape image dataset is asked for another size or channel count.
fn check_fixed_shape(ds: &dyn Dataset, opts: &OpenOptions) -> Result<()> {
    let shape = ds.example_shape();
    if let Some(c) = opts.channels.filter(|&c| c != shape[0]) {
        return Err(Error::InvalidInput(format!(
            "{} has {} channel(s), {c} were requested; only folder: datasets are converted",
            ds.name(),
            shape[0]
        )));
    }
    if let Some(s) = opts.image_size.filter(|&s| s != shape[1]) {
        return Err(Error::InvalidInput(format!(
            "{} images are {}x{}, size {s} was requested; only folder: datasets are resized",
            ds.name(),
            shape[1],
            shape[2]
        )));
    }
    Ok(())
}

/// Opens the dataset named by `spec`; unknown specs give an error listing the valid ones.
pub fn open_dataset(spec: &str, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let spec = spec.trim();
    if let Some(path) = spec.strip_prefix(FOLDER_PREFIX) {
        if path.is_empty() {
            return Err(Error::InvalidInput(
                "folder: needs a path, e.g. folder:/data/flowers".into(),
            ));
        }
        let defaults = ImageFolderConfig::default();
        let cfg = ImageFolderConfig {
            size: opts.image_size.unwrap_or(defaults.size),
            channels: opts.channels.unwrap_or(defaults.channels),
        };
        return Ok(Box::new(ImageFolder::load(Path::new(path), cfg)?));
    }
    if let Ok(kind) = spec.parse::<Toy2dKind>() {
        if opts.n_points == 0 {
            return Err(Error::InvalidInput(format!(
                "{spec}: n_points is 0, expected at least 1"
            )));
        }
        return Ok(Box::new(Toy2d::new(kind, opts.n_points, opts.seed)));
    }
    let ds: Box<dyn Dataset> = match spec {
        "digits" => Box::new(Digits::load()?),
        "mnist" | "mnist:train" | "mnist:test" => {
            let split = if spec == "mnist:test" {
                Split::Test
            } else {
                Split::Train
            };
            let dir = data_dir().join(crate::fetch::MNIST_SUBDIR);
            Box::new(Mnist::load(&dir, split)?)
        }
        _ if spec.starts_with(crate::idx_folder::IDX_PREFIX) => {
            Box::new(IdxFolder::open_spec(spec)?)
        }
        _ => {
            let names: Vec<&str> = dataset_names().into_iter().map(|(n, _)| n).collect();
            return Err(Error::InvalidInput(format!(
                "unknown dataset {spec:?}; expected one of: {}",
                names.join(", ")
            )));
        }
    };
    check_fixed_shape(ds.as_ref(), opts)?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataKind;

    #[test]
    fn toy_and_digits_open_by_name() {
        let opts = OpenOptions {
            n_points: 10,
            seed: 1,
            ..Default::default()
        };
        let ds = open_dataset("eight-gaussians", &opts).unwrap();
        assert_eq!((ds.len(), ds.kind()), (10, DataKind::Points));
        let d = open_dataset("digits", &OpenOptions::default()).unwrap();
        assert_eq!(d.example_shape(), vec![1, 8, 8]);
        let d = open_dataset(
            "digits",
            &OpenOptions {
                image_size: Some(8),
                channels: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(d.len(), 1797);
    }

    #[test]
    fn unknown_and_mismatched_specs_explain_themselves() {
        let e = open_dataset("cifar10", &OpenOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cifar10") && e.contains("two-moons") && e.contains("folder:PATH"));
        let e = open_dataset(
            "digits",
            &OpenOptions {
                image_size: Some(32),
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("8x8") && e.contains("32"), "{e}");
        let e = open_dataset("folder:", &OpenOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs a path"), "{e}");
        let zero = OpenOptions {
            n_points: 0,
            ..Default::default()
        };
        assert!(open_dataset("rings", &zero).is_err());
        let names: Vec<&str> = dataset_names().iter().map(|n| n.0).collect();
        assert!(names.contains(&"mnist:test") && names.contains(&"pinwheel"));
    }
}
