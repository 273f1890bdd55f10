//! ImageFolder on small PNG/JPEG files written into a temporary folder.

use std::path::Path;

use genlab_data::{Dataset, ImageFolder, ImageFolderConfig};
use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// JPEG is lossy: a flat colour comes back within this of the original.
const JPEG_TOL: f32 = 0.03;
/// Resampling a constant image in f32 keeps it constant up to rounding.
const RESAMPLE_TOL: f32 = 1e-5;

fn cfg(size: usize, channels: usize) -> ImageFolderConfig {
    ImageFolderConfig { size, channels }
}

fn example(ds: &dyn Dataset, i: usize) -> Vec<f32> {
    let mut v = vec![0f32; ds.example_shape().iter().product()];
    ds.write_example(i, &mut v);
    v
}

fn close(a: &[f32], b: f32, tol: f32) -> bool {
    a.iter().all(|v| (v - b).abs() <= tol)
}

#[test]
fn flat_root_of_mixed_modes_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a: grey 10x20 value 128; b: RGB 30x15 red; c: RGBA fully transparent -> white;
    // d: JPEG 16x16 blue-ish; e.txt: ignored; .hidden.png: ignored.
    GrayImage::from_pixel(10, 20, Luma([128]))
        .save(d.join("a.png"))
        .unwrap();
    RgbImage::from_pixel(30, 15, Rgb([255, 0, 0]))
        .save(d.join("b.PNG"))
        .unwrap();
    RgbaImage::from_pixel(12, 12, Rgba([0, 0, 0, 0]))
        .save(d.join("c.png"))
        .unwrap();
    RgbImage::from_pixel(16, 16, Rgb([0, 0, 200]))
        .save(d.join("d.jpg"))
        .unwrap();
    std::fs::write(d.join("e.txt"), "not an image").unwrap();
    std::fs::write(d.join(".hidden.png"), "junk").unwrap();

    let ds = ImageFolder::load(d, cfg(8, 3)).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.example_shape(), vec![3, 8, 8]);
    assert_eq!((ds.label(0), ds.num_classes()), (None, None));
    assert!(ds.class_names().is_empty());
    assert!(close(&example(&ds, 0), 128.0 / 255.0, RESAMPLE_TOL));
    let red = example(&ds, 1);
    assert!(close(&red[..64], 1.0, RESAMPLE_TOL) && close(&red[64..], 0.0, RESAMPLE_TOL));
    assert!(
        close(&example(&ds, 2), 1.0, RESAMPLE_TOL),
        "transparent reads as white"
    );
    let blue = example(&ds, 3);
    assert!(close(&blue[..128], 0.0, JPEG_TOL));
    assert!(close(&blue[128..], 200.0 / 255.0, JPEG_TOL));

    let grey = ImageFolder::load(d, cfg(5, 1)).unwrap();
    assert_eq!(grey.example_shape(), vec![1, 5, 5]);
    assert!(close(&example(&grey, 1), 0.299, 1e-4), "BT.601 luma of red");
    assert!(close(&example(&grey, 2), 1.0, 1e-4));
}

#[test]
fn shorter_side_is_resized_then_centre_cropped() {
    let dir = tempfile::tempdir().unwrap();
    // 30x10: red | green | blue stripes of 10 columns; size 10 keeps the height, so the
    // centre crop is exactly the green stripe.
    let img = RgbImage::from_fn(30, 10, |x, _| match x / 10 {
        0 => Rgb([255, 0, 0]),
        1 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    img.save(dir.path().join("stripes.png")).unwrap();
    let ds = ImageFolder::load(dir.path(), cfg(10, 3)).unwrap();
    let v = example(&ds, 0);
    assert!(
        close(&v[..100], 0.0, 0.0) && close(&v[100..200], 1.0, 0.0) && close(&v[200..], 0.0, 0.0)
    );
    // Tall 4x40 image, top half black, bottom half white, size 2: resized to 2x20, crop
    // rows 9..11 straddle the edge: the top crop row is darker than the bottom one.
    let tall = GrayImage::from_fn(4, 40, |_, y| Luma([if y < 20 { 0 } else { 255 }]));
    let d2 = tempfile::tempdir().unwrap();
    tall.save(d2.path().join("t.png")).unwrap();
    let ds = ImageFolder::load(d2.path(), cfg(2, 1)).unwrap();
    let v = example(&ds, 0);
    assert!(v[0] < v[2] && v[1] < v[3], "{v:?}");
}

#[test]
fn class_subfolders_give_sorted_labels() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("zebra", 2), ("cat", 1), ("empty", 0)] {
        let c = dir.path().join(class);
        std::fs::create_dir(&c).unwrap();
        for i in 0..n {
            RgbImage::from_pixel(6, 9, Rgb([10 * i as u8, 0, 0]))
                .save(c.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let ds = ImageFolder::load(dir.path(), cfg(4, 3)).unwrap();
    assert_eq!(ds.class_names(), &["cat".to_string(), "zebra".to_string()]);
    assert_eq!(ds.num_classes(), Some(2));
    let labels: Vec<_> = (0..ds.len()).map(|i| ds.label(i)).collect();
    assert_eq!(labels, vec![Some(0), Some(1), Some(1)]);
    let b = genlab_data::make_batch(&ds, &[2, 0], &candle_core::Device::Cpu).unwrap();
    assert_eq!(b.x.dims(), &[2, 3, 4, 4]);
    assert_eq!(b.labels.unwrap().to_vec1::<u32>().unwrap(), vec![1, 0]);
}

#[test]
fn errors_name_the_problem() {
    let e = ImageFolder::load(Path::new("/no/such/folder"), cfg(8, 3))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/no/such/folder") && e.contains("does not exist"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let e = ImageFolder::load(dir.path(), cfg(8, 3))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no images") && e.contains(".png") && e.contains(".jpeg"),
        "{e}"
    );

    std::fs::write(dir.path().join("broken.png"), b"definitely not a png").unwrap();
    let e = ImageFolder::load(dir.path(), cfg(8, 3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.png") && e.contains("decode"), "{e}");

    let e = ImageFolder::load(dir.path(), cfg(8, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("channels 2"), "{e}");
    let e = ImageFolder::load(dir.path(), cfg(0, 3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("size 0"), "{e}");

    let mixed = tempfile::tempdir().unwrap();
    GrayImage::new(4, 4)
        .save(mixed.path().join("root.png"))
        .unwrap();
    std::fs::create_dir(mixed.path().join("cls")).unwrap();
    GrayImage::new(4, 4)
        .save(mixed.path().join("cls/x.png"))
        .unwrap();
    let e = ImageFolder::load(mixed.path(), cfg(4, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("both") && e.contains("cls"), "{e}");

    let file = mixed.path().join("root.png");
    let e = ImageFolder::load(&file, cfg(4, 1)).unwrap_err().to_string();
    assert!(e.contains("not a folder"), "{e}");
}
