//! `genlab txt2img --model`: Stable Diffusion checkpoints end to end on the tiny random
//! pipelines of crates/genlab-models/tests/fixtures/sd (diffusers folders and an original
//! single file), and the errors that name what is wrong.

mod common;
use common::{fails_with, genlab, json, ok};

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../genlab-models/tests/fixtures/sd")
        .canonicalize()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn txt2img_from_a_diffusers_folder_and_a_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (name, sampler) in [("sd1", "ddim"), ("sd2", "euler")] {
        let model = fixtures().join(name);
        let out = d.join(format!("{name}.png"));
        let o = genlab(
            &[
                "txt2img",
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                "a red square",
                "--prompt",
                "two cats",
                "--negative-prompt",
                "blurry",
                "--n",
                "2",
                "--height",
                "16",
                "--width",
                "24",
                "--steps",
                "4",
                "--sampler",
                sampler,
                "--guidance",
                "1,3",
                "--out",
                out.to_str().unwrap(),
            ],
            d,
        );
        let s = ok(&o);
        assert!(s.contains("guidance 3: 4 images"), "{s}");
        assert!(out.is_file());
        let side = json(&out.with_extension("json"));
        assert_eq!(side["model"]["scheduler"], "PNDMScheduler");
        assert_eq!(side["model"]["size"], serde_json::json!([16, 24]));
        assert_eq!(side["rows"].as_array().unwrap().len(), 2);
    }
    // The same networks from the original single-file layout (configs from the folder; SD
    // 2.x's OpenCLIP text tower with its unused last block), as raw images: identical to the
    // folder's at the same seed.
    for name in ["sd1", "sd2"] {
        let mut raw = Vec::new();
        for model in [format!("{name}_single.safetensors"), name.to_string()] {
            let out = d.join(format!("{model}.npy"));
            let path = fixtures().join(&model);
            let cfg = fixtures().join(name);
            let mut args = vec![
                "txt2img",
                "--model",
                path.to_str().unwrap(),
                "--prompt",
                "a red square",
                "--height",
                "16",
                "--width",
                "16",
                "--steps",
                "3",
                "--out",
                out.to_str().unwrap(),
            ];
            if model.ends_with(".safetensors") {
                args.extend(["--config", cfg.to_str().unwrap()]);
            }
            ok(&genlab(&args, d));
            raw.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(raw[0], raw[1], "{name}: single file and folder differ");
    }
    // A .npy comes with the prompt of every image, in order (prompts x n, per guidance
    // scale), for `genlab eval --metrics clip-score`.
    let out = d.join("m.npy");
    let model = fixtures().join("sd1");
    ok(&genlab(
        &[
            "txt2img",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a",
            "--prompt",
            "b",
            "--n",
            "2",
            "--guidance",
            "1,3",
            "--height",
            "16",
            "--width",
            "16",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        d,
    ));
    assert_eq!(
        json(&d.join("m.prompts.json")),
        serde_json::json!(["a", "a", "b", "b", "a", "a", "b", "b"])
    );
    let n = genlab_core::io::read_npy_f64(&out).unwrap().shape[0];
    assert_eq!(n, 8);
}

#[test]
fn bad_checkpoints_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |model: &Path, extra: &[&str]| {
        let out = d.join("x.png");
        let mut args = vec![
            "txt2img",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "x",
            "--height",
            "16",
            "--width",
            "16",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        genlab(&args, d)
    };
    // A folder without its VAE.
    let f = d.join("novae");
    copy_dir(&fixtures().join("sd1"), &f);
    std::fs::remove_dir_all(f.join("vae")).unwrap();
    fails_with(&run(&f, &[]), &["missing vae", "unet, vae, text_encoder"]);
    // SDXL, recognised from model_index.json.
    let f = d.join("xl");
    copy_dir(&fixtures().join("sd1"), &f);
    std::fs::write(
        f.join("model_index.json"),
        r#"{"_class_name": "StableDiffusionXLPipeline"}"#,
    )
    .unwrap();
    fails_with(&run(&f, &[]), &["Stable Diffusion XL", "1.x and 2.x"]);
    // A U-Net option genlab does not implement.
    let f = d.join("lcm");
    copy_dir(&fixtures().join("sd1"), &f);
    let p = f.join("unet/config.json");
    let mut cfg = json(&p);
    cfg["time_cond_proj_dim"] = 256.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    fails_with(&run(&f, &[]), &["time_cond_proj_dim = 256", "LCM"]);
    // A missing weight tensor is listed with the count.
    let f = d.join("cut");
    copy_dir(&fixtures().join("sd1"), &f);
    let w = f.join("vae/diffusion_pytorch_model.safetensors");
    let mut t = candle_core::safetensors::load(&w, &candle_core::Device::Cpu).unwrap();
    t.remove("decoder.conv_out.bias");
    candle_core::safetensors::save(&t, &w).unwrap();
    fails_with(
        &run(&f, &[]),
        &["1 missing keys (decoder.conv_out.bias [3])"],
    );
    // A scheduler genlab does not map.
    let f = d.join("lcmsched");
    copy_dir(&fixtures().join("sd1"), &f);
    std::fs::write(
        f.join("scheduler/scheduler_config.json"),
        r#"{"_class_name": "LCMScheduler"}"#,
    )
    .unwrap();
    fails_with(&run(&f, &[]), &["LCMScheduler"]);
    // Single files: inferred configs that do not fit say to pass --config; SDXL is refused.
    let single = fixtures().join("sd1_single.safetensors");
    fails_with(
        &run(&single, &[]),
        &["inferred from the tensor shapes", "--config DIR"],
    );
    let xl = d.join("xl.safetensors");
    let mut m = std::collections::HashMap::new();
    m.insert(
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight".to_string(),
        candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&m, &xl).unwrap();
    fails_with(&run(&xl, &[]), &["Stable Diffusion XL"]);
    // Sizes that are not multiples of the VAE's factor (2 for the tiny net, 8 for SD).
    let sd1 = fixtures().join("sd1");
    let out = d.join("x.png");
    fails_with(
        &genlab(
            &[
                "txt2img",
                "--model",
                sd1.to_str().unwrap(),
                "--prompt",
                "x",
                "--height",
                "15",
                "--out",
                out.to_str().unwrap(),
            ],
            d,
        ),
        &["multiples of 2", "15x512"],
    );
    // --ckpt and --model together: clap's usage error (exit code 2).
    let o = genlab(
        &[
            "txt2img",
            "--model",
            sd1.to_str().unwrap(),
            "--ckpt",
            "runs/x",
            "--prompt",
            "x",
            "--out",
            out.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("cannot be used with"));
}
