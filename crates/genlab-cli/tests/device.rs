//! `--device`: the default build runs on the CPU, refuses `cuda` with one clear message
//! before doing any work, and rejects unknown devices at parse time.

use std::path::Path;
use std::process::{Command, Output};

const NO_CUDA: &str = "this genlab was built without CUDA support; rebuild with \
    `cargo build --release --features cuda`";

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

/// A clean failure (exit `code`, no panic) whose stderr contains every needle.
fn fails_with(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_build_without_cuda_refuses_cuda_with_one_clear_message() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let run_s = run.to_str().unwrap();
    let ckpt_s = t.path().join("none").to_str().unwrap().to_string();
    let out_s = t.path().join("s.npy").to_str().unwrap().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--device", "cuda", "list"],
        // The flag is global: after the subcommand too, and with an ordinal.
        vec!["list", "--device", "cuda:1"],
        vec![
            "--device",
            "cuda",
            "train",
            "--model",
            "ddpm",
            "--data",
            "eight-gaussians",
            "--steps",
            "5",
            "--out",
            run_s,
            "--quiet",
        ],
        vec![
            "sample", "--device", "CUDA:0", "--ckpt", &ckpt_s, "--out", &out_s,
        ],
    ];
    for args in cases {
        let o = genlab(&args, t.path());
        fails_with(&o, 1, &[NO_CUDA]);
        // One message, not one per layer.
        assert_eq!(
            stderr(&o).matches("CUDA").count(),
            1,
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Refused before any work: training wrote nothing.
    assert!(!run.exists(), "a refused run created {}", run.display());
}

/// A CUDA build asked for a GPU it cannot open (no driver, no GPU, or as here an ordinal no
/// machine has) wraps candle's error in one message, before doing any work.
#[cfg(feature = "cuda")]
#[test]
fn a_cuda_build_reports_a_device_it_cannot_open() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("s.npy");
    let o = genlab(
        &[
            "--device",
            "cuda:99",
            "sample",
            "--ckpt",
            t.path().join("none").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        t.path(),
    );
    fails_with(&o, 1, &["cannot open CUDA device 99", "--device cpu"]);
    assert!(!stderr(&o).contains(NO_CUDA), "{}", stderr(&o));
}

#[test]
fn unknown_devices_are_rejected_when_parsing() {
    let t = tempfile::tempdir().unwrap();
    for (args, bad) in [
        (vec!["--device", "gpu", "list"], "gpu"),
        (vec!["list", "--device", "cuda:x"], "cuda:x"),
        (vec!["--device", "", "list"], ""),
    ] {
        let o = genlab(&args, t.path());
        // clap's usage error: exit 2, the value and what is accepted.
        fails_with(
            &o,
            2,
            &[
                &format!("unknown device `{bad}`"),
                "expected cpu, cuda or cuda:N",
                "--device",
            ],
        );
    }
}

#[test]
fn explicit_cpu_trains_and_samples() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let npy = t.path().join("s.npy");
    let o = genlab(
        &[
            "--device",
            "cpu",
            "train",
            "--model",
            "ddpm",
            "--data",
            "eight-gaussians",
            "--steps",
            "5",
            "--out",
            run.to_str().unwrap(),
            "--quiet",
            "--no-preview",
            "--set",
            "ddpm.timesteps=20",
            "--set",
            "ddpm.net.mlp.hidden=16",
            "--set",
            "train.batch_size=32",
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = genlab(
        &[
            "sample",
            "--device",
            "cpu",
            "--ckpt",
            run.to_str().unwrap(),
            "--n",
            "10",
            "--steps",
            "5",
            "--out",
            npy.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(npy.exists());
}

#[test]
fn help_documents_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let o = genlab(&["--help"], t.path());
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--device <DEVICE>") && help.contains("cuda:N"),
        "{help}"
    );
}
