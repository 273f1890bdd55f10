//! End-to-end tests of `genlab transfer` and of `genlab eval --metrics linear-probe,knn` on
//! the representations it reads (ssl encoders, classifiers, VAEs; docs/labels.md): the
//! commands as a user types them on tiny settings, resuming, and one clear error for each
//! bad input the issue names.

mod common;
use common::{fails_with, genlab, json, ok};

fn train(model: &str, steps: &str, out: &str, d: &std::path::Path) {
    ok(&genlab(
        &[
            "train", "--model", model, "--data", "digits", "--steps", steps, "--seed", "0",
            "--out", out,
        ],
        d,
    ));
}

fn transfer(from: &str, extra: &[&str], out: &str, d: &std::path::Path) -> std::process::Output {
    let mut a = vec!["transfer", "run", "--from", from, "--out", out];
    a.extend(extra);
    genlab(&a, d)
}

#[test]
fn a_labelled_source_transfers_and_a_rerun_resumes() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    train("classifier", "150", "cls", d);
    let args = [
        "--data",
        "digits",
        "--labels",
        "10,30",
        "--seeds",
        "0,1",
        "--set",
        "fit.min_steps=60",
    ];
    let out = ok(&transfer("cls", &args, "tr", d));
    assert!(out.contains("finetune-last"), "{out}");
    let lines = |d: &std::path::Path| {
        std::fs::read_to_string(d.join("tr/results.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    // 4 modes x 2 label counts x 2 seeds.
    assert_eq!(lines(d), 16);
    let report = json(&d.join("tr/transfer.json"));
    let rows = report["summary"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let mean = |mode: &str, n: u64| {
        rows.iter()
            .find(|r| r["mode"] == mode && r["labels"] == n)
            .unwrap()["mean"]
            .as_f64()
            .unwrap()
    };
    // Features learnt with every digits label beat a network trained on 10 of them.
    assert!(
        mean("probe", 10) > mean("scratch", 10) + 0.1,
        "probe {} scratch {}",
        mean("probe", 10),
        mean("scratch", 10)
    );
    for r in rows {
        let (lo, m, hi) = (
            r["min"].as_f64().unwrap(),
            r["mean"].as_f64().unwrap(),
            r["max"].as_f64().unwrap(),
        );
        assert!(lo <= m && m <= hi && r["seeds"] == 2, "{r}");
    }
    let svg = std::fs::read_to_string(d.join("tr/transfer.svg")).unwrap();
    assert_eq!(
        svg.matches("class=\"band\"").count(),
        4,
        "one band per mode"
    );
    // The shared HTML report carries the chart.
    let r = ok(&genlab(&["report", "tr", "--out", "r.html"], d));
    assert!(r.contains("1 picture inlined"), "{r}");
    let html = std::fs::read_to_string(d.join("r.html")).unwrap();
    assert!(html.contains("data:image/svg+xml;base64,") && html.contains("transfer.svg"));
    // A rerun finds every cell done: nothing trains again, the summary is the same.
    let again = ok(&transfer("cls", &args, "tr", d));
    assert_eq!(lines(d), 16);
    assert_eq!(
        json(&d.join("tr/transfer.json"))["summary"],
        report["summary"]
    );
    assert!(!again.contains("seed 0: test accuracy"), "{again}");
    // Another config in the same directory is refused rather than mixed in.
    fails_with(
        &transfer(
            "cls",
            &["--data", "digits", "--labels", "20", "--seeds", "0"],
            "tr",
            d,
        ),
        &["another config"],
    );
}

#[test]
fn ssl_and_vae_representations_probe_through_eval_and_transfer() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&genlab(
        &[
            "ssl",
            "train",
            "--method",
            "masked",
            "--data",
            "digits",
            "--steps",
            "3",
            "--batch",
            "16",
            "--out",
            "s",
            "--set",
            "encoder.channels=[4,8]",
            "--set",
            "encoder.features=16",
            "--set",
            "method.patch=2",
        ],
        d,
    ));
    let e = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "s",
            "--metrics",
            "linear-probe,knn",
            "--n",
            "200",
        ],
        d,
    ));
    assert!(
        e.contains("masked encoder") && e.contains("linear probe accuracy"),
        "{e}"
    );
    assert!(e.contains("k-NN accuracy"), "{e}");
    train("vae", "20", "vae", d);
    let e = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "vae",
            "--metrics",
            "linear-probe",
            "--json",
            "p.json",
        ],
        d,
    ));
    assert!(e.contains("posterior mean of a VAE"), "{e}");
    let p = json(&d.join("p.json"));
    assert!(p["probe"]["linear_probe"].as_f64().unwrap() > 0.1, "{p}");
    // A VAE is probed, not fine-tuned.
    let ok_probe = ok(&transfer(
        "vae",
        &[
            "--data", "digits", "--labels", "20", "--seeds", "0", "--modes", "probe",
        ],
        "tv",
        d,
    ));
    assert!(ok_probe.contains("probe"), "{ok_probe}");
    fails_with(
        &transfer(
            "vae",
            &["--data", "digits", "--modes", "finetune"],
            "tv2",
            d,
        ),
        &["probed", "not fine-tuned"],
    );
}

#[test]
fn bad_transfers_are_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    train("classifier", "5", "cls", d);
    // An 8x8 encoder cannot read 28x28 images.
    fails_with(
        &transfer("cls", &["--data", "digits28"], "x", d),
        &["[1, 8, 8]", "digits28", "same image shape"],
    );
    fails_with(
        &transfer("cls", &["--data", "digits", "--labels", "5000"], "x", d),
        &["5000", "only 1258"],
    );
    fails_with(
        &transfer("cls", &["--data", "digits", "--modes", "frozen"], "x", d),
        &["frozen", "finetune-last"],
    );
    fails_with(
        &transfer("nowhere", &["--data", "digits"], "x", d),
        &["nowhere"],
    );
    fails_with(
        &genlab(&["eval", "--ckpt", "nowhere", "--metrics", "knn"], d),
        &["nowhere"],
    );
    assert!(ok(&genlab(&["transfer", "list"], d)).contains("scratch"));
}
