//! Stable Diffusion in diffusers' folder layout against diffusers' own outputs on tiny random
//! pipelines (fixtures: scripts/reference/sd_pipeline_fixture.py).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use genlab_models::pretrained::sd::{self, SdVae};

/// Largest absolute difference allowed between genlab's and diffusers' float32 outputs of
/// one component (the 1e-4).
const COMPONENT_TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd")
}

fn io(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join(format!("{name}_io.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn unet_matches_diffusers() {
    for name in ["sd1", "sd2"] {
        let r = io(name);
        let unet = sd::load_unet_dir(&fixtures().join(name).join("unet"), &Device::Cpu).unwrap();
        let ctx = r["text_hidden"].narrow(0, 0, 2).unwrap();
        let out = unet
            .forward(&r["unet_sample"], &r["unet_t"], Some(&ctx), None, None)
            .unwrap();
        let d = max_diff(&out, &r["unet_out"]);
        eprintln!("{name}: U-Net max abs diff {d:.2e}");
        assert!(d < COMPONENT_TOL, "{name}: U-Net differs by {d}");
    }
}

#[test]
fn vae_matches_diffusers() {
    for name in ["sd1", "sd2"] {
        let r = io(name);
        let vae = SdVae::load_dir(&fixtures().join(name).join("vae"), &Device::Cpu).unwrap();
        let ae = vae.at_size(16, 16).unwrap();
        let mean = ae.encode(&r["vae_image"]).unwrap().mean;
        let d = max_diff(&mean, &r["vae_mean"]);
        eprintln!("{name}: VAE mean max abs diff {d:.2e}");
        assert!(d < COMPONENT_TOL, "{name}: VAE mean differs by {d}");
        let dec = ae.decode_raw(&r["vae_mean"]).unwrap();
        let d = max_diff(&dec, &r["vae_decoded"]);
        eprintln!("{name}: VAE decode max abs diff {d:.2e}");
        assert!(d < COMPONENT_TOL, "{name}: VAE decode differs by {d}");
        assert_eq!(vae.scaling_factor, 0.18215);
        let _ = DType::F32;
    }
}

#[test]
fn single_file_matches_the_folder() {
    use genlab_models::pretrained::{ldm_keys, TensorMap};
    let dev = Device::Cpu;
    let map = TensorMap::load(&fixtures().join("sd1_single.safetensors"), &dev).unwrap();
    assert_eq!(sd::single_file_kind(&map).unwrap(), sd::SingleFileKind::Sd1);
    let folder_cfg =
        sd::unet_config(&sd::read_json(&fixtures().join("sd1/unet/config.json")).unwrap()).unwrap();
    // Shapes give everything but the head count (not in the weights) and the tiny net's
    // 4 GroupNorm groups (SD's are 32).
    let mut inferred = sd::infer_unet_config(&map).unwrap();
    inferred.num_attention_heads = folder_cfg.num_attention_heads.clone();
    inferred.norm_num_groups = folder_cfg.norm_num_groups;
    assert_eq!(inferred, folder_cfg);
    let vae_json = sd::infer_vae_config(&map).unwrap();
    let layout = ldm_keys::VaeLayout {
        levels: vae_json["block_out_channels"].as_array().unwrap().len(),
        layers_per_block: vae_json["layers_per_block"].as_u64().unwrap() as usize,
    };
    let table = ldm_keys::pairs(&folder_cfg, layout);
    let diff = ldm_keys::to_diffusers(&map, &table).unwrap();
    // Renamed back to diffusers, every tensor equals the folder's.
    let unet_dir = sd::load_component(&fixtures().join("sd1/unet"), &dev).unwrap();
    let vae_dir = sd::load_component(&fixtures().join("sd1/vae"), &dev).unwrap();
    let mut n = 0;
    for (prefix, folder) in [("unet.", &unet_dir), ("vae.", &vae_dir)] {
        for k in folder.keys() {
            let a = folder.get(k).unwrap();
            let b = diff
                .get(&format!("{prefix}{k}"))
                .unwrap_or_else(|| panic!("{prefix}{k}"));
            assert_eq!(max_diff(a, b), 0.0, "{k}");
            n += 1;
        }
    }
    assert_eq!(n, diff.len());
    // And to the original layout again: the same file.
    let orig = ldm_keys::to_original(&diff, &table).unwrap();
    for k in orig.keys() {
        assert_eq!(
            max_diff(orig.get(k).unwrap(), map.get(k).unwrap()),
            0.0,
            "{k}"
        );
    }
    let unet_keys = map
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("cond_stage_model."))
        .count();
    assert_eq!(orig.len(), unet_keys);
}

/// Largest absolute difference allowed between genlab's and diffusers' 4-step txt2img
/// images (the 1e-3).
const PIPELINE_TOL: f32 = 1e-3;

#[test]
fn txt2img_matches_diffusers_for_three_samplers() {
    use genlab_core::{Condition, Rng};
    use genlab_models::pretrained::sd_pipeline::{SdLoadOptions, StableDiffusion};
    use genlab_sampling::SamplerOptions;
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    let prompts: Vec<String> = serde_json::from_value(cases["prompts"].clone()).unwrap();
    let negative: Vec<String> = serde_json::from_value(cases["negative"].clone()).unwrap();
    let steps = cases["steps"].as_u64().unwrap() as usize;
    let guidance = cases["guidance"].as_f64().unwrap();
    for name in ["sd1", "sd2"] {
        let r = io(name);
        let mut sd = StableDiffusion::load(
            &fixtures().join(name),
            &SdLoadOptions::default(),
            &Device::Cpu,
        )
        .unwrap();
        sd.set_size(16, 16).unwrap();
        // Token ids and text states first.
        let (hidden, _) = sd
            .encode_prompts(&[prompts.clone(), negative.clone()].concat())
            .unwrap();
        let d = max_diff(&hidden, &r["text_hidden"]);
        eprintln!("{name}: text states max abs diff {d:.2e}");
        assert!(d < COMPONENT_TOL, "{name}: text states differ by {d}");
        let (tokens, _) = sd.encode_prompts(&prompts).unwrap();
        let (neg, _) = sd.encode_prompts(&negative).unwrap();
        let cond = Condition {
            tokens: Some(tokens),
            negative_tokens: Some(neg),
            ..Condition::none()
        };
        for sampler in ["ddim", "euler", "dpm++2m"] {
            let opts = SamplerOptions {
                steps,
                ..SamplerOptions::default()
            };
            let (z, _) = sd
                .denoise(
                    r["latents"].clone(),
                    &cond,
                    Some(guidance),
                    sampler,
                    &opts,
                    &mut Rng::new(0),
                    &mut |_, _| {},
                )
                .unwrap();
            let img = sd.vae.decode(&z).unwrap().permute((0, 2, 3, 1)).unwrap();
            let want = &r[&format!("image_{sampler}")];
            let d = max_diff(&img, want);
            eprintln!("{name} {sampler}: image max abs diff {d:.2e}");
            assert!(d < PIPELINE_TOL, "{name} {sampler}: image differs by {d}");
            // The samplers must disagree with each other far more than with diffusers.
            let other = &r[if sampler == "ddim" {
                "image_euler"
            } else {
                "image_ddim"
            }];
            assert!(
                max_diff(&img, other) > 10.0 * d,
                "{name} {sampler}: not discriminative"
            );
        }
    }
}
