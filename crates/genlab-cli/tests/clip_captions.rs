//! End-to-end: CLIP trained for a few steps on the captions of the data itself: a folder
//! with a `captions.jsonl`, a folder of class sub-folders, and the two-digit canvases of
//! `mnist-pairs` (over a small synthetic MNIST); then retrieval and zero-shot on them, and
//! the refusals where a metric or a caption source cannot apply.

mod common;
use std::path::Path;

use common::{fails_with, genlab, json, ok};
use image::{Rgb, RgbImage};

/// The tiny CLIP of `tests/clip.rs`, on three steps of batch 8.
const TINY: &[&str] = &[
    "--set",
    "clip.model.image_tower=cnn",
    "--set",
    "clip.model.cnn.channels=[8,8]",
    "--set",
    "clip.model.cnn.features=16",
    "--set",
    "clip.model.text.width=16",
    "--set",
    "clip.model.text.layers=1",
    "--set",
    "clip.model.text.heads=2",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.warmup_steps=1",
    "--steps",
    "3",
    "--seed",
    "0",
];

const COLOURS: [(&str, [u8; 3]); 4] = [
    ("red", [220, 20, 20]),
    ("green", [20, 200, 20]),
    ("blue", [20, 20, 220]),
    ("yellow", [230, 230, 20]),
];

/// Twelve 6x6 squares, three per colour, in `root/sub` (sub = "" for a flat folder).
fn squares(root: &Path, sub: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, rgb) in COLOURS {
        for k in 0..3 {
            let rel = format!("{}{name}{k}.png", sub(name));
            let p = root.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            RgbImage::from_pixel(6, 6, Rgb(rgb)).save(&p).unwrap();
            out.push((rel, format!("a {name} square, number {k}")));
        }
    }
    out
}

fn train(d: &Path, data: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--model",
        "clip",
        "--data",
        data,
        "--out",
        out,
        "--image-size",
        "8",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    genlab(&args, d)
}

#[test]
fn clip_trains_on_a_captions_file_and_retrieves_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imgs = d.join("imgs");
    let files = squares(&imgs, |_| String::new());
    // One caption longer than the 32-token context: cut as CLIP cuts it, and said so.
    let long = "a very ".repeat(20) + "long caption";
    let lines: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, (f, c))| {
            let c = if i == 5 { long.as_str() } else { c.as_str() };
            serde_json::json!({"file": f, "caption": c}).to_string()
        })
        .collect();
    std::fs::write(imgs.join("captions.jsonl"), lines.join("\n")).unwrap();
    ok(&train(d, "folder:imgs", "run", &["--channels", "3"]));
    let cfg = json(&d.join("run/config.json"));
    assert_eq!(cfg["clip"]["caption_source"], "auto", "{cfg}");
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "retrieval",
            "--data",
            "folder:imgs",
            "--json",
            "r.json",
        ],
        d,
    ));
    assert!(out.contains("12 distinct captions"), "{out}");
    let log = std::fs::read_to_string(d.join("run/log.jsonl")).unwrap();
    assert!(log.contains("captions_truncated"), "{log}");
    let j = json(&d.join("r.json"));
    let w = j["warnings"].to_string();
    assert!(
        w.contains("1 of the 12 captions") && w.contains("truncated"),
        "{w}"
    );
    assert_eq!(j["retrieval"]["pairs"].as_u64(), Some(12));
    let r10 = j["retrieval"]["image_to_text"][2].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&r10));
    // No classes: zero-shot cannot apply, and says so.
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "run",
                "--metrics",
                "zero-shot",
                "--data",
                "folder:imgs",
            ],
            d,
        ),
        &["zero-shot", "needs classes", "retrieval"],
    );
    // A bad captions file stops training before it starts, naming file and line.
    std::fs::write(
        imgs.join("captions.jsonl"),
        format!(
            "{}\n{{\"file\": \"nope.png\", \"caption\": \"x\"}}",
            lines[0]
        ),
    )
    .unwrap();
    let o = train(d, "folder:imgs", "run2", &[]);
    fails_with(
        &o,
        &["captions.jsonl", "line 2", "unknown image `nope.png`"],
    );
}

