//! The dataset registry: every dataset genlab knows, what each one is, and how to open it
//! from a spec string.
//!
//! A spec is `NAME` or `NAME:ARG`: a toy 2-D name (`two-moons`, `eight-gaussians`, ...),
//! `digits`, `mnist` / `mnist:train` / `mnist:test`, `folder:PATH` for a folder of images,
//! `idx:PATH` / `idx:PATH:test` for a folder in MNIST's IDX layout ([`crate::idx_folder`]),
//! `moving-mnist[:train|test][,KEY=VALUE...]` for Moving MNIST clips ([`crate::moving_mnist`]).
//! Each [`DatasetEntry`] says, before any file is read, what its examples are
//! ([`DatasetInfo`]: kind, shape, labels, held-out split, and for 2-D sets the reference
//! density and mode layout), so callers ask these questions instead of comparing names.
//!
//! Adding a dataset: its file (a type implementing [`Dataset`]) and one entry in
//! [`DATASETS`].

use std::path::Path;

use genlab_core::{Error, Result};

use crate::idx_folder::{parse_spec, test_spec, IDX_PREFIX};
use crate::{
    data_dir, DataKind, Dataset, Digits, IdxFolder, ImageFolder, ImageFolderConfig, Mnist,
    ModeCoverage, Split, Toy2d, Toy2dKind,
};

/// Options of [`open_dataset`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenOptions {
    /// Number of points of a toy 2-D dataset.
    pub n_points: usize,
    /// Seed of toy 2-D datasets.
    pub seed: u64,
    /// Image side for datasets that resize (`folder:`; default 32). Fixed-size image
    /// datasets refuse another size rather than resize silently.
    pub image_size: Option<usize>,
    /// Channels (1 or 3) for datasets that convert (`folder:`; default 3); as `image_size`
    /// otherwise.
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

/// Mode coverage of 2-D samples for a distribution with isolated modes.
pub type CoverageFn = fn(&[[f32; 2]]) -> ModeCoverage;
/// Opens a dataset from its spec's argument.
pub type OpenFn = fn(Option<&str>, &OpenOptions) -> Result<Box<dyn Dataset>>;

/// What a dataset is, known from its spec without reading its files.
#[derive(Clone, Debug)]
pub struct DatasetInfo {
    /// Points or images.
    pub kind: DataKind,
    /// The example shape when the dataset fixes it (`[2]`, `[1, 28, 28]`); `None` when it
    /// depends on the files or the open options (image folders).
    pub shape: Option<Vec<usize>>,
    /// Whether examples carry class labels (`Some(true)`), never do (`Some(false)`), or
    /// it depends on the files (`None`: an image folder has them when it has sub-folders).
    pub labels: Option<bool>,
    /// Number of classes when fixed by the dataset.
    pub num_classes: Option<usize>,
    /// The spec of the held-out split that goes with this one (`mnist` -> `mnist:test`):
    /// where a trained model is evaluated and its likelihood measured by default.
    pub held_out: Option<String>,
    /// The exact log density (nats) of the data distribution at a 2-D point, where known.
    pub log_density: Option<fn([f64; 2]) -> f64>,
    /// How samples cover the distribution's modes (a mode-collapse measure), where it has
    /// isolated modes.
    pub mode_coverage: Option<CoverageFn>,
    /// Whether class `k` is the data of mode `k` of [`DatasetInfo::mode_coverage`] (eight
    /// gaussians), so that class-conditional samples can be checked against their mode.
    pub labels_are_modes: bool,
}

impl DatasetInfo {
    fn points() -> Self {
        Self {
            kind: DataKind::Points,
            shape: Some(vec![2]),
            labels: Some(false),
            num_classes: None,
            held_out: None,
            log_density: None,
            mode_coverage: None,
            labels_are_modes: false,
        }
    }

    fn images(shape: Option<Vec<usize>>, num_classes: Option<usize>) -> Self {
        Self {
            kind: DataKind::Image,
            labels: num_classes.map(|_| true),
            shape,
            num_classes,
            held_out: None,
            log_density: None,
            mode_coverage: None,
            labels_are_modes: false,
        }
    }
}

/// One registered dataset.
pub struct DatasetEntry {
    /// The spec's name (before any `:`).
    pub name: &'static str,
    /// The argument after `NAME:`, as users write it (`"train|test"`, `"PATH"`), if the
    /// dataset takes one.
    pub arg: Option<&'static str>,
    /// Whether the argument must be given.
    pub arg_required: bool,
    pub description: &'static str,
    /// What the dataset is, given its argument.
    pub info: fn(Option<&str>) -> Result<DatasetInfo>,
    /// Opens the dataset, given its argument.
    pub open: OpenFn,
}

