//! A folder of IDX files in MNIST's four-file layout: the `idx:PATH` datasets
//! (Fashion-MNIST, KMNIST, EMNIST, ... or any data set saved that way) and MNIST itself
//! ([`crate::Mnist`] is an `IdxFolder` with MNIST's sizes checked).
//!
//! The folder holds, each raw or with a `.gz` suffix:
//!
//! | split | images                   | labels                   |
//! |-------|--------------------------|--------------------------|
//! | train | `train-images-idx3-ubyte` | `train-labels-idx1-ubyte` |
//! | test  | `t10k-images-idx3-ubyte`  | `t10k-labels-idx1-ubyte`  |
//!
//! Also accepted: `test` for `t10k`, a `.` for the `-` before `idx` (`train-images.idx3-ubyte`)
//! and any prefix ending in `-` (EMNIST's `emnist-letters-train-images-idx3-ubyte.gz`). A folder
//! must hold one file of each role; when the raw and the gzipped file are both there, the raw
//! one is read.
//!
//! Images are `[N, H, W]` unsigned bytes of any size (the header says which), given as
//! `[1, H, W]` with values `v / 255`; labels are `[N]`. Without a fixed class count (the
//! `idx:` datasets) both splits' labels are read and the class count is one more than the
//! largest label of either, so the train and test splits agree on it; the other split's
//! images must have the same size. (EMNIST's images are stored transposed; they are given as
//! stored.)
//!
//! Specs: `idx:PATH` and `idx:PATH:train` open the train split, `idx:PATH:test` the test
//! split (see [`IdxFolder::open_spec`]).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};

use crate::idx::{read_idx, read_idx_header};
use crate::{DataKind, Dataset};

/// Prefix of `idx:PATH` dataset specs.
pub const IDX_PREFIX: &str = "idx:";

/// Which half of an IDX folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training images (MNIST: 60 000).
    Train,
    /// The held-out test images (MNIST: 10 000).
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

    /// The canonical file-name prefix: `"train"` or `"t10k"`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The canonical raw (uncompressed) image and label file names of this split.
    pub fn file_names(self) -> (String, String) {
        (Role::Images.canonical(self), Role::Labels.canonical(self))
    }

    /// Every accepted file-name prefix of this split.
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Split::Train => &["train"],
            Split::Test => &["t10k", "test"],
        }
    }

    fn other(self) -> Split {
        match self {
            Split::Train => Split::Test,
            Split::Test => Split::Train,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one file of a split holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Images,
    Labels,
}

impl Role {
    /// The name after the split prefix, with `-` before `idx`: `images-idx3-ubyte`.
    fn suffix(self) -> &'static str {
        match self {
            Role::Images => "images-idx3-ubyte",
            Role::Labels => "labels-idx1-ubyte",
        }
    }

    fn canonical(self, split: Split) -> String {
        format!("{}-{}", split.file_prefix(), self.suffix())
    }

    fn noun(self) -> &'static str {
        match self {
            Role::Images => "images",
            Role::Labels => "labels",
        }
    }
}

/// What a folder must hold beyond the layout.
#[derive(Clone, Debug)]
pub(crate) struct IdxExpect {
    /// What the data is called in errors: `"MNIST"`, `"IDX"`.
    pub what: &'static str,
    /// Image height and width, when fixed.
    pub side: Option<[usize; 2]>,
    /// Number of classes, when fixed (labels must be below it). When `None`, both splits'
    /// labels are read and the count is one more than the largest label.
    pub classes: Option<usize>,
    /// Appended to the message for a missing folder or file (e.g. how to download it).
    pub missing_hint: &'static str,
}

/// What `idx:PATH` datasets must hold: any image size, classes from the labels.
const ANY_IDX: IdxExpect = IdxExpect {
    what: "IDX",
    side: None,
    classes: None,
    missing_hint: "",
};

/// One split of an IDX folder, held in memory as bytes.
#[derive(Clone, Debug)]
pub struct IdxFolder {
    name: String,
    /// Image height and width.
    side: [usize; 2],
    /// `[N, H, W]` pixels 0..=255.
    images: Vec<u8>,
    /// `[N]` labels, each below `num_classes`.
    labels: Vec<u8>,
    num_classes: usize,
}

/// True when `name` (without `.gz`) is the `role` file of `split`: `PREFIX-ROLE-idxK-ubyte`,
/// `PREFIX-ROLE.idxK-ubyte`, either after any `SOMETHING-`.
fn names_role(name: &str, split: Split, role: Role) -> bool {
    let base = name.strip_suffix(".gz").unwrap_or(name);
    let base = base.replacen(".idx", "-idx", 1);
    split.prefixes().iter().any(|p| {
        let want = format!("{p}-{}", role.suffix());
        base == want || base.ends_with(&format!("-{want}"))
    })
}

