//! IDX parsing against real MNIST headers (committed fixtures), synthetic MNIST folders and
//! synthetic `idx:PATH` folders of other sizes and names.

use std::io::Write;
use std::path::{Path, PathBuf};

use genlab_data::idx::encode_idx;
use genlab_data::{
    open_dataset, parse_idx, read_idx, read_idx_header, Dataset, IdxFolder, Mnist, OpenOptions,
    Split,
};

/// Real train-set class counts (from DATA.md).
const TRAIN_CLASS_COUNTS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
/// Real first ten train labels.
const FIRST_TRAIN_LABELS: [u8; 10] = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4];

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn real_headers_give_mnist_dimensions() {
    let h = fixture("train-images-idx3-ubyte.header");
    assert_eq!(read_idx_header(&h).unwrap(), vec![60000, 28, 28]);
    let h = fixture("t10k-images-idx3-ubyte.header");
    assert_eq!(read_idx_header(&h).unwrap(), vec![10000, 28, 28]);
    let h = fixture("t10k-labels-idx1-ubyte.header");
    assert_eq!(read_idx_header(&h).unwrap(), vec![10000]);
    let l = fixture("train-labels-idx1-ubyte.head18");
    assert_eq!(read_idx_header(&l).unwrap(), vec![60000]);
    assert_eq!(&l[8..], &FIRST_TRAIN_LABELS);
}

#[test]
fn real_header_with_cut_data_is_rejected_as_truncated() {
    let l = fixture("train-labels-idx1-ubyte.head18");
    let e = parse_idx(&l).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains("need 60000") && e.contains("found 10"),
        "{e}"
    );
    let h = fixture("train-images-idx3-ubyte.header");
    let e = parse_idx(&h).unwrap_err().to_string();
    assert!(e.contains("need 47040000") && e.contains("found 0"), "{e}");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes `images` (`dims` = `[N, H, W]`) and `labels` as `dir/{image_name}` and
/// `dir/{label_name}`, gzipped when `gzip` (the names then get `.gz`).
fn write_idx_pair(
    dir: &Path,
    (image_name, label_name): (&str, &str),
    dims: &[usize],
    images: &[u8],
    labels: &[u8],
    gzip: bool,
) {
    let img = encode_idx(dims, images).unwrap();
    let lbl = encode_idx(&[labels.len()], labels).unwrap();
    let (suffix, img, lbl) = if gzip {
        (".gz", gz(&img), gz(&lbl))
    } else {
        ("", img, lbl)
    };
    std::fs::write(dir.join(format!("{image_name}{suffix}")), img).unwrap();
    std::fs::write(dir.join(format!("{label_name}{suffix}")), lbl).unwrap();
}

/// Writes a synthetic split of `n` images (pixel = image index) and labels `i % 10`.
fn write_split(dir: &Path, prefix: &str, n: usize, n_labels: usize, gzip: bool) {
    let images: Vec<u8> = (0..n * 784).map(|k| (k / 784) as u8).collect();
    let labels: Vec<u8> = (0..n_labels).map(|i| (i % 10) as u8).collect();
    let names = (
        &format!("{prefix}-images-idx3-ubyte")[..],
        &format!("{prefix}-labels-idx1-ubyte")[..],
    );
    write_idx_pair(dir, names, &[n, 28, 28], &images, &labels, gzip);
}

#[test]
fn synthetic_mnist_folder_loads_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 3, 3, false);
    write_split(dir.path(), "t10k", 2, 2, true);
    let train = Mnist::load(dir.path(), Split::Train).unwrap();
    assert_eq!(train.name(), "mnist:train");
    assert_eq!((train.len(), train.example_shape()), (3, vec![1, 28, 28]));
    assert_eq!(train.label(2), Some(2));
    let mut out = vec![0f32; 784];
    train.write_example(2, &mut out);
    assert!(out.iter().all(|&v| v == 2.0 / 255.0));
    let test = Mnist::load(dir.path(), Split::Test).unwrap();
    assert_eq!((test.name(), test.len()), ("mnist:test", 2));
    assert_eq!(test.num_classes(), Some(10));
    let a = read_idx(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(a.dims, vec![2]);
}

