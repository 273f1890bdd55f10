//! End-to-end tests of `genlab eval` and of the classifier it uses as a feature extractor.

use std::path::Path;
use std::process::{Command, Output};

use genlab_core::io::write_npy;

fn genlab(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(args)
        .env("GENLAB_DATA", data_dir)
        .output()
        .expect("run genlab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean failure; stderr: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

/// n x d deterministic pseudo-features.
fn feats(n: usize, d: usize, shift: f32, salt: usize) -> Vec<f32> {
    (0..n * d)
        .map(|k| ((k * 37 + salt * 101) as f32 * 0.173).sin() + shift)
        .collect()
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn eval_of_feature_files_prints_and_writes_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (real, fake) = (feats(200, 3, 0.0, 1), feats(150, 3, 0.3, 2));
    write_npy(&d.join("real.npy"), &[200, 3], &real).unwrap();
    write_npy(&d.join("fake.npy"), &[150, 3], &fake).unwrap();
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            &p(d, "real.npy"),
            "--fake",
            &p(d, "fake.npy"),
            "--metrics",
            "fid,kid,mmd,wasserstein,1nn",
            "--json",
            &p(d, "eval.json"),
        ],
        d,
    ));
    for m in ["fid", "kid", "mmd", "wasserstein", "1nn"] {
        assert!(out.contains(m), "{m} missing from the table:\n{out}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("eval.json")).unwrap()).unwrap();
    assert_eq!(j["n_real"], 200);
    assert_eq!(j["n_fake"], 150);
    let metrics = j["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 5);
    // The CLI's FID is the library's FID on the same (f32-stored) values.
    let to_m = |v: &[f32], n| genlab_metrics::FeatureMatrix::from_f32(n, 3, v, "x").unwrap();
    let lib = genlab_metrics::fid::fid(&to_m(&real, 200), &to_m(&fake, 150))
        .unwrap()
        .fid;
    let cli = metrics[0]["value"].as_f64().unwrap();
    assert_eq!(metrics[0]["metric"], "fid");
    assert!((cli - lib).abs() <= 1e-12 * lib.abs(), "{cli} vs {lib}");
    assert!(metrics[1]["std"].is_number(), "KID reports its spread");
}

#[test]
fn inception_and_mode_scores_from_probability_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Confident predictions spread evenly over 10 classes: IS = 10 exactly.
    let onehot: Vec<f32> = (0..100 * 10)
        .map(|k| if k % 10 == (k / 10) % 10 { 1.0 } else { 0.0 })
        .collect();
    write_npy(&d.join("p.npy"), &[100, 10], &onehot).unwrap();
    write_npy(&d.join("f.npy"), &[100, 2], &feats(100, 2, 0.0, 0)).unwrap();
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            &p(d, "f.npy"),
            "--fake",
            &p(d, "f.npy"),
            "--metrics",
            "is,mode",
            "--fake-probs",
            &p(d, "p.npy"),
            "--real-probs",
            &p(d, "p.npy"),
            "--splits",
            "1",
            "--json",
            &p(d, "s.json"),
        ],
        d,
    ));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("s.json")).unwrap()).unwrap();
    for m in j["metrics"].as_array().unwrap() {
        let v = m["value"].as_f64().unwrap();
        assert!((v - 10.0).abs() < 1e-9, "{m}\n{out}");
    }
    assert_eq!(j["metrics"][0]["detail"]["confident_fraction"], 1.0);
    assert!(out.contains("100.0% of generated samples"), "{out}");
}

#[test]
fn inception_and_mode_scores_from_probability_files_need_no_samples() {
    // Regression: `--fake-probs/--real-probs` alone used to demand --real and --fake.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let onehot: Vec<f32> = (0..100 * 10)
        .map(|k| if k % 10 == (k / 10) % 10 { 1.0 } else { 0.0 })
        .collect();
    write_npy(&d.join("p.npy"), &[100, 10], &onehot).unwrap();
    let out = ok(&genlab(
        &[
            "eval",
            "--metrics",
            "is,mode",
            "--fake-probs",
            &p(d, "p.npy"),
            "--real-probs",
            &p(d, "p.npy"),
            "--splits",
            "1",
        ],
        d,
    ));
    assert!(out.contains("is ") && out.contains("10.000000"), "{out}");
    // The Mode Score still needs the real side's probabilities from somewhere.
    fails_with(
        &genlab(
            &["eval", "--metrics", "mode", "--fake-probs", &p(d, "p.npy")],
            d,
        ),
        &["--real is needed", "--real-probs"],
    );
    // Feature metrics still need both sides.
    fails_with(
        &genlab(
            &[
                "eval",
                "--metrics",
                "fid,is",
                "--fake-probs",
                &p(d, "p.npy"),
            ],
            d,
        ),
        &["--real is needed"],
    );
}

