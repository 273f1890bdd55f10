//! End-to-end tests of `genlab cl`: the commands of docs/continual.md as a user types them,
//! on the embedded 8x8 digits with tiny settings (run, table with reuse, list), and one
//! clear error for each kind of bad input the issue names. The methods themselves are tested
//! in genlab-continual.

mod common;
use common::{fails_with, genlab, json, ok, stderr};

const TINY: &[&str] = &[
    "--benchmark",
    "split-digits",
    "--iters",
    "30",
    "--batch",
    "32",
    "--hidden",
    "32,32",
    "--quiet",
];

#[test]
fn cl_run_writes_the_matrix_measures_and_page() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut args = vec![
        "cl",
        "run",
        "--scenario",
        "class",
        "--method",
        "ewc",
        "--out",
        "r",
    ];
    args.extend_from_slice(TINY);
    let out = ok(&genlab(&args, d));
    assert!(out.contains("average accuracy"), "{out}");
    let r = json(&d.join("r/result.json"));
    let m = r["accuracy"].as_array().unwrap();
    assert_eq!(m.len(), 5);
    assert!(m.iter().all(|row| row.as_array().unwrap().len() == 5));
    // The average accuracy is the mean of the last row.
    let last: Vec<f64> = m[4]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let acc = r["measures"]["average_accuracy"].as_f64().unwrap();
    assert!((acc - last.iter().sum::<f64>() / 5.0).abs() < 1e-12);
    for k in ["backward_transfer", "forward_transfer", "forgetting"] {
        assert!(r["measures"][k].is_number(), "{k}");
    }
    assert_eq!(r["config"]["method_config"]["lambda"].as_f64(), Some(1e8));
    assert!(r["memory"][0]["floats"].as_u64().unwrap() > 0);
    for f in ["index.html", "matrix.svg", "curves.svg"] {
        assert!(d.join("r").join(f).exists(), "{f}");
    }
    // Same seed, same bytes of the matrix.
    let o2 = genlab(
        &args
            .iter()
            .map(|a| if *a == "r" { "r2" } else { a })
            .collect::<Vec<_>>(),
        d,
    );
    ok(&o2);
    assert_eq!(json(&d.join("r2/result.json"))["accuracy"], r["accuracy"]);
}

#[test]
fn cl_table_runs_the_grid_reuses_runs_and_prints_mean_and_spread() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut args = vec![
        "cl",
        "table",
        "--seeds",
        "2",
        "--methods",
        "finetune,icarl",
        "--out",
        "tab",
    ];
    args.extend_from_slice(TINY);
    let o = genlab(&args, d);
    let out = ok(&o);
    assert!(out.contains("finetune") && out.contains("±"), "{out}");
    // iCaRL applies to Class-IL only: its other cells are skipped, with a note.
    assert!(stderr(&o).contains("skipping icarl"), "{}", stderr(&o));
    assert!(d.join("tab/icarl-class-s1/result.json").exists());
    assert!(!d.join("tab/icarl-task-s0").exists());
    let cells = json(&d.join("tab/table.json"));
    assert_eq!(cells.as_array().unwrap().len(), 4);
    // A second call reuses the finished runs (the files are not rewritten).
    let p = d.join("tab/finetune-task-s0/result.json");
    let before = std::fs::metadata(&p).unwrap().modified().unwrap();
    ok(&genlab(&args, d));
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
}

#[test]
fn cl_stream_mode_runs_a_task_free_method_in_one_pass() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut args = vec![
        "cl",
        "run",
        "--scenario",
        "class",
        "--method",
        "replay",
        "--stream",
        "--overlap",
        "0.2",
        "--out",
        "s",
    ];
    args.extend_from_slice(TINY);
    ok(&genlab(&args, d));
    let r = json(&d.join("s/result.json"));
    assert_eq!(r["config"]["stream"], true);
    assert_eq!(r["accuracy"].as_array().unwrap().len(), 5);
}

#[test]
fn cl_list_names_every_method_and_benchmark() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(&genlab(&["cl", "list", "--json"], t.path()));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "finetune",
        "joint",
        "ewc",
        "si",
        "lwf",
        "dgr",
        "dgr-distill",
        "icarl",
    ] {
        assert!(names.contains(&m), "{m}");
    }
    assert!(out.contains("split-mnist") && out.contains("permuted-mnist"));
}

#[test]
fn cl_bad_input_gets_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let run = |extra: &[&str]| {
        let mut a = vec!["cl", "run", "--out", "bad"];
        a.extend_from_slice(extra);
        genlab(&a, d)
    };
    // iCaRL needs class-incremental labels.
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "task",
            "--method",
            "icarl",
        ]),
        &["--scenario", "icarl", "class"],
    );
    // An empty or too-small replay buffer.
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "class",
            "--method",
            "replay",
            "--set",
            "method.budget=0",
        ]),
        &["--set method.budget", "too small"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "class",
            "--method",
            "icarl",
            "--set",
            "method.budget=5",
        ]),
        &["--set method.budget", "10 classes"],
    );
    // An unknown benchmark, method, scenario, setting.
    fails_with(
        &run(&[
            "--benchmark",
            "split-cifar",
            "--scenario",
            "task",
            "--method",
            "ewc",
        ]),
        &["--benchmark", "split-cifar", "split-mnist"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "task",
            "--method",
            "ewk",
        ]),
        &["--method", "ewk"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "online",
            "--method",
            "ewc",
        ]),
        &["--scenario", "online", "task, domain, class"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "task",
            "--method",
            "ewc",
            "--set",
            "method.lamda=3",
        ]),
        &["lamda", "lambda"],
    );
    // Tasks that share classes, and tasks the domain scenario cannot share outputs between.
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "class",
            "--method",
            "finetune",
            "--tasks",
            "0,1/1,2",
        ]),
        &["--tasks", "share classes"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "domain",
            "--method",
            "finetune",
            "--tasks",
            "0,1,2/3,4",
        ]),
        &["--tasks", "same number of classes"],
    );
    // MNIST not downloaded: say how to get it.
    fails_with(
        &run(&[
            "--benchmark",
            "split-mnist",
            "--scenario",
            "task",
            "--method",
            "ewc",
        ]),
        &["genlab data fetch mnist"],
    );
    // A method that needs task boundaries in the task-free stream.
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "class",
            "--method",
            "ewc",
            "--stream",
        ]),
        &["--method", "task-free", "replay"],
    );
    fails_with(
        &run(&[
            "--benchmark",
            "split-digits",
            "--scenario",
            "class",
            "--method",
            "replay",
            "--stream",
            "--overlap",
            "1.5",
        ]),
        &["--overlap", "[0, 1]"],
    );
    assert!(!d.join("bad/result.json").exists());
}