#[test]
fn count_mismatch_wrong_shape_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 3, 4, false);
    let e = Mnist::load(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 images but 4 labels"), "{e}");

    let e = Mnist::load(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("genlab data fetch mnist"),
        "{e}"
    );

    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("train-images-idx3-ubyte"),
        encode_idx(&[2, 8, 8], &[0; 128]).unwrap(),
    )
    .unwrap();
    std::fs::write(
        other.path().join("train-labels-idx1-ubyte"),
        encode_idx(&[2], &[0, 1]).unwrap(),
    )
    .unwrap();
    let e = Mnist::load(other.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 8, 8]") && e.contains("[N, 28, 28]"), "{e}");

    // Truncated file on disk: the error names the file.
    let p = other.path().join("train-images-idx3-ubyte");
    let bytes = encode_idx(&[2, 28, 28], &[0; 1568]).unwrap();
    std::fs::write(&p, &bytes[..100]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );

    let e = Mnist::load(Path::new("/nonexistent/mnist"), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

fn real_mnist_dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("GENLAB_DATA")?).join("mnist");
    d.is_dir().then_some(d)
}

/// Needs the real files: `GENLAB_DATA=... cargo test --release -p genlab-data -- --ignored`.
#[test]
#[ignore = "needs the real MNIST in $GENLAB_DATA/mnist"]
fn real_mnist_has_the_known_class_counts() {
    let Some(dir) = real_mnist_dir() else {
        panic!("set GENLAB_DATA to a folder holding mnist/ (see fetch_mnist)");
    };
    genlab_data::verify_files(&dir, &genlab_data::MNIST_FILES).unwrap();
    let train = Mnist::load(&dir, Split::Train).unwrap();
    assert_eq!(train.len(), 60000);
    assert_eq!(train.class_counts(), TRAIN_CLASS_COUNTS);
    let first: Vec<u32> = (0..10).map(|i| train.label(i).unwrap()).collect();
    let want: Vec<u32> = FIRST_TRAIN_LABELS.iter().map(|&l| l as u32).collect();
    assert_eq!(first, want);
    // Pixel mean 0.1307 and std 0.3081 (DATA.md).
    let (mut s, mut s2) = (0f64, 0f64);
    let mut out = vec![0f32; 784];
    for i in 0..train.len() {
        train.write_example(i, &mut out);
        for &v in &out {
            s += v as f64;
            s2 += (v as f64).powi(2);
        }
    }
    let n = (train.len() * 784) as f64;
    let mean = s / n;
    let std = (s2 / n - mean * mean).sqrt();
    assert!(
        (mean - 0.1307).abs() < 5e-4 && (std - 0.3081).abs() < 5e-4,
        "{mean} {std}"
    );
    let test = Mnist::load(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10000);
    // The registry finds the same files through data_dir() = $GENLAB_DATA.
    let ds = genlab_data::open_dataset("mnist:test", &Default::default()).unwrap();
    assert_eq!((ds.name(), ds.len()), ("mnist:test", 10000));
}

/// Pixels of a `[n, h, w]` image array whose byte `k` of image `i` is `i * 40 + k`.
fn ramp(n: usize, h: usize, w: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..h * w).map(move |k| (i * 40 + k) as u8))
        .collect()
}

const TRAIN_NAMES: (&str, &str) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
const TEST_NAMES: (&str, &str) = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