/// The one `role` file of `split` in `dir`; the raw file wins over its `.gz`.
fn find_file(dir: &Path, split: Split, role: Role, expect: &IdxExpect) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list the IDX folder", dir, e))?;
    let mut found: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the IDX folder", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if names_role(&name, split, role) && entry.path().is_file() {
            found.push(name);
        }
    }
    found.sort();
    // A raw file and its gzipped copy are one file.
    let raw: Vec<&String> = found.iter().filter(|n| !n.ends_with(".gz")).collect();
    let distinct = found
        .iter()
        .filter(|n| {
            n.strip_suffix(".gz")
                .is_none_or(|r| !found.iter().any(|m| m == r))
        })
        .count();
    match (distinct, raw.first()) {
        (1, Some(r)) => Ok(dir.join(r)),
        (1, None) => Ok(dir.join(&found[0])),
        (0, _) => {
            let c = role.canonical(split);
            Err(Error::Data(format!(
                "{} folder {}: no {split} {} file, expected {c} or {c}.gz{}",
                expect.what,
                dir.display(),
                role.noun(),
                expect.missing_hint
            )))
        }
        _ => Err(Error::Data(format!(
            "{} folder {}: {} files could be the {split} {} ({}), expected one; \
             keep each data set in a folder of its own",
            expect.what,
            dir.display(),
            distinct,
            role.noun(),
            found.join(", ")
        ))),
    }
}

/// Reads only the dimensions of an IDX file (raw or gzipped) from its first bytes.
fn read_dims(path: &Path) -> Result<Vec<usize>> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| Error::io("reading IDX file", path, e))?;
    read_idx_header(&head).map_err(|e| match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Checks that `images` (from `img`) are `[N, H, W]` of the expected size, `labels` (from
/// `lbl`) are `[N]` and there is at least one; returns `[H, W]`.
fn check_pair(
    expect: &IdxExpect,
    split: Split,
    (img, images): (&Path, &[usize]),
    (lbl, labels): (&Path, &[usize]),
) -> Result<[usize; 2]> {
    let want = match expect.side {
        Some([h, w]) => format!("[N, {h}, {w}]"),
        None => "[N, H, W] with H, W > 0".to_string(),
    };
    let side = match *images {
        [_, h, w] if h > 0 && w > 0 && expect.side.is_none_or(|s| s == [h, w]) => [h, w],
        _ => {
            return Err(Error::Data(format!(
                "{}: {} images have dimensions {images:?}, expected {want}",
                img.display(),
                expect.what
            )))
        }
    };
    if labels.len() != 1 {
        return Err(Error::Data(format!(
            "{}: {} labels have dimensions {labels:?}, expected [N]",
            lbl.display(),
            expect.what
        )));
    }
    if images[0] != labels[0] {
        return Err(Error::Data(format!(
            "{} {split} split has {} images but {} labels ({} and {}), expected equal counts",
            expect.what,
            images[0],
            labels[0],
            img.display(),
            lbl.display()
        )));
    }
    if images[0] == 0 {
        return Err(Error::Data(format!(
            "{}: holds no images, expected at least one",
            img.display()
        )));
    }
    Ok(side)
}

/// Errors when a label of `labels` (from `path`) is `classes` or more.
fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::Data(format!(
            "{}: label {i} is {}, expected 0..={}",
            path.display(),
            labels[i],
            classes - 1
        ))),
    }
}

impl IdxFolder {
    /// Opens `split` of the IDX folder `dir` (any image size; the class count comes from the
    /// labels of both splits). Named like its spec: `idx:PATH` or `idx:PATH:test`.
    pub fn open(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let dir = dir.as_ref();
        let name = match split {
            Split::Train => format!("{IDX_PREFIX}{}", dir.display()),
            Split::Test => format!("{IDX_PREFIX}{}:test", dir.display()),
        };
        Self::load_with(dir, split, name, &ANY_IDX)
    }

    /// Opens the dataset of an `idx:PATH`, `idx:PATH:train` or `idx:PATH:test` spec.
    pub fn open_spec(spec: &str) -> Result<Self> {
        let (dir, split) = parse_spec(spec)?;
        Self::open(dir, split)
    }

    /// Loads `split` from `dir` as the dataset `name`, checked against `expect`.
    pub(crate) fn load_with(
        dir: &Path,
        split: Split,
        name: String,
        expect: &IdxExpect,
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Data(format!(
                "{} folder {} does not exist{}",
                expect.what,
                dir.display(),
                expect.missing_hint
            )));
        }
        let img_path = find_file(dir, split, Role::Images, expect)?;
        let lbl_path = find_file(dir, split, Role::Labels, expect)?;
        let images = read_idx(&img_path)?;
        let labels = read_idx(&lbl_path)?;
        let side = check_pair(
            expect,
            split,
            (&img_path, &images.dims),
            (&lbl_path, &labels.dims),
        )?;
        let num_classes = match expect.classes {
            Some(c) => c,
            None => {
                // The held-out split: same image size, and its labels count towards the
                // classes, so both splits report one class count.
                let other = split.other();
                let o_img = find_file(dir, other, Role::Images, expect)?;
                let o_lbl = find_file(dir, other, Role::Labels, expect)?;
                let o_labels = read_idx(&o_lbl)?;
                let o_side = check_pair(
                    expect,
                    other,
                    (&o_img, &read_dims(&o_img)?),
                    (&o_lbl, &o_labels.dims),
                )?;
                if o_side != side {
                    return Err(Error::Data(format!(
                        "{} folder {}: {split} images are {}x{} but {other} images are {}x{}, \
                         expected one size",
                        expect.what,
                        dir.display(),
                        side[0],
                        side[1],
                        o_side[0],
                        o_side[1]
                    )));
                }
                let max = labels.data.iter().chain(&o_labels.data).max();
                max.map_or(0, |&m| m as usize + 1)
            }
        };
        check_labels(&lbl_path, &labels.data, num_classes)?;
        Ok(Self {
            name,
            side,
            images: images.data,
            labels: labels.data,
            num_classes,
        })
    }

    /// Image height and width.
    pub fn side(&self) -> [usize; 2] {
        self.side
    }

    /// Number of examples of each class `0..num_classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// The `H * W` raw pixels (0..=255) of image `i`.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn raw_pixels(&self, i: usize) -> &[u8] {
        let n = self.side[0] * self.side[1];
        &self.images[i * n..(i + 1) * n]
    }
}