impl DatasetEntry {
    /// How users write the spec: `mnist[:train|test]`, `folder:PATH`, `digits`.
    pub fn usage(&self) -> String {
        match (self.arg, self.arg_required) {
            (None, _) => self.name.to_string(),
            (Some(a), true) => format!("{}:{a}", self.name),
            (Some(a), false) => format!("{}[:{a}]", self.name),
        }
    }
}

fn no_arg(name: &str, arg: Option<&str>) -> Result<()> {
    match arg {
        None => Ok(()),
        Some(a) => Err(Error::InvalidInput(format!(
            "dataset `{name}` takes no argument, got `{name}:{a}`"
        ))),
    }
}

/// A toy 2-D set's info: plain points, plus the references eight gaussians has.
fn toy_info(kind: Toy2dKind) -> DatasetInfo {
    let mut info = DatasetInfo::points();
    info.labels = Some(kind.num_classes().is_some());
    info.num_classes = kind.num_classes();
    if kind == Toy2dKind::EightGaussians {
        info.log_density = Some(crate::eight_gaussians_log_density);
        info.mode_coverage = Some(crate::mode_coverage);
        info.labels_are_modes = true; // the label is the mode's index
    }
    info
}

fn open_toy(kind: Toy2dKind, arg: Option<&str>, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    no_arg(kind.name(), arg)?;
    if opts.n_points == 0 {
        return Err(Error::InvalidInput(format!(
            "{kind}: the number of points is 0, expected at least 1"
        )));
    }
    Ok(Box::new(Toy2d::new(kind, opts.n_points, opts.seed)))
}

/// MNIST's split from its argument (`train` by default).
fn mnist_split(arg: Option<&str>) -> Result<Split> {
    match arg {
        None | Some("train") => Ok(Split::Train),
        Some("test") => Ok(Split::Test),
        Some(other) => Err(Error::InvalidInput(format!(
            "unknown MNIST split `{other}`; expected train or test"
        ))),
    }
}

fn folder_path(arg: Option<&str>) -> Result<&Path> {
    match arg {
        Some(p) if !p.is_empty() => Ok(Path::new(p)),
        _ => Err(Error::InvalidInput(
            "folder: needs a path, e.g. folder:/data/flowers".into(),
        )),
    }
}

/// Errors when a fixed-shape image dataset is asked for another size or channel count.
fn check_fixed_shape(ds: Box<dyn Dataset>, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let shape = ds.example_shape();
    if let Some(c) = opts.channels.filter(|&c| c != shape[0]) {
        return Err(Error::InvalidInput(format!(
            "{} has {} channel(s), {c} were requested; only image folders are converted",
            ds.name(),
            shape[0]
        )));
    }
    if let Some(s) = opts.image_size.filter(|&s| s != shape[1]) {
        return Err(Error::InvalidInput(format!(
            "{} images are {}x{}, size {s} was requested; only image folders are resized",
            ds.name(),
            shape[1],
            shape[2]
        )));
    }
    Ok(ds)
}

/// One registry line for a toy 2-D set.
macro_rules! toy {
    ($kind:expr) => {
        DatasetEntry {
            name: $kind.name(),
            arg: None,
            arg_required: false,
            description: $kind.description(),
            info: |_| Ok(toy_info($kind)),
            open: |arg, o| open_toy($kind, arg, o),
        }
    };
}