/// A 4x5 IDX folder: 3 raw train images labelled 2, 0, 1 and 2 gzipped test images labelled
/// 4, 1 (so only the test split shows that there are 5 classes).
fn small_idx_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_idx_pair(
        dir.path(),
        TRAIN_NAMES,
        &[3, 4, 5],
        &ramp(3, 4, 5),
        &[2, 0, 1],
        false,
    );
    write_idx_pair(
        dir.path(),
        TEST_NAMES,
        &[2, 4, 5],
        &ramp(2, 4, 5),
        &[4, 1],
        true,
    );
    dir
}

#[test]
fn idx_folder_opens_both_splits_of_any_size_raw_and_gzipped() {
    let dir = small_idx_folder();
    let d = dir.path().display();
    let train = IdxFolder::open(dir.path(), Split::Train).unwrap();
    assert_eq!(train.name(), format!("idx:{d}"));
    assert_eq!((train.len(), train.example_shape()), (3, vec![1, 4, 5]));
    assert_eq!(train.kind(), genlab_data::DataKind::Image);
    let labels: Vec<Option<u32>> = (0..4).map(|i| train.label(i)).collect();
    assert_eq!(labels, vec![Some(2), Some(0), Some(1), None]);
    // Classes count the test split's label 4 too: both splits agree on 5.
    assert_eq!(train.num_classes(), Some(5));
    assert_eq!(train.class_counts(), vec![1, 1, 1, 0, 0]);
    let mut out = vec![0f32; 20];
    train.write_example(2, &mut out);
    let want: Vec<f32> = (0..20).map(|k| (80 + k) as f32 / 255.0).collect();
    assert_eq!(out, want);

    let test = IdxFolder::open(dir.path(), Split::Test).unwrap();
    assert_eq!(test.name(), format!("idx:{d}:test"));
    assert_eq!((test.len(), test.num_classes()), (2, Some(5)));
    assert_eq!((test.label(0), test.label(1)), (Some(4), Some(1)));
    test.write_example(1, &mut out);
    let want: Vec<f32> = (0..20).map(|k| (40 + k) as f32 / 255.0).collect();
    assert_eq!(out, want);

    // The registry routes idx:PATH to the train split and idx:PATH:test to the test split;
    // the size is the files' own, not convertible.
    let opts = OpenOptions::default();
    let ds = open_dataset(&format!("idx:{d}"), &opts).unwrap();
    assert_eq!((ds.name(), ds.len()), (train.name(), 3));
    let ds = open_dataset(&format!("idx:{d}:train"), &opts).unwrap();
    assert_eq!(ds.len(), 3);
    let ds = open_dataset(&format!("idx:{d}:test"), &opts).unwrap();
    assert_eq!((ds.name(), ds.len()), (test.name(), 2));
    let resized = OpenOptions {
        image_size: Some(28),
        ..Default::default()
    };
    let e = open_dataset(&format!("idx:{d}"), &resized)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("4x5") && e.contains("28"), "{e}");
    let e = open_dataset("idx:", &opts).err().unwrap().to_string();
    assert!(e.contains("names no folder"), "{e}");
    let names: Vec<String> = genlab_data::dataset_names()
        .into_iter()
        .map(|n| n.0)
        .collect();
    assert!(names.contains(&"idx:PATH[:test]".to_string()), "{names:?}");
}

#[test]
fn idx_folder_accepts_emnist_names_and_prefers_raw_over_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let emnist = |split: &str| {
        (
            format!("emnist-letters-{split}-images-idx3-ubyte"),
            format!("emnist-letters-{split}-labels-idx1-ubyte"),
        )
    };
    let (ti, tl) = emnist("train");
    write_idx_pair(p, (&ti, &tl), &[2, 3, 3], &ramp(2, 3, 3), &[1, 3], true);
    let (si, sl) = emnist("test");
    write_idx_pair(p, (&si, &sl), &[1, 3, 3], &ramp(1, 3, 3), &[2], true);
    let train = IdxFolder::open(p, Split::Train).unwrap();
    assert_eq!((train.len(), train.num_classes()), (2, Some(4)));
    assert_eq!(train.example_shape(), vec![1, 3, 3]);
    let test = IdxFolder::open(p, Split::Test).unwrap();
    assert_eq!((test.len(), test.label(0)), (1, Some(2)));

    // gunzip -k leaves both: the raw file is read, its stale .gz twin ignored.
    write_idx_pair(p, (&si, &sl), &[1, 3, 3], &[7; 9], &[0], false);
    let test = IdxFolder::open(p, Split::Test).unwrap();
    assert_eq!(test.raw_pixels(0), &[7; 9]);
    assert_eq!(test.label(0), Some(0));
}