/// Splits an `idx:PATH`, `idx:PATH:train` or `idx:PATH:test` spec into folder and split.
pub fn parse_spec(spec: &str) -> Result<(PathBuf, Split)> {
    let Some(rest) = spec.strip_prefix(IDX_PREFIX) else {
        return Err(Error::InvalidInput(format!(
            "{spec:?} is not an IDX folder spec, expected {IDX_PREFIX}PATH or {IDX_PREFIX}PATH:test"
        )));
    };
    let (path, split) = if let Some(p) = rest.strip_suffix(":test") {
        (p, Split::Test)
    } else if let Some(p) = rest.strip_suffix(":train") {
        (p, Split::Train)
    } else {
        (rest, Split::Train)
    };
    if path.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{spec:?} names no folder, expected {IDX_PREFIX}PATH or {IDX_PREFIX}PATH:test, \
             e.g. {IDX_PREFIX}/data/fashion-mnist:test"
        )));
    }
    Ok((PathBuf::from(path), split))
}

/// The held-out spec matching an `idx:` training spec (`idx:PATH` or `idx:PATH:train` give
/// `idx:PATH:test`); `None` for other specs and for test specs.
pub fn test_spec(spec: &str) -> Option<String> {
    match parse_spec(spec).ok()? {
        (path, Split::Train) => Some(format!("{IDX_PREFIX}{}:test", path.display())),
        (_, Split::Test) => None,
    }
}

impl Dataset for IdxFolder {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![1, self.side[0], self.side[1]]
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
        Some(self.num_classes)
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_of_mnist_fashion_and_emnist_are_recognised() {
        let yes = [
            ("train-images-idx3-ubyte", Split::Train, Role::Images),
            ("train-images-idx3-ubyte.gz", Split::Train, Role::Images),
            ("train-images.idx3-ubyte", Split::Train, Role::Images),
            ("t10k-labels-idx1-ubyte.gz", Split::Test, Role::Labels),
            ("test-labels-idx1-ubyte", Split::Test, Role::Labels),
            (
                "emnist-letters-test-images-idx3-ubyte.gz",
                Split::Test,
                Role::Images,
            ),
            (
                "emnist-balanced-train-labels-idx1-ubyte",
                Split::Train,
                Role::Labels,
            ),
        ];
        for (n, s, r) in yes {
            assert!(names_role(n, s, r), "{n} should be the {s} {r:?}");
        }
        let no = [
            ("train-images-idx3-ubyte", Split::Test, Role::Images),
            ("train-images-idx3-ubyte", Split::Train, Role::Labels),
            ("t10k-images-idx3-ubyte", Split::Train, Role::Images),
            ("mytrain-images-idx3-ubyte", Split::Train, Role::Images),
            ("train-images-idx3-ubyte.zip", Split::Train, Role::Images),
            ("README", Split::Train, Role::Images),
        ];
        for (n, s, r) in no {
            assert!(!names_role(n, s, r), "{n} is not the {s} {r:?}");
        }
    }

    #[test]
    fn specs_name_folder_and_split() {
        let p = |s: &str| parse_spec(s).unwrap();
        assert_eq!(p("idx:/d/f"), (PathBuf::from("/d/f"), Split::Train));
        assert_eq!(p("idx:/d/f:train"), (PathBuf::from("/d/f"), Split::Train));
        assert_eq!(p("idx:/d/f:test"), (PathBuf::from("/d/f"), Split::Test));
        assert_eq!(p("idx:rel:test"), (PathBuf::from("rel"), Split::Test));
        for bad in ["idx:", "idx::test", "idx::train", "mnist"] {
            let e = parse_spec(bad).unwrap_err().to_string();
            assert!(e.contains("idx:PATH:test"), "{bad}: {e}");
        }
        assert_eq!(test_spec("idx:/d/f").as_deref(), Some("idx:/d/f:test"));
        assert_eq!(
            test_spec("idx:/d/f:train").as_deref(),
            Some("idx:/d/f:test")
        );
        assert_eq!(test_spec("idx:/d/f:test"), None);
        assert_eq!(test_spec("mnist"), None);
    }
}
