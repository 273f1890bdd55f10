//! End-to-end tests of `genlab fewshot` and `genlab data make glyphs`: the commands of
//! docs/fewshot.md as a user types them (train, resume, eval with --json, list) on tiny
//! settings, and one clear error for each kind of bad input the issue names. The methods
//! themselves are tested in genlab-fewshot.

mod common;
use common::{fails_with, genlab, json, ok};

/// A tiny ProtoNet on the synthetic classes: 6x6 images, two conv blocks of 8 filters.
const TINY: &[&str] = &[
    "--set",
    "embedding.channels=8",
    "--set",
    "embedding.groups=2",
    "--set",
    "embedding.blocks=2",
];

#[test]
fn protonet_train_resume_eval_and_list() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = [
        "fewshot",
        "train",
        "--method",
        "protonet",
        "--data",
        "synthetic",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "5",
        "--val-every",
        "5",
        "--val-episodes",
        "10",
        "--ckpt-every",
        "5",
    ];
    // Straight to 10 steps, and 5 steps then resumed to 10: the same weights.
    let mut a: Vec<&str> = base.to_vec();
    a.extend(["--steps", "10", "--out", "straight"]);
    a.extend(TINY);
    ok(&genlab(&a, d));
    let mut b: Vec<&str> = base.to_vec();
    b.extend(["--steps", "5", "--out", "resumed"]);
    b.extend(TINY);
    ok(&genlab(&b, d));
    ok(&genlab(
        &[
            "fewshot",
            "train",
            "--method",
            "protonet",
            "--data",
            "synthetic",
            "--steps",
            "10",
            "--out",
            "resumed",
            "--resume",
            "--ways",
            "3",
            "--shots",
            "1",
            "--queries",
            "5",
        ],
        d,
    ));
    let bytes = |r: &str| std::fs::read(d.join(r).join("checkpoint.safetensors")).unwrap();
    assert_eq!(
        bytes("straight"),
        bytes("resumed"),
        "resume must continue exactly"
    );
    // The log has meta-validation accuracy with an interval at steps 5 and 10.
    let log = std::fs::read_to_string(d.join("straight/log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["step"], 10);
    assert!(lines[1]["val"]["ci95"].as_f64().unwrap() >= 0.0);
    // Evaluation: mean accuracy with a 95% interval, as text and JSON with the configs.
    let out = ok(&genlab(
        &[
            "fewshot",
            "eval",
            "--ckpt",
            "straight",
            "--ways",
            "3",
            "--shots",
            "2",
            "--queries",
            "3",
            "--episodes",
            "20",
            "--json",
            "e.json",
        ],
        d,
    ));
    assert!(
        out.contains("3-way 2-shot accuracy") && out.contains("95% CI, 20 episodes"),
        "{out}"
    );
    let e = json(&d.join("e.json"));
    let acc = e["result"]["mean"].as_f64().unwrap();
    // Noisy templates are easy: far above chance (1/3) even for a barely trained embedding.
    assert!(acc > 0.6, "accuracy {acc}");
    assert_eq!(e["train_config"]["method"], "protonet");
    assert_eq!(e["result"]["n"], 20);
    // Cross-domain: the synthetic run scored on another source of another shape is refused.
    fails_with(
        &genlab(
            &[
                "fewshot",
                "eval",
                "--ckpt",
                "straight",
                "--data",
                "digits",
                "--episodes",
                "2",
            ],
            d,
        ),
        &["--data", "shape"],
    );
    // The listing carries every method's paper and defaults.
    let l: serde_json::Value =
        serde_json::from_str(&ok(&genlab(&["fewshot", "list", "--json"], d))).unwrap();
    let names: Vec<&str> = l["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"protonet") && names.contains(&"maml"),
        "{names:?}"
    );
}

#[test]
fn maml_on_sinusoids_reports_the_adapted_mse() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&genlab(
        &[
            "fewshot",
            "train",
            "--method",
            "maml",
            "--data",
            "sinusoid",
            "--shots",
            "5",
            "--queries",
            "5",
            "--steps",
            "4",
            "--meta-batch",
            "2",
            "--val-every",
            "2",
            "--val-episodes",
            "4",
            "--out",
            "m",
            "--set",
            "hidden=[8]",
        ],
        d,
    ));
    let out = ok(&genlab(
        &[
            "fewshot",
            "eval",
            "--ckpt",
            "m",
            "--shots",
            "5",
            "--queries",
            "20",
            "--episodes",
            "10",
            "--json",
            "m.json",
        ],
        d,
    ));
    assert!(out.contains("5-shot MSE"), "{out}");
    let e = json(&d.join("m.json"));
    assert_eq!(e["metric"], "mse");
    assert!(e["result"]["mean"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_gets_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let train = |extra: &[&str]| {
        let mut a = vec!["fewshot", "train", "--steps", "1", "--out", "bad"];
        a.extend(extra);
        genlab(&a, d)
    };
    // Ways larger than the classes available (synthetic: 15 meta-train classes).
    fails_with(
        &train(&[
            "--method",
            "protonet",
            "--data",
            "synthetic",
            "--ways",
            "40",
        ]),
        &["--ways is 40", "only 15 classes"],
    );
    // Shots + queries larger than a class's examples (20 each).
    fails_with(
        &train(&[
            "--method",
            "protonet",
            "--data",
            "synthetic",
            "--shots",
            "10",
            "--queries",
            "15",
        ]),
        &[
            "--shots is 10 and queries 15: 25 examples per class",
            "only 20",
        ],
    );
    // An unknown method, naming the known ones.
    fails_with(
        &train(&["--method", "protonets", "--data", "synthetic"]),
        &["unknown few-shot method `protonets`", "protonet"],
    );
    // MAML with a non-positive inner learning rate.
    fails_with(
        &train(&[
            "--method",
            "maml",
            "--data",
            "sinusoid",
            "--set",
            "inner_lr=0",
        ]),
        &["inner learning rate", "positive"],
    );
    // A method on the wrong kind of task.
    fails_with(
        &train(&["--method", "maml", "--data", "synthetic"]),
        &["regression"],
    );
    // A fonts folder with no usable font.
    std::fs::create_dir_all(d.join("fonts")).unwrap();
    std::fs::write(d.join("fonts/broken.ttf"), b"not a font").unwrap();
    fails_with(
        &genlab(&["data", "make", "glyphs", "--fonts", "fonts"], d),
        &["no usable font"],
    );
    // The glyph set before it is made.
    fails_with(
        &train(&["--method", "protonet", "--data", "glyphs"]),
        &["genlab data make glyphs"],
    );
}
