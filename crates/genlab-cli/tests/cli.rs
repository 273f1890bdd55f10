//! End-to-end tests of the `genlab` binary: the commands a user types, their outputs, and
//! one clear error (non-zero exit, no panic) for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Asserts a clean failure whose message contains every `needle`.
fn fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

/// A tiny, fast DDPM config for 2-D data.
const TINY: &[&str] = &[
    "--set",
    "ddpm.timesteps=50",
    "--set",
    "ddpm.net.mlp.hidden=32",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.log_every=5",
    "--set",
    "train.warmup_steps=5",
];

fn train_tiny(out: &Path, data_dir: &Path, seed: &str, steps: &str) -> Output {
    let out_s = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--model",
        "ddpm",
        "--data",
        "eight-gaussians",
        "--steps",
        steps,
        "--seed",
        seed,
        "--out",
        out_s,
        "--quiet",
    ];
    args.extend_from_slice(TINY);
    genlab(&args, data_dir)
}

struct Tmp(tempfile::TempDir);
impl Tmp {
    fn new() -> Self {
        Tmp(tempfile::tempdir().unwrap())
    }
    fn p(&self, s: &str) -> PathBuf {
        self.0.path().join(s)
    }
}

#[test]
fn train_then_sample_npy_and_png_with_config_sidecar() {
    let t = Tmp::new();
    let o = train_tiny(&t.p("run"), t.0.path(), "0", "30");
    assert!(o.status.success(), "{}", stderr(&o));
    // The preview of point data is measured against the data, not only drawn.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Wasserstein-1") && out.contains("1-NN accuracy"),
        "{out}"
    );
    for f in [
        "checkpoint.safetensors",
        "config.json",
        "log.jsonl",
        "loss.svg",
        "samples.png",
    ] {
        assert!(t.p("run").join(f).exists(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("run/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ddpm"]["timesteps"], 50);
    assert_eq!(cfg["train"]["steps"], 30);

    let npy = t.p("s.npy");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            t.p("run").to_str().unwrap(),
            "--n",
            "37",
            "--seed",
            "1",
            "--sampler",
            "ddpm",
            "--steps",
            "20",
            "--out",
            npy.to_str().unwrap(),
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = genlab_core::io::read_npy(&npy).unwrap();
    assert_eq!(a.shape, vec![37, 2]);
    assert!(a.data.iter().all(|v| v.is_finite()));
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("s.json")).unwrap()).unwrap();
    assert_eq!(side["nfe"], 20);
    // Eight gaussians has known modes: the coverage is reported and recorded.
    assert!(String::from_utf8_lossy(&o.stdout).contains("within 3 std of a mode"));
    let frac = side["eight_gaussians_coverage"]["fraction_within_3std"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&frac));
    assert_eq!(side["run_config"]["model"], "ddpm");

    let png = t.p("s.png");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            t.p("run").to_str().unwrap(),
            "--n",
            "100",
            "--steps",
            "10",
            "--out",
            png.to_str().unwrap(),
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let t = Tmp::new();
    for (dir, seed) in [("a", "3"), ("b", "3"), ("c", "4")] {
        let o = train_tiny(&t.p(dir), t.0.path(), seed, "15");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let ck = |d: &str| std::fs::read(t.p(d).join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck("a"), ck("b"));
    assert_ne!(ck("a"), ck("c"));
    // Regression: `--set seed=4` was overwritten by the default seed 0.
    let mut args = vec![
        "train",
        "--model",
        "ddpm",
        "--data",
        "eight-gaussians",
        "--steps",
        "15",
    ];
    let d_out = t.p("d");
    args.extend_from_slice(&[
        "--set",
        "seed=4",
        "--out",
        d_out.to_str().unwrap(),
        "--quiet",
    ]);
    args.extend_from_slice(TINY);
    assert!(genlab(&args, t.0.path()).status.success());
    assert_eq!(ck("d"), ck("c"));
    let sample = |seed: &str, name: &str| {
        let out = t.p(name);
        let o = genlab(
            &[
                "sample",
                "--ckpt",
                t.p("a").to_str().unwrap(),
                "--n",
                "50",
                "--seed",
                seed,
                "--sampler",
                "ddim",
                "--eta",
                "1",
                "--steps",
                "10",
                "--out",
                out.to_str().unwrap(),
            ],
            t.0.path(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    assert_eq!(sample("7", "x.npy"), sample("7", "y.npy"));
    assert_ne!(sample("7", "x.npy"), sample("8", "z.npy"));
}

#[test]
fn resume_from_the_cli_continues_to_the_new_total() {
    let t = Tmp::new();
    assert!(train_tiny(&t.p("r"), t.0.path(), "0", "10")
        .status
        .success());
    let o = genlab(
        &[
            "train",
            "--resume",
            "--out",
            t.p("r").to_str().unwrap(),
            "--steps",
            "20",
            "--quiet",
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(t.p("r/log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 20);
    // Changing the model on resume is refused.
    let o = genlab(
        &[
            "train",
            "--resume",
            "--out",
            t.p("r").to_str().unwrap(),
            "--set",
            "ddpm.timesteps=10",
        ],
        t.0.path(),
    );
    fails_with(&o, &["train.*"]);
}

#[test]
fn toml_config_file_is_layered_under_set() {
    let t = Tmp::new();
    std::fs::write(t.p("c.toml"), "model = \"ddpm\"\ndata = \"two-moons\"\n[train]\nsteps = 7\nbatch_size = 32\n[ddpm]\ntimesteps = 40\n").unwrap();
    let o = genlab(
        &[
            "train",
            "--config",
            t.p("c.toml").to_str().unwrap(),
            "--set",
            "train.steps=9",
            "--set",
            "ddpm.net.mlp.hidden=16",
            "--out",
            t.p("run").to_str().unwrap(),
            "--quiet",
            "--no-preview",
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("run/config.json")).unwrap()).unwrap();
    assert_eq!(
        (
            cfg["train"]["steps"].as_u64(),
            cfg["train"]["batch_size"].as_u64()
        ),
        (Some(9), Some(32))
    );
    assert_eq!(
        (cfg["data"].as_str(), cfg["ddpm"]["timesteps"].as_u64()),
        (Some("two-moons"), Some(40))
    );
    std::fs::write(t.p("bad.toml"), "[train]\nmomentum = 0.9\n").unwrap();
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "rings",
            "--config",
            t.p("bad.toml").to_str().unwrap(),
            "--out",
            t.p("bad").to_str().unwrap(),
        ],
        t.0.path(),
    );
    fails_with(&o, &["unknown key `train.momentum`", "batch_size"]);
}

#[test]
fn bad_input_gets_one_clear_error() {
    let t = Tmp::new();
    let d = t.0.path();
    let out = t.p("x").to_str().unwrap().to_string();
    fails_with(
        &genlab(
            &["train", "--model", "vae9", "--data", "rings", "--out", &out],
            d,
        ),
        &["unknown model `vae9`", "ddpm"],
    );
    fails_with(
        &genlab(
            &[
                "train", "--model", "ddpm", "--data", "moons3", "--out", &out,
            ],
            d,
        ),
        &["moons3", "eight-gaussians"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ddpm",
                "--data",
                "rings",
                "--set",
                "ddpm.nope=1",
                "--out",
                &out,
            ],
            d,
        ),
        &["unknown key `ddpm.nope`", "timesteps"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ddpm",
                "--data",
                "rings",
                "--set",
                "train.lr=fast",
                "--out",
                &out,
            ],
            d,
        ),
        &["\"fast\"", "expected f64"],
    );
    fails_with(
        &genlab(
            &[
                "train", "--model", "ddpm", "--data", "rings", "--set", "novalue", "--out", &out,
            ],
            d,
        ),
        &["key=value"],
    );
    // MiniLM not fetched: the error says how to get it; an unknown encoder lists the known.
    fails_with(
        &genlab(&["embed-text", "--model", "minilm", "a seven"], d),
        &["genlab data fetch minilm"],
    );
    fails_with(
        &genlab(&["embed-text", "--model", "gpt9", "a seven"], d),
        &["unknown text encoder", "minilm"],
    );
    // MNIST not fetched: the error says how to get it.
    fails_with(
        &genlab(
            &["train", "--model", "ddpm", "--data", "mnist", "--out", &out],
            d,
        ),
        &["genlab data fetch mnist"],
    );
    // An image folder without images.
    std::fs::create_dir_all(t.p("empty")).unwrap();
    let spec = format!("folder:{}", t.p("empty").display());
    fails_with(
        &genlab(
            &["train", "--model", "ddpm", "--data", &spec, "--out", &out],
            d,
        ),
        &["no images"],
    );
    // Missing, corrupt and foreign checkpoints.
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                t.p("nope").to_str().unwrap(),
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["no checkpoint"],
    );
    std::fs::create_dir_all(t.p("corrupt")).unwrap();
    std::fs::write(t.p("corrupt/checkpoint.safetensors"), b"garbage").unwrap();
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                t.p("corrupt").to_str().unwrap(),
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["not a valid genlab checkpoint"],
    );
    let plain = t.p("plain.safetensors");
    let tensor =
        candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    genlab_core::io::save_safetensors(&plain, &[("w".to_string(), tensor)].into()).unwrap();
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                plain.to_str().unwrap(),
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["not a genlab training checkpoint"],
    );
    // Sampling arguments.
    assert!(train_tiny(&t.p("run"), d, "0", "5").status.success());
    let ck = t.p("run").to_str().unwrap().to_string();
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--n",
                "0",
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["--n must be at least 1"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--sampler",
                "euler9",
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["unknown sampler `euler9`", "ddim"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--steps",
                "0",
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["at least 1"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--steps",
                "5000",
                "--out",
                t.p("s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["between 1 and the model's 50 timesteps"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--out",
                t.p("s.txt").to_str().unwrap(),
            ],
            d,
        ),
        &[".npy", ".png"],
    );
    std::fs::write(t.p("afile"), b"x").unwrap();
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                &ck,
                "--out",
                t.p("afile/s.npy").to_str().unwrap(),
            ],
            d,
        ),
        &["afile"],
    );
    // Training again into a run directory is refused: the good checkpoint survives.
    let before = std::fs::read(t.p("run/checkpoint.safetensors")).unwrap();
    fails_with(&train_tiny(&t.p("run"), d, "0", "5"), &["--resume"]);
    assert_eq!(
        std::fs::read(t.p("run/checkpoint.safetensors")).unwrap(),
        before
    );
    // Resume with nothing to resume.
    fails_with(
        &genlab(
            &["train", "--resume", "--out", t.p("none").to_str().unwrap()],
            d,
        ),
        &["cannot resume"],
    );
    fails_with(
        &genlab(&["--threads", "0", "list"], d),
        &["--threads must be at least 1"],
    );
    // A 2-D model cannot be pointed at image settings.
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ddpm",
                "--data",
                "rings",
                "--set",
                "ddpm.data.images=true",
                "--out",
                &out,
            ],
            d,
        ),
        &["data"],
    );
}

