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
        assert!(d < COMPONENT_TOL, "{name}: VAE mean differs by {d}");
        let dec = ae.decode_raw(&r["vae_mean"]).unwrap();
        let d = max_diff(&dec, &r["vae_decoded"]);
        assert!(d < COMPONENT_TOL, "{name}: VAE decode differs by {d}");
        assert_eq!(vae.scaling_factor, 0.18215);
        let _ = DType::F32;
    }
}
