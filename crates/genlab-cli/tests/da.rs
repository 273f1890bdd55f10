//! End-to-end tests of `genlab da` (docs/labels.md, "Domain adaptation"): tiny runs on the
//! built-in 8x8 sets (MNIST is absent here: `GENLAB_DATA` is the scratch directory), their
//! determinism, and one clear error for each kind of bad input. The methods themselves
//! (gradient reversal, MMD, the domain loss) are tested in genlab-labels.

mod common;
use common::{fails_with, genlab, json, ok};

/// A few steps of a tiny network: digits (labelled) -> synthetic (unlabelled), both 8x8
/// with 10 classes.
fn da(method: &str, out: &str, extra: &[&str], d: &std::path::Path) -> std::process::Output {
    let mut a = vec![
        "da",
        "run",
        "--method",
        method,
        "--source",
        "digits",
        "--target",
        "synthetic",
        "--steps",
        "6",
        "--out",
        out,
        "--set",
        "batch=8",
        "--set",
        "model.channels=4",
        "--set",
        "model.hidden=8",
        "--set",
        "log_every=2",
        "--set",
        "eval_every=4",
    ];
    a.extend(extra);
    genlab(&a, d)
}

fn without_seconds(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

#[test]
fn every_method_runs_and_a_seed_repeats_its_run() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for m in ["source-only", "target-only", "dann", "mmd"] {
        let out = ok(&da(m, m, &[], d));
        assert!(out.contains("target test accuracy"), "{out}");
        let r = json(&d.join(m).join("result.json"));
        for k in ["target_accuracy", "source_accuracy"] {
            let a = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{m} {k} {a}");
        }
        assert_eq!(json(&d.join(m).join("config.json"))["method"], m);
        let log = std::fs::read_to_string(d.join(m).join("log.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
    }
    let log = std::fs::read_to_string(d.join("dann/log.jsonl")).unwrap();
    assert!(
        log.contains("domain_loss") && log.contains("target_accuracy"),
        "{log}"
    );
    let mmd = std::fs::read_to_string(d.join("mmd/log.jsonl")).unwrap();
    assert!(
        mmd.contains("mmd_features") && mmd.contains("mmd_logits"),
        "{mmd}"
    );
    // Same seed, same run (log and result); another seed, another run.
    ok(&da("dann", "again", &[], d));
    let read = |r: &str| std::fs::read_to_string(d.join(r).join("log.jsonl")).unwrap();
    assert_eq!(
        without_seconds(&read("dann")),
        without_seconds(&read("again"))
    );
    let (a, b) = (
        json(&d.join("dann/result.json")),
        json(&d.join("again/result.json")),
    );
    assert_eq!(a["target_accuracy"], b["target_accuracy"]);
    assert_eq!(a["source_accuracy"], b["source_accuracy"]);
    ok(&da("dann", "seed1", &["--seed", "1"], d));
    assert_ne!(
        without_seconds(&read("dann")),
        without_seconds(&read("seed1"))
    );
    let list = ok(&genlab(&["da", "list", "--json"], d));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["methods"].as_array().unwrap().len(), 4);
    assert_eq!(v["defaults"]["target"], "digits28");
}

#[test]
fn da_bad_input_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fails_with(
        &da("coral", "x", &[], d),
        &["unknown domain-adaptation method `coral`", "dann", "mmd"],
    );
    // The 8x8 source and the 28x28 target: one network cannot take both.
    fails_with(
        &genlab(
            &[
                "da",
                "run",
                "--method",
                "dann",
                "--source",
                "synthetic",
                "--target",
                "digits28",
                "--out",
                "x",
            ],
            d,
        ),
        &["[1, 8, 8]", "[1, 28, 28]", "one image shape"],
    );
    fails_with(
        &genlab(
            &[
                "da", "run", "--method", "dann", "--source", "digits", "--target", "svhn", "--out",
                "x",
            ],
            d,
        ),
        &["unknown data `svhn`", "digits28"],
    );
    // MNIST not fetched (GENLAB_DATA is the empty scratch directory).
    fails_with(
        &genlab(&["da", "run", "--method", "source-only", "--out", "x"], d),
        &["genlab data fetch mnist"],
    );
    fails_with(
        &da("mmd", "x", &["--set", "method.factors=[1.0, -1.0]"], d),
        &["method.factors"],
    );
    fails_with(
        &da("source-only", "x", &["--set", "method.lambda=1"], d),
        &["lambda"],
    );
    fails_with(&da("dann", "x", &["--set", "batch=1"], d), &["batch"]);
    assert!(
        !d.join("x").exists(),
        "a refused run must not leave a directory"
    );
}