/// Every dataset genlab knows, in the order `genlab list` shows them.
pub const DATASETS: &[DatasetEntry] = &[
    toy!(Toy2dKind::TwoMoons),
    toy!(Toy2dKind::Rings),
    toy!(Toy2dKind::SwissRoll),
    toy!(Toy2dKind::EightGaussians),
    toy!(Toy2dKind::Checkerboard),
    toy!(Toy2dKind::Pinwheel),
    DatasetEntry {
        name: "digits",
        arg: None,
        arg_required: false,
        description: "8x8 handwritten digits, 1797 images, 10 classes (embedded, no download)",
        info: |arg| {
            no_arg("digits", arg)?;
            Ok(DatasetInfo::images(Some(vec![1, 8, 8]), Some(10)))
        },
        open: |arg, o| {
            no_arg("digits", arg)?;
            check_fixed_shape(Box::new(Digits::load()?), o)
        },
    },
    DatasetEntry {
        name: "mnist",
        arg: Some("train|test"),
        arg_required: false,
        description: "MNIST, 60000 training / 10000 test 28x28 digits (genlab data fetch mnist)",
        info: |arg| {
            let mut info = DatasetInfo::images(Some(vec![1, 28, 28]), Some(10));
            if mnist_split(arg)? == Split::Train {
                info.held_out = Some("mnist:test".into());
            }
            Ok(info)
        },
        open: |arg, o| {
            let dir = data_dir().join(crate::fetch::MNIST_SUBDIR);
            check_fixed_shape(Box::new(Mnist::load(&dir, mnist_split(arg)?)?), o)
        },
    },
    DatasetEntry {
        name: "mnist-pairs",
        arg: Some("train|test"),
        arg_required: false,
        description: "two MNIST digits side by side, 1x28x56, label 10*left+right (100 classes), \
                      60000 / 10000 canvases with captions (genlab data fetch mnist)",
        info: crate::pairs::mnist_pairs_info,
        open: crate::pairs::open_mnist_pairs,
    },
    DatasetEntry {
        name: "moving-mnist",
        arg: Some("train|test,KEY=VALUE..."),
        arg_required: false,
        description: "Moving MNIST video (Srivastava et al. 2015): MNIST digits bouncing in the \
                      frame, [T, 1, S, S] clips, label = first digit, captions with direction; \
                      default 8 frames, 32x32, 1 digit; keys frames, digits, digit_size, size, \
                      speed=MIN..MAX, clips, seed (genlab data fetch mnist)",
        info: crate::moving_mnist::moving_mnist_info,
        open: crate::moving_mnist::open_moving_mnist,
    },
    DatasetEntry {
        name: "folder",
        arg: Some("PATH"),
        arg_required: true,
        description: "PNG/JPEG images in PATH (sub-folders = classes), resized and centre-cropped \
                      (default 32x32 RGB)",
        info: |arg| {
            folder_path(arg)?;
            Ok(DatasetInfo::images(None, None))
        },
        open: |arg, o| {
            let defaults = ImageFolderConfig::default();
            let cfg = ImageFolderConfig {
                size: o.image_size.unwrap_or(defaults.size),
                channels: o.channels.unwrap_or(defaults.channels),
            };
            Ok(Box::new(ImageFolder::load(folder_path(arg)?, cfg)?))
        },
    },
    DatasetEntry {
        name: "idx",
        arg: Some("PATH[:test]"),
        arg_required: true,
        description: "the four IDX files in PATH, laid out as MNIST's (Fashion-MNIST, EMNIST, \
                      ...), raw or gzipped; PATH:test is the test split",
        info: |arg| {
            let spec = format!("{IDX_PREFIX}{}", arg.unwrap_or_default());
            parse_spec(&spec)?;
            let mut info = DatasetInfo::images(None, None);
            info.labels = Some(true);
            info.held_out = test_spec(&spec);
            Ok(info)
        },
        open: |arg, o| {
            let spec = format!("{IDX_PREFIX}{}", arg.unwrap_or_default());
            check_fixed_shape(Box::new(IdxFolder::open_spec(&spec)?), o)
        },
    },
    DatasetEntry {
        name: "glyphs",
        arg: None,
        arg_required: false,
        description: "characters of many scripts rendered from installed fonts by 20 seeded \
                      \"drawers\", 28x28, alphabets recorded (genlab data make glyphs)",
        info: |arg| {
            no_arg("glyphs", arg)?;
            let mut info = DatasetInfo::images(Some(vec![1, 28, 28]), None);
            info.labels = Some(true); // the character classes; their count depends on the fonts
            Ok(info)
        },
        open: |arg, o| {
            no_arg("glyphs", arg)?;
            let dir = crate::glyphs::glyphs_dir(&data_dir());
            check_fixed_shape(Box::new(crate::Glyphs::load(&dir)?.into_images()), o)
        },
    },
    DatasetEntry {
        name: "omniglot",
        arg: None,
        arg_required: false,
        description: "Omniglot, 1623 characters of 50 alphabets, 20 drawings each, 28x28 \
                      (genlab data fetch omniglot)",
        info: |arg| {
            no_arg("omniglot", arg)?;
            Ok(DatasetInfo::images(Some(vec![1, 28, 28]), Some(1623)))
        },
        open: |arg, o| {
            no_arg("omniglot", arg)?;
            let dir = data_dir().join(crate::omniglot::OMNIGLOT_SUBDIR);
            check_fixed_shape(
                Box::new(crate::omniglot::Omniglot::load(&dir)?.into_images()),
                o,
            )
        },
    },
];

