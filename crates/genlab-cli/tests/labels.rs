//! End-to-end tests of `genlab active`, `genlab semi` and `genlab ssl` (docs/labels.md):
//! the commands as a user types them on tiny settings, and one clear error for each kind
//! of bad input the issue names. The strategies and methods themselves are tested in
//! genlab-labels.

mod common;
use common::{fails_with, genlab, json, ok};

const TINY: &[&str] = &[
    "--set",
    "model.channels=8",
    "--set",
    "model.hidden=16",
    "--set",
    "fit.epochs=3",
    "--set",
    "fit.batch=16",
];

fn active(extra: &[&str], d: &std::path::Path) -> std::process::Output {
    let mut a = vec!["active", "run", "--data", "synthetic"];
    a.extend(extra);
    a.extend(TINY);
    genlab(&a, d)
}

#[test]
fn active_run_writes_a_curve_and_plot_combines_runs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = [
        "--initial",
        "10",
        "--per-round",
        "5",
        "--budget",
        "20",
        "--pool-subset",
        "50",
        "--set",
        "mc_samples=3",
    ];
    let mut a = vec!["--strategy", "bald", "--out", "bald"];
    a.extend(base);
    let out = ok(&active(&a, d));
    assert!(out.contains("labels to 10% error"), "{out}");
    let c = json(&d.join("bald/curve.json"));
    let labels: Vec<u64> = c["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["labels"].as_u64().unwrap())
        .collect();
    assert_eq!(labels, vec![10, 15, 20]);
    assert!(d.join("bald/curve.svg").exists() && d.join("bald/rounds.jsonl").exists());
    let mut r = vec!["--strategy", "random", "--out", "random"];
    r.extend(base);
    ok(&active(&r, d));
    let p = ok(&genlab(
        &["active", "plot", "bald", "random", "--out", "both.svg"],
        d,
    ));
    assert!(
        p.contains("random on synthetic") && d.join("both.svg").exists(),
        "{p}"
    );
    let list = ok(&genlab(&["active", "list", "--json"], d));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["strategies"].as_array().unwrap().len(), 8);
}

#[test]
fn active_bad_input_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fails_with(
        &active(
            &[
                "--strategy",
                "bald",
                "--initial",
                "20",
                "--budget",
                "10",
                "--out",
                "r",
            ],
            d,
        ),
        &["--budget", "smaller than the initial labelled set of 20"],
    );
    fails_with(
        &active(
            &[
                "--strategy",
                "random",
                "--initial",
                "10",
                "--budget",
                "5000",
                "--out",
                "r",
            ],
            d,
        ),
        &["--budget", "pool has only 600"],
    );
    fails_with(
        &active(
            &[
                "--strategy",
                "variation-ratios",
                "--budget",
                "30",
                "--out",
                "r",
                "--set",
                "model.dropout_conv=0",
                "--set",
                "model.dropout_fc=0",
            ],
            d,
        ),
        &["--strategy", "Monte Carlo dropout", "no dropout"],
    );
    fails_with(
        &active(&["--strategy", "nope", "--out", "r"], d),
        &["nope", "bald", "coreset"],
    );
    fails_with(
        &active(
            &["--strategy", "random", "--out", "r", "--set", "fit.nope=1"],
            d,
        ),
        &["nope"],
    );
}

#[test]
fn semi_runs_and_refuses_more_labels_than_exist() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = ok(&genlab(
        &[
            "semi",
            "run",
            "--method",
            "fixmatch",
            "--data",
            "synthetic",
            "--labels",
            "20",
            "--out",
            "fm",
            "--set",
            "method.steps=5",
            "--set",
            "method.batch=8",
            "--set",
            "method.mu=2",
            "--set",
            "model.channels=8",
        ],
        d,
    ));
    assert!(
        out.contains("fixmatch on synthetic with 20 labels"),
        "{out}"
    );
    assert!(json(&d.join("fm/result.json"))["test_accuracy"].is_number());
    fails_with(
        &genlab(
            &[
                "semi",
                "run",
                "--method",
                "supervised",
                "--data",
                "digits",
                "--labels",
                "5000",
                "--out",
                "x",
            ],
            d,
        ),
        &["--labels", "5000", "pool has 1258"],
    );
    fails_with(
        &genlab(
            &[
                "semi", "run", "--method", "mixmatch", "--data", "digits", "--out", "x",
            ],
            d,
        ),
        &["mixmatch", "fixmatch"],
    );
    fails_with(
        &genlab(
            &[
                "semi",
                "run",
                "--method",
                "fixmatch",
                "--data",
                "digits",
                "--out",
                "x",
                "--set",
                "method.ema=1.5",
            ],
            d,
        ),
        &["method.ema", "[0, 1)", "1.5"],
    );
    assert!(ok(&genlab(&["semi", "list"], d)).contains("co-training"));
}

#[test]
fn ssl_train_eval_and_list() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = ok(&genlab(
        &[
            "ssl",
            "train",
            "--method",
            "simclr",
            "--data",
            "synthetic",
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
            "knn_k=5",
        ],
        d,
    ));
    assert!(out.contains("linear probe"), "{out}");
    let e = ok(&genlab(
        &["ssl", "eval", "--ckpt", "s", "--data", "digits"],
        d,
    ));
    assert!(e.contains("digits: linear probe"), "{e}");
    fails_with(
        &genlab(
            &[
                "ssl",
                "train",
                "--method",
                "simclr",
                "--data",
                "synthetic",
                "--batch",
                "1",
                "--out",
                "x",
            ],
            d,
        ),
        &["--batch", "at least 2"],
    );
    assert!(ok(&genlab(&["ssl", "list", "--json"], d)).contains("rotation"));
}

#[test]
fn ssl_momentum_methods_train_and_repeat_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for (method, extra) in [("moco", "method.queue=40"), ("byol", "method.tau_base=0.9")] {
        let mut bytes = Vec::new();
        for run in ["a", "b"] {
            let out_dir = format!("{method}-{run}");
            let out = ok(&genlab(
                &[
                    "ssl",
                    "train",
                    "--method",
                    method,
                    "--data",
                    "synthetic",
                    "--steps",
                    "3",
                    "--batch",
                    "16",
                    "--seed",
                    "4",
                    "--out",
                    &out_dir,
                    "--set",
                    "encoder.channels=[4,8]",
                    "--set",
                    "encoder.features=16",
                    "--set",
                    "knn_k=5",
                    "--set",
                    extra,
                ],
                d,
            ));
            assert!(out.contains("linear probe"), "{method}: {out}");
            bytes.push(std::fs::read(d.join(&out_dir).join("checkpoint.safetensors")).unwrap());
        }
        assert_eq!(bytes[0], bytes[1], "{method}: same seed, same checkpoint");
    }
    fails_with(
        &genlab(
            &[
                "ssl",
                "train",
                "--method",
                "moco",
                "--data",
                "synthetic",
                "--out",
                "x",
                "--set",
                "method.queue=0",
            ],
            d,
        ),
        &["method.queue"],
    );
    let list = ok(&genlab(&["ssl", "list"], d));
    assert!(list.contains("moco") && list.contains("byol"), "{list}");
}
