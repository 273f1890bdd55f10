//! End-to-end: `genlab train --model clip` on the embedded 8x8 digits, then `genlab eval
//! --ckpt RUN --metrics zero-shot,retrieval`, the CLIP features for the sample metrics, and
//! the refusals of bad input.

mod common;
use common::{fails_with, genlab, json, ok};

/// A CLIP small enough to learn the 8x8 digits in a few seconds: the CNN tower, a
/// one-layer text transformer.
const TINY: &[&str] = &[
    "--set",
    "clip.model.image_tower=cnn",
    "--set",
    "clip.model.cnn.channels=[16,32]",
    "--set",
    "clip.model.cnn.features=64",
    "--set",
    "clip.model.text.width=32",
    "--set",
    "clip.model.text.layers=1",
    "--set",
    "clip.model.text.heads=2",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.warmup_steps=20",
];

#[test]
fn clip_trains_on_digits_and_classifies_zero_shot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec![
        "train", "--model", "clip", "--data", "digits", "--steps", "300", "--seed", "0", "--out",
        "run",
    ];
    args.extend_from_slice(TINY);
    ok(&genlab(&args, d));
    for f in ["similarity.png", "embedding.png", "checkpoint.safetensors"] {
        assert!(d.join("run").join(f).exists(), "{f} missing");
    }
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "zero-shot,retrieval",
            "--data",
            "digits",
            "--n",
            "500",
            "--json",
            "e.json",
        ],
        d,
    ));
    assert!(out.contains("zero-shot accuracy"), "{out}");
    let j = json(&d.join("e.json"));
    let acc = j["zero_shot"]["accuracy"].as_f64().unwrap();
    // Ten classes: chance is 10%. 300 steps of the tiny model reach well above it with
    // prompts it never saw (the digit word or numeral is what it learned to read).
    assert!(acc > 0.5, "zero-shot accuracy {acc}");
    let r1 = j["retrieval"]["image_to_text"][0].as_f64().unwrap();
    let r10 = j["retrieval"]["image_to_text"][2].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&r1) && r10 >= r1, "{r1} {r10}");
    assert_eq!(j["retrieval"]["pairs"].as_u64(), Some(500));

    // The same run as a feature extractor for the sample metrics.
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            "digits",
            "--fake",
            "digits",
            "--n",
            "200",
            "--features",
            "run",
            "--metrics",
            "fid,is",
        ],
        d,
    ));
    assert!(out.contains("genlab-clip"), "{out}");

    // Bad input: CLIP metrics without a checkpoint, mixed with sample metrics, on a
    // non-CLIP run; CLIP on data that is not images.
    fails_with(&genlab(&["eval", "--metrics", "zero-shot"], d), &["--ckpt"]);
    fails_with(
        &genlab(&["eval", "--ckpt", "run", "--metrics", "zero-shot,fid"], d),
        &["cannot be combined"],
    );
    fails_with(
        &genlab(&["eval", "--ckpt", "nowhere", "--metrics", "retrieval"], d),
        &["no checkpoint at nowhere", "CLIP"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "clip",
                "--data",
                "eight-gaussians",
                "--steps",
                "1",
                "--out",
                "bad",
            ],
            d,
        ),
        &["image data"],
    );
}