#[test]
fn classifier_trains_and_serves_as_the_feature_extractor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = p(d, "clf");
    ok(&genlab(
        &[
            "train",
            "--model",
            "classifier",
            "--data",
            "digits",
            "--steps",
            "60",
            "--out",
            &run,
            "--quiet",
            "--set",
            "train.batch_size=32",
        ],
        d,
    ));
    // Not generative: sampling it is a clear error.
    fails_with(
        &genlab(&["sample", "--ckpt", &run, "--out", &p(d, "x.npy")], d),
        &["do not generate samples"],
    );
    // The same images on both sides: FID ~ 0, 1-NN finds every point's twin... of the
    // other side, so accuracy 0; the classifier's probabilities give an IS above 1.
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            "digits",
            "--fake",
            "digits",
            "--n",
            "300",
            "--features",
            &run,
            "--metrics",
            "fid,is,1nn",
            "--json",
            &p(d, "e.json"),
        ],
        d,
    ));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    let m = j["metrics"].as_array().unwrap();
    assert!(m[0]["value"].as_f64().unwrap().abs() < 1e-6, "{out}");
    assert!(m[1]["value"].as_f64().unwrap() > 1.5, "{out}");
    assert!(
        j["features"]
            .as_str()
            .unwrap()
            .contains("genlab-classifier"),
        "{j}"
    );
    // An image folder (20x20 RGB PNGs) is resized to the classifier's 1x8x8 input.
    let folder = d.join("pngs");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..6 {
        let px: Vec<f32> = (0..3 * 20 * 20)
            .map(|k| (((k + 7 * i) as f32) * 0.37).sin() * 0.5 + 0.5)
            .collect();
        let img = genlab_report::image_grid(&px, 1, 3, 20, 20, 1, 1, 0).unwrap();
        genlab_report::save_png(&img, folder.join(format!("{i}.png"))).unwrap();
    }
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            "digits",
            "--fake",
            &format!("folder:{}", folder.display()),
            "--n",
            "50",
            "--features",
            &run,
            "--metrics",
            "kid,1nn",
        ],
        d,
    ));
    assert!(out.contains("6 of 6 examples"), "{out}");
    // Reference statistics: saved once, then used in place of the real images.
    ok(&genlab(
        &[
            "eval",
            "--real",
            "digits",
            "--fake",
            "digits",
            "--n",
            "300",
            "--features",
            &run,
            "--metrics",
            "fid",
            "--save-real-stats",
            &p(d, "ref.safetensors"),
        ],
        d,
    ));
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            &p(d, "ref.safetensors"),
            "--fake",
            "digits",
            "--n",
            "300",
            "--features",
            &run,
            "--metrics",
            "fid",
        ],
        d,
    ));
    assert!(out.contains("statistics of 300 samples"), "{out}");
    // ...but not with another extractor.
    fails_with(
        &genlab(
            &[
                "eval",
                "--real",
                &p(d, "ref.safetensors"),
                "--fake",
                "digits",
                "--n",
                "300",
                "--features",
                "pixels",
                "--metrics",
                "fid",
            ],
            d,
        ),
        &["statistics of", "meaningless"],
    );
}

#[test]
fn bad_eval_input_gets_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_npy(&d.join("a.npy"), &[20, 3], &feats(20, 3, 0.0, 1)).unwrap();
    write_npy(&d.join("b.npy"), &[20, 4], &feats(20, 4, 0.0, 2)).unwrap();
    write_npy(&d.join("one.npy"), &[1, 3], &feats(1, 3, 0.0, 3)).unwrap();
    let mut nan = feats(20, 3, 0.0, 4);
    nan[7] = f32::NAN;
    write_npy(&d.join("nan.npy"), &[20, 3], &nan).unwrap();
    write_npy(&d.join("probs.npy"), &[20, 3], &vec![0.5; 60]).unwrap();
    write_npy(&d.join("img.npy"), &[4, 1, 8, 8], &vec![0.5; 256]).unwrap();
    let (a, b) = (p(d, "a.npy"), p(d, "b.npy"));
    let run = |args: &[&str]| {
        let mut v = vec!["eval"];
        v.extend_from_slice(args);
        genlab(&v, d)
    };
    fails_with(
        &run(&["--real", &a, "--fake", &b]),
        &["feature dimensions differ", "3", "4"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", &a, "--metrics", "fid,precision"]),
        &["unknown metric `precision`", "1nn"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", &p(d, "one.npy"), "--metrics", "fid"]),
        &["1 samples", "at least 2"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", &p(d, "nan.npy")]),
        &["row 2, column 1", "NaN", "finite"],
    );
    fails_with(
        &run(&[
            "--real",
            &a,
            "--fake",
            &a,
            "--metrics",
            "is",
            "--fake-probs",
            &p(d, "probs.npy"),
        ]),
        &["sums to 1.5", "expected 1"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", &a, "--n", "0"]),
        &["--n must be at least 1"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", &a, "--metrics", "is"]),
        &["is needs class probabilities"],
    );
    fails_with(
        &run(&["--real", &p(d, "img.npy"), "--fake", &p(d, "img.npy")]),
        &["need a feature extractor", "--features"],
    );
    // Pretrained extractors whose weights are not in $GENLAB_DATA/weights name the file.
    let img = p(d, "img.npy");
    fails_with(
        &run(&["--real", &img, "--fake", &img, "--features", "inception"]),
        &["pt_inception-2015-12-05-6726825d.pth", "weights"],
    );
    fails_with(
        &run(&[
            "--real",
            &img,
            "--fake",
            &img,
            "--features",
            "efficientnet-lite0",
        ]),
        &["genlab data fetch efficientnet-lite0"],
    );
    fails_with(
        &run(&["--real", &a, "--fake", "no-such-dataset"]),
        &["fake side `no-such-dataset`"],
    );
}