#[test]
fn list_names_models_samplers_and_datasets() {
    let t = Tmp::new();
    let o = genlab(&["list"], t.0.path());
    let s = String::from_utf8_lossy(&o.stdout);
    for n in [
        "ddpm",
        "ddim",
        "eight-gaussians",
        "digits",
        "mnist[:train|test]",
        "folder:PATH",
        "unet-train",
    ] {
        assert!(s.contains(n), "{n} missing from: {s}");
    }
}

#[test]
fn list_json_holds_every_registry_with_capabilities() {
    let t = Tmp::new();
    let o = genlab(&["list", "--json"], t.0.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |reg: &str, name: &str| {
        j[reg]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {reg}"))
            .clone()
    };
    let ddpm = find("models", "ddpm");
    assert_eq!(ddpm["capabilities"]["sampler_zoo"], true);
    assert_eq!(ddpm["capabilities"]["distillable"], true);
    assert_eq!(find("models", "gan")["capabilities"]["likelihood"], false);
    let mnist = find("datasets", "mnist");
    assert_eq!(mnist["held_out"], "mnist:test");
    assert_eq!(mnist["shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(find("datasets", "eight-gaussians")["known_density"], true);
    assert_eq!(find("metrics", "mode")["needs"], "both-probs");
    assert_eq!(
        find("feature_extractors", "inception")["input"]["size"],
        299
    );
    find("samplers", "dpm++2m");
    find("bench_workloads", "flow-train");
    find("bench_workloads", "simclr-step");
    find("fetchable", "efficientnet-lite0");
    find("fetchable", "minilm");
    assert_eq!(find("text_encoders", "minilm")["dim"], 384);
}

#[test]
fn image_folders_train_at_the_size_and_channels_asked_for() {
    // Regression: `genlab train --data folder:PATH` always read 32x32 RGB.
    let t = Tmp::new();
    let d = t.0.path();
    let imgs = t.p("imgs/a");
    std::fs::create_dir_all(&imgs).unwrap();
    for k in 0..4u8 {
        let img = image::RgbImage::from_fn(20, 14, |x, y| {
            image::Rgb([x as u8 * 12, y as u8 * 17, k * 60])
        });
        img.save(imgs.join(format!("{k}.png"))).unwrap();
    }
    let spec = format!("folder:{}", t.p("imgs").display());
    let run = t.p("run");
    let args = [
        "train",
        "--model",
        "vae",
        "--data",
        &spec,
        "--image-size",
        "8",
        "--channels",
        "1",
        "--steps",
        "3",
        "--set",
        "train.batch_size=2",
        "--no-preview",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ];
    let o = genlab(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["image_size"].clone(), cfg["channels"].clone()),
        (8.into(), 1.into())
    );
    assert_eq!(cfg["vae"]["data"]["shape"], serde_json::json!([1, 8, 8]));
    // Samples come out at that shape, and the run resumes at it.
    let s = t.p("s.npy");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            run.to_str().unwrap(),
            "--n",
            "2",
            "--out",
            s.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        genlab_core::io::read_npy(&s).unwrap().shape,
        vec![2, 1, 8, 8]
    );
    let o = genlab(
        &[
            "train",
            "--resume",
            "--steps",
            "4",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // A resumed run keeps its size; fixed-size data refuse one.
    fails_with(
        &genlab(
            &[
                "train",
                "--resume",
                "--image-size",
                "16",
                "--out",
                run.to_str().unwrap(),
            ],
            d,
        ),
        &["--image-size cannot change"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "vae",
                "--data",
                "digits",
                "--image-size",
                "16",
                "--out",
                t.p("x").to_str().unwrap(),
            ],
            d,
        ),
        &["8x8", "16"],
    );
}

/// A tiny class-conditional DDPM on the 8x8 digits (a few steps: the plumbing, not the
/// quality).
fn train_tiny_digits(out: &Path, d: &Path, conditional: bool) -> Output {
    let mut args = vec![
        "train",
        "--model",
        "ddpm",
        "--data",
        "digits",
        "--steps",
        "3",
        "--seed",
        "0",
        "--no-preview",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "ddpm.timesteps=20",
        "--set",
        "ddpm.net.unet.base_channels=8",
        "--set",
        "ddpm.net.unet.groups=4",
        "--set",
        "train.batch_size=8",
    ];
    if conditional {
        args.push("--class-conditional");
    }
    genlab(&args, d)
}

#[test]
fn image_map_models_train_with_a_preview_and_translate_with_psnr() {
    let t = Tmp::new();
    let d = t.0.path();
    let run = t.p("sr");
    let ck = run.to_str().unwrap();
    // Super-resolution of the 8x8 digits from 2x2, with the preview (example | map | sample).
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "2",
            "--seed",
            "0",
            "--quiet",
            "--out",
            ck,
            "--image-condition",
            "low-res:2",
            "--set",
            "ddpm.timesteps=50",
            "--set",
            "ddpm.net.unet.base_channels=8",
            "--set",
            "ddpm.net.unet.groups=4",
            "--set",
            "train.batch_size=8",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join("samples.png").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ddpm"]["image_condition"]["kind"], "low-res");
    assert_eq!(cfg["ddpm"]["image_condition"]["size"], 2);
    let png = t.p("sr.png");
    let o = genlab(
        &[
            "superres",
            "--ckpt",
            ck,
            "--from",
            "digits",
            "--n",
            "3",
            "--samples",
            "2",
            "--steps",
            "4",
            "--out",
            png.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("PSNR of bicubic") && out.contains("mean of 2 samples"),
        "{out}"
    );
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("sr.json")).unwrap()).unwrap();
    assert_eq!(side["image_map"], "low-res:2");
    for k in ["psnr_db", "psnr_bicubic_db", "psnr_mean_of_samples_db"] {
        assert!(side[k].as_f64().is_some_and(f64::is_finite), "{k}: {side}");
    }
    // original | map | 2 samples | their mean: 5 columns of 8 pixels (and separators).
    let img = image::open(&png).unwrap();
    assert!(img.width() >= 5 * 8 && img.height() >= 3 * 8);
    // Plain sampling cannot feed the map; a model without a map cannot translate; a bad
    // map, a map for a model family that takes none: clear errors.
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--n",
            "2",
            "--out",
            t.p("x.npy").to_str().unwrap(),
        ],
        d,
    );
    fails_with(&o, &["image map", "genlab translate"]);
    let plain = t.p("plain");
    assert!(train_tiny_digits(&plain, d, false).status.success());
    let o = genlab(
        &[
            "translate",
            "--ckpt",
            plain.to_str().unwrap(),
            "--from",
            "digits",
            "--out",
            t.p("y.png").to_str().unwrap(),
        ],
        d,
    );
    fails_with(&o, &["without an image condition", "--image-condition"]);
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            t.p("bad").to_str().unwrap(),
            "--image-condition",
            "blur",
        ],
        d,
    );
    fails_with(&o, &["--image-condition", "low-res:SIZE"]);
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            t.p("bad3").to_str().unwrap(),
            "--image-condition",
            "low-res:3",
        ],
        d,
    );
    fails_with(&o, &["low-res:3", "divides"]);
    let o = genlab(
        &[
            "train",
            "--model",
            "flow",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            t.p("bad2").to_str().unwrap(),
            "--image-condition",
            "edges",
        ],
        d,
    );
    fails_with(&o, &["image", "does not apply"]);
}