#[test]
fn clip_on_class_folders_uses_the_names_for_captions_and_zero_shot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    squares(&d.join("imgs"), |name| format!("{name}_square/"));
    ok(&train(d, "folder:imgs", "run", &["--channels", "1"]));
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "zero-shot,retrieval",
            "--data",
            "folder:imgs",
            "--json",
            "z.json",
        ],
        d,
    ));
    assert!(out.contains("4 classes"), "{out}");
    let j = json(&d.join("z.json"));
    assert_eq!(j["zero_shot"]["examples"].as_u64(), Some(12));
    assert_eq!(j["zero_shot"]["templates"], serde_json::json!(["{}"]));
    assert_eq!(j["retrieval"]["distinct_captions"].as_u64(), Some(4));
    // Own templates name the class with `{}`; a template without one is refused.
    ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "zero-shot",
            "--data",
            "folder:imgs",
            "--prompts",
            "a photo of a {}.",
        ],
        d,
    ));
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "run",
                "--metrics",
                "zero-shot",
                "--data",
                "folder:imgs",
                "--prompts",
                "a photo",
            ],
            d,
        ),
        &["exactly one `{}` for the class name"],
    );
    // Asking for dataset captions where there are none is one clear error.
    let flat = d.join("flat");
    squares(&flat, |_| String::new());
    let o = train(
        d,
        "folder:flat",
        "run3",
        &["--set", "clip.caption_source=dataset"],
    );
    fails_with(&o, &["caption_source", "no captions"]);
}

/// A synthetic MNIST split of `n` 28x28 digits in `dir` (label `i % 10`, a bar whose
/// column says the digit), raw IDX files as `genlab data fetch mnist` leaves them.
fn fake_mnist(dir: &Path, prefix: &str, n: usize) {
    let mut images = vec![0u8; n * 784];
    for i in 0..n {
        let col = 4 + 2 * (i % 10);
        for r in 4..24 {
            images[i * 784 + r * 28 + col] = 255;
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = genlab_data::idx::encode_idx(&[n, 28, 28], &images).unwrap();
    let lbl = genlab_data::idx::encode_idx(&[n], &labels).unwrap();
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lbl).unwrap();
}

#[test]
fn clip_on_digit_pairs_trains_on_pair_captions_and_classifies_100_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("mnist");
    std::fs::create_dir(&m).unwrap();
    fake_mnist(&m, "train", 200);
    fake_mnist(&m, "t10k", 100);
    let mut args = vec!["train", "--model", "clip", "--data", "mnist-pairs"];
    args.extend_from_slice(TINY);
    let mut first = args.clone();
    first.extend_from_slice(&["--out", "run"]);
    ok(&genlab(&first, d));
    // Evaluated after training on mnist-pairs:test: zero-shot over the 100 pairs and
    // retrieval with the canonical captions.
    let e = json(&d.join("run/eval.json"));
    assert_eq!(e["data"], "mnist-pairs:test");
    for k in ["zero_shot_accuracy", "image_to_text_r1", "text_to_image_r1"] {
        let v = e[k].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{k}: {e}");
    }
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "zero-shot,retrieval",
            "--n",
            "60",
            "--json",
            "p.json",
        ],
        d,
    ));
    assert!(out.contains("100 classes"), "{out}");
    let j = json(&d.join("p.json"));
    assert_eq!(j["data"], "mnist-pairs:test");
    assert_eq!(j["zero_shot"]["confusion"].as_array().unwrap().len(), 100);
    assert_eq!(j["retrieval"]["pairs"].as_u64(), Some(60));
    // Own pair templates need both sides.
    ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "zero-shot",
            "--n",
            "20",
            "--prompts",
            "{L} then {R}",
        ],
        d,
    ));
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "run",
                "--metrics",
                "zero-shot",
                "--prompts",
                "a {}",
            ],
            d,
        ),
        &["left digit", "right digit"],
    );
    // Attribute captions name one digit: refused on the 100 pair labels.
    args.extend_from_slice(&["--set", "clip.caption_source=attributes", "--out", "run2"]);
    fails_with(&genlab(&args, d), &["attribute captions", "label"]);
}