/// Splits a spec into its registry entry and argument; an unknown name lists the known
/// ones.
pub fn find_dataset(spec: &str) -> Result<(&'static DatasetEntry, Option<&str>)> {
    let spec = spec.trim();
    let (name, arg) = match spec.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (spec, None),
    };
    let entry = DATASETS
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::unknown("dataset", spec, DATASETS.iter().map(DatasetEntry::usage)))?;
    if entry.arg_required && arg.is_none() {
        return Err(Error::InvalidInput(format!(
            "dataset `{name}` needs an argument: {}",
            entry.usage()
        )));
    }
    Ok((entry, arg))
}

/// What the dataset named by `spec` is, without reading its files.
pub fn dataset_info(spec: &str) -> Result<DatasetInfo> {
    let (entry, arg) = find_dataset(spec)?;
    (entry.info)(arg)
}

/// Every dataset's spec usage (`mnist[:train|test]`, `folder:PATH`) with a one-line
/// description.
pub fn dataset_names() -> Vec<(String, &'static str)> {
    DATASETS
        .iter()
        .map(|e| (e.usage(), e.description))
        .collect()
}

/// Opens the dataset named by `spec`; unknown specs give an error listing the valid ones.
pub fn open_dataset(spec: &str, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let (entry, arg) = find_dataset(spec)?;
    (entry.open)(arg, opts)
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
        let e = open_dataset("folder", &OpenOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("folder:PATH"), "{e}");
        let zero = OpenOptions {
            n_points: 0,
            ..Default::default()
        };
        assert!(open_dataset("rings", &zero).is_err());
        assert!(open_dataset("rings:3", &OpenOptions::default()).is_err());
        let e = dataset_info("mnist:validation").unwrap_err().to_string();
        assert!(
            e.contains("validation") && e.contains("train or test"),
            "{e}"
        );
        let names: Vec<String> = dataset_names().into_iter().map(|n| n.0).collect();
        assert!(names.contains(&"mnist[:train|test]".to_string()));
        assert!(names.contains(&"pinwheel".to_string()));
    }

    #[test]
    fn infos_answer_what_the_callers_ask() {
        let eight = dataset_info("eight-gaussians").unwrap();
        assert_eq!(eight.kind, DataKind::Points);
        assert_eq!(eight.shape, Some(vec![2]));
        // The registry's density and coverage are the eight-gaussians functions.
        let p = [2.0, 0.0];
        assert_eq!(
            (eight.log_density.unwrap())(p),
            crate::eight_gaussians_log_density(p)
        );
        let pts = [[2.0f32, 0.0], [0.0, 2.0], [9.0, 9.0]];
        assert_eq!(
            (eight.mode_coverage.unwrap())(&pts),
            crate::mode_coverage(&pts)
        );
        let rings = dataset_info("rings").unwrap();
        assert!(rings.log_density.is_none() && rings.mode_coverage.is_none());
        assert_eq!(
            dataset_info("mnist").unwrap().held_out.as_deref(),
            Some("mnist:test")
        );
        assert_eq!(
            dataset_info("mnist:train").unwrap().held_out.as_deref(),
            Some("mnist:test")
        );
        assert!(dataset_info("mnist:test").unwrap().held_out.is_none());
        assert_eq!(
            dataset_info("idx:some/dir").unwrap().held_out.as_deref(),
            Some("idx:some/dir:test")
        );
        assert!(dataset_info("idx:some/dir:test")
            .unwrap()
            .held_out
            .is_none());
        assert!(dataset_info("idx:").is_err());
        let digits = dataset_info("digits").unwrap();
        assert_eq!(
            (digits.kind, digits.shape, digits.num_classes),
            (DataKind::Image, Some(vec![1, 8, 8]), Some(10))
        );
        // Every entry's info agrees with what its opened dataset reports.
        for spec in ["two-moons", "eight-gaussians", "digits"] {
            let info = dataset_info(spec).unwrap();
            let ds = open_dataset(
                spec,
                &OpenOptions {
                    n_points: 4,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(info.kind, ds.kind(), "{spec}");
            assert_eq!(info.shape, Some(ds.example_shape()), "{spec}");
            assert_eq!(info.num_classes, ds.num_classes(), "{spec}");
        }
    }
}