#[test]
fn idx_folder_errors_name_the_file_and_what_was_expected() {
    let open_err = |dir: &Path, split| {
        IdxFolder::open(dir, split)
            .expect_err("expected an error")
            .to_string()
    };

    // A missing file: named, with its accepted names; the other split needs it too.
    let dir = small_idx_folder();
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    for split in [Split::Test, Split::Train] {
        let e = open_err(dir.path(), split);
        assert!(
            e.contains("no test labels file")
                && e.contains("expected t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"),
            "{e}"
        );
    }

    // Image and label counts disagree: both files named.
    let dir = small_idx_folder();
    write_idx_pair(
        dir.path(),
        TRAIN_NAMES,
        &[3, 4, 5],
        &ramp(3, 4, 5),
        &[0, 1],
        false,
    );
    let e = open_err(dir.path(), Split::Train);
    assert!(
        e.contains("train split has 3 images but 2 labels")
            && e.contains("train-images-idx3-ubyte")
            && e.contains("train-labels-idx1-ubyte")
            && e.contains("expected equal counts"),
        "{e}"
    );
    // ... also when the bad split is the held-out one.
    let e = open_err(dir.path(), Split::Test);
    assert!(e.contains("3 images but 2 labels"), "{e}");

    // The splits' image sizes disagree.
    let dir = small_idx_folder();
    write_idx_pair(dir.path(), TEST_NAMES, &[2, 5, 4], &[0; 40], &[0, 1], true);
    let e = open_err(dir.path(), Split::Train);
    assert!(
        e.contains("train images are 4x5 but test images are 5x4"),
        "{e}"
    );

    // Labels that are not [N], images that are not [N, H, W], no images at all.
    let dir = small_idx_folder();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        encode_idx(&[3, 1], &[0, 1, 2]).unwrap(),
    )
    .unwrap();
    let e = open_err(dir.path(), Split::Train);
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("[3, 1], expected [N]"),
        "{e}"
    );
    let dir = small_idx_folder();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        encode_idx(&[3, 20], &ramp(3, 4, 5)).unwrap(),
    )
    .unwrap();
    let e = open_err(dir.path(), Split::Train);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("[3, 20], expected [N, H, W]"),
        "{e}"
    );
    let dir = small_idx_folder();
    write_idx_pair(dir.path(), TRAIN_NAMES, &[0, 4, 5], &[], &[], false);
    let e = open_err(dir.path(), Split::Train);
    assert!(e.contains("no images, expected at least one"), "{e}");

    // Two data sets in one folder: which one is meant is not guessed.
    let dir = small_idx_folder();
    write_idx_pair(
        dir.path(),
        (
            "emnist-digits-train-images-idx3-ubyte",
            "emnist-digits-train-labels-idx1-ubyte",
        ),
        &[1, 4, 5],
        &[0; 20],
        &[0],
        true,
    );
    let e = open_err(dir.path(), Split::Train);
    assert!(
        e.contains("2 files could be the train images")
            && e.contains("emnist-digits-train-images-idx3-ubyte.gz")
            && e.contains("expected one"),
        "{e}"
    );

    let e = open_err(Path::new("/nonexistent/idx-folder"), Split::Train);
    assert!(
        e.contains("/nonexistent/idx-folder") && e.contains("does not exist"),
        "{e}"
    );
}