#[test]
fn class_conditional_sampling_guidance_inpainting_and_img2img() {
    let t = Tmp::new();
    let d = t.0.path();
    let run = t.p("cond");
    let o = train_tiny_digits(&run, d, true);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ddpm"]["num_classes"], 10);
    let ck = run.to_str().unwrap();
    // Every class, guided: 2 per class, labels beside the samples.
    let s = t.p("s.npy");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--class",
            "all",
            "--n",
            "2",
            "--guidance",
            "2",
            "--steps",
            "5",
            "--out",
            s.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        genlab_core::io::read_npy(&s).unwrap().shape,
        vec![20, 1, 8, 8]
    );
    let labels = genlab_core::io::read_npy(&t.p("s.labels.npy")).unwrap();
    assert_eq!(labels.data[..4], [0.0, 0.0, 1.0, 1.0]);
    let png = t.p("s.png");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--class",
            "3",
            "--n",
            "4",
            "--steps",
            "5",
            "--out",
            png.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Inpainting and img2img from dataset examples, as pictures.
    let inp = t.p("inp.png");
    let o = genlab(
        &[
            "inpaint",
            "--ckpt",
            ck,
            "--from",
            "digits",
            "--n",
            "3",
            "--mask",
            "right-half",
            "--steps",
            "6",
            "--jump-length",
            "2",
            "--resample",
            "2",
            "--class",
            "true",
            "--guidance",
            "1.5",
            "--out",
            inp.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("inp.json")).unwrap()).unwrap();
    // 6 steps, jumps of 2 at levels 1 and 3 (RePaint's t = 0, 2), once each: 6 + 2 + 2.
    assert_eq!(side["nfe"], 10);
    let i2i = t.p("i2i.npy");
    let o = genlab(
        &[
            "img2img",
            "--ckpt",
            ck,
            "--from",
            "digits",
            "--n",
            "2",
            "--strength",
            "0.3,1",
            "--steps",
            "10",
            "--out",
            i2i.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        genlab_core::io::read_npy(&i2i).unwrap().shape,
        vec![2, 1, 8, 8]
    );
    // Bad input: one clear error each.
    let out = t.p("x.png");
    let out = out.to_str().unwrap();
    fails_with(
        &genlab(&["sample", "--ckpt", ck, "--class", "10", "--out", out], d),
        &["--class 10", "0..9"],
    );
    fails_with(
        &genlab(
            &["sample", "--ckpt", ck, "--guidance", "2", "--out", out],
            d,
        ),
        &["--guidance", "class"],
    );
    fails_with(
        &genlab(
            &[
                "inpaint", "--ckpt", ck, "--from", "digits", "--mask", "left-ish", "--out", out,
            ],
            d,
        ),
        &["--mask", "right-half"],
    );
    std::fs::write(t.p("m.png"), b"").unwrap();
    image::GrayImage::new(5, 8).save(t.p("m.png")).unwrap();
    fails_with(
        &genlab(
            &[
                "inpaint",
                "--ckpt",
                ck,
                "--from",
                "digits",
                "--mask",
                t.p("m.png").to_str().unwrap(),
                "--out",
                out,
            ],
            d,
        ),
        &["--mask", "5x8", "8x8"],
    );
    for bad in ["0", "1.5"] {
        fails_with(
            &genlab(
                &[
                    "img2img",
                    "--ckpt",
                    ck,
                    "--from",
                    "digits",
                    "--strength",
                    bad,
                    "--out",
                    out,
                ],
                d,
            ),
            &["--strength"],
        );
    }
    fails_with(
        &genlab(
            &[
                "inpaint",
                "--ckpt",
                ck,
                "--mask",
                "right-half",
                "--out",
                out,
            ],
            d,
        ),
        &["--image is required"],
    );
    // An unconditional model takes neither a class nor guidance.
    let plain = t.p("plain");
    assert!(train_tiny_digits(&plain, d, false).status.success());
    let pk = plain.to_str().unwrap();
    fails_with(
        &genlab(&["sample", "--ckpt", pk, "--class", "1", "--out", out], d),
        &["--class", "trained without labels"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ddpm",
                "--data",
                "swiss-roll",
                "--class-conditional",
                "--out",
                t.p("roll").to_str().unwrap(),
            ],
            d,
        ),
        &["--class-conditional", "no class labels"],
    );
}

