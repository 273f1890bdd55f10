//! IDX parsing against real MNIST headers (committed fixtures) and synthetic MNIST folders.

use std::io::Write;
use std::path::{Path, PathBuf};

use genlab_data::idx::encode_idx;
use genlab_data::{parse_idx, read_idx, read_idx_header, Dataset, Mnist, Split};

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

/// Writes a synthetic split of `n` images (pixel = image index) and labels `i % 10`.
fn write_split(dir: &Path, prefix: &str, n: usize, n_labels: usize, gzip: bool) {
    let images: Vec<u8> = (0..n * 784).map(|k| (k / 784) as u8).collect();
    let labels: Vec<u8> = (0..n_labels).map(|i| (i % 10) as u8).collect();
    let img = encode_idx(&[n, 28, 28], &images).unwrap();
    let lbl = encode_idx(&[n_labels], &labels).unwrap();
    let (suffix, img, lbl) = if gzip {
        (".gz", gz(&img), gz(&lbl))
    } else {
        ("", img, lbl)
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")), lbl).unwrap();
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
