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

/// `--metrics clip-score` on a tiny run: real images against their own and shuffled
/// captions, samples with their captions (a captions file, or the .prompts.json beside
/// them), equal to the real score on the same images and captions; then `linear-probe,knn`;
/// and one clear error for each kind of bad input.
#[test]
fn clip_score_and_probes_on_a_tiny_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec![
        "train", "--model", "clip", "--data", "digits", "--steps", "300", "--seed", "0", "--out",
        "run",
    ];
    args.extend_from_slice(TINY);
    ok(&genlab(&args, d));

    // Real digits with their attribute captions, and with the captions shuffled.
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "clip-score",
            "--real",
            "digits",
            "--n",
            "400",
            "--json",
            "r.json",
        ],
        d,
    ));
    assert!(out.contains("100 max(cos"), "{out}");
    let j = json(&d.join("r.json"));
    let own = &j["clip_score"]["real"]["own"];
    let shuf = &j["clip_score"]["real"]["shuffled"];
    assert_eq!(own["n"].as_u64(), Some(400));
    let (o, s) = (
        own["mean"].as_f64().unwrap(),
        shuf["mean"].as_f64().unwrap(),
    );
    assert!(
        (0.0..=100.0).contains(&o) && o > s,
        "own {o} vs shuffled {s}"
    );
    assert!((own["clip_s"].as_f64().unwrap() - o / 40.0).abs() < 1e-9);

    // The same 40 images as "samples" with the same captions score the same.
    let ds = genlab_data::open_dataset("digits", &Default::default()).unwrap();
    let idx: Vec<usize> = (0..40).map(|i| i * ds.len() / 40).collect();
    let b = genlab_data::make_batch(ds.as_ref(), &idx, &candle_core::Device::Cpu).unwrap();
    let x: Vec<f32> = b.x.flatten_all().unwrap().to_vec1().unwrap();
    let npy = d.join("s.npy");
    genlab_core::io::write_npy(&npy, &[40, 1, 8, 8], &x).unwrap();
    let caps = genlab_train::clip_eval::example_captions(
        ds.as_ref(),
        &idx,
        &genlab_data::captions::Thresholds::default(),
    )
    .unwrap();
    std::fs::write(d.join("c.txt"), caps.join("\n") + "\n").unwrap();
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", "--ckpt", "run", "--metrics", "clip-score"];
        a.extend_from_slice(extra);
        genlab(&a, d)
    };
    ok(&eval(&[
        "--fake",
        "s.npy",
        "--captions",
        "c.txt",
        "--real",
        "digits",
        "--n",
        "40",
        "--json",
        "f.json",
    ]));
    let j = json(&d.join("f.json"));
    let fake = j["clip_score"]["fake"]["score"]["mean"].as_f64().unwrap();
    let real = j["clip_score"]["real"]["own"]["mean"].as_f64().unwrap();
    assert!(
        (fake - real).abs() < 1e-9,
        "samples {fake} vs the same real images {real}"
    );
    // No --captions: the .prompts.json that txt2img writes beside the samples.
    fails_with(
        &eval(&["--fake", "s.npy"]),
        &["no captions for s.npy", "s.prompts.json"],
    );
    std::fs::write(
        d.join("s.prompts.json"),
        serde_json::to_string(&caps).unwrap(),
    )
    .unwrap();
    ok(&eval(&["--fake", "s.npy", "--json", "p.json"]));
    let p = json(&d.join("p.json"))["clip_score"]["fake"]["score"]["mean"]
        .as_f64()
        .unwrap();
    assert!((p - fake).abs() < 1e-9);

    // Bad input: captions one short, an empty caption, a missing captions file, a run that
    // is not a CLIP, neither --fake nor --real.
    std::fs::write(d.join("short.txt"), caps[..39].join("\n")).unwrap();
    fails_with(
        &eval(&["--fake", "s.npy", "--captions", "short.txt"]),
        &["40 images but 39 captions"],
    );
    let mut blank = caps.clone();
    blank[3] = String::new();
    std::fs::write(d.join("blank.txt"), blank.join("\n")).unwrap();
    fails_with(
        &eval(&["--fake", "s.npy", "--captions", "blank.txt"]),
        &["caption 4 (of 40) is empty"],
    );
    fails_with(
        &eval(&["--fake", "s.npy", "--captions", "nowhere.txt"]),
        &["--captions nowhere.txt: no such file"],
    );
    fails_with(&eval(&[]), &["--fake SAMPLES.npy", "--real D"]);
    ok(&genlab(
        &[
            "train",
            "--model",
            "classifier",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            "clf",
        ],
        d,
    ));
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "clf",
                "--metrics",
                "clip-score",
                "--fake",
                "s.npy",
            ],
            d,
        ),
        &["must be a CLIP run", "classifier"],
    );

    // Linear probe and k-NN on the frozen pre-projection features (the tiny CNN tower's
    // 128-wide output), fit on the 70% digits split, tested on the other 30%.
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "run",
            "--metrics",
            "linear-probe,knn",
            "--data",
            "digits",
            "--json",
            "l.json",
        ],
        d,
    ));
    assert!(out.contains("before the projection"), "{out}");
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "run",
                "--metrics",
                "knn",
                "--probe-features",
                "mid",
            ],
            d,
        ),
        &["--probe-features expects pre or post"],
    );
    let j = json(&d.join("l.json"));
    let (lp, knn) = (
        j["probe"]["linear_probe"].as_f64().unwrap(),
        j["probe"]["knn"].as_f64().unwrap(),
    );
    assert_eq!(j["probe"]["test"].as_u64(), Some(539));
    // Ten classes: chance is 10%; the features of a CLIP that reads digits separate them.
    assert!(lp > 0.7 && knn > 0.7, "probe {lp}, k-NN {knn}");
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "run",
                "--metrics",
                "knn",
                "--data",
                "eight-gaussians",
            ],
            d,
        ),
        &["must be one of mnist, digits"],
    );
}