/// A tiny noisy classifier on the 8x8 digits, on the tiny DDPM's 20-step schedule.
fn train_tiny_classifier(out: &Path, d: &Path, data: &str, timesteps: &str) -> Output {
    genlab(
        &[
            "train",
            "--model",
            "noisy-classifier",
            "--data",
            data,
            "--steps",
            "3",
            "--seed",
            "0",
            "--no-preview",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--set",
            &format!("noisy-classifier.timesteps={timesteps}"),
            "--set",
            "train.batch_size=8",
        ],
        d,
    )
}

#[test]
fn classifier_guidance_steers_conditional_and_unconditional_models() {
    let t = Tmp::new();
    let d = t.0.path();
    let (plain, cond, clf) = (t.p("plain"), t.p("cond"), t.p("clf"));
    for (run, c) in [(&plain, false), (&cond, true)] {
        let o = train_tiny_digits(run, d, c);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = train_tiny_classifier(&clf, d, "digits", "20");
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = clf.to_str().unwrap();
    // An unconditional model takes its classes from the classifier; a conditional one
    // combines it with classifier-free guidance.
    for (run, extra) in [(&plain, vec![]), (&cond, vec!["--guidance", "2"])] {
        let s = t.p("s.npy");
        let mut args = vec![
            "sample",
            "--ckpt",
            run.to_str().unwrap(),
            "--classifier",
            ck,
            "--classifier-scale",
            "3",
            "--class",
            "all",
            "--n",
            "1",
            "--steps",
            "4",
            "--out",
            s.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = genlab(&args, d);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            genlab_core::io::read_npy(&s).unwrap().shape,
            vec![10, 1, 8, 8]
        );
        let side: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.p("s.json")).unwrap()).unwrap();
        assert_eq!(side["sampling"]["classifier_scale"], 3.0);
    }
    // Bad input: one clear error each.
    let out = t.p("x.png");
    let (out, pk) = (out.to_str().unwrap(), plain.to_str().unwrap());
    fails_with(
        &genlab(
            &["sample", "--ckpt", pk, "--classifier", ck, "--out", out],
            d,
        ),
        &["--classifier", "--class"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                pk,
                "--classifier",
                ck,
                "--class",
                "10",
                "--out",
                out,
            ],
            d,
        ),
        &["--class 10", "0..9"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                pk,
                "--classifier",
                ck,
                "--classifier-scale=-1",
                "--class",
                "1",
                "--out",
                out,
            ],
            d,
        ),
        &["--classifier-scale", ">= 0"],
    );
    // Another schedule, other data, a model of another family: refused.
    let other = t.p("clf50");
    assert!(train_tiny_classifier(&other, d, "digits", "50")
        .status
        .success());
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                pk,
                "--classifier",
                other.to_str().unwrap(),
                "--class",
                "1",
                "--out",
                out,
            ],
            d,
        ),
        &["--classifier", "noise schedule"],
    );
    let moons = t.p("moons");
    assert!(train_tiny_classifier(&moons, d, "two-moons", "20")
        .status
        .success());
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                pk,
                "--classifier",
                moons.to_str().unwrap(),
                "--class",
                "1",
                "--out",
                out,
            ],
            d,
        ),
        &["--classifier", "two-moons", "digits"],
    );
    fails_with(
        &genlab(&["sample", "--ckpt", ck, "--out", out], d),
        &["guide"],
    );
}

