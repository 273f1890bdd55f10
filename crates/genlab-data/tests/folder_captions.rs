//! Captions of an image folder: `captions.jsonl` beside the images, class sub-folder names,
//! the batches that carry them, and one clear error per kind of bad captions file.

use std::path::Path;

use candle_core::Device;
use genlab_data::{make_batch, Dataset, ImageFolder, ImageFolderConfig};
use image::{GrayImage, Luma};

fn cfg() -> ImageFolderConfig {
    ImageFolderConfig {
        size: 4,
        channels: 1,
    }
}

/// Tiny PNGs `names` (relative paths; folders made as needed) under `root`.
fn pngs(root: &Path, names: &[&str]) {
    for (k, n) in names.iter().enumerate() {
        let p = root.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        GrayImage::from_pixel(5, 5, Luma([(30 * k % 256) as u8]))
            .save(&p)
            .unwrap();
    }
}

fn write_captions(root: &Path, text: &str) {
    std::fs::write(root.join("captions.jsonl"), text).unwrap();
}

fn load_err(root: &Path) -> String {
    ImageFolder::load(root, cfg()).unwrap_err().to_string()
}

#[test]
fn captions_file_gives_each_image_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pngs(d, &["b.png", "a.png", "c.PNG"]);
    // Any order, a blank line, a leading "./", unicode and escapes.
    write_captions(
        d,
        "{\"file\": \"c.PNG\", \"caption\": \"a tall \\\"c\\\"\"}\n\n\
         {\"file\": \"./a.png\", \"caption\": \"the letter a, caf\u{e9}\"}\n\
         {\"caption\": \"bee\", \"file\": \"b.png\"}\n",
    );
    let ds = ImageFolder::load(d, cfg()).unwrap();
    assert!(ds.has_captions_file());
    let caps: Vec<_> = (0..ds.len()).map(|i| ds.caption(i).unwrap()).collect();
    // Images are listed sorted: a.png, b.png, c.PNG.
    assert_eq!(caps, vec!["the letter a, caf\u{e9}", "bee", "a tall \"c\""]);
    assert_eq!(ds.num_classes(), None);
    let b = make_batch(&ds, &[2, 0], &Device::Cpu).unwrap();
    assert_eq!(
        b.captions.unwrap(),
        vec![
            "a tall \"c\"".to_string(),
            "the letter a, caf\u{e9}".to_string()
        ]
    );
    assert!(b.labels.is_none());
}

#[test]
fn captions_file_in_a_class_folder_keeps_labels_and_names_nested_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pngs(d, &["cat/1.png", "dog/2.png"]);
    write_captions(
        d,
        "{\"file\": \"dog/2.png\", \"caption\": \"a sleepy dog\"}\n\
         {\"file\": \"cat/1.png\", \"caption\": \"a cat on a mat\"}",
    );
    let ds = ImageFolder::load(d, cfg()).unwrap();
    assert_eq!(ds.caption(0).as_deref(), Some("a cat on a mat"));
    assert_eq!(ds.caption(1).as_deref(), Some("a sleepy dog"));
    assert_eq!((ds.label(0), ds.label(1)), (Some(0), Some(1)));
    assert_eq!(ds.class_name(1).as_deref(), Some("dog"));
}

#[test]
fn sub_folder_names_are_the_captions_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pngs(
        d,
        &["golden_retriever/1.png", "t-shirt/x.png", "t-shirt/y.png"],
    );
    let ds = ImageFolder::load(d, cfg()).unwrap();
    assert!(!ds.has_captions_file());
    let caps: Vec<_> = (0..3).map(|i| ds.caption(i).unwrap()).collect();
    assert_eq!(caps, vec!["golden retriever", "t shirt", "t shirt"]);
    assert_eq!(ds.class_name(0).as_deref(), Some("golden retriever"));
    assert_eq!(ds.class_name(2), None);
    let b = make_batch(&ds, &[1, 0], &Device::Cpu).unwrap();
    assert_eq!(
        b.captions.unwrap(),
        vec!["t shirt".to_string(), "golden retriever".to_string()]
    );
    // A flat folder without the file has no captions.
    let flat = tempfile::tempdir().unwrap();
    pngs(flat.path(), &["a.png"]);
    let ds = ImageFolder::load(flat.path(), cfg()).unwrap();
    assert_eq!(ds.caption(0), None);
    assert!(make_batch(&ds, &[0], &Device::Cpu)
        .unwrap()
        .captions
        .is_none());
}

#[test]
fn each_bad_captions_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pngs(d, &["a.png", "b.png"]);
    std::fs::write(d.join("notes.txt"), "not an image").unwrap();
    let ok_b = "{\"file\": \"b.png\", \"caption\": \"b\"}";

    // Malformed: not JSON, a missing field, an unknown field, a caption that is no string.
    for (bad, needle) in [
        ("{\"file\": \"a.png\", \"caption\": ", "line 2"),
        ("[\"a.png\", \"x\"]", "line 2"),
        ("{\"file\": \"a.png\"}", "caption"),
        ("{\"file\": \"a.png\", \"text\": \"x\"}", "text"),
        ("{\"file\": \"a.png\", \"caption\": 7}", "line 2"),
    ] {
        write_captions(d, &format!("{ok_b}\n{bad}\n"));
        let e = load_err(d);
        assert!(
            e.contains("captions.jsonl") && e.contains("line 2") && e.contains(needle),
            "{bad}: {e}"
        );
    }
    // Unknown: no such file, and a file that is not an image of the folder.
    write_captions(
        d,
        &format!("{ok_b}\n{{\"file\": \"zz.png\", \"caption\": \"x\"}}"),
    );
    let e = load_err(d);
    assert!(
        e.contains("line 2")
            && e.contains("unknown image `zz.png`")
            && e.contains("does not exist"),
        "{e}"
    );
    write_captions(
        d,
        &format!("{{\"file\": \"notes.txt\", \"caption\": \"x\"}}\n{ok_b}"),
    );
    let e = load_err(d);
    assert!(
        e.contains("line 1")
            && e.contains("notes.txt")
            && e.contains("not one of the folder's images"),
        "{e}"
    );
    // Empty caption (blank counts as empty).
    for empty in ["", "   "] {
        write_captions(
            d,
            &format!("{ok_b}\n{{\"file\": \"a.png\", \"caption\": \"{empty}\"}}"),
        );
        let e = load_err(d);
        assert!(
            e.contains("line 2") && e.contains("`a.png` is empty"),
            "{e}"
        );
    }
    // Duplicate file: both lines named.
    write_captions(
        d,
        &format!(
            "{ok_b}\n{{\"file\": \"a.png\", \"caption\": \"x\"}}\n{{\"file\": \"./a.png\", \"caption\": \"y\"}}"
        ),
    );
    let e = load_err(d);
    assert!(
        e.contains("line 3") && e.contains("already has a caption (line 2)"),
        "{e}"
    );
    // Missing: the count and the first few names.
    write_captions(d, ok_b);
    let e = load_err(d);
    assert!(
        e.contains("1 of the folder's 2 images have no caption: a.png"),
        "{e}"
    );
    let many = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("im{i}.png")).collect();
    pngs(
        many.path(),
        &names.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    write_captions(many.path(), "{\"file\": \"im0.png\", \"caption\": \"x\"}");
    let e = load_err(many.path());
    assert!(
        e.contains(
            "7 of the folder's 8 images have no caption: im1.png, im2.png, im3.png, \
             im4.png, im5.png, ..."
        ) && !e.contains("im6"),
        "{e}"
    );
}