#[test]
fn bench_rejects_bad_input_and_times_one_workload() {
    let t = Tmp::new();
    let d = t.0.path();
    fails_with(
        &genlab(&["bench", "--workload", "mlp,nope"], d),
        &[
            "unknown workload `nope`",
            "mlp, conv, unet-train, ddim50, attention",
        ],
    );
    fails_with(
        &genlab(&["bench", "--min-time=-1"], d),
        &["--min-time", "non-negative"],
    );
    fails_with(&genlab(&["bench", "--min-time=nan"], d), &["--min-time"]);
    // One real (short) run: the record has the schema compare.py reads.
    let o = genlab(
        &["bench", "--workload", "mlp", "--min-time", "0", "--json"],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rec: serde_json::Value =
        serde_json::from_slice(o.stdout.trim_ascii()).expect("one JSON record");
    assert_eq!(rec["impl"], "genlab");
    assert_eq!(rec["workload"], "mlp");
    assert_eq!(rec["params"], 67_074);
    for k in ["rate", "median_s", "gflops", "peak_gflops"] {
        assert!(rec[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {rec}");
    }
}

#[test]
fn help_explains_every_command() {
    let t = Tmp::new();
    for cmd in [
        "train", "sample", "list", "data", "demo", "bench", "distill", "compare",
    ] {
        let o = genlab(&[cmd, "--help"], t.0.path());
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).len() > 100,
            "{cmd} --help is too thin"
        );
    }
}

#[test]
fn demo_writes_its_page_and_refuses_to_overwrite_itself() {
    let t = Tmp::new();
    let out = t.p("demo");
    let args = [
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--points-steps",
        "20",
        "--digits-steps",
        "3",
    ];
    let o = genlab(&args, t.0.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    for needle in [
        "DDPM on eight-gaussians",
        "DDPM on digits",
        "<svg",
        "samples.png",
        "real.png",
    ] {
        assert!(page.contains(needle), "index.html lacks {needle}");
    }
    for f in [
        "eight-gaussians/samples.png",
        "digits/samples.png",
        "digits/checkpoint.safetensors",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    fails_with(&genlab(&args, t.0.path()), &["already holds a demo run"]);
}

#[test]
fn vae_and_gan_train_sample_evaluate_and_reject_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |name: &str| d.join(name).to_str().unwrap().to_string();
    let fast = ["--set", "train.batch_size=32", "--set", "train.log_every=5"];
    // A VAE on the 8x8 digits: figures, then its IWAE bound from `eval --metrics nll`.
    let vae = run("vae");
    let mut args = vec![
        "train", "--model", "vae", "--data", "digits", "--steps", "10", "--out", &vae,
    ];
    args.extend(fast);
    args.extend(["--set", "vae.latent=2", "--set", "vae.net.mlp.hidden=[16]"]);
    let o = genlab(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "samples.png",
        "reconstructions.png",
        "interpolation.png",
        "loss.svg",
    ] {
        assert!(d.join("vae").join(f).exists(), "{f} missing");
    }
    let o = genlab(
        &[
            "eval",
            "--ckpt",
            &vae,
            "--metrics",
            "nll",
            "--k",
            "20",
            "--n",
            "30",
        ],
        d,
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("IWAE bound") && out.contains("bits/dim") && out.contains("30 examples"),
        "{out}"
    );
    // A WGAN-GP on points, both players' curves in the loss picture.
    let gan = run("gan");
    let mut args = vec![
        "train",
        "--model",
        "gan",
        "--data",
        "eight-gaussians",
        "--steps",
        "10",
        "--out",
        &gan,
        "--set",
        "gan.loss=wgan-gp",
        "--set",
        "gan.net.mlp.hidden=[16]",
    ];
    args.extend(fast);
    let o = genlab(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(d.join("gan").join("loss.svg")).unwrap();
    assert!(svg.contains("d_loss") && svg.contains("g_loss"));
    let npy = run("g.npy");
    let o = genlab(&["sample", "--ckpt", &gan, "--n", "7", "--out", &npy], d);
    assert!(o.status.success(), "{}", stderr(&o));
    fails_with(
        &genlab(&["eval", "--ckpt", &gan, "--metrics", "nll"], d),
        &["no likelihood"],
    );
    fails_with(
        &genlab(&["train", "--resume", "--out", &gan, "--model", "vae"], d),
        &["a resumed run keeps its saved config"],
    );
    let bad = |model: &str, set: &[&str], needles: &[&str]| {
        let out = run("bad");
        let mut args = vec![
            "train",
            "--model",
            model,
            "--data",
            "eight-gaussians",
            "--steps",
            "2",
            "--out",
            &out,
        ];
        for s in set {
            args.extend(["--set", s]);
        }
        fails_with(&genlab(&args, d), needles);
    };
    bad("vae", &["vae.latent=0"], &["vae.latent", "got 0"]);
    bad("gan", &["gan.latent=0"], &["gan.latent", "got 0"]);
    bad(
        "gan",
        &["gan.loss=wgan", "gan.n_critic=0"],
        &["n_critic", "got 0"],
    );
    bad(
        "gan",
        &["gan.loss=wgan", "gan.clip=-0.01"],
        &["gan.clip must be positive"],
    );
    bad(
        "gan",
        &["gan.loss=lsgan", "gan.clip=0.01"],
        &["applies to loss = wgan"],
    );
    bad(
        "gan",
        &["gan.loss=non-saturating", "gan.gp_weight=10"],
        &["no critic"],
    );
    bad(
        "gan",
        &["gan.loss=wgan-gp", "gan.gp_weight=0"],
        &["gp_weight must be positive"],
    );
}

#[test]
fn distill_halves_the_steps_resumes_and_rejects_bad_teachers() {
    let t = Tmp::new();
    let teacher = t.p("teacher");
    let mut args = vec![
        "train",
        "--model",
        "ddpm",
        "--data",
        "eight-gaussians",
        "--steps",
        "20",
        "--out",
        teacher.to_str().unwrap(),
        "--quiet",
        "--no-preview",
        "--set",
        "ddpm.prediction=v",
    ];
    args.extend_from_slice(TINY);
    let o = genlab(&args, t.0.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = t.p("distilled");
    let distill = |extra: &[&str]| {
        let mut v = vec![
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--from",
            "8",
            "--to",
            "2",
            "--steps-per-round",
            "6",
            "--quiet",
        ];
        v.extend_from_slice(extra);
        genlab(&v, t.0.path())
    };
    let o = distill(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for n in [4, 2] {
        assert!(out
            .join(format!("steps-{n}/checkpoint.safetensors"))
            .exists());
    }
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("distill.json")).unwrap()).unwrap();
    assert_eq!(rec["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(rec["rounds"][1]["student_steps"], 2);
    // Running it again reuses the finished rounds.
    let o = distill(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already trained"));
    // The student samples with its own steps (2 NFE) unless told otherwise.
    let png = t.p("s.npy");
    let student = out.join("steps-2");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            student.to_str().unwrap(),
            "--n",
            "5",
            "--out",
            png.to_str().unwrap(),
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.p("s.json")).unwrap()).unwrap();
    assert_eq!(side["nfe"], 2, "{side}");
    // Bad input: a non-diffusion teacher, a ladder that does not halve, a missing teacher.
    let gan = t.p("gan");
    let o = genlab(
        &[
            "train",
            "--model",
            "gan",
            "--data",
            "eight-gaussians",
            "--steps",
            "2",
            "--out",
            gan.to_str().unwrap(),
            "--quiet",
            "--no-preview",
        ],
        t.0.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = genlab(
        &[
            "distill",
            "--teacher",
            gan.to_str().unwrap(),
            "--out",
            t.p("x").to_str().unwrap(),
        ],
        t.0.path(),
    );
    fails_with(&o, &["`gan`", "diffusion"]);
    let o = genlab(
        &[
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--out",
            t.p("z").to_str().unwrap(),
            "--from",
            "12",
            "--to",
            "4",
        ],
        t.0.path(),
    );
    fails_with(&o, &["power of two"]);
    let o = genlab(
        &[
            "distill",
            "--teacher",
            t.p("nope").to_str().unwrap(),
            "--out",
            t.p("y").to_str().unwrap(),
        ],
        t.0.path(),
    );
    fails_with(&o, &["no teacher checkpoint"]);
}

#[test]
fn a_second_train_in_a_busy_run_directory_fails_at_once() {
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    /// The first trainer, killed (SIGKILL on Unix) when dropped, also when an assert fails.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let t = Tmp::new();
    let out = t.p("run");
    let out_s = out.to_str().unwrap();
    // A long run with no checkpoint before its end, so the directory only ever holds its lock,
    // config and log while it runs.
    let mut first = Killed(
        Command::new(env!("CARGO_BIN_EXE_genlab"))
            .args([
                "train",
                "--model",
                "ddpm",
                "--data",
                "eight-gaussians",
                "--steps",
                "100000",
                "--set",
                "train.ckpt_every=100000",
                "--out",
                out_s,
                "--quiet",
            ])
            .env("GENLAB_DATA", t.0.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run genlab"),
    );
    let pid = first.0.id();
    let holder = format!("\"pid\":{pid}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(std::fs::read_to_string(out.join("run.lock")).is_ok_and(|s| s.contains(&holder))
        && out.join("log.jsonl").exists())
    {
        if let Some(status) = first.0.try_wait().unwrap() {
            panic!("the first trainer ended ({status}) before locking {out_s}");
        }
        assert!(
            Instant::now() < deadline,
            "the first trainer did not lock {out_s} within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let second = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "eight-gaussians",
            "--steps",
            "10",
            "--out",
            out_s,
            "--quiet",
            "--no-preview",
        ],
        t.0.path(),
    );
    let took = started.elapsed();
    fails_with(
        &second,
        &[
            &format!("run directory {out_s} is in use by process {pid} (started "),
            "wait for it or choose another directory",
        ],
    );
    // Refused at once, not after waiting for the first run: the bound is the binary's
    // start-up with room for a loaded machine.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first trainer must keep running"
    );
    assert!(
        out.join("log.jsonl").exists(),
        "the refused run must leave the first one's log alone"
    );

    // A killed trainer leaves no lock behind: the next run in the directory goes ahead.
    drop(first);
    let next = train_tiny(&out, t.0.path(), "0", "10");
    assert!(next.status.success(), "{}", stderr(&next));
}

#[test]
fn class_conditional_gan_trains_and_samples_each_class() {
    let t = Tmp::new();
    let d = t.0.path();
    let run = t.p("cgan");
    let ck = run.to_str().unwrap();
    let tiny = [
        "--set",
        "gan.net.dcgan.channels=8",
        "--set",
        "train.batch_size=8",
        "--set",
        "gan.r1_weight=10",
    ];
    let mut args = vec![
        "train",
        "--model",
        "gan",
        "--data",
        "digits",
        "--steps",
        "3",
        "--seed",
        "0",
        "--quiet",
        "--class-conditional",
        "--out",
        ck,
    ];
    args.extend(tiny);
    let o = genlab(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["gan"]["num_classes"], 10);
    assert!(run.join("samples.png").exists());
    // Every class, 2 each, labels beside the samples; one class; one class as a picture.
    let s = t.p("s.npy");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--class",
            "all",
            "--n",
            "2",
            "--out",
            s.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        genlab_core::io::read_npy(&s).unwrap().shape,
        vec![20, 1, 8, 8]
    );
    let labels = genlab_core::io::read_npy(&t.p("s.labels.npy")).unwrap();
    assert_eq!(labels.data[..4], [0.0, 0.0, 1.0, 1.0]);
    let s7 = t.p("s7.npy");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--class",
            "7",
            "--n",
            "3",
            "--out",
            s7.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let png = t.p("all.png");
    let o = genlab(
        &[
            "sample",
            "--ckpt",
            ck,
            "--class",
            "all",
            "--n",
            "4",
            "--out",
            png.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success() && png.exists(), "{}", stderr(&o));
    // Class 7 of `all` and of `--class 7` come from the same generator: different noise,
    // same class; the samples differ between classes 0 and 7 of the same run.
    let all = genlab_core::io::read_npy(&s).unwrap();
    let seven = genlab_core::io::read_npy(&s7).unwrap();
    assert_eq!(seven.shape, vec![3, 1, 8, 8]);
    assert_ne!(all.data[..64], all.data[14 * 64..15 * 64]);
    // Bad input: a class outside the label set, guidance, a class for an unconditional
    // GAN, a conditional GAN on unlabelled data, and EBGAN (no projection discriminator).
    let out = t.p("x.npy");
    let out = out.to_str().unwrap();
    fails_with(
        &genlab(&["sample", "--ckpt", ck, "--class", "10", "--out", out], d),
        &["--class 10", "0..9"],
    );
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                ck,
                "--class",
                "3",
                "--guidance",
                "2",
                "--out",
                out,
            ],
            d,
        ),
        &["--guidance", "GAN"],
    );
    let plain = t.p("gan");
    let mut args = vec![
        "train",
        "--model",
        "gan",
        "--data",
        "digits",
        "--steps",
        "2",
        "--quiet",
        "--no-preview",
        "--out",
        plain.to_str().unwrap(),
    ];
    args.extend(tiny);
    let o = genlab(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    fails_with(
        &genlab(
            &[
                "sample",
                "--ckpt",
                plain.to_str().unwrap(),
                "--class",
                "1",
                "--out",
                out,
            ],
            d,
        ),
        &["--class", "trained without labels"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "gan",
                "--data",
                "swiss-roll",
                "--steps",
                "2",
                "--class-conditional",
                "--out",
                t.p("sw").to_str().unwrap(),
            ],
            d,
        ),
        &["--class-conditional", "no class labels"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "gan",
                "--data",
                "digits",
                "--steps",
                "2",
                "--class-conditional",
                "--set",
                "gan.loss=ebgan",
                "--out",
                t.p("eb").to_str().unwrap(),
            ],
            d,
        ),
        &["num_classes", "EBGAN"],
    );
}

#[test]
fn data_preview_draws_video_as_gifs_and_a_captioned_page_and_image_commands_refuse_video() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two clips of three 6x6 frames each, in class folders.
    for (class, clip) in [("left", "a"), ("right", "b")] {
        for k in 0..3u8 {
            let p = d.join(format!("clips/{class}/{clip}/{k:03}.png"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(6, 6, image::Rgb([k * 100, 50, 0]))
                .save(&p)
                .unwrap();
        }
    }
    let spec = format!("video-folder:{},frames=3", d.join("clips").display());
    let out = d.join("prev/clips.gif");
    let o = genlab(
        &[
            "data",
            "preview",
            &spec,
            "--out",
            out.to_str().unwrap(),
            "--image-size",
            "8",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"GIF89a"));
    assert!(d.join("prev/clips-clips/clip-001.gif").is_file());
    let page = std::fs::read_to_string(d.join("prev/clips.html")).unwrap();
    assert!(page.contains("clips-clips/clip-000.gif") && page.contains("#1, label 1"));
    // A video preview must be a .gif; image commands refuse video with one clear error.
    let png = d.join("x.png");
    fails_with(
        &genlab(
            &["data", "preview", &spec, "--out", png.to_str().unwrap()],
            d,
        ),
        &[".gif"],
    );
    fails_with(
        &genlab(&["eval", "--real", &spec, "--fake", &spec], d),
        &["takes images or points", "is video [T, C, H, W]"],
    );
    let run = d.join("run");
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "vae",
                "--data",
                &spec,
                "--steps",
                "1",
                "--out",
                run.to_str().unwrap(),
            ],
            d,
        ),
        &["takes images or points", "is video [T, C, H, W]"],
    );
    let o = genlab(
        &[
            "data",
            "preview",
            "digits",
            "--out",
            png.to_str().unwrap(),
            "--n",
            "4",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(image::open(&png).is_ok());
}
